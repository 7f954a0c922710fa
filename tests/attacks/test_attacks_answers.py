"""Forged receipts and errors (SPEC §5 "Who may answer", issue #10 item 1).

A receipt is proof of delivery and an error is proof of failure: only the message's recipient may sign a
receipt, only a node on the message's route may sign an error (naming itself in ``by``), and only for a
message that originated at the node applying it. The rule is pure (``gateway.core.policy``); it is tested
here as an exchange table, at a running node (real nodes in-process over real mTLS on 127.0.0.1) and in
the offline evidence bundle verifier.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from kit.nodes import bundle_of, entries, started
from kit.waiting import eventually

from gateway.audit.bundle import BundleError, verify_bundle
from gateway.config import load_config
from gateway.core.envelope import build_envelope, token_digest
from gateway.core.errors import Code, TrazaError
from gateway.core.ids import uuid7
from gateway.core.policy import Answer, Sent, check_answer
from gateway.core.timeutil import rfc3339_seconds
from gateway.localfed import NodeSpec, build
from gateway.node import Node
from gateway.store import relay as st

# --- the rule as an exchange table ----------------------------------------------------------------------

M = Sent(jti="0197a6f0-0000-7000-8000-0000000000aa", iss="es", aud="mx", dig="DIG-of-M")
ROUTE = ["es", "eu-hub", "latam-hub", "mx"]


def receipt(**kw: Any) -> Answer:
    base = {"mt": "receipt", "jti": "R1", "iss": "mx", "aud": "es", "irt": M.jti, "for_": M.jti, "dig": M.dig}
    return Answer(**{**base, **kw})


def error(**kw: Any) -> Answer:
    base = {"mt": "error", "jti": "E1", "iss": "eu-hub", "aud": "es", "irt": M.jti, "for_": M.jti, "by": "eu-hub"}
    return Answer(**{**base, **kw})


ALLOWED = [
    ("receipt from the recipient", receipt()),
    ("error from the recipient", error(iss="mx", by="mx")),
    ("error from a hub on the route", error()),
    ("error from the other hub on the route", error(iss="latam-hub", by="latam-hub")),
]

REFUSED = [
    ("receipt_signed_by_a_hub_on_the_route", receipt(iss="eu-hub"), "only the recipient mx"),
    ("receipt_signed_by_a_third_node", receipt(iss="it"), "only the recipient mx"),
    ("receipt_for_another_token", receipt(dig="DIG-of-another-token"), "is not the digest"),
    ("receipt_replying_to_another_message", receipt(irt="0197a6f0-0000-7000-8000-0000000000bb"), "replies to"),
    ("receipt_addressed_to_another_node", receipt(aud="it"), "not to the message's origin es"),
    ("error_from_a_node_off_the_route", error(iss="it", by="it"), "not on the message's route"),
    ("error_naming_another_node_as_giving_up", error(by="latam-hub"), "signed by eu-hub"),
    ("error_without_irt", error(irt=None), "replies to None"),
]


@pytest.mark.parametrize(("name", "answer"), ALLOWED, ids=[a[0] for a in ALLOWED])
def test_legitimate_answers_are_applied(name: str, answer: Answer) -> None:
    check_answer(answer, M, here="es", route=ROUTE)


@pytest.mark.parametrize(("name", "answer", "why"), REFUSED, ids=[r[0] for r in REFUSED])
def test_forged_answer_is_refused(name: str, answer: Answer, why: str) -> None:
    with pytest.raises(TrazaError) as e:
        check_answer(answer, M, here="es", route=ROUTE)
    assert e.value.code is Code.POLICY_DENIED
    assert why in e.value.detail, e.value.detail


def test_answer_for_a_message_that_did_not_originate_here_is_refused() -> None:
    for answer in (receipt(), error()):
        with pytest.raises(TrazaError, match="originated at es, not at eu-hub"):
            check_answer(answer, M, here="eu-hub", route=ROUTE)
        with pytest.raises(TrazaError, match="no such message originated at es"):
            check_answer(answer, None, here="es", route=ROUTE)


# --- at running nodes ---------------------------------------------------------------------------------

LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 0.2}
SPECS = [NodeSpec("latam-hub", "hub", "BR"), NodeSpec("eu-hub", "hub", "NL"),
         NodeSpec("mx", "national", "MX", hub="latam-hub"), NodeSpec("es", "national", "ES", hub="eu-hub"),
         NodeSpec("it", "national", "IT", hub="eu-hub")]



async def forge(node: Node, *, mt: str, to: str, body: dict[str, Any], irt: str) -> str:
    """``node`` signs and sends an answer of its own making (what a dishonest node can always do)."""
    now = node.clock()
    jti = await node.db.write(lambda conn: node._reply_in_txn(conn, mt=mt, to=to, body=body, irt=irt, cid=irt,
                                                              now=now, source="attacker"))
    node._wake(node.fed.route(node.id, to)[1])
    return str(jti)




async def rejected_at(node: Node, jti: str) -> dict[str, Any] | None:
    return next(iter(await entries(node, jti=jti, event="envelope.rejected")), None)


async def test_forged_receipts_and_errors_change_nothing_at_the_origin(tmp_path: Path) -> None:
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    body = msgspec.json.encode({"title": "t", "text": "x"})
    # es's messages to mx wait at eu-hub: latam-hub and mx are down, nobody has delivered anything
    async with started(built["es"].config) as es, started(built["eu-hub"].config) as hub, \
            started(built["it"].config) as it:
        m1 = await es.submit(mt="notice", to="mx", body=body, system="test")
        m2 = await es.submit(mt="notice", to="mx", body=body, system="test")
        for m in (m1, m2):
            await eventually(lambda m=m: _state(es, m, "forwarded"))
        dig = (await es.db.read(lambda c: st.get_message(c, m1))).dig
        at = rfc3339_seconds(int(time.time()))

        forged = {
            # the hub that holds the message claims it was delivered
            "hub_receipt": await forge(hub, mt="receipt", to="es", irt=m1,
                                       body={"for": m1, "dig": dig, "status": "DELIVERED", "at": at}),
            # a third node, through the hub, claims delivery and failure
            "it_receipt": await forge(it, mt="receipt", to="es", irt=m1,
                                      body={"for": m1, "dig": dig, "status": "DELIVERED", "at": at}),
            "it_error": await forge(it, mt="error", to="es", irt=m2,
                                    body={"for": m2, "code": "expired", "at": at, "by": "it"}),
            # the hub blames a node it does not speak for
            "hub_error_by_other": await forge(hub, mt="error", to="es", irt=m2,
                                              body={"for": m2, "code": "expired", "at": at, "by": "latam-hub"}),
        }
        for name, jti in forged.items():
            entry = await eventually(lambda jti=jti: rejected_at(es, jti), timeout=20.0)
            assert entry["code"] == "policy_denied", (name, entry)
            assert entry["for"] in (m1, m2) and entry["from"] == "eu-hub", (name, entry)
        # nothing changed: both messages are still only forwarded, no receipt recorded as evidence
        for m in (m1, m2):
            assert (await es.message_status(m) or {})["state"] == "forwarded"
        assert not await entries(es, jti=m1, event="receipt.received")
        # the hub that handed them to es holds them as dead letters (answers are never answered): no retry
        for jti in forged.values():
            await eventually(lambda jti=jti: _dead(hub, jti))

        # control: an error the hub may give (it is on the route and names itself) is applied
        honest = await forge(hub, mt="error", to="es", irt=m2, body={"for": m2, "code": "expired", "at": at, "by": "eu-hub"})
        await eventually(lambda: _state(es, m2, "failed"), timeout=20.0)
        assert await rejected_at(es, honest) is None

        # --- and offline: the bundle of m1 at es, with the hub's receipt spliced in, does not verify
        raw = await eventually(lambda: bundle_of(es, m1), timeout=20.0)
        bundle = json.loads(raw)
        verify_bundle(raw)
        token = bundle["envelope"]["token"]
        hub_receipt = _receipt(hub, m1, token, to="es")
        bundle["receipt"] = hub_receipt
        with pytest.raises(BundleError, match="signed by eu-hub, but only the recipient mx may give a receipt"):
            verify_bundle(json.dumps(bundle).encode())
        # the recipient's key, but for another token: the dig does not match
        mx = Node(load_config(built["mx"].config))
        try:
            bundle["receipt"] = _receipt(mx, m1, token, to="es", dig=token_digest(token + "x"))
            bundle["keys"]["signing"].append({"kid": mx.signer.kid, "alg": mx.signer.alg, "jwk": mx.signer.public_jwk()})
            with pytest.raises(BundleError, match="is not the digest of the message's token"):
                verify_bundle(json.dumps(bundle).encode())
            # the same receipt with the right dig proves the delivery
            bundle["receipt"] = _receipt(mx, m1, token, to="es")
            report = verify_bundle(json.dumps(bundle).encode())
            assert any(line.startswith("receipt from mx to es: DELIVERED") for line in report.proven), report.proven
        finally:
            mx.db.close()


def _receipt(node: Node, jti: str, token: str, *, to: str, dig: str | None = None) -> dict[str, str]:
    now = time.time()
    body = {"for": jti, "dig": dig or token_digest(token), "status": "DELIVERED", "at": rfc3339_seconds(int(now))}
    env = build_envelope(signer=node.signer, iss=node.id, aud=to, jti=uuid7(now, os.urandom(10)), mt="receipt",
                         body=json.dumps(body).encode(), now=now, ttl=3600, irt=jti, cid=jti)
    return {"token": env.token, "payload": env.payload}


async def _state(node: Node, jti: str, state: str) -> bool:
    return (await node.message_status(jti) or {}).get("state") == state


async def _dead(node: Node, jti: str) -> bool:
    rows = (await node.ops_view("dead-letters"))["dead_letters"]
    return any(d["jti"] == jti for d in rows)


async def test_national_system_cannot_submit_a_receipt_or_error(tmp_path: Path) -> None:
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    node = Node(load_config(built["es"].config))
    try:
        for mt, body in (("receipt", {"for": "x", "dig": "y", "status": "DELIVERED", "at": "2026-12-05T00:00:00Z"}),
                         ("error", {"for": "x", "code": "expired", "at": "2026-12-05T00:00:00Z", "by": "es"})):
            with pytest.raises(TrazaError) as e:
                await node.submit(mt=mt, to="mx", body=json.dumps(body).encode(), system="test")
            assert e.value.code is Code.POLICY_DENIED and "cannot submit" in e.value.detail
    finally:
        await asyncio.sleep(0)
        node.db.close()
