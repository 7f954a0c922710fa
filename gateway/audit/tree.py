"""Reading the stored Merkle tree: roots at any size and proofs from the ``audit_nodes`` rows."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from gateway.audit.db import AuditError
from gateway.core.merkle import (
    EMPTY_ROOT,
    CompactRange,
    NodeId,
    consistency_plan,
    fold,
    fold_plan,
    frontier_nodes,
    inclusion_plan,
    plan_nodes,
)


def log_size(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT max(idx) FROM audit_entries").fetchone()
    return 0 if row[0] is None else int(row[0]) + 1


def get_nodes(conn: sqlite3.Connection, ids: Iterable[NodeId]) -> dict[NodeId, bytes]:
    """Read perfect-subtree hashes; level 0 comes from ``audit_entries.leaf_hash``."""
    out: dict[NodeId, bytes] = {}
    for level, idx in ids:
        if level == 0:
            row = conn.execute("SELECT leaf_hash FROM audit_entries WHERE idx=?", (idx,)).fetchone()
        else:
            row = conn.execute(
                "SELECT hash FROM audit_nodes WHERE level=? AND idx=?", (level, idx)
            ).fetchone()
        if row is None:
            raise AuditError(f"audit tree node (level {level}, index {idx}) is missing from the database")
        out[(level, idx)] = bytes(row[0])
    return out


def load_range(conn: sqlite3.Connection, size: int) -> CompactRange:
    """The right border of the stored tree of ``size`` leaves, to append after it."""
    ids = frontier_nodes(size)
    nodes = get_nodes(conn, ids)
    return CompactRange(size, [nodes[n] for n in ids])


def root_at(conn: sqlite3.Connection, size: int) -> bytes:
    if size == 0:
        return EMPTY_ROOT
    ids = frontier_nodes(size)
    nodes = get_nodes(conn, ids)
    return fold([nodes[n] for n in ids])


def inclusion_proof(conn: sqlite3.Connection, index: int, size: int) -> list[bytes]:
    """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` (raises ProofError if out of
    range, AuditError if the tree does not hold that size)."""
    _check_size(conn, size)
    plan = inclusion_plan(index, size)
    return fold_plan(plan, get_nodes(conn, plan_nodes(plan)))


def consistency_proof(conn: sqlite3.Connection, old: int, new: int) -> list[bytes]:
    """RFC 9162 consistency proof from size ``old`` to ``new``; empty when ``old == new``."""
    _check_size(conn, new)
    if old == new:
        return []
    plan = consistency_plan(old, new)
    return fold_plan(plan, get_nodes(conn, plan_nodes(plan)))


def _check_size(conn: sqlite3.Connection, size: int) -> None:
    have = log_size(conn)
    if size > have:
        raise AuditError(f"tree size {size} is beyond the log size {have}")
