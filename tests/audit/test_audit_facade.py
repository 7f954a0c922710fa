"""NodeAudit over the node's shared group-commit Database (a SQLite file, a PostgreSQL database): entries staged in the relay's own writes,
checkpoints, the auditor API views, witnessing between two nodes, and a bundle served and verified."""

from __future__ import annotations

import asyncio
import json

from kit.federation import NOW, make_federation

from gateway.audit.bundle import verify_bundle
from gateway.audit.facade import NodeAudit
from gateway.audit.log import decode_entry
from gateway.cli.main import main
from gateway.core import events as ev
from gateway.core.b64 import b64_decode
from gateway.core.envelope import make_ack, token_digest
from gateway.core.jws import parse_compact
from gateway.core.merkle import leaf_hash, verify_inclusion
from gateway.store.db import Database

STARTED = ev.NodeStarted(manifest_version=1, endpoint="https://127.0.0.1:1")


def _msg(v_jti: str, token: str) -> dict:
    return {"jti": v_jti, "mt": "notice", "iss": "mx", "aud": "es", "dig": token_digest(token)}


async def test_node_audit_end_to_end(audit_db):
    tf = make_federation()
    fed = tf.fed
    dbs = {n: Database(audit_db(n)) for n in ("es", "mx")}
    audits = {n: NodeAudit(dbs[n], node=n, federation=fed.name, key=tf.audit[n]) for n in dbs}
    es, mx = audits["es"], audits["mx"]
    env = tf.relay(tf.send("mx", "es"), ["mx", "eu-hub", "es"])
    jti = parse_compact(env.token, typ="traza-envelope+jwt").claims["jti"]

    # the relay: store + audit entry + evidence in one write (one transaction, one fsync)
    def accept(conn):
        (idx,) = es.stage(
            conn, [ev.EnvelopeAccepted(**_msg(jti, env.token), from_="eu-hub", to="es")], NOW
        )
        ack = make_ack(tf.signers["es"], here="es", peer="eu-hub", jti=jti, token=env.token, idx=idx, now=NOW)
        es.stage_evidence(
            conn,
            jti,
            envelope={"token": env.token, "hops": env.hops},
            ack=ack,
            keys=[
                {"kid": k.kid, "alg": k.alg, "jwk": k.public_jwk()}
                for k in (tf.signers["mx"], tf.signers["eu-hub"], tf.signers["es"])
            ],
        )
        return idx

    idxs = await asyncio.gather(*(dbs["es"].write(accept) for _ in range(1)))
    await asyncio.gather(
        *(dbs["es"].write(lambda c: es.stage(c, [STARTED], NOW)) for _ in range(20))
    )
    assert idxs == [0]
    cp = await es.publish(NOW + 5)
    assert cp is not None and cp.size == 21
    assert await es.publish(NOW + 10) is None

    # es asks mx to witness it; mx answers through its own NodeAudit
    size, body = await es.witness_request("mx")
    status, ctype, resp = await mx.witness_add("es", body, fed, NOW + 11)
    assert status == 200 and ctype.startswith("text/plain"), resp
    assert await es.add_cosignatures("mx", size, resp, fed, NOW + 12) == ["traza/traza-test/mx"]
    served = es.served_checkpoint()
    assert served.count("\u2014 ") == 2

    # auditor views
    page = await es.entries({"from": "0", "limit": "5"})
    assert [e["index"] for e in page["entries"]] == [0, 1, 2, 3, 4] and page["next"] == 5
    assert [e["index"] for e in (await es.entries({"jti": jti}))["entries"]] == [0]
    proof = await es.inclusion(0, None)
    raw = b64_decode(page["entries"][0]["entry"])
    assert decode_entry(raw)["jti"] == jti
    verify_inclusion(0, proof["size"], leaf_hash(raw), [b64_decode(h) for h in proof["hashes"]], cp.root)
    hashes = await dbs["es"].read(lambda c: es.consistency(c, 3, 21))
    assert len(hashes) > 0

    # the bundle, as served, verifies offline
    data = await es.bundle(jti)
    report = verify_bundle(data)
    assert any("witness traza/traza-test/mx cosigned" in line for line in report.proven)
    assert any(line.startswith("hop 1: eu-hub received it from mx") for line in report.proven)
    assert await es.bundle("unknown") is None

    # a fork presented to mx is refused, alerted and audited in mx's own log
    fork_db = Database(audit_db("fork"))
    fork = NodeAudit(fork_db, node="es", federation=fed.name, key=tf.audit["es"])
    await asyncio.gather(
        *(fork_db.write(lambda c: fork.stage(c, [ev.NodeStopped()], NOW)) for _ in range(30))
    )
    await fork.publish(NOW)
    _, fbody = await fork.witness_request("mx", old_size=21)
    status, _, _ = await mx.witness_add("es", fbody, fed, NOW + 20)
    assert status == 422 and mx.forks_detected == 1
    events = await mx.entries({"event": "witness.fork_detected"})
    assert len(events["entries"]) == 1
    for db in (*dbs.values(), fork_db):
        db.close()
    # the node database verifies with the CLI
    assert main(["audit", "verify", "--db", str(audit_db("es")), "--no-progress"]) == 0
    assert main(["audit", "verify", "--db", str(audit_db("mx")), "--no-progress"]) == 0
    assert json.loads(data)["node"] == "es"


async def test_an_entry_appended_by_another_writer_between_transactions_is_not_overwritten(audit_db):
    """The facade keeps the log's frontier between writes and reads the log's size once per transaction:
    an entry another writer (another process, another replica) appended in between is seen, so the
    next entry takes the next index and the log stays one valid tree."""
    from gateway.audit import log as audit_log
    from gateway.core.events import as_entry

    tf = make_federation()
    db, other = Database(audit_db("es")), Database(audit_db("es"))
    audit = NodeAudit(db, node="es", federation=tf.fed.name, key=tf.audit["es"])
    try:
        assert await db.write(lambda c: audit.stage(c, [STARTED, STARTED], NOW)) == [0, 1]
        assert await other.write(lambda c: audit_log.stage(c, [as_entry(STARTED)], node="es", now=NOW)) == [2]
        assert await db.write(lambda c: audit.stage(c, [ev.NodeStopped()], NOW)) == [3]
        assert await db.write(lambda c: audit.stage(c, [ev.NodeStopped()], NOW)) == [4]
    finally:
        db.close()
        other.close()
    assert main(["audit", "verify", "--db", str(audit_db("es")), "--no-progress"]) == 0


async def test_the_log_size_is_read_once_per_transaction_however_many_entries_it_stages(tmp_path):
    """Within one write transaction the write lock keeps other writers out: staging ten entries one by
    one reads the log's size (``SELECT max(idx)``) at most once, not once per entry."""
    tf = make_federation()
    db = Database(tmp_path / "es.db")
    audit = NodeAudit(db, node="es", federation=tf.fed.name, key=tf.audit["es"])
    seen: list[str] = []
    try:
        await db.write(lambda c: audit.stage(c, [STARTED], NOW))
        db._conn.set_trace_callback(seen.append)

        def ten(conn):
            return [audit.stage(conn, [ev.NodeStopped()], NOW)[0] for _ in range(10)]

        assert await db.write(ten) == list(range(1, 11))
        db._conn.set_trace_callback(None)
    finally:
        db.close()
    assert sum("max(idx)" in s for s in seen) <= 1, seen
