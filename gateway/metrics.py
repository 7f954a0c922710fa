"""Prometheus metrics of one node, with conventional names (``traza_*``, ``_total``, ``_seconds``).

Each node owns its own registry so several nodes can live in one process (tests, the benchmark).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# name -> help, as documented in docs/operations.md (a test checks /metrics against this list)
DOCUMENTED = {
    "traza_envelopes_received_total": "Envelopes received from peers, by message type, peer and outcome",
    "traza_envelopes_forwarded_total": "Envelope batches' results from next hops, by message type, peer and outcome",
    "traza_messages_submitted_total": "Messages submitted by national systems, by message type",
    "traza_messages_delivered_total": "Messages taken by the national system, by message type",
    "traza_hop_latency_seconds": "Time for a next hop to acknowledge a batch, by peer",
    "traza_queue_depth": "Envelopes waiting in the outbox, by next hop",
    "traza_queue_oldest_age_seconds": "Age of the oldest envelope waiting, by next hop",
    "traza_dead_letters": "Envelopes in the dead-letter queue",
    "traza_inbox_depth": "Messages delivered to this node and not yet taken by the national system",
    "traza_audit_log_entries": "Entries in this node's audit log",
    "traza_manifest_version": "Version of the federation manifest in force",
    "traza_peer_up": "1 when the last exchange with the peer succeeded, 0 when it failed",
    "traza_auth_denied_total": "Refused calls, by listener",
    "traza_witness_forks_total": "Forks detected while witnessing peers' logs",
    "traza_task_restarts_total": "Long-running tasks restarted after an exception, by task",
    "traza_storage_up": "1 when the last database transaction committed, 0 while writes fail",
    "traza_audit_backlog": "Node events whose audit entry could not be written yet (retried until written)",
    "traza_receipts_overdue": "Messages sent from this node, forwarded and still without a receipt after receipt_overdue",
    "traza_tls_refused_total": "Connections refused before any request: over the listener's connection cap, "
                               "or during or right after the TLS handshake, by listener and reason",
    "traza_connections_timed_out_total": "Connections closed because a client was too slow sending request "
                                         "headers or a request body, by listener and phase",
    "traza_connections_open": "Connections open now (in a TLS handshake or after), by listener",
    "traza_witness_cosignature_age_seconds": "Seconds since this witness's newest cosignature of this node's "
                                             "checkpoints (if it never cosigned, since there was one to cosign), "
                                             "by witness",
    "traza_witness_stale": "1 while the witness's newest cosignature is older than 3 x witness_refresh, by witness",
    "traza_store_check_ok": "1 when the start-up check of the node's store passed, 0 when the node was started "
                            "anyway with a damaged store (--accept-damaged-store)",
    "traza_data_free_bytes": "Bytes free (for the node's user) on the file system of the node's data folder",
    "traza_data_size_bytes": "Size in bytes of the file system of the node's data folder",
    "traza_manifest_polls_total": "GET /v1/manifest requests this node answered, by status (200 whole manifest, "
                                  "304 unchanged)",
    "traza_manifest_poll_bytes_total": "Bytes of those exchanges as HTTP/1.1 text, both ways (request line and "
                                       "headers received; status line, headers and body sent; TLS framing "
                                       "excluded), by status",
    "traza_expiry_seconds": "Seconds until something of this node expires (negative once expired), by what: "
                            "tls_certificate, local_ca, federation_ca_<n>, manifest, key:<kid>",
}


class Metrics:
    def __init__(self) -> None:
        # the labelled children of the per-envelope counters, by (counter, labels): ``labels()`` checks the
        # values and takes the metric's lock on every call (about 3 µs), several times per envelope
        self._children: dict[tuple[Counter, tuple[str, ...]], Any] = {}
        r = self.registry = CollectorRegistry(auto_describe=True)
        d = DOCUMENTED
        self.received = Counter("traza_envelopes_received", d["traza_envelopes_received_total"],
                                ["type", "peer", "outcome"], registry=r)
        self.forwarded = Counter("traza_envelopes_forwarded", d["traza_envelopes_forwarded_total"],
                                 ["type", "peer", "outcome"], registry=r)
        self.submitted = Counter("traza_messages_submitted", d["traza_messages_submitted_total"], ["type"], registry=r)
        self.delivered = Counter("traza_messages_delivered", d["traza_messages_delivered_total"], ["type"], registry=r)
        self.hop_latency = Histogram("traza_hop_latency_seconds", d["traza_hop_latency_seconds"], ["peer"],
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("traza_queue_depth", d["traza_queue_depth"], ["peer"], registry=r)
        self.queue_oldest = Gauge("traza_queue_oldest_age_seconds", d["traza_queue_oldest_age_seconds"], ["peer"],
                                  registry=r)
        self.dead_letters = Gauge("traza_dead_letters", d["traza_dead_letters"], registry=r)
        self.inbox_depth = Gauge("traza_inbox_depth", d["traza_inbox_depth"], registry=r)
        self.audit_entries = Gauge("traza_audit_log_entries", d["traza_audit_log_entries"], registry=r)
        self.manifest_version = Gauge("traza_manifest_version", d["traza_manifest_version"], registry=r)
        self.peer_up = Gauge("traza_peer_up", d["traza_peer_up"], ["peer"], registry=r)
        self.auth_denied = Counter("traza_auth_denied", d["traza_auth_denied_total"], ["listener"], registry=r)
        self.tls_refused = Counter("traza_tls_refused", d["traza_tls_refused_total"], ["listener", "reason"],
                                   registry=r)
        self.timed_out = Counter("traza_connections_timed_out", d["traza_connections_timed_out_total"],
                                 ["listener", "phase"], registry=r)
        self.connections_open = Gauge("traza_connections_open", d["traza_connections_open"], ["listener"],
                                      registry=r)
        self.witness_forks = Counter("traza_witness_forks", d["traza_witness_forks_total"], ["origin"], registry=r)
        self.task_restarts = Counter("traza_task_restarts", d["traza_task_restarts_total"], ["task"], registry=r)
        self.storage_up = Gauge("traza_storage_up", d["traza_storage_up"], registry=r)
        self.audit_backlog = Gauge("traza_audit_backlog", d["traza_audit_backlog"], registry=r)
        self.expiry = Gauge("traza_expiry_seconds", d["traza_expiry_seconds"], ["what"], registry=r)
        self.witness_age = Gauge("traza_witness_cosignature_age_seconds", d["traza_witness_cosignature_age_seconds"],
                                 ["witness"], registry=r)
        self.witness_stale = Gauge("traza_witness_stale", d["traza_witness_stale"], ["witness"], registry=r)
        self.store_check_ok = Gauge("traza_store_check_ok", d["traza_store_check_ok"], registry=r)
        self.data_free = Gauge("traza_data_free_bytes", d["traza_data_free_bytes"], registry=r)
        self.data_size = Gauge("traza_data_size_bytes", d["traza_data_size_bytes"], registry=r)
        self.manifest_polls = Counter("traza_manifest_polls", d["traza_manifest_polls_total"], ["status"],
                                      registry=r)
        self.manifest_poll_bytes = Counter("traza_manifest_poll_bytes", d["traza_manifest_poll_bytes_total"],
                                           ["status"], registry=r)
        self.receipts_overdue = Gauge("traza_receipts_overdue", d["traza_receipts_overdue"], registry=r)

    def inc(self, counter: Counter, *labels: str) -> None:
        """``counter.labels(*labels).inc()``, the child looked up once per label set (as many as the
        counter's series: the labels are message types, peers and outcomes)."""
        key = (counter, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*labels)
        child.inc()

    def manifest_served(self, status: int, nbytes: int) -> None:
        """One ``GET /v1/manifest`` answered with ``status``, ``nbytes`` of HTTP both ways."""
        self.manifest_polls.labels(str(status)).inc()
        self.manifest_poll_bytes.labels(str(status)).inc(nbytes)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
