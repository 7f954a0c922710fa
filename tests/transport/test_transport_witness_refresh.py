"""Fresh witnessing (SPEC §7.2, 1.1; issue #19): every ``witness_refresh`` a node asks each witness to
cosign its latest checkpoint even when its log did not grow, retries a failed request with back-off
(never dropping it), and audits ``witness.stale`` once per outage.

Real nodes in-process (real mTLS on 127.0.0.1, real SQLite) on one injected clock: the test moves the clock
in steps of 5 s and runs the refresh step the node's loop runs (``witness_tick``), so an hour takes a few
seconds. eu-hub's log is witnessed by its two national nodes, es and it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kit.nodes import entries, started
from kit.waiting import eventually

from gateway.config import load_config
from gateway.core.note import cosignature_timestamp, origin_for, parse_note
from gateway.localfed import NodeSpec, build
from gateway.node import Node

SPECS = [NodeSpec("eu-hub", "hub", "NL"), NodeSpec("es", "national", "ES", hub="eu-hub"),
         NodeSpec("it", "national", "IT", hub="eu-hub")]
REFRESH = 60.0
STEP = 5.0
# no timed checkpoints: the test signs the one checkpoint it needs, so the log cannot grow unseen
LIMITS = {"witness_refresh": REFRESH, "checkpoint_interval": 3600.0, "retry_min": 1.0}


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


def cosigned_at(hub: Node) -> dict[str, int]:
    """Witness node -> the timestamp of its cosignature on the checkpoint eu-hub serves."""
    note = parse_note(hub.checkpoint_text())
    out = {}
    for s in note.signatures:
        if len(s.signature) == 72:  # a cosignature (the log's own signature is 64 bytes)
            out[s.name.rsplit("/", 1)[1]] = cosignature_timestamp(s)
    return out


def scrape(node: Node) -> dict[tuple[str, str], float]:
    """(metric, witness label) -> value, from the node's /metrics text."""
    from prometheus_client.parser import text_string_to_metric_families

    text, _ = node.metrics_text()
    return {(s.name, s.labels.get("witness", "")): s.value
            for f in text_string_to_metric_families(text.decode()) for s in f.samples}


async def first_checkpoint(hub: Node) -> int:
    cp = await eventually(hub.checkpoint_tick)  # once node.started is in the log
    return cp.size


@pytest.fixture
def fed(tmp_path: Path):
    return build(tmp_path / "fed", SPECS, limits=LIMITS)


async def test_a_quiet_log_is_cosigned_afresh_by_every_witness_every_refresh_period(fed):
    clock = Clock()
    async with started(fed["eu-hub"].config, clock=clock) as hub, started(fed["es"].config, clock=clock), \
            started(fed["it"].config, clock=clock):
        size = await first_checkpoint(hub)
        log_size = (await hub.db.read(lambda c: c.execute("SELECT count(*) FROM audit_entries").fetchone()))[0]
        start = clock.t
        while clock.t < start + 3600:
            period_start = clock.t
            for _ in range(int(REFRESH / STEP)):
                clock.t += STEP
                await hub.witness_tick()
            got = cosigned_at(hub)
            assert set(got) == {"es", "it"}, got
            for w, ts in got.items():  # each witness cosigned within this refresh period
                assert ts >= int(period_start), (w, ts - period_start)
        # nothing was appended: the same checkpoint was cosigned again and again
        assert parse_note(hub.checkpoint_text()).text.splitlines()[1] == str(size)
        after = (await hub.db.read(lambda c: c.execute("SELECT count(*) FROM audit_entries").fetchone()))[0]
        assert after == log_size
        assert not [e for e in await entries(hub) if e["event"] == "witness.stale"]
        # what was kept: per witness the first cosignature of each UTC day and the newest
        kept = await hub.db.read(lambda c: c.execute(
            "SELECT name, count(*) FROM audit_cosignatures GROUP BY name").fetchall())
        assert {n: c for n, c in kept} and all(c <= 3 for _, c in kept), kept


async def test_a_witness_down_for_three_periods_cosigns_again_within_two_and_is_audited_stale_once(fed):
    """es is stopped for 3 x witness_refresh and then started again; eu-hub, never restarted, keeps
    retrying it with back-off and has its cosignature again within two refresh periods."""
    clock = Clock()
    async with started(fed["eu-hub"].config, clock=clock) as hub, started(fed["it"].config, clock=clock):
        es = Node(load_config(fed["es"].config), clock=clock)
        await es.start()
        try:
            await first_checkpoint(hub)
            for _ in range(int(REFRESH / STEP)):
                clock.t += STEP
                await hub.witness_tick()
            assert set(cosigned_at(hub)) == {"es", "it"}
            last = cosigned_at(hub)["es"]
            await es.stop()
            down_at = clock.t
            while clock.t < down_at + 3 * REFRESH + STEP:
                clock.t += STEP
                await hub.witness_tick()
                assert cosigned_at(hub)["it"] >= clock.t - REFRESH - STEP  # the other witness stays fresh
            assert cosigned_at(hub)["es"] == last
            status = {w["id"]: w for w in hub.witness_status()}
            assert status["es"]["stale"] and status["es"]["failures"] >= 3 and not status["it"]["stale"]
            # what operators see: the metric, and the ops view the dashboard reads
            metrics = scrape(hub)
            assert metrics[("traza_witness_cosignature_age_seconds", "es")] > 3 * REFRESH
            assert metrics[("traza_witness_cosignature_age_seconds", "it")] <= REFRESH + STEP
            assert metrics[("traza_witness_stale", "es")] == 1 and metrics[("traza_witness_stale", "it")] == 0
            view = {w["id"]: w for w in (await hub.ops_view("status"))["witnesses"]}
            assert view["es"]["stale"] and view["es"]["age_s"] > 3 * REFRESH and view["es"]["cosigned_at"]
            es = Node(load_config(fed["es"].config), clock=clock)
            await es.start()
            back_at = clock.t
            while cosigned_at(hub)["es"] == last:
                assert clock.t - back_at <= 2 * REFRESH, "es did not cosign again within two refresh periods"
                clock.t += STEP
                await hub.witness_tick()
            assert not {w["id"]: w for w in hub.witness_status()}["es"]["stale"]
            for _ in range(int(3 * REFRESH / STEP)):  # and stays fresh
                clock.t += STEP
                await hub.witness_tick()
        finally:
            await es.stop()
        stale = [e for e in await entries(hub) if e["event"] == "witness.stale"]
        assert len(stale) == 1, stale  # once for the whole outage
        assert stale[0]["witness"] == "es" and stale[0]["name"] == origin_for(hub.fed.name, "es")
        assert stale[0]["refresh_s"] == REFRESH and stale[0]["age_s"] > 3 * REFRESH
        assert stale[0]["failures"] >= 3 and stale[0]["last_error"]
