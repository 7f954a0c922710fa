"""Fuzzing a running node (issue #10, "Done when"): schemathesis generates requests from docs/openapi.yaml
for every operation of the peer, local and operations listeners, and Hypothesis generates hostile JSON
(repeated member names, deep nesting, huge integers, invalid UTF-8, control characters, line separators)
for every endpoint that takes JSON, in the body itself, in an envelope of a batch and inside a JWS.

A real node process (es) behind real mutual TLS: peer requests carry eu-hub's certificate, local ones
the certificate of the role the route admits. Nothing may come back as a 500, every refusal is
application/problem+json with a ``code``, and every line the node wrote is one JSON object. The number of
examples is bounded so that the module stays within about a minute.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kit.livenode import Live, Reply

from gateway.core.b64 import b64url_encode

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
schema = schemathesis.openapi.from_path(DOC)
schemathesis.serializer.alias("application/x-x3p", "application/octet-stream")  # binary, as octet-stream
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

FUZZ = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
HOSTILE = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    node = Live(tmp_path_factory.mktemp("fuzz"), limits={"checkpoint_interval": 1.0}).start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def sessions(live):
    """One requests session per caller: the peer (eu-hub's certificate), each local role, the ops port."""
    out = live.sessions()
    yield out
    for s in out.values():
        s.close()


def assert_no_500(status: int, ctype: str, body: bytes, what: str) -> None:
    # 503 is a deliberate answer (load shed, no checkpoint signed yet: retry later), never a failure
    assert status < 500 or status == 503, f"{what}: HTTP {status}: {body[:300]!r}"
    if status >= 400 and not what.startswith("HEAD "):  # a HEAD answer has no body
        assert ctype.split(";")[0].strip() == "application/problem+json", f"{what}: HTTP {status} {ctype}: {body[:200]!r}"
        doc = json.loads(body)
        assert isinstance(doc.get("code"), str) and doc["code"], f"{what}: {doc}"


# --- schemathesis: every operation of docs/openapi.yaml -------------------------------------------------


@schema.parametrize()
@FUZZ
def test_no_operation_answers_500(case, live, sessions):
    base, who = live.caller(case.operation.path)
    response = case.call(base_url=base, session=sessions[who], timeout=15, verify=False)
    ctype = next((v[0] if isinstance(v, list) else v for k, v in response.headers.items() if k.lower() == "content-type"), "")
    assert_no_500(response.status_code, ctype, response.content,
                  f"{case.method} {case.formatted_path}")


# --- Hypothesis: hostile JSON on every endpoint that takes JSON ---------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
                | st.floats(allow_nan=False) | st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=3)
                           | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=8)
NASTY = ["\x1b[2J", "\x00", "\u2028", "\u2029", "\u0085", "\u202e", "\ud800", "\r\n"]


@st.composite
def hostile_json(draw) -> bytes:
    kind = draw(st.sampled_from(["duplicate", "deep", "huge_int", "not_utf8", "controls", "non_finite", "plain"]))
    inner = json.dumps(draw(json_values))
    if kind == "duplicate":
        name = json.dumps(draw(st.sampled_from(["envelopes", "token", "status", "type", "alg", "x"])))
        text = "{" + f"{name}:{inner},{name}:{inner}" + "}"
        for _ in range(draw(st.integers(0, 5))):
            text = '{"a":' + text + "}" if draw(st.booleans()) else "[" + text + "]"
        return text.encode()
    if kind == "deep":
        n = draw(st.sampled_from([33, 100, 5000, 200_000]))
        open_, close = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return (open_ * n + "1" + close * n).encode()
    if kind == "huge_int":
        n = draw(st.integers(min_value=2**53 + 1, max_value=10**400) | st.integers(max_value=-(2**53) - 1, min_value=-(10**400)))
        return ('{"envelopes":[' + str(n) + '],"status":' + str(n) + "}").encode()
    if kind == "not_utf8":
        return b'{"status":"' + draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xfe\xff"])) + b'"}'
    if kind == "controls":
        return json.dumps({"status": draw(st.sampled_from(NASTY)), "detail": "".join(NASTY),
                           draw(st.sampled_from(NASTY)): inner}, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if kind == "non_finite":
        return ('{"x":' + draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e99999"])) + "}").encode()
    return inner.encode()


def as_jws(text: bytes) -> str:
    return f"{b64url_encode(text)}.{b64url_encode(text)}.{b64url_encode(b'sig')}"


@st.composite
def hostile_requests(draw) -> tuple[str, str, bytes, str]:
    """(listener, path, body, content type)"""
    text = draw(hostile_json())
    where = draw(st.sampled_from(["batch", "in_batch", "in_token", "submit", "ack", "witness"]))
    if where == "batch":
        return "peer", "/v1/envelopes", text, "application/json"
    if where == "in_batch":
        return "peer", "/v1/envelopes", b'{"envelopes":[' + text + b"]}", "application/json"
    if where == "in_token":
        env = json.dumps({"token": as_jws(text), "payload": "", "hops": [as_jws(text)]}).encode()
        return "peer", "/v1/envelopes", b'{"envelopes":[' + env + b"]}", "application/json"
    if where == "submit":
        return "local", "/local/v1/messages", text, "application/vnd.traza.message+json"
    if where == "ack":
        return "local", "/local/v1/inbox/0190a5b4-0000-7000-8000-000000000000/ack", text, "application/json"
    return "peer", "/v1/witness/add-checkpoint", text, "text/plain"


@HOSTILE
@given(hostile_requests())
def test_hostile_json_never_answers_500(live, request_):
    listener, path, body, ctype = request_
    r: Reply = live.request(listener, "POST", path, body, role=live.local_role(path), content_type=ctype)
    assert_no_500(r.status, r.headers.get("Content-Type", ""), r.body, f"POST {path} {body[:80]!r}")
    if path == "/v1/envelopes" and r.status == 200:  # a batch of junk envelopes: each one rejected
        assert all(res["status"] == "rejected" for res in r.json()["results"])


def test_every_line_the_node_logged_is_one_json_object(live):
    # runs last in this module: everything above was logged by now
    assert live.log_lines(), "the node logged nothing"
    bad = live.lines_not_json()
    assert not bad, f"{len(bad)} log lines that are not one JSON object, e.g. {bad[:3]}"
