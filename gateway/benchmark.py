"""`traza bench` (SPEC §11): the same message stream through real nodes and through a null relay, plus
the crypto floor of the route, in one process tree on this machine.

Route: mx → latam-hub → eu-hub → es (four ``traza run`` processes built by :mod:`gateway.localfed`).
Feed: concurrent ``POST /local/v1/messages`` to mx's local API with mx's system client certificate (the
way a national system submits). Receipts are on: every message in es's inbox is acked, and the receipts
are counted at mx (state ``delivered``). The null relay then carries the *same* envelopes (read from mx's
database) over the same mTLS chain, in batches, through three small aiohttp servers that only forward.

``store="postgresql"`` (``traza bench --store postgresql``) puts every node's store in a database of its
own on a throw-away PostgreSQL 15 server (:mod:`gateway.store.pgserver`, fsync on like SQLite's
``synchronous=FULL``); ``replicas=2`` then runs latam-hub as two replicas on its database, both in the
manifest's endpoints of latam-hub (docs/ha.md), so that mx spreads its batches over them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import sqlite3
import ssl
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from adapters.standard import MEDIA_TYPE as STANDARD
from gateway.crypto import hpke
from gateway.crypto.keys import SigningKey, verifier_for
from gateway.demo.procs import FOUR, Federation
from gateway.localfed import add_replica, free_ports, set_store
from gateway.national.client import local_tls
from gateway.trust.pki import FederationDir

ROUTE = ("mx", "latam-hub", "eu-hub", "es")
KEYS = ("messages", "size", "null_relay_eps", "traza_eps", "ratio", "floor_eps", "floor_ratio", "p50_ms",
        "p99_ms", "cpu_us_per_envelope", "peak_rss_mib", "floor_eps_v1", "cpu_floor_ratio", "rate", "p50_ms_at_rate",
        "p99_ms_at_rate", "hop_p50_ms_at_rate", "hop_p99_ms_at_rate")
HOPS = tuple(f"{a}→{b}" for a, b in itertools.pairwise(ROUTE))
BATCH = 64  # envelopes per null-relay POST (SPEC §11 allows 256)


class BenchError(Exception):
    """The benchmark could not finish (a node died, a step timed out, a request was refused)."""


class BenchUsage(ValueError):
    """Bad arguments (a count that is not positive, an unknown store, too few or too many nodes): `traza
    bench` exits 2 with this text (SPEC §10), before anything is started."""


Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: called as the benchmark advances (`traza bench` on a terminal)."""


def no_progress(phase: str, done: int, total: int) -> None:
    return None


@dataclass
class _Ctx:
    fed: Federation
    deadline: float
    progress: Progress = no_progress
    urls: dict[str, str] | None = None  # node -> its PostgreSQL database (--store postgresql)

    def rows(self, node: str, sql: str) -> list[Any]:
        """One read-only query of ``node``'s store (the node keeps writing it meanwhile)."""
        if self.urls is None:
            return _rows(self.fed.nodes[node].data_dir / "node.db", sql)
        import psycopg

        with psycopg.connect(self.urls[node], autocommit=True) as conn:
            return conn.execute(sql).fetchall()


def _remaining(ctx: _Ctx, what: str) -> float:
    left = ctx.deadline - time.monotonic()
    if left <= 0:
        raise BenchError(f"bench timed out while {what}")
    return left


def _client_ssl(fed: Federation, node: str, role: str | None) -> ssl.SSLContext:
    """TLS client context with ``node``'s ``role`` client cert (the CLI's local-API client, from the node's
    config), or its peer TLS cert when role is None."""
    if role is not None:
        return local_tls(fed.config(node), role)
    f = FederationDir(fed.root / "pki").node_files(node)
    manifest = json.loads((fed.root / "pki" / "published" / "manifest.json").read_text())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata="\n".join(manifest["tls_ca"]))
    ctx.load_cert_chain(str(f.tls_cert), str(f.tls_key))
    return ctx


def _server_ssl(fed: Federation, node: str) -> ssl.SSLContext:
    f = FederationDir(fed.root / "pki").node_files(node)
    manifest = json.loads((fed.root / "pki" / "published" / "manifest.json").read_text())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata="\n".join(manifest["tls_ca"]))
    ctx.load_cert_chain(str(f.tls_cert), str(f.tls_key))
    return ctx


def notice(size: int, to: str = "es") -> bytes:
    """A notice message for ``to`` whose JSON is ``size`` bytes (at least the unpadded size)."""
    msg: dict[str, Any] = {"type": "notice", "to": to, "handling": "H1", "classification": "BASIC_PROTECTION_LEVEL",
                           "purpose": "INVESTIGATION", "body": {"title": "bench", "text": "x"}}
    base = len(json.dumps(msg).encode())
    msg["body"]["text"] = "x" * max(1, min(16384, size - base + 1))
    return json.dumps(msg).encode()


def _ro(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)


def _peak_rss_mib(pids: list[int]) -> float:
    peak = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak / 1024


async def _feed(ctx: _Ctx, n: int, size: int, concurrency: int) -> tuple[float, dict[str, float]]:
    node = ctx.fed.nodes["mx"]
    url = f"https://127.0.0.1:{node.local_port}/local/v1/messages"
    body = notice(size)
    sent: dict[str, float] = {}
    queue = list(range(n))
    conn = aiohttp.TCPConnector(ssl=_client_ssl(ctx.fed, "mx", "system"), limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=_remaining(ctx, "feeding"))) as s:
        async def worker() -> None:
            while queue:
                queue.pop()
                t = time.time()
                async with s.post(url, data=body, headers={"Content-Type": STANDARD}) as r:
                    doc = await r.json(content_type=None)
                    if r.status != 201:
                        raise BenchError(f"mx refused a bench message: HTTP {r.status}: {doc}")
                sent[doc["id"]] = t
                ctx.progress("sending mx → es", len(sent), n)
        t0 = time.time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return t0, sent


async def _drain_inbox(ctx: _Ctx, n: int) -> None:
    """Ack every message in es's inbox (so receipts flow back) until ``n`` were acked."""
    node = ctx.fed.nodes["es"]
    base = f"https://127.0.0.1:{node.local_port}/local/v1/inbox"
    acked: set[str] = set()
    after = 0
    conn = aiohttp.TCPConnector(ssl=_client_ssl(ctx.fed, "es", "system"), limit=16)
    async with aiohttp.ClientSession(connector=conn) as s:
        while len(acked) < n:
            _remaining(ctx, f"waiting for es's inbox ({len(acked)} of {n} acked)")
            async with s.get(f"{base}?after={after}&limit=500") as r:
                doc = await r.json(content_type=None)
                if r.status != 200:
                    raise BenchError(f"es inbox: HTTP {r.status}: {doc}")
            msgs = [m for m in doc["messages"] if m["id"] not in acked]
            after = int(doc.get("next") or after)
            if not msgs:
                await asyncio.sleep(0.05)
                continue

            async def ack(jti: str) -> None:
                async with s.post(f"{base}/{jti}/ack") as r:
                    if r.status != 200:
                        raise BenchError(f"es ack {jti}: HTTP {r.status}: {await r.text()}")
                acked.add(jti)
            await asyncio.gather(*(ack(m["id"]) for m in msgs))


def _rows(db: Path, sql: str) -> list[Any]:
    """One read-only query of a node's database (the node keeps writing it meanwhile)."""
    con = _ro(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


async def _wait_delivered(ctx: _Ctx, n: int, sent: dict[str, float]) -> tuple[float, list[float]]:
    """Wait until all ``n`` are in es's inbox; return the last delivered_at and each message's latency."""
    while True:
        _remaining(ctx, "waiting for delivery at es")
        got = {j: t for j, t in ctx.rows("es", "SELECT jti, delivered_at FROM inbox") if j in sent}
        ctx.progress("delivered at es", len(got), n)
        if len(got) >= n:
            return max(got.values()), [(got[j] - sent[j]) * 1000 for j in got]
        await asyncio.sleep(0.1)


async def _wait_receipts(ctx: _Ctx, sent: dict[str, float]) -> tuple[int, float]:
    """Wait until every message in ``sent`` is ``delivered`` at mx (its receipt is back); return how many
    and when the last of them got there (``messages.updated_at``)."""
    while True:
        _remaining(ctx, "waiting for receipts at mx")
        back = [t for j, t in ctx.rows("mx", "SELECT jti, updated_at FROM messages WHERE state = 'delivered'")
                if j in sent]
        ctx.progress("receipts back at mx", len(back), len(sent))
        if len(back) >= len(sent):
            return len(back), max(back)
        await asyncio.sleep(0.1)


async def _traza(ctx: _Ctx, n: int, size: int) -> dict[str, Any]:
    t0, sent = await _feed(ctx, n, size, concurrency=32)
    drain = asyncio.create_task(_drain_inbox(ctx, n))
    last, lat = await _wait_delivered(ctx, n, sent)
    await drain
    receipts, back = await _wait_receipts(ctx, sent)
    lat.sort()
    return {"eps": n / (last - t0), "p50": statistics.median(lat), "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "receipts": receipts, "sent": sent, "round_trip_eps": n / (back - t0)}


def _pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank below (the p99 of 200 values is the 198th)."""
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


async def _offer(ctx: _Ctx, n: int, size: int, rate: float) -> dict[str, float]:
    """Open loop: message ``i`` is submitted at ``start + i / rate`` whether or not earlier ones were answered
    (each in its own task), so a slow node makes messages wait instead of slowing the offer. Returns each
    message's *scheduled* send time: latency is counted from when the message was due, not from when a busy
    client got round to it (no coordinated omission)."""
    node = ctx.fed.nodes["mx"]
    url = f"https://127.0.0.1:{node.local_port}/local/v1/messages"
    body = notice(size)
    due: dict[str, float] = {}
    conn = aiohttp.TCPConnector(ssl=_client_ssl(ctx.fed, "mx", "system"), limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=_remaining(ctx, "offering"))) as s:
        async def submit(at: float) -> None:
            async with s.post(url, data=body, headers={"Content-Type": STANDARD}) as r:
                doc = await r.json(content_type=None)
                if r.status != 201:
                    raise BenchError(f"mx refused a bench message: HTTP {r.status}: {doc}")
            due[doc["id"]] = at
            ctx.progress(f"offering {rate:g}/s", len(due), n)

        start = time.time() + 0.05
        tasks = []
        for i in range(n):
            at = start + i / rate
            await asyncio.sleep(max(0.0, at - time.time()))
            _remaining(ctx, f"offering {rate:g} messages/s")
            tasks.append(asyncio.create_task(submit(at)))
        await asyncio.gather(*tasks)
    return due


async def _at_rate(ctx: _Ctx, n: int, size: int, rate: float) -> dict[str, Any]:
    """The steady-rate phase: ``n`` messages offered at ``rate``/s, acked at es so receipts flow back; the
    end-to-end latency (due time → ``inbox.delivered_at`` at es) and each hop's (``messages.received_at``
    at one node → at the next; at mx it is when mx stored the submission)."""
    drain = asyncio.create_task(_drain_inbox(ctx, n))
    try:
        due = await _offer(ctx, n, size, rate)
        _last, _lat = await _wait_delivered(ctx, n, due)
        await drain
    finally:
        drain.cancel()
    await _wait_receipts(ctx, due)
    es = dict(ctx.rows("es", "SELECT jti, delivered_at FROM inbox"))
    e2e = [(es[j] - t) * 1000 for j, t in due.items()]
    seen = {node: dict(ctx.rows(node, "SELECT jti, received_at FROM messages")) for node in ROUTE}
    hops: dict[str, list[float]] = {}
    for (a, b), name in zip(itertools.pairwise(ROUTE), HOPS, strict=True):
        hops[name] = [(seen[b][j] - seen[a][j]) * 1000 for j in due]
    return {"p50": _pct(e2e, 0.5), "p99": _pct(e2e, 0.99),
            "hop_p50": {h: round(_pct(v, 0.5), 2) for h, v in hops.items()},
            "hop_p99": {h: round(_pct(v, 0.99), 2) for h, v in hops.items()}}


async def _null_relay(ctx: _Ctx, envelopes: list[bytes]) -> float:
    """Forward the envelopes mx → latam-hub → eu-hub → es through plain aiohttp servers holding the nodes'
    TLS certificates: no checks, no storage. Returns envelopes per second."""
    fed = ctx.fed
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []
    received = 0

    def forwarder(nxt: str | None, sender: str) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        sess = None
        if nxt is not None:
            sess = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_client_ssl(fed, sender, None), limit=8))
            sessions.append(sess)
            url = f"https://127.0.0.1:{fed.nodes[nxt].peer_port}/v1/envelopes"

        async def handle(request: web.Request) -> web.Response:
            nonlocal received
            body = await request.read()
            if sess is None:
                received += body.count(b'"token"')
                return web.Response(status=200, body=b"{}", content_type="application/json")
            async with sess.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                data = await r.read()
                return web.Response(status=r.status, body=data, content_type="application/json")
        app.router.add_post("/v1/envelopes", handle)
        return app

    hops = ROUTE[1:]
    for i, node in enumerate(hops):
        nxt = hops[i + 1] if i + 1 < len(hops) else None
        runner = web.AppRunner(forwarder(nxt, node), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", fed.nodes[node].peer_port, ssl_context=_server_ssl(fed, node)).start()
        runners.append(runner)
    try:
        batches = [b'{"envelopes":[' + b",".join(envelopes[i:i + BATCH]) + b"]}" for i in range(0, len(envelopes), BATCH)]
        url = f"https://127.0.0.1:{fed.nodes['latam-hub'].peer_port}/v1/envelopes"
        conn = aiohttp.TCPConnector(ssl=_client_ssl(fed, "mx", None), limit=4)
        async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=_remaining(ctx, "null relay"))) as s:
            async def post(b: bytes) -> None:
                async with s.post(url, data=b, headers={"Content-Type": "application/json"}) as r:
                    if r.status != 200:
                        raise BenchError(f"null relay: HTTP {r.status}: {(await r.read())[:200]!r}")
            t0 = time.perf_counter()
            sem = asyncio.Semaphore(4)

            async def bounded(b: bytes) -> None:
                async with sem:
                    await post(b)
            await asyncio.gather(*(bounded(b) for b in batches))
            dt = time.perf_counter() - t0
        if received != len(envelopes):
            raise BenchError(f"null relay: {received} of {len(envelopes)} envelopes reached the end")
        return len(envelopes) / dt
    finally:
        for sess in sessions:
            await sess.close()
        for runner in runners:
            await runner.cleanup()


def _sig_keys(fed: Federation) -> dict[str, tuple[SigningKey, Any]]:
    """Each route node's signing key (algorithm as published in the manifest) and its verifier."""
    manifest = json.loads((fed.root / "pki" / "published" / "manifest.json").read_text())
    fd = FederationDir(fed.root / "pki")
    out: dict[str, tuple[SigningKey, Any]] = {}
    for node in manifest["nodes"]:
        if node["id"] not in ROUTE:
            continue
        pem = fd.node_files(node["id"]).sig_key.read_bytes()
        for k in node["keys"]:
            if k.get("use") == "sig" and k.get("alg") in ("EdDSA", "ES256"):
                try:
                    key = SigningKey.from_pem(k["kid"], k["alg"], pem)
                except ValueError:
                    continue
                out[node["id"]] = (key, verifier_for(key.alg, key.public_jwk()))
    missing = set(ROUTE) - set(out)
    if missing:
        raise BenchError(f"manifest: no usable sig key for {sorted(missing)}")
    return out


def _enc_key(fed: Federation) -> hpke.EncKey:
    manifest = json.loads((fed.root / "pki" / "published" / "manifest.json").read_text())
    data = FederationDir(fed.root / "pki").node_files("es").enc_key.read_bytes()
    for node in manifest["nodes"]:
        if node["id"] == "es":
            for k in node["keys"]:
                if k.get("use") == "enc" and k.get("kem"):
                    key = hpke.EncKey.from_private_bytes(k["kid"], k["kem"], data)
                    if key.public_b64() == k["public_key"]:
                        return key
    raise BenchError("manifest: no enc key of es matches its private key")


def crypto_floor(fed: Federation, size: int, rounds: int = 200) -> tuple[float, float]:
    """Envelopes per second all cores would reach doing only the route's signature, verification and HPKE
    operations (message out and receipt back), timed on one core and multiplied by os.cpu_count(); and the
    CPU seconds that work takes per message (the per-envelope protocol, version 1).

    Per direction over origin → hub → hub → recipient: the origin signs the token; each hub verifies
    the token and the hops so far, signs its hop and an ack, and verifies the next node's ack; the
    recipient verifies the token and both hops and signs an ack; the sender verifies the first ack.
    That is 6 signatures and 9 verifications per direction; the message adds one HPKE seal and open."""
    keys = _sig_keys(fed)
    enc = _enc_key(fed)
    tok = b"e" * 120 + b"." + b"c" * 380  # the size of a JWS signing input (header.claims)
    payload = notice(size)
    info = b"traza bench"
    sigs = {n: k.sign(tok) for n, (k, _v) in keys.items()}

    def one_direction(path: tuple[str, ...], encrypted: bool) -> None:
        origin, *hubs, rcpt = path
        keys[origin][0].sign(tok)
        if encrypted:
            ct = hpke.seal(enc.kem, enc.public_b64(), payload, info)
        hop_signers: list[str] = []
        for hub in hubs:
            keys[origin][1](tok, sigs[origin])
            for h in hop_signers:
                keys[h][1](tok, sigs[h])
            keys[hub][0].sign(tok)  # hop
            keys[hub][0].sign(tok)  # ack to the previous node
            hop_signers.append(hub)
        keys[origin][1](tok, sigs[origin])
        for h in hop_signers:
            keys[h][1](tok, sigs[h])
        if encrypted:
            enc.open(ct, info)
        keys[rcpt][0].sign(tok)  # ack
        for nxt in path[1:]:  # each sender verifies the ack of the node it sent to
            keys[nxt][1](tok, sigs[nxt])

    for _ in range(10):
        one_direction(ROUTE, True)
    t0 = time.process_time()
    for _ in range(rounds):
        one_direction(ROUTE, True)
        one_direction(tuple(reversed(ROUTE)), False)
    per = (time.process_time() - t0) / rounds
    return (os.cpu_count() or 1) / per, per


def bracketed(*timings: tuple[float, float]) -> tuple[float, float]:
    """The crypto floor over a phase from :func:`crypto_floor` timings taken around it: the mean of their
    CPU seconds per message (the machine's speed on average over the phase), and the envelopes per
    second all cores would reach at that cost."""
    if not timings:
        raise ValueError("bracketed() needs at least one crypto_floor timing")
    per = sum(p for _eps, p in timings) / len(timings)
    return (os.cpu_count() or 1) / per, per


STORES = ("sqlite", "postgresql")


def _on_postgresql(fed: Federation, replica_ports: list[int]) -> tuple[Any, dict[str, str]]:
    """Start a throw-away PostgreSQL server, give every node a database on it (and latam-hub its second
    replica on ``replica_ports``, if given); the server and each node's URL."""
    from gateway.store.pgserver import Cluster

    try:
        cluster = Cluster(fsync=True)
    except FileNotFoundError as exc:
        raise BenchError(f"--store postgresql: {exc}") from None
    urls = {}
    for node in list(fed.nodes):
        urls[node] = cluster.create_database(node.replace("-", "_"))
        set_store(fed.nodes[node], {"url": urls[node]})
    if replica_ports:
        fed.nodes["latam-hub-b"] = add_replica(fed.nodes["latam-hub"], "latam-hub-b", replica_ports,
                                               {"url": urls["latam-hub"], "blob_dir": str(fed.root / "latam-shared")})
    return cluster, urls


def _federation(workdir: Path, replicas: int, batch: bool = True) -> tuple[Federation, list[int]]:
    """The four nodes (advertising batch signatures or not); with two replicas, latam-hub with two
    endpoints and the ports of the second."""
    specs = [dataclasses.replace(s, batch=batch) for s in FOUR]
    if replicas == 1:
        return Federation(workdir, specs, log_format="json"), []
    # build order: hubs by id (eu-hub, latam-hub), then es, mx: latam-hub's peer port is the fourth; the
    # second replica's address is taken now and given to add_replica (the last three)
    ports = free_ports(15)
    fed = Federation(workdir, specs, log_format="json", ports=ports[:12],
                     endpoints={"latam-hub": [f"https://127.0.0.1:{ports[3]}", f"https://127.0.0.1:{ports[12]}"]})
    return fed, ports[12:]


def check_args(messages: int, size: int, store: str = "sqlite", replicas: int = 1, rate: float | None = None) -> None:
    """BenchUsage naming the first bad argument of :func:`run`."""
    if messages < 1 or size < 1:
        raise BenchUsage(f"--messages and --size must be positive (got {messages}, {size})")
    if rate is not None and not rate > 0:
        raise BenchUsage(f"--rate must be a positive number of messages per second (got {rate:g})")
    if store not in STORES:
        raise BenchUsage(f"--store {store!r}: one of {', '.join(STORES)}")
    if replicas not in (1, 2) or (replicas == 2 and store != "postgresql"):
        raise BenchUsage(f"--replicas {replicas}: 1, or 2 with --store postgresql (replicas share a database)")


def run(messages: int, size: int, timeout: float = 600.0, workdir: Path | None = None,
        progress: Progress | None = None, store: str = "sqlite", replicas: int = 1, rate: float | None = None,
        batch: bool = True) -> dict[str, Any]:
    """Run the whole benchmark; returns the SPEC §11 JSON object. Stops every process it started.
    ``progress(phase, done, total)`` follows it: nodes started, the crypto floor (timed before and after
    the as-fast-as-possible phase), messages sent, delivered, receipts, the null relay. ``store``: every
    node on SQLite or on PostgreSQL (module docstring); ``replicas``: latam-hub's (2 needs PostgreSQL).

    After the as-fast-as-possible phase, ``messages`` more are offered open loop at ``rate`` per second
    (default: half of the round trips per second just measured, ``round_trip_eps``) on the same nodes, for the latency at a steady rate.
    ``batch``: the four nodes advertise batch signatures (protocol 1.1, docs/protocol.md); False runs them
    as version-1 nodes (one hop record and one ack signed per envelope and hop)."""
    report = progress or no_progress
    check_args(messages, size, store, replicas, rate)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="traza-bench-")
        workdir = Path(tmp.name)
    cluster = None
    try:
        fed, replica_ports = _federation(workdir, replicas, batch)
        urls = None
        if store == "postgresql":
            cluster, urls = _on_postgresql(fed, replica_ports)
        ctx = _Ctx(fed, time.monotonic() + timeout, report, urls)
        report(f"starting {len(fed.nodes)} nodes", 0, len(fed.nodes))
        # CPU of the four node processes during the Traza phase only (start-up excluded), read from
        # /proc/<pid>/stat: RUSAGE_CHILDREN would count them only after they exit, start-up included.
        fed.start_all()
        report(f"starting {len(fed.nodes)} nodes", len(fed.nodes), len(fed.nodes))
        pids = [p.pid for p in fed.procs.values()]
        try:
            # the crypto floor is timed right before and right after the measured phase (the nodes idle),
            # not once at the end: this VM's speed drifts within a run (docs/benchmark.md, "Session 11")
            report("crypto floor", 0, 2)
            floor_before = crypto_floor(fed, size)
            report("crypto floor", 1, 2)
            stat0 = proc_cpu(pids)
            res = asyncio.run(_traza(ctx, messages, size))
            stat1 = proc_cpu(pids)
            floor_after = crypto_floor(fed, size)
            report("crypto floor", 2, 2)
            rows = ctx.rows("mx", "SELECT jti, envelope FROM envelopes")
            envs = [bytes(e) for j, e in rows if j in res["sent"]]
            # half the maximum with receipts on: the round trips (message there, receipt back) sustained
            offered = round(res["round_trip_eps"] / 2, 1) if rate is None else rate
            paced = asyncio.run(_at_rate(ctx, messages, size, offered))
            rss = _peak_rss_mib(pids)
        finally:
            fed.stop_all()
        cpu = stat1 - stat0
        report("null relay", 0, 1)
        null_eps = asyncio.run(_null_relay(ctx, envs))
        report("null relay", 1, 1)
        floor, floor_cpu = bracketed(floor_before, floor_after)
        eps = res["eps"]
        return {"messages": messages, "size": size, "null_relay_eps": round(null_eps, 1), "traza_eps": round(eps, 1),
                "ratio": round(eps / null_eps, 4), "floor_eps": round(floor, 1), "floor_ratio": round(eps / floor, 4),
                "p50_ms": round(res["p50"], 2), "p99_ms": round(res["p99"], 2),
                "cpu_us_per_envelope": round(cpu * 1e6 / messages, 1), "peak_rss_mib": round(rss, 1),
                "floor_eps_v1": round(floor, 1), "cpu_floor_ratio": round(cpu / messages / floor_cpu, 3),
                "rate": offered, "p50_ms_at_rate": round(paced["p50"], 2), "p99_ms_at_rate": round(paced["p99"], 2),
                "hop_p50_ms_at_rate": paced["hop_p50"], "hop_p99_ms_at_rate": paced["hop_p99"],
                "round_trip_eps": round(res["round_trip_eps"], 1)}
    finally:
        if cluster is not None:
            cluster.stop()
        if tmp is not None:
            tmp.cleanup()


def proc_cpu(pids: list[int]) -> float:
    """User + system CPU seconds of the running processes (from /proc/<pid>/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total
