"""The read side of the audit log: entries, roots, proofs, checkpoints as served, JSON views.

``AuditReader`` opens the database read-only (from the file alone, for ``traza audit verify --db``) or
shares a connection. The JSON views are what the node serves on the auditor API (SPEC §6):

- ``GET /audit/v1/entries`` → :meth:`AuditReader.entries_json`:
  ``{"entries": [{"index": i, "entry": "<base64 of the exact entry bytes>"}], "next": <int> | null}``
- ``GET /audit/v1/proof/inclusion?index=&size=`` → :meth:`AuditReader.inclusion_json`:
  ``{"index", "size", "hashes": ["<base64>", ...]}``
- ``GET /v1/audit/checkpoint`` → :meth:`AuditReader.served_checkpoint` (``text/plain``)
- ``GET /v1/audit/proof/consistency?old=&new=`` → :meth:`AuditReader.consistency_json`
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.audit import tree
from gateway.audit.db import AuditError, connect_readonly, get_meta
from gateway.core.auditquery import AuditQuery
from gateway.core.b64 import b64_encode
from gateway.store.dialect import dialect_of

MAX_PAGE = 1000


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str  # the log-signed note as signed
    public_key: str  # base64 Ed25519 key that signed it
    signed_at: float
    cosignatures: tuple[tuple[str, str, str], ...]  # (witness name, witness public key b64, line)

    def served(self) -> str:
        """The note with the collected cosignatures appended as extra signature lines."""
        return self.note + "".join(line for _, _, line in self.cosignatures)


class AuditReader:
    def __init__(self, source: str | Path | sqlite3.Connection) -> None:
        """``source``: an open connection (SQLite's or :class:`gateway.store.pg.PgConnection`), kept open;
        or a database file or ``postgresql://`` URL, opened read-only and closed by :meth:`close`."""
        if not isinstance(source, str | Path):
            self.conn = source
            self._owned = False
        else:
            self.conn = connect_readonly(source)
            self._owned = True

    def close(self) -> None:
        if self._owned:
            self.conn.close()

    def __enter__(self) -> AuditReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata -----------------------------------------------------------------------------------

    @property
    def node(self) -> str | None:
        return get_meta(self.conn, "node")

    @property
    def origin(self) -> str | None:
        return get_meta(self.conn, "origin")

    # -- entries -------------------------------------------------------------------------------------

    def size(self) -> int:
        return tree.log_size(self.conn)

    def entry(self, index: int) -> bytes:
        row = self.conn.execute("SELECT entry FROM audit_entries WHERE idx=?", (index,)).fetchone()
        if row is None:
            raise AuditError(f"audit entry {index} does not exist (log size {self.size()})")
        return bytes(row[0])

    def iter_entries(self, start: int = 0, chunk: int = 20000,
                     end: int | None = None) -> Iterator[tuple[int, bytes, bytes]]:
        """The stored rows ``(idx, entry, stored leaf hash)`` from ``start`` (to ``end``, exclusive, if
        given) in index order, as stored (gaps included). Each chunk is its own statement: while another
        process appends (replicas of one node on PostgreSQL), only ``end`` bounds what is read to a size
        read before."""
        pos = start
        while True:
            rows = self.conn.execute(
                "SELECT idx, entry, leaf_hash FROM audit_entries WHERE idx >= ? AND idx < ? ORDER BY idx LIMIT ?",
                (pos, (1 << 62) if end is None else end, chunk),
            ).fetchall()
            if not rows:
                return
            for idx, entry, leaf in rows:
                yield int(idx), bytes(entry), bytes(leaf)
            pos = int(rows[-1][0]) + 1

    def entries(
        self,
        *,
        start: int = 0,
        end: int | None = None,
        jti: str | None = None,
        event: str | None = None,
        limit: int = MAX_PAGE,
        newest_first: bool = False,
    ) -> list[tuple[int, bytes]]:
        """Entries with ``start <= idx < end`` (and the given jti/event), oldest first (or newest first)."""
        sql = "SELECT idx, entry FROM audit_entries WHERE idx >= ?"
        args: list[Any] = [start]
        if end is not None:
            sql += " AND idx < ?"
            args.append(end)
        if jti is not None:
            sql += " AND jti = ?"
            args.append(jti)
        if event is not None:
            sql += " AND event = ?"
            args.append(event)
        sql += " ORDER BY idx DESC LIMIT ?" if newest_first else " ORDER BY idx LIMIT ?"
        args.append(max(0, min(limit, MAX_PAGE)))
        return [(int(i), bytes(e)) for i, e in self.conn.execute(sql, args)]

    def search(self, q: AuditQuery) -> list[tuple[int, bytes]]:
        """Entries matching the auditor's query (gateway/core/auditquery.py), oldest first, from
        ``q.start``, at most ``q.limit``. Text filters are case-insensitive parts; ``peer`` matches any node
        the entry names (sender, recipient, origin, destination, peer)."""
        d = dialect_of(self.conn)

        def field(key: str) -> str:
            return d.json_field("entry", key)

        sql: list[str] = ["idx >= ?"]
        args: list[Any] = [q.start]
        if q.since is not None:
            sql.append(f"{field('ts')} >= ?")
            args.append(q.since)
        if q.until is not None:
            sql.append(f"{field('ts')} < ?")
            args.append(q.until)
        if q.event is not None:
            sql.append("event = ?")
            args.append(q.event)
        if q.mt is not None:
            sql.append(f"{field('mt')} = ?")
            args.append(q.mt)
        if q.peer is not None:
            sql.append("? IN (" + ", ".join(field(k) for k in ("from", "to", "iss", "aud", "peer")) + ")")
            args.append(q.peer)
        if q.outcome is not None:
            sql.append(f"({field('code')} = ? OR {field('outcome')} = ? OR {field('status')} = ?)")
            args += [q.outcome] * 3
        for key, value in (("unit", q.unit), ("officer", q.officer), ("case", q.case)):
            if value is not None:
                # instr over lower(): a part, without LIKE's wildcards in what the auditor typed
                sql.append(d.contains(field(key)))
                args.append(value)
        # the clauses are this method's constant texts; every value the auditor gave is a bound parameter
        where = " AND ".join(sql)
        rows = self.conn.execute(
            f"SELECT idx, entry FROM audit_entries WHERE {where} ORDER BY idx LIMIT ?", [*args, q.limit])  # noqa: S608
        return [(int(i), bytes(e)) for i, e in rows]

    def entries_json(
        self,
        *,
        start: int = 0,
        end: int | None = None,
        jti: str | None = None,
        event: str | None = None,
        limit: int = MAX_PAGE,
    ) -> dict[str, Any]:
        """The ``GET /audit/v1/entries`` response; ``next`` is the ``from`` of the next page or null."""
        limit = max(1, min(limit, MAX_PAGE))
        rows = self.entries(start=start, end=end, jti=jti, event=event, limit=limit)
        nxt = rows[-1][0] + 1 if len(rows) == limit else None
        return {"entries": [{"index": i, "entry": b64_encode(e)} for i, e in rows], "next": nxt}

    def jti_indices(self, jti: str) -> list[int]:
        return [
            int(r[0])
            for r in self.conn.execute("SELECT idx FROM audit_entries WHERE jti=? ORDER BY idx", (jti,))
        ]

    # -- tree ----------------------------------------------------------------------------------------

    def root(self, size: int | None = None) -> bytes:
        n = self.size() if size is None else size
        if n > self.size():
            raise AuditError(f"tree size {n} is beyond the log size {self.size()}")
        return tree.root_at(self.conn, n)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return tree.inclusion_proof(self.conn, index, self.size() if size is None else size)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        return tree.consistency_proof(self.conn, old, new)

    def inclusion_json(self, index: int, size: int | None = None) -> dict[str, Any]:
        n = self.size() if size is None else size
        return {"index": index, "size": n, "hashes": [b64_encode(h) for h in self.inclusion_proof(index, n)]}

    def consistency_json(self, old: int, new: int) -> dict[str, Any]:
        return {"hashes": [b64_encode(h) for h in self.consistency_proof(old, new)]}

    # -- checkpoints ---------------------------------------------------------------------------------

    def _cosigs(self, size: int) -> tuple[tuple[str, str, str], ...]:
        """Each witness's newest cosignature of the checkpoint of ``size`` (a quiet log is cosigned again
        at every refresh: the older lines are kept, one a day, but not served)."""
        rows = self.conn.execute(
            "SELECT name, public_key, line FROM (SELECT name, public_key, line, row_number() OVER "
            "(PARTITION BY name ORDER BY received_at DESC, line DESC) AS nth FROM audit_cosignatures WHERE size=?) "
            "AS newest WHERE nth = 1 ORDER BY name",
            (size,),
        ).fetchall()
        return tuple((str(n), str(k), str(line)) for n, k, line in rows)

    def _stored(self, row: tuple[Any, ...]) -> StoredCheckpoint:
        size, root, note, key, at = row
        return StoredCheckpoint(
            int(size), bytes(root), str(note), str(key), float(at), self._cosigs(int(size))
        )

    def checkpoints(self) -> list[StoredCheckpoint]:
        rows = self.conn.execute(
            "SELECT size, root, note, public_key, signed_at FROM audit_checkpoints ORDER BY size"
        ).fetchall()
        return [self._stored(r) for r in rows]

    def checkpoint(self, size: int | None = None) -> StoredCheckpoint | None:
        """The checkpoint of ``size`` (default: the latest signed), or None."""
        if size is None:
            row = self.conn.execute(
                "SELECT size, root, note, public_key, signed_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone()
        else:
            row = self.conn.execute(
                "SELECT size, root, note, public_key, signed_at FROM audit_checkpoints WHERE size=?", (size,)
            ).fetchone()
        return None if row is None else self._stored(row)

    def cosigned_checkpoint(self) -> StoredCheckpoint | None:
        """The latest checkpoint that carries at least one witness cosignature (SPEC §4.4: evidence for
        peers is proven against it), or None. Cosignatures are stored only once verified with the
        witness's key from the manifest (gateway/audit/checkpoints.py)."""
        row = self.conn.execute(
            "SELECT size, root, note, public_key, signed_at FROM audit_checkpoints AS c WHERE EXISTS "
            "(SELECT 1 FROM audit_cosignatures AS s WHERE s.size = c.size) ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return None if row is None else self._stored(row)

    def served_checkpoint(self) -> str:
        """``GET /v1/audit/checkpoint``: the latest checkpoint with its cosignatures."""
        cp = self.checkpoint()
        if cp is None:
            raise AuditError("no checkpoint has been signed yet")
        return cp.served()

    # -- evidence ------------------------------------------------------------------------------------

    def evidence(self, jti: str) -> list[tuple[str, str]]:
        rows = self.conn.execute("SELECT kind, value FROM audit_evidence WHERE jti=? ORDER BY id", (jti,))
        return [(str(k), str(v)) for k, v in rows]

    def signing_key(self, kid: str) -> tuple[str, str] | None:
        row = self.conn.execute("SELECT alg, jwk FROM audit_keys WHERE kid=?", (kid,)).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))
