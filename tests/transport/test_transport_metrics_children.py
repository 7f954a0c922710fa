"""Per-envelope counters (issue #17): ``Metrics.inc`` looks each labelled child up once per label set and
counts exactly what ``counter.labels(...).inc()`` counted, series by series."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import Metrics


def _samples(m: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    body, _ctype = m.render()
    return {tuple(sorted(s.labels.items())): s.value for fam in text_string_to_metric_families(body.decode())
            for s in fam.samples if s.name == name}


def test_inc_counts_each_series_as_labels_inc_does() -> None:
    cached, plain = Metrics(), Metrics()
    events = [("trace.request", "mx", "accepted")] * 3 + [("trace.request", "mx", "duplicate"),
                                                            ("notice", "eu-hub", "accepted")]
    for labels in events:
        cached.inc(cached.received, *labels)
        plain.received.labels(*labels).inc()
    cached.inc(cached.delivered, "message")
    plain.delivered.labels("message").inc()
    for name in ("traza_envelopes_received_total", "traza_messages_delivered_total"):
        assert _samples(cached, name) == _samples(plain, name) != {}
    assert _samples(cached, "traza_envelopes_received_total")[
        (("outcome", "accepted"), ("peer", "mx"), ("type", "trace.request"))] == 3


def test_inc_looks_a_child_up_once_per_label_set(monkeypatch: Any) -> None:
    m = Metrics()
    calls: list[tuple[str, ...]] = []
    real = type(m.received).labels

    def labels(self: Any, *values: str) -> Any:
        calls.append(values)
        return real(self, *values)

    monkeypatch.setattr(type(m.received), "labels", labels)
    for _ in range(50):
        m.inc(m.received, "notice", "mx", "accepted")
        m.inc(m.forwarded, "notice", "es", "accepted")
    assert calls == [("notice", "mx", "accepted"), ("notice", "es", "accepted")]
