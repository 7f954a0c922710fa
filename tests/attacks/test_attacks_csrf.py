"""Cross-site request forgery against the local listener. A browser holding the operator's (or auditor's)
client certificate presents it to any page's request, so a page on another site could make it discard a
dead letter. Operator and auditor actions (every non-GET/HEAD on /ops/, /audit/, /v1/audit/, /ui) need a
same-origin request (an `Origin` or `Sec-Fetch-Site` naming another site is refused) that a form cannot
send (header `X-Traza-Request`); national-system routes (/local/) get the same-origin check only. Each
refusal is 403 problem+json, audited as `auth.denied` with the reason, and nothing is done.

A real node (mx, alone) over real mTLS with the operator's certificate; the dead letter is made by the
node's own give-up path (the one its forwarder takes on a permanent refusal)."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from core.message_examples import example

from gateway.config import Config, load_config
from gateway.core.errors import Code
from gateway.localfed import NodeSpec, build
from gateway.national.client import local_tls
from gateway.node import Node
from gateway.store import relay as st

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub")]
FORM = "application/x-www-form-urlencoded"


@contextlib.asynccontextmanager
async def mx_with_a_dead_letter(tmp_path: Path) -> AsyncIterator[tuple[Node, Config, int]]:
    built = build(tmp_path / "fed", SPECS, limits={"retry_min": 30.0, "retry_max": 60.0})
    cfg = load_config(built["mx"].config)
    node = Node(cfg)
    await node.start()
    try:
        jti = await node.submit(mt="notice", to="hub", body=msgspec.json.encode(example("notice")), system="test")

        now = node.clock()

        def give_up(view: Any) -> Any:
            return node.relay.give_up(view.message(jti), "hub", Code.POLICY_DENIED, "made a dead letter for this test", now)

        await node._decide(give_up, now)
        [dl] = await node.db.read(st.dead_letters)
        yield node, cfg, dl["id"]
    finally:
        await node.stop()


async def post(cfg: Config, role: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, str, Any]:
    url = f"https://{cfg.listen.local}{path}"
    async with aiohttp.ClientSession() as s, \
            s.post(url, data=body, headers=headers, ssl=local_tls(cfg, role)) as r:
        raw = await r.read()
        return r.status, r.content_type, json.loads(raw) if raw else None


async def events(node: Node, event: str) -> list[dict[str, Any]]:
    doc = await node.audit_entries({"event": event, "limit": "1000"})
    return [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]


async def eventually_denied(node: Node, path: str) -> dict[str, Any]:
    from kit.waiting import eventually

    async def find() -> dict[str, Any] | None:
        return next((e for e in await events(node, "auth.denied") if e.get("path") == path), None)

    return await eventually(find, timeout=10.0)


async def still_there(node: Node, dl_id: int) -> bool:
    return any(d["id"] == dl_id for d in await node.db.read(st.dead_letters))


def refused(status: int, ctype: str, doc: Any) -> None:
    assert status == 403, (status, doc)
    assert ctype == "application/problem+json", ctype
    assert doc["code"] == "forbidden", doc


async def test_cross_site_form_post_discarding_a_dead_letter_is_refused(tmp_path):
    async with mx_with_a_dead_letter(tmp_path) as (node, cfg, dl):
        path = f"/ops/v1/dead-letters/{dl}/discard"
        status, ctype, doc = await post(cfg, "operator", path, {"Origin": "https://evil.example",
                                                               "Content-Type": FORM}, b"x=1")
        refused(status, ctype, doc)
        assert "evil.example" in doc["detail"], doc
        denied = await eventually_denied(node, path)
        assert "evil.example" in denied["detail"] and denied["listener"] == "local", denied
        assert await still_there(node, dl)
        assert await events(node, "operator.action") == []


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example", "X-Traza-Request": "1"},  # a custom header does not make it same-site
    {"Origin": "null", "X-Traza-Request": "1"},  # sandboxed frame, file:// page
    {"Sec-Fetch-Site": "cross-site", "X-Traza-Request": "1"},  # browsers that drop Origin still say this
    {"Sec-Fetch-Site": "same-site", "X-Traza-Request": "1"},  # another node's dashboard on the same host
], ids=["origin", "null-origin", "fetch-cross-site", "fetch-same-site"])
async def test_cross_site_post_with_the_custom_header_is_still_refused(tmp_path, headers):
    async with mx_with_a_dead_letter(tmp_path) as (node, cfg, dl):
        path = f"/ops/v1/dead-letters/{dl}/retry"
        refused(*await post(cfg, "operator", path, headers))
        await eventually_denied(node, path)
        assert await still_there(node, dl)
        assert await events(node, "operator.action") == []


async def test_same_origin_post_without_the_header_is_refused(tmp_path):
    async with mx_with_a_dead_letter(tmp_path) as (node, cfg, dl):
        path = f"/ops/v1/dead-letters/{dl}/discard"
        status, ctype, doc = await post(cfg, "operator", path, {"Origin": f"https://{cfg.listen.local}",
                                                               "Sec-Fetch-Site": "same-origin",
                                                               "Content-Type": FORM}, b"x=1")
        refused(status, ctype, doc)
        assert "X-Traza-Request" in doc["detail"], doc
        denied = await eventually_denied(node, path)
        assert "X-Traza-Request" in denied["detail"], denied
        assert await still_there(node, dl)
        assert await events(node, "operator.action") == []


async def test_non_browser_post_without_the_header_is_refused_too(tmp_path):
    """No Origin at all (curl, a script): the header is still required for operator actions."""
    async with mx_with_a_dead_letter(tmp_path) as (node, cfg, dl):
        refused(*await post(cfg, "operator", f"/ops/v1/dead-letters/{dl}/discard", {}))
        assert await still_there(node, dl)


async def test_dashboard_style_request_is_accepted(tmp_path):
    async with mx_with_a_dead_letter(tmp_path) as (node, cfg, dl):
        port = cfg.listen.local.rsplit(":", 1)[1]
        for origin in (f"https://{cfg.listen.local}", f"https://localhost:{port}"):  # both names of the cert
            status, _, doc = await post(cfg, "operator", "/ops/v1/dead-letters/999999/discard",
                                        {"Origin": origin, "Sec-Fetch-Site": "same-origin", "X-Traza-Request": "dashboard"})
            assert status == 404, (origin, doc)  # past the check: no such dead letter
        status, _, doc = await post(cfg, "operator", f"/ops/v1/dead-letters/{dl}/discard",
                                    {"Origin": f"https://{cfg.listen.local}", "Sec-Fetch-Site": "same-origin",
                                     "X-Traza-Request": "dashboard"})
        assert status == 200 and doc["action"] == "discard", doc
        assert not await still_there(node, dl)
        [done] = await events(node, "operator.action")
        assert done["action"] == "dead_letter.discard" and done["operator"] == "default", done


async def test_cli_style_request_with_the_header_is_accepted(tmp_path):
    """`traza queue discard` (gateway.cli.node.local_request) sends the header and no Origin."""
    import asyncio

    from gateway.national.client import local_request

    async with mx_with_a_dead_letter(tmp_path) as (node, cfg, dl):
        status, doc = await asyncio.to_thread(local_request, cfg, "operator", "POST",
                                              f"/ops/v1/dead-letters/{dl}/discard", b"")
        assert status == 200, doc
        assert not await still_there(node, dl)


async def test_cross_site_post_to_the_national_system_api_is_refused(tmp_path):
    """/local/ (national systems, not browsers): a request naming another site is refused; one without
    Origin or Sec-Fetch-Site (a server-side client) needs no extra header."""
    async with mx_with_a_dead_letter(tmp_path) as (node, cfg, _):
        msg = {"type": "notice", "to": "hub", "handling": "H1", "classification": "BASIC_PROTECTION_LEVEL",
               "purpose": "INVESTIGATION", "body": example("notice")}
        body = json.dumps(msg).encode()
        ct = {"Content-Type": "application/vnd.traza.message+json"}
        before = await node.db.read(lambda c: c.execute("SELECT count(*) FROM messages").fetchone()[0])
        refused(*await post(cfg, "system", "/local/v1/messages", {**ct, "Origin": "https://evil.example"}, body))
        refused(*await post(cfg, "system", "/local/v1/messages", {**ct, "Sec-Fetch-Site": "cross-site"}, body))
        assert await node.db.read(lambda c: c.execute("SELECT count(*) FROM messages").fetchone()[0]) == before
        status, _, doc = await post(cfg, "system", "/local/v1/messages", ct, body)
        assert status == 201, doc
