"""Cosignature compaction (SPEC §7.2, 1.1): per witness a node keeps its newest cosignature and the first
of each UTC day, so that refreshing every ``witness_refresh`` costs a bounded store; the served checkpoint
carries each witness's newest cosignature."""

from __future__ import annotations

import sqlite3

from audit.audit_kit import T0

from gateway.audit.checkpoints import compact_cosignatures
from gateway.audit.db import connect, transaction
from gateway.core.note import cosignature_timestamp, parse_note

DAY = 86400


def _counts(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT name, count(*) FROM audit_cosignatures GROUP BY name").fetchall())


def test_a_year_of_refreshes_with_30_witnesses_keeps_at_most_367_cosignatures_per_witness(tmp_path):
    """Synthetic rows (the log grows between refreshes, so every refresh is a new checkpoint size), one
    compaction per day of refreshes as the node's would after each: 30 witnesses, every hour."""
    conn = connect(tmp_path / "a.db")
    names = [f"traza/t/w{i:02d}" for i in range(30)]
    step, size, at = 3600, 0, T0 + 1234.5  # not aligned on a UTC day
    newest = 0.0
    for _day in range(365):
        rows = []
        first = at
        for _ in range(DAY // step):
            size += 1
            rows += [(size, n, "k", f"\u2014 {n} line-{size}\n", at) for n in names]
            newest, at = at, at + step
        with transaction(conn):
            conn.executemany("INSERT INTO audit_cosignatures (size, name, public_key, line, received_at) "
                             "VALUES (?, ?, ?, ?, ?)", rows)
            compact_cosignatures(conn, since=first)
    counts = _counts(conn)
    assert set(counts) == set(names)
    assert all(365 <= c <= 367 for c in counts.values()), counts  # one a day is kept, nothing more
    for n in names:  # the newest is kept, and the first of every UTC day the year touched
        days = conn.execute("SELECT min(received_at), max(received_at), count(DISTINCT CAST(received_at / 86400 AS "
                            "INTEGER)) FROM audit_cosignatures WHERE name=?", (n,)).fetchone()
        assert days[1] == newest and days[0] == T0 + 1234.5
        assert days[2] == int(newest // DAY) - int((T0 + 1234.5) // DAY) + 1


def test_a_quiet_log_keeps_the_first_cosignature_of_each_day_and_serves_the_newest(make_node):
    """A log that does not grow: the witness cosigns the same checkpoint again every refresh. Each UTC
    day's first cosignature is kept (it proves the checkpoint existed by then), the served checkpoint
    carries the newest one only."""
    a, b = make_node("mx"), make_node("es")
    wb = b.witness({a.origin: a.key.public_raw})
    a.append(3)
    size = a.publish()
    start = (int(a.clock[0]) // DAY + 1) * DAY - 3600  # an hour before midnight UTC
    refresh = 600
    times = [start + i * refresh for i in range(int(2.5 * DAY) // refresh)]
    for t in times:
        a.clock[0] = b.clock[0] = float(t)
        status, _, body = wb.handle(a.publisher.witness_request(b.origin))
        assert status == 200
        assert a.publisher.add_cosignatures(size, body, {b.origin: b.key.public_raw}) == [b.origin]
    conn = connect(a.db)  # the SQLite file or the PostgreSQL database
    kept = [r[0] for r in conn.execute("SELECT received_at FROM audit_cosignatures WHERE name=? ORDER BY received_at",
                                       (b.origin,))]
    first_of_day: dict[int, int] = {}
    for t in times:
        first_of_day.setdefault(t // DAY, t)
    assert kept == sorted({*first_of_day.values(), times[-1]})
    served = parse_note(a.publisher.reader.served_checkpoint())
    cosigs = [s for s in served.signatures if s.name == b.origin and len(s.signature) == 72]
    assert [cosignature_timestamp(s) for s in cosigs] == [times[-1]]
