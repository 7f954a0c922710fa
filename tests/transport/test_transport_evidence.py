"""``GET /v1/evidence/<jti>`` (SPEC §4.4, 1.1): a node answers a peer on the message's route (origin,
hubs, recipient) with its evidence of that message (its audit entries with inclusion proofs to its
latest cosigned checkpoint: the evidence bundle), and refuses every other peer with ``403
policy_denied``; both sides audit it (``evidence.requested``). Real nodes in-process (mx -> hub -> es,
and it, which is not on the route), real mTLS on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from core.message_examples import example
from kit.nodes import bundle_of, entries, started, state
from kit.waiting import eventually

from gateway.audit.bundle import BundleError, verify_bundle, verify_route_bundle
from gateway.cli.main import main as traza
from gateway.core.errors import Code, TrazaError
from gateway.localfed import NodeSpec, build
from gateway.transport.peer import PeerUnavailable

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub"), NodeSpec("it", "national", "IT", hub="hub")]
LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 60.0}
BODY = msgspec.json.encode(example("notice"))


@pytest.fixture
def fed(tmp_path: Path) -> dict[str, Any]:
    return build(tmp_path / "fed", SPECS, limits=LIMITS)


async def test_nodes_on_the_route_get_each_others_evidence_others_are_refused_and_both_sides_audit(fed):
    async with started(fed["hub"].config) as hub, started(fed["mx"].config) as mx, \
            started(fed["es"].config) as es, started(fed["it"].config) as it:
        jti = await mx.submit(mt="notice", to="es", body=BODY, system="test")
        await eventually(lambda: _delivered(es, jti), timeout=20.0)
        for n in (hub, es):
            await n.checkpoint_tick()  # a checkpoint covers the message's entries, cosigned by peers soon
            await eventually(lambda n=n: bundle_of(n, jti, witnessed="required"), timeout=20.0)
        # the origin asks the hub and the recipient: each answers with its own bundle, which verifies
        for node in ("hub", "es"):
            raw = await mx.fetch_evidence(node, jti)
            report = verify_bundle(raw)
            assert (report.node, report.jti) == (node, jti), report
        # it is not on the route: refused, and the hub audits the refusal
        with pytest.raises(TrazaError) as info:
            await it.fetch_evidence("hub", jti)
        assert info.value.code is Code.POLICY_DENIED and "not on the route" in info.value.detail, info.value
        # a message the hub never saw: the same answer (no oracle of what a node holds)
        with pytest.raises(TrazaError) as info:
            await mx.fetch_evidence("hub", "01a21b13-0000-7000-8000-00000000f0f0")
        assert info.value.code is Code.POLICY_DENIED
        served = await eventually(lambda: _requests(hub, 3), timeout=10.0)
        assert served == [("mx", "served", "ok"), ("it", "served", "refused"), ("mx", "served", "refused")], served
        asked = await eventually(lambda: _requests(mx, 3), timeout=10.0)
        assert asked == [("hub", "asked", "ok"), ("es", "asked", "ok"), ("hub", "asked", "refused")], asked


async def _requests(node: Any, n: int) -> list[tuple[str, str, str]] | None:
    """The node's evidence.requested entries (peer, side, outcome) once there are ``n`` of them."""
    got = [(e["peer"], e["side"], e["outcome"]) for e in await entries(node, event="evidence.requested")]
    return got if len(got) >= n else None


async def _delivered(node: Any, jti: str) -> bool:
    return await state(node, jti) is not None


async def _handed_on(origin: Any, jti: str) -> bool:
    """The origin has logged the next hop's acknowledgement (``envelope.forwarded``, its last entry about
    a notice): a checkpoint taken before that would leave that entry uncovered (not_checkpointed)."""
    return any(e["event"] == "envelope.forwarded" for e in await entries(origin, jti=jti))


async def test_the_auditor_at_the_origin_gets_one_file_with_every_hops_evidence(fed, tmp_path, capsys):
    async with started(fed["hub"].config) as hub, started(fed["mx"].config) as mx, started(fed["es"].config) as es:
        jti = await mx.submit(mt="notice", to="es", body=BODY, system="test")
        await eventually(lambda: _delivered(es, jti), timeout=20.0)
        await eventually(lambda: _handed_on(mx, jti), timeout=20.0)
        for n in (hub, es, mx):
            await n.checkpoint_tick()
        for n in (hub, es, mx):  # each hop proves against a cosigned checkpoint (SPEC §4.4)
            await eventually(lambda n=n: bundle_of(n, jti, witnessed="required"), timeout=20.0)
        raw = await mx.audit_route_bundle(jti)
    route = verify_route_bundle(raw)
    assert route.route == ["mx", "hub", "es"] and all(r is not None for _, r, _ in route.hops), route
    assert [r.node for _, r, _ in route.hops if r] == ["mx", "hub", "es"]
    path = tmp_path / "route.json"
    path.write_bytes(raw)
    assert traza(["audit", "verify-bundle", str(path)]) == 0
    out = capsys.readouterr().out
    assert "along mx -> hub -> es" in out and "hop 2 (hub): verified" in out, out
    # one changed character in any hop's part fails, naming that hop
    doc = json.loads(raw)
    for i, hop in enumerate(doc["hops"], 1):
        bad = json.loads(raw)
        cp = bad["hops"][i - 1]["bundle"]["checkpoint"]
        sig_at = cp.rindex(" ") + 5  # inside the base64 of the last signature line
        bad["hops"][i - 1]["bundle"]["checkpoint"] = cp[:sig_at] + ("A" if cp[sig_at] != "A" else "B") + cp[sig_at + 1:]
        with pytest.raises(BundleError, match=rf"^hop {i} \({hop['node']}\): "):
            verify_route_bundle(json.dumps(bad).encode())
    # a hop's bundle swapped for another message's, or the hops reordered, fails too
    swapped = json.loads(raw)
    swapped["hops"][0], swapped["hops"][1] = swapped["hops"][1], swapped["hops"][0]
    with pytest.raises(BundleError, match="not the route"):
        verify_route_bundle(json.dumps(swapped).encode())


async def test_a_hop_that_cannot_answer_is_listed_with_the_reason(fed):
    async with started(fed["hub"].config) as hub, started(fed["mx"].config) as mx:
        async with started(fed["es"].config) as es:
            jti = await mx.submit(mt="notice", to="es", body=BODY, system="test")
            await eventually(lambda: _delivered(es, jti), timeout=20.0)
            await eventually(lambda: _handed_on(mx, jti), timeout=20.0)  # mx's last entry about it is logged
        for n in (hub, mx):
            await n.checkpoint_tick()
        for n in (hub, mx):  # cosigned by each other (SPEC §4.4)
            await eventually(lambda n=n: bundle_of(n, jti, witnessed="required"), timeout=20.0)
        raw = await mx.audit_route_bundle(jti)  # es is down
    route = verify_route_bundle(raw)
    missing = {n: why for n, r, why in route.hops if r is None}
    assert list(missing) == ["es"] and "es" in missing["es"], missing


async def test_a_peer_never_gets_evidence_proven_against_a_checkpoint_no_witness_cosigned(fed):
    """SPEC §4.4: the entries are proven against the latest COSIGNED checkpoint. es's only witness (the hub)
    is down when es signs the checkpoint covering the message: mx gets 409 not_checkpointed, not a bundle
    that rests on es's word alone; once the hub is back and cosigns, the bundle carries its cosignature."""
    async with started(fed["mx"].config) as mx, started(fed["es"].config) as es:
        async with started(fed["hub"].config):
            jti = await mx.submit(mt="notice", to="es", body=BODY, system="test")
            await eventually(lambda: _delivered(es, jti), timeout=20.0)
        assert await es.checkpoint_tick() is not None  # covers the message; no witness can cosign it
        held = len(await entries(es, jti=jti))
        with pytest.raises(PeerUnavailable) as info:  # 409 not_checkpointed: no TrazaError code of SPEC §9
            await mx.fetch_evidence("es", jti)
        assert "409" in str(info.value) and "no cosigned checkpoint covers entry" in str(info.value), info.value
        # the refusal is itself an entry about the message (evidence.requested): wait for it to be logged
        await eventually(lambda: _more_entries(es, jti, held), timeout=10.0)
        async with started(fed["hub"].config):  # back: es signs and asks it now, not after its back-off
            await es.checkpoint_tick()
            assert (await es.witnessing.witness_one("hub"))[0] == "ok"
            raw = await mx.fetch_evidence("es", jti)
    report = verify_bundle(raw)
    assert any(line.startswith("witness traza/") and "cosigned this checkpoint" in line for line in report.proven)


async def _more_entries(node: Any, jti: str, than: int) -> bool:
    return len(await entries(node, jti=jti)) > than
