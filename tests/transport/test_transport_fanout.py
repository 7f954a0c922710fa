"""Fan-out (SPEC §6, 1.1): ``POST /local/v1/messages`` with ``"to": ["es", "it"]`` or ``"to":
"group:NAME"`` (the manifest's ``groups``) sends one encrypted envelope per recipient, all in one
conversation, answered ``201 {"conversation", "ids"}``; the conversation view gathers them. A recipient
that cannot be sent to fails the whole submission, naming it, and nothing is queued. Real nodes in-process
(mx -> hub -> es, it, registry), the local API over real mTLS, the CLI's `--to es,it`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from core.message_examples import example
from kit.nodes import started, state
from kit.waiting import eventually

from gateway.cli.main import main as traza
from gateway.config import load_config
from gateway.localfed import NodeSpec, build
from gateway.national.client import local_request
from gateway.node import Node
from gateway.store import relay as st

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub"), NodeSpec("it", "national", "IT", hub="hub"),
         NodeSpec("registry", "service", "FR", hub="hub")]
GROUPS = {"eu-registries": ["es", "it", "registry"], "mexico": ["mx"]}
LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 60.0}


@pytest.fixture
def fed(tmp_path: Path) -> dict[str, Any]:
    return build(tmp_path / "fed", SPECS, limits=LIMITS, groups=GROUPS)


def query(to: Any) -> bytes:
    return json.dumps({"type": "firearm.status.query", "to": to, "handling": "H1",
                       "classification": "BASIC_PROTECTION_LEVEL", "purpose": "INVESTIGATION",
                       "body": example("firearm.status.query")}).encode()


async def post(fed: dict[str, Any], node: str, data: bytes) -> tuple[int, Any]:
    cfg = load_config(fed[node].config)
    return await asyncio.to_thread(local_request, cfg, "system", "POST", "/local/v1/messages", data,
                                   "application/vnd.traza.message+json")


async def inbox_ids(node: Node) -> dict[str, str]:
    """Message id -> conversation of what was delivered to ``node``."""
    return {m["id"]: m["conversation"] for m in (await node.local_inbox(0, 100))["messages"]}


async def messages_at(node: Node) -> int:
    return len(await node.db.read(lambda c: c.execute("SELECT jti FROM messages").fetchall()))


async def test_a_list_of_recipients_gets_one_envelope_each_in_one_conversation(fed):
    async with started(fed["hub"].config), started(fed["mx"].config) as mx, started(fed["es"].config) as es, \
            started(fed["it"].config) as it:
        status, doc = await post(fed, "mx", query(["es", "it"]))
        assert status == 201 and set(doc) == {"conversation", "ids"} and len(doc["ids"]) == 2, doc
        cid, (to_es, to_it) = doc["conversation"], doc["ids"]
        await eventually(lambda: inbox_ids(es), timeout=20.0)
        await eventually(lambda: inbox_ids(it), timeout=20.0)
        assert await inbox_ids(es) == {to_es: cid} and await inbox_ids(it) == {to_it: cid}
        # each envelope is its own, sealed for its recipient (the hub relays ciphertext)
        for jti, who in ((to_es, "es"), (to_it, "it")):
            m = await mx.db.read(lambda c, jti=jti: st.get_message(c, jti))
            assert m is not None and m.aud == who and m.cid == cid
        view = await mx.conversation(cid)
        assert view is not None and sorted((m["id"], m["to"]) for m in view["messages"]) == sorted(
            [(to_es, "es"), (to_it, "it")])
        assert view["summary"]["recipients"] == 2


async def test_a_group_fans_out_to_its_members(fed):
    async with started(fed["hub"].config), started(fed["mx"].config), started(fed["es"].config) as es, \
            started(fed["it"].config) as it, started(fed["registry"].config) as registry:
        status, doc = await post(fed, "mx", query("group:eu-registries"))
        assert status == 201 and len(doc["ids"]) == 3, doc
        for node in (es, it, registry):
            got = await eventually(lambda node=node: inbox_ids(node), timeout=20.0)
            assert set(got.values()) == {doc["conversation"]}


@pytest.mark.parametrize(("to", "status", "code", "words"), [
    (["es", "fr"], 422, "unknown_node", "recipient 'fr' is not a node of the manifest"),
    (["es", "hub"], 422, "policy_denied", "recipient hub:"),
    ("group:nobody", 422, "schema_invalid", "no group 'nobody' in the manifest (groups: eu-registries, mexico)"),
    ("group:mexico", 422, "schema_invalid", "group 'mexico' names no node but this one"),
    (["es", "es"], 422, "schema_invalid", "'es' is listed twice - at `$.to[1]`"),
])
async def test_a_recipient_that_cannot_be_sent_to_fails_the_whole_submission(fed, to, status, code, words):
    async with started(fed["mx"].config) as mx:
        before = await messages_at(mx)
        got, doc = await post(fed, "mx", query(to))
        assert (got, doc["code"]) == (status, code) and words in doc["detail"], doc
        assert await messages_at(mx) == before  # nothing was queued, not even for es
        assert await mx.db.read(st.queue_total) == 0


async def test_send_to_a_comma_list_from_the_cli(fed, tmp_path, capsys):
    body = tmp_path / "query.json"
    body.write_text(json.dumps(example("firearm.status.query")))
    async with started(fed["hub"].config), started(fed["mx"].config) as mx, started(fed["es"].config), \
            started(fed["it"].config):
        rc = await asyncio.to_thread(traza, ["send", "--config", str(fed["mx"].config), "--to", "es,it",
                                             "--type", "firearm.status.query", str(body)])
        out = capsys.readouterr().out
        assert rc == 0 and "submitted 2 messages in conversation" in out, out
        cid = out.split("conversation ", 1)[1].split(":", 1)[0]
        view = await mx.conversation(cid)
        assert view is not None and sorted(m["to"] for m in view["messages"]) == ["es", "it"]
        for m in view["messages"]:
            await eventually(lambda jti=m["id"]: _forwarded(mx, jti), timeout=20.0)


async def _forwarded(node: Node, jti: str) -> bool:
    return await state(node, jti) == "forwarded"


FIVE = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub")] + [
    NodeSpec(n, "national", n.upper(), hub="hub") for n in ("es", "it", "de", "at")] + [
    NodeSpec("registry", "service", "FR", hub="hub")]


async def answer_all(node: Node) -> int:
    """The national system of ``node`` answers every status query in its inbox (NO_HIT), once."""
    done = 0
    for m in (await node.local_inbox(0, 100))["messages"]:
        if m["type"] == "firearm.status.query":
            await node.submit(mt="firearm.status.answer", to=m["from"], irt=m["id"], system="registry",
                              body=json.dumps({"result": "NO_HIT", "hit_confirmation_required": False}).encode())
            await node.inbox_ack(m["id"], "registry")
            done += 1
    return done


async def test_a_status_query_to_five_registries_gathers_four_answers_then_the_fifth(tmp_path):
    fed = build(tmp_path / "fed", FIVE, limits=LIMITS,
                groups={"registries": ["es", "it", "de", "at", "registry"]})
    async with started(fed["hub"].config), started(fed["mx"].config) as mx, started(fed["es"].config) as es, \
            started(fed["it"].config) as it, started(fed["de"].config) as de, \
            started(fed["registry"].config) as registry:  # at is down
        status, doc = await post(fed, "mx", query("group:registries"))
        assert status == 201 and len(doc["ids"]) == 5, doc
        cid = doc["conversation"]
        for node in (es, it, de, registry):
            await eventually(lambda node=node: answer_all(node), timeout=20.0)

        async def summary(answered: int) -> dict[str, Any] | None:
            view = await mx.conversation(cid)
            return view if view is not None and view["summary"]["answered"] == answered else None

        view = await eventually(lambda: summary(4), timeout=20.0)
        assert view["summary"] == {"recipients": 5, "answered": 4, "pending": 1, "failed": 0}, view["summary"]
        waiting = [m for m in view["messages"] if not m["answers"]]
        assert [m["to"] for m in waiting] == ["at"]
        # at comes back: the hub delivers the query it kept, at answers, the conversation is complete
        async with started(fed["at"].config) as at:
            await eventually(lambda: answer_all(at), timeout=30.0)
            view = await eventually(lambda: summary(5), timeout=20.0)
        assert view["summary"] == {"recipients": 5, "answered": 5, "pending": 0, "failed": 0}, view["summary"]
        assert all(m["answers"][0]["type"] == "firearm.status.answer" for m in view["messages"])
