"""Audit schema migrations 1 -> 2 (``audit_evidence`` keyed on a SHA-256 of the value) and 2 -> 3
(``audit_cosignatures`` may hold several lines per checkpoint and witness): a database written with the
version 1 or 2 DDL (copied below as it was released) is migrated in place when the node or the audit tools
open it read-write; its bundles still verify, repeats are still ignored, and a failed migration leaves the
database as it was."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3

import pytest
from kit.federation import NOW, make_federation

from gateway.audit.bundle import verify_bundle
from gateway.audit.db import EVIDENCE_DDL, SCHEMA_VERSION, AuditError, connect, connect_readonly, transaction
from gateway.audit.facade import NodeAudit
from gateway.audit.log import stage_evidence
from gateway.cli.main import main
from gateway.core import events as ev
from gateway.core.envelope import build_envelope, make_ack, token_digest
from gateway.core.ids import uuid7
from gateway.core.jws import parse_compact
from gateway.store.db import Database

# The audit schema as version 1 of gateway.audit.db created it (do not edit: it is the old format).
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_entries (
    idx INTEGER PRIMARY KEY,
    entry BLOB NOT NULL,
    leaf_hash BLOB NOT NULL,
    jti TEXT,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_entries_jti ON audit_entries (jti) WHERE jti IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit_nodes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    public_key TEXT NOT NULL,
    signed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_cosignatures (
    size INTEGER NOT NULL,
    name TEXT NOT NULL,
    public_key TEXT NOT NULL,
    line TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (size, name)
);
CREATE TABLE IF NOT EXISTS audit_witness_state (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    checkpoint TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_witness_alerts (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    kind TEXT NOT NULL,
    detected_at REAL NOT NULL,
    known_checkpoint TEXT,
    presented_checkpoint TEXT NOT NULL,
    old_size INTEGER NOT NULL,
    proof TEXT NOT NULL,
    audit_idx INTEGER
);
CREATE TABLE IF NOT EXISTS audit_evidence (
    id INTEGER PRIMARY KEY,
    jti TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('envelope', 'ack', 'receipt')),
    value TEXT NOT NULL,
    UNIQUE (jti, kind, value)
);
CREATE TABLE IF NOT EXISTS audit_keys (kid TEXT PRIMARY KEY, alg TEXT NOT NULL, jwk TEXT NOT NULL);
"""


def _v1_database(path, evidence=()):
    """A database as version 1 of the code left it, with ``(jti, kind, value)`` evidence rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(V1_SCHEMA)
    conn.execute("INSERT INTO audit_meta (key, value) VALUES ('schema', '1')")
    conn.executemany("INSERT INTO audit_evidence (jti, kind, value) VALUES (?, ?, ?)", evidence)
    conn.close()


def _copy_as_v1(src, dst):
    """Every row of the audit database ``src`` (version 2) into a new version 1 database ``dst``."""
    _v1_database(dst)
    conn = sqlite3.connect(dst, isolation_level=None)
    conn.execute("ATTACH DATABASE ? AS src", (str(src),))
    conn.execute("BEGIN")
    tables = [r[0] for r in conn.execute("SELECT name FROM src.sqlite_master WHERE type='table' AND name LIKE 'audit_%'")]
    assert "audit_evidence" in tables and "audit_entries" in tables
    for t in tables:
        if t == "audit_meta":
            conn.execute("INSERT OR IGNORE INTO audit_meta SELECT * FROM src.audit_meta WHERE key != 'schema'")
        elif t == "audit_evidence":
            conn.execute("INSERT INTO audit_evidence (id, jti, kind, value) SELECT id, jti, kind, value FROM src.audit_evidence")
        elif t == "audit_cosignatures":
            conn.execute("INSERT INTO audit_cosignatures SELECT size, name, public_key, line, received_at "
                         "FROM src.audit_cosignatures")
        else:
            conn.execute(f"INSERT INTO {t} SELECT * FROM src.{t}")
    conn.execute("COMMIT")
    conn.execute("DETACH DATABASE src")
    conn.close()


def _layout(conn):
    """Columns and unique keys of audit_evidence, and the schema version."""
    cols = [(r[1], r[2], r[3]) for r in conn.execute("PRAGMA table_info(audit_evidence)")]
    uniques = sorted(
        tuple(c[2] for c in conn.execute(f"PRAGMA index_info('{ix[1]}')"))
        for ix in conn.execute("PRAGMA index_list(audit_evidence)")
        if ix[2]
    )
    version = conn.execute("SELECT value FROM audit_meta WHERE key='schema'").fetchone()[0]
    return cols, uniques, version


def _rows(conn):
    return conn.execute("SELECT id, jti, kind, value FROM audit_evidence ORDER BY id").fetchall()


EVIDENCE = [
    ("0197a6f0-0000-7000-8000-000000000001", "envelope", '{"token":"a.b.c","hops":[]}'),
    ("0197a6f0-0000-7000-8000-000000000001", "ack", "h.ack1.s"),
    ("0197a6f0-0000-7000-8000-000000000001", "ack", "h.ack2.s"),
    ("0197a6f0-0000-7000-8000-000000000002", "receipt", '{"token":"x.y.z","payload":"p\u00e9"}'),
    ("0197a6f0-0000-7000-8000-000000000002", "ack", "h.ack1.s"),
]


def test_v1_database_is_migrated_in_place(tmp_path):
    old, fresh = tmp_path / "old.db", tmp_path / "fresh.db"
    _v1_database(old, EVIDENCE)
    before = _rows(sqlite3.connect(old))
    assert _layout(sqlite3.connect(old))[1] == [("jti", "kind", "value")]

    conn = connect(old)  # what the appender, publisher and witness open: migrates
    assert _rows(conn) == before  # same ids, same order, same values
    for _id, _jti, _kind, value, digest in conn.execute("SELECT id, jti, kind, value, value_sha256 FROM audit_evidence"):
        assert bytes(digest) == hashlib.sha256(value.encode()).digest()
    assert _layout(conn) == _layout(connect(fresh))  # same table as a database created by this version
    assert _layout(conn)[1:] == ([("jti", "kind", "value_sha256")], SCHEMA_VERSION)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "audit_evidence_new" not in names and "audit_cosignatures_new" not in names

    # a repeat is ignored, a new value is recorded
    jti = EVIDENCE[0][0]
    with transaction(conn):
        stage_evidence(conn, jti, envelope={"token": "a.b.c", "hops": []}, ack="h.ack2.s")
    assert _rows(conn) == before
    with transaction(conn):
        stage_evidence(conn, jti, ack="h.ack3.s")
    assert _rows(conn)[-1][1:] == (jti, "ack", "h.ack3.s") and len(_rows(conn)) == len(before) + 1
    conn.close()
    conn = connect(old)  # opening again is a no-op
    assert len(_rows(conn)) == len(before) + 1 and _layout(conn)[2] == SCHEMA_VERSION
    conn.close()


def test_v2_database_keeps_its_cosignatures_and_takes_refreshed_ones(tmp_path):
    path = tmp_path / "v2.db"
    v2 = V1_SCHEMA.replace(V1_SCHEMA[V1_SCHEMA.index("CREATE TABLE IF NOT EXISTS audit_evidence"):
                                     V1_SCHEMA.index("CREATE TABLE IF NOT EXISTS audit_keys")], EVIDENCE_DDL + ";\n")
    raw = sqlite3.connect(path, isolation_level=None)
    raw.executescript(v2)
    raw.execute("INSERT INTO audit_meta (key, value) VALUES ('schema', '2')")
    rows = [(5, "traza/t/it", "k1", "\u2014 traza/t/it AAA\n", 100.0), (5, "traza/t/de", "k2", "\u2014 traza/t/de BBB\n", 101.0),
            (9, "traza/t/it", "k1", "\u2014 traza/t/it CCC\n", 200.0)]
    raw.executemany("INSERT INTO audit_cosignatures VALUES (?, ?, ?, ?, ?)", rows)
    raw.close()
    conn = connect(path)
    assert conn.execute("SELECT value FROM audit_meta WHERE key='schema'").fetchone()[0] == SCHEMA_VERSION == "3"
    cols = [r[1] for r in conn.execute("PRAGMA table_info(audit_cosignatures)")]
    assert cols == ["id", "size", "name", "public_key", "line", "received_at"]
    assert conn.execute("SELECT size, name, public_key, line, received_at FROM audit_cosignatures ORDER BY id"
                        ).fetchall() == rows
    # a refreshed cosignature of the same checkpoint by the same witness is a row of its own now
    conn.execute("INSERT INTO audit_cosignatures (size, name, public_key, line, received_at) VALUES "
                 "(9, 'traza/t/it', 'k1', '\u2014 traza/t/it DDD\n', 260.0)")
    assert conn.execute("SELECT count(*) FROM audit_cosignatures WHERE size=9").fetchone()[0] == 2
    conn.close()


def test_failed_migration_leaves_the_database_unchanged(tmp_path):
    path = tmp_path / "old.db"
    _v1_database(path, EVIDENCE)
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("CREATE TABLE audit_evidence_new (x)")  # in the way of the rebuild
    raw.close()
    with pytest.raises(AuditError, match=r"old\.db: migrating the audit schema from version 1 to 2 \(table audit_evidence\)"):
        connect(path)
    conn = sqlite3.connect(path)
    assert _layout(conn)[1:] == ([("jti", "kind", "value")], "1")
    assert [r[1:] for r in _rows(conn)] == EVIDENCE


def test_unknown_version_is_refused_untouched(tmp_path):
    path = tmp_path / "future.db"
    _v1_database(path, EVIDENCE)
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("UPDATE audit_meta SET value='99' WHERE key='schema'")
    raw.close()
    with pytest.raises(AuditError, match="audit schema version '99' is not supported"):
        connect(path)
    with pytest.raises(AuditError, match=r"future\.db: audit schema version '99' is not one of 1, 2, 3"):
        connect_readonly(path)
    assert _layout(sqlite3.connect(path))[1:] == ([("jti", "kind", "value")], "99")


async def test_node_opens_a_v1_database_and_its_bundles_still_verify(tmp_path, capsys):
    tf = make_federation()
    fed = tf.fed
    new_path = tmp_path / "v2" / "node.db"
    db = Database(new_path)
    es = NodeAudit(db, node="es", federation=fed.name, key=tf.audit["es"])
    env = tf.relay(tf.send("mx", "es"), ["mx", "eu-hub", "es"])
    jti = parse_compact(env.token, typ="traza-envelope+jwt").claims["jti"]
    keys = [{"kid": k.kid, "alg": k.alg, "jwk": k.public_jwk()} for k in (tf.signers[n] for n in ("mx", "eu-hub", "es"))]
    fields = {"jti": jti, "mt": "notice", "iss": "mx", "aud": "es", "dig": token_digest(env.token)}
    receipt = build_envelope(signer=tf.signers["es"], iss="es", aud="mx", jti=uuid7(NOW + 3, bytes(10)),
                             mt="receipt", body=json.dumps({"for": jti, "dig": fields["dig"], "status": "DELIVERED",
                                                            "at": "2026-11-17T00:00:03Z"}).encode(),
                             now=NOW + 3, ttl=86400, irt=jti, cid=jti)
    evidence = {"envelope": {"token": env.token, "hops": env.hops}, "receipt": {"token": receipt.token,
                                                                                "payload": receipt.payload}}

    def accept(conn):
        (idx,) = es.stage(conn, [ev.EnvelopeAccepted(**fields, from_="eu-hub", to="es")], NOW)
        ack = make_ack(tf.signers["es"], here="es", peer="eu-hub", jti=jti, token=env.token, idx=idx, now=NOW)
        es.stage_evidence(conn, jti, ack=ack, keys=keys, **evidence)
        es.stage(conn, [ev.EnvelopeDelivered(**fields, from_="es", to="system")], NOW + 1)
        return ack

    ack = await db.write(accept)
    await db.write(lambda c: es.stage(c, [ev.NodeStarted(manifest_version=1, endpoint="https://127.0.0.1:1")], NOW))
    assert await es.publish(NOW + 5) is not None
    bundle_v2 = json.loads(await es.bundle(jti))
    db.close()

    old_path = tmp_path / "v1" / "node.db"
    old_path.parent.mkdir()
    _copy_as_v1(new_path, old_path)
    assert _layout(sqlite3.connect(old_path))[1:] == ([("jti", "kind", "value")], "1")
    # an auditor's read-only tools read version 1 as it is
    assert main(["audit", "export", "--db", str(old_path), "--jti", jti, "-o", str(tmp_path / "b1.json")]) == 0
    assert json.loads((tmp_path / "b1.json").read_text()) == bundle_v2
    assert _layout(sqlite3.connect(old_path))[2] == "1"

    # the node opens it (schema created/migrated inside its group-commit write)
    db = Database(old_path)
    es = NodeAudit(db, node="es", federation=fed.name, key=tf.audit["es"])
    conn = sqlite3.connect(old_path)
    assert _layout(conn)[1:] == ([("jti", "kind", "value_sha256")], SCHEMA_VERSION)
    count = len(_rows(conn))
    assert json.loads(await es.bundle(jti)) == bundle_v2
    verify_bundle(await es.bundle(jti))

    # the relay records the same evidence again (a duplicate envelope): nothing new is stored
    await db.write(lambda c: es.stage_evidence(c, jti, ack=ack, keys=keys, **evidence))
    assert len(_rows(conn)) == count
    # a receipt ack is new evidence and is recorded
    ack2 = make_ack(tf.signers["es"], here="es", peer="eu-hub", jti=jti, token=env.token, idx=0, now=NOW + 9)
    await db.write(lambda c: es.stage_evidence(c, jti, ack=ack2))
    assert len(_rows(conn)) == count + 1
    await asyncio.sleep(0)
    db.close()

    capsys.readouterr()
    out = tmp_path / "b2.json"
    assert main(["audit", "export", "--db", str(old_path), "--jti", jti, "-o", str(out)]) == 0
    assert main(["audit", "verify-bundle", str(out)]) == 0
    text = capsys.readouterr().out
    for fact in (f"message {jti} (notice) was signed by mx for es", "hop 1: eu-hub received it from mx",
                 "ack 1: es acknowledged this token to eu-hub", "receipt from es to mx: DELIVERED"):
        assert fact in text, fact
    assert main(["audit", "verify", "--db", str(old_path), "--no-progress"]) == 0
