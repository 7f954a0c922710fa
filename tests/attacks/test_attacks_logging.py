"""Attacks on the node's log: text chosen by a peer (a path, a detail, an exception message) must never
break a log line into several, forge a line, or reach an operator's terminal as control sequences. Every
line the node writes is one JSON object - its own records, aiohttp's and asyncio's stdlib records and
exception tracebacks alike (a traceback is a field of the record, never lines of its own)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import warnings

import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer

from gateway import logging as tlog
from gateway.transport.local import ops_app

HOSTILE = "evil\x1b[2J\x1b]0;owned\x07\x00\r\nforged {\"level\":\"info\"}\u2028\u2029\u0085\u009b31m"


@pytest.fixture
def captured():
    buf = io.StringIO()
    tlog.configure("json", "debug", stream=buf)
    yield buf
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_traza", False):
            root.removeHandler(h)
    structlog.reset_defaults()


def records(buf: io.StringIO) -> list[dict]:
    text = buf.getvalue()
    lines = text.split("\n")
    assert lines[-1] == "", "the last record does not end its line"
    out = []
    for line in lines[:-1]:
        assert not any(c in line for c in "\u2028\u2029\u0085\x1b\x00\r"), f"raw separator or control in {line!r}"
        doc = json.loads(line)
        assert isinstance(doc, dict), line
        out.append(doc)
    return out


def test_hostile_text_in_a_log_field_stays_on_one_escaped_line(captured):
    tlog.get_logger(node="es").warning("envelope.rejected", detail=HOSTILE, path="/v1/" + HOSTILE)
    (rec,) = records(captured)
    assert rec["detail"] == HOSTILE and rec["path"] == "/v1/" + HOSTILE  # escaped, not lost


def test_stdlib_record_with_a_traceback_is_one_json_line(captured):
    try:
        raise RuntimeError("handler failed on " + HOSTILE)
    except RuntimeError:
        logging.getLogger("aiohttp.server").exception("Error handling request from %s", "127.0.0.1")
    (rec,) = records(captured)
    assert rec["event"] == "Error handling request from 127.0.0.1"
    assert rec["level"] == "error" and rec["logger"] == "aiohttp.server"
    exc = rec["exception"]
    assert isinstance(exc, list) and exc[0]["exc_type"] == "RuntimeError" and HOSTILE in exc[0]["exc_value"]


def test_asyncio_unretrieved_task_exception_is_one_json_line(captured):
    async def main():
        try:
            raise ValueError(HOSTILE)
        except ValueError as exc:  # what asyncio reports for a task whose exception nobody retrieved
            asyncio.get_running_loop().call_exception_handler(
                {"message": "Task exception was never retrieved", "exception": exc})

    asyncio.run(main())
    recs = records(captured)
    assert any(r.get("logger") == "asyncio" and r.get("exception") for r in recs), recs


def test_python_warning_is_one_json_line(captured):
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated " + HOSTILE, DeprecationWarning, stacklevel=1)
    recs = records(captured)
    assert recs and recs[0]["logger"] == "py.warnings"


def test_own_record_with_exc_info_is_one_json_line(captured):
    try:
        {}["missing"]
    except KeyError:
        tlog.get_logger().error("request.failed", exc_info=True)
    (rec,) = records(captured)
    assert rec["exception"][0]["exc_type"] == "KeyError"


def test_console_log_escapes_control_characters():
    buf = io.StringIO()
    tlog.configure("console", "info", stream=buf)
    try:
        tlog.get_logger().warning("x", detail=HOSTILE)
        logging.getLogger("aiohttp.server").error("from %s", HOSTILE)
    finally:
        root = logging.getLogger()
        for h in list(root.handlers):
            if getattr(h, "_traza", False):
                root.removeHandler(h)
        structlog.reset_defaults()
    out = buf.getvalue()
    assert not any(c in out for c in "\x1b\x00\x07\r\u2028\u2029\u0085\u009b"), repr(out)
    assert out.count("\n") == 2, repr(out)


class _Failing:
    def healthy(self) -> bool:
        raise RuntimeError("backend failed: " + HOSTILE)

    def is_ready(self):
        return True, "ok"

    def metrics_text(self):
        return b"", "text/plain"


async def test_unexpected_exception_is_a_500_problem_and_one_json_log_record(captured):
    async with TestClient(TestServer(ops_app(_Failing()))) as client:
        r = await client.get("/healthz")
        body = await r.read()
        nf = await client.get("/no/such/route")
        nf_body = await nf.json()
    assert r.status == 500 and r.content_type == "application/problem+json"
    doc = json.loads(body)
    assert doc["code"] == "internal" and doc["status"] == 500
    assert b"Traceback" not in body and b"backend failed" not in body and b"RuntimeError" not in body
    assert nf.status == 404 and nf.content_type == "application/problem+json" and nf_body["code"] == "not_found"
    recs = [r for r in records(captured) if r.get("event") == "request.failed"]
    assert len(recs) == 1 and recs[0]["listener"] == "ops" and recs[0]["path"] == "/healthz"
    assert recs[0]["exception"][0]["exc_type"] == "RuntimeError"
    # frames without their local variables (they may hold keys, tokens or plaintext)
    assert all("locals" not in f for f in recs[0]["exception"][0]["frames"])
