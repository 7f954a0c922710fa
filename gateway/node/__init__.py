"""One node: wires config, trust, keys, store, audit and transport together; owns startup and shutdown.

The relay pipeline (SPEC §4.2) runs here: the pure checks of ``gateway.core.envelope`` (steps 1–9),
then the replay check, the durable store with its audit entry and the ack (steps 10–12), all inside one
group-committed transaction of ``gateway.store.db.Database``.

:class:`Node` (``core``) is assembled from mixins, one module per concern, over the shared state
declared in ``state``:

- ``core``: construction, trust updates, peer identity and load shedding, lifecycle, :func:`run_node`;
- ``receive``: the receiving pipeline (SPEC §4.1–§4.2) and local delivery of what arrives;
- ``blobs``: blob checks, decryption and encryption, attachments, uploads to peers, purge (SPEC §4.3);
- ``origin``: messages this node originates (``submit``) and receipts/errors it replies with;
- ``forward``: the outbox loop per peer, circuit breaker, retries, expiry, settling acks;
- ``api``: backends of the local, operations and audit APIs, health and metrics;
- ``witness``: checkpoints, witnessing (SPEC §7.3) and manifest polling.
"""

from gateway.node.core import Node, NodeError, StoreDamaged, run_node

__all__ = ["Node", "NodeError", "StoreDamaged", "run_node"]
