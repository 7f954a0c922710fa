"""The dashboard's server-side views on a real (not started) node: expiry warnings and throughput."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.localfed import NodeSpec, build
from gateway.node import Node
from gateway.ops.dashboard import Sampler, expiry_items

DAY = 86400.0


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    nodes = build(tmp_path, [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub")])
    n = Node(load_config(nodes["mx"].config))
    try:
        yield n
    finally:
        n.db.close()


def test_expiry_warns_within_the_window_and_flags_what_has_expired(node: Node) -> None:
    now = time.time()
    items = expiry_items(node.expiries(), now)
    whats = [i["what"] for i in items]
    assert any(w.startswith("TLS certificate of mx") for w in whats)
    assert any(w.startswith("local CA of mx") for w in whats)
    assert "federation TLS CA 1 of 1" in whats
    assert f"manifest version {node.fed.version} and its revocation list" in whats
    assert "key mx/sig/1" in whats
    assert {i["level"] for i in items} == {"ok"}
    assert items == sorted(items, key=lambda i: i["days_left"])
    manifest = next(i for i in items if "revocation list" in i["what"])
    left = manifest["days_left"]
    # 10 days before the manifest expires it is a warning; a day after, expired
    soon = {i["what"]: i for i in expiry_items(node.expiries(), now + (left - 10) * DAY)}
    assert soon[manifest["what"]]["level"] == "warning" and 9.9 < soon[manifest["what"]]["days_left"] <= 10.01
    late = {i["what"]: i for i in expiry_items(node.expiries(), now + (left + 1) * DAY)}
    assert late[manifest["what"]]["level"] == "expired" and late[manifest["what"]]["days_left"] < 0
    assert late["federation TLS CA 1 of 1"]["level"] == "ok"  # CAs last years
    assert {i["level"] for i in expiry_items(node.expiries(), now + (left - 10) * DAY, warn_days=5)} <= {"ok", "expired"}


def test_throughput_counts_envelopes_per_interval_and_latency_per_peer(node: Node) -> None:
    s = Sampler(node, interval=5.0, keep=20.0)
    t0 = 1_800_000_000.0
    assert s.series(now=t0)["points"] == []
    s.sample(t0)
    m = node.metrics
    m.submitted.labels("notice").inc(3)
    m.forwarded.labels("notice", "hub", "accepted").inc(2)
    m.forwarded.labels("notice", "hub", "rejected").inc(1)  # not forwarded
    m.received.labels("receipt", "hub", "accepted").inc()
    m.received.labels("notice", "hub", "rejected").inc(4)
    m.hop_latency.labels("hub").observe(0.010)
    m.hop_latency.labels("hub").observe(0.030)
    s.sample(t0 + 5)
    m.delivered.labels("message").inc()
    series = s.series(now=t0 + 7)
    assert series["series"] == ["received", "forwarded", "submitted", "delivered", "rejected"]
    first, partial = series["points"]
    assert {k: first[k] for k in series["series"]} == {"received": 1, "forwarded": 2, "submitted": 3,
                                                        "delivered": 0, "rejected": 4}
    assert partial["partial"] is True and partial["delivered"] == 1 and partial["submitted"] == 0
    lat = s.recent_latency(now=t0 + 7)["hub"]
    assert lat["batches"] == 2 and lat["mean_ms"] == pytest.approx(20.0) and lat["recent_ms"] == pytest.approx(20.0)
    # ten-minute window: old samples fall out of the deque (keep=20 s → 5 samples)
    for i in range(2, 10):
        s.sample(t0 + 5 * i)
    assert len(s.samples) == 5
    later = s.recent_latency(now=t0 + 45)["hub"]
    assert later["mean_ms"] == pytest.approx(20.0) and later["recent_ms"] is None  # nothing in the last minute


def test_expiry_is_exported_as_traza_expiry_seconds_from_the_same_items(node: Node) -> None:
    """Issue #12: what the dashboard warns about is also ``traza_expiry_seconds{what}`` (seconds left,
    negative once expired), one series per item, from the one computation."""
    from prometheus_client.parser import text_string_to_metric_families

    now = time.time()
    node.clock = lambda: now
    items = expiry_items(node.expiries(), now)
    text, _ = node.metrics_text()
    fam = {f.name: f for f in text_string_to_metric_families(text.decode())}["traza_expiry_seconds"]
    got = {s.labels["what"]: s.value for s in fam.samples}
    assert set(got) == {i["id"] for i in items}
    assert {"tls_certificate", "local_ca", "federation_ca_1", "manifest", "key:mx/sig/1"} <= set(got)
    for i in items:
        assert abs(got[i["id"]] - i["days_left"] * DAY) < 0.01 * DAY, i
    # a day after the manifest expired, its series is negative
    later = now + got["manifest"] + DAY
    node.clock = lambda: later
    text, _ = node.metrics_text()
    fam = {f.name: f for f in text_string_to_metric_families(text.decode())}["traza_expiry_seconds"]
    assert -DAY - 1 < {s.labels["what"]: s.value for s in fam.samples}["manifest"] < -DAY + 1
