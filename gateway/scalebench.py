"""`traza bench --nodes N --messages M` (SPEC §11, 1.1): a federation of N real ``traza run`` processes on
127.0.0.1, M messages between random pairs of national nodes each answered by its receipt, then an idle
minute; every figure is measured on the running processes (docs/scale.md).

The federation: eu-hub and latam-hub; mx (behind latam-hub), es and the lost/stolen firearms registry
(a service node, behind eu-hub); then American states behind latam-hub and EU member states behind
eu-hub, in turn (a second node of a country, e.g. ``co-2``, once every country is used). National nodes
deliver to a drop folder (SPEC §6), so each message reaches its national system and is receipted without
the bench polling N inboxes.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from adapters.standard import MEDIA_TYPE as STANDARD
from gateway.benchmark import BenchError, BenchUsage, Progress, no_progress, notice, proc_cpu
from gateway.core.note import NoteError, cosignature_timestamp, node_of_origin, parse_note
from gateway.demo.procs import Federation
from gateway.localfed import NodeSpec
from gateway.national.client import local_tls
from gateway.ports import LISTEN_BASE, NoFreePorts, ephemeral_range, listen_ports

KEYS = ("nodes", "messages", "delivered", "ready_s", "traza_eps", "p50_ms", "p99_ms", "rss_mib_per_node",
        "hub_cpu_ms_per_message", "hub_bytes_per_message", "manifest_poll_bytes_per_node_min",
        "witness_fresh_ratio")
HUBS = ("eu-hub", "latam-hub")
REGISTRY = "arms-registry"
# EU member states after Spain (the 27 with it), and American states after Mexico (AMERIPOL's area)
EU = ("IT", "DE", "AT", "BE", "RO", "FR", "NL", "PT", "PL", "SE", "FI", "DK", "IE", "GR", "CZ", "SK", "HU", "SI",
      "HR", "BG", "LT", "LV", "EE", "LU", "MT", "CY")
AMERICAS = ("CO", "AR", "BR", "CL", "PE", "EC", "BO", "PY", "UY", "VE", "CR", "PA", "GT", "HN", "SV", "NI", "DO",
            "CU", "HT", "JM", "TT", "BS", "BB", "BZ", "GY", "SR", "CA", "US", "GD", "LC")
MIN_NODES = 4
CONCURRENCY = 16  # submissions in flight when --rate is 0



def max_nodes() -> int:
    """Three listening ports per node below the local port range (from LISTEN_BASE), and about three
    connections per node in it."""
    lo, hi = ephemeral_range()
    return min((lo - LISTEN_BASE) // 3, (hi - lo + 1) // 3)


def check_args(nodes: int, messages: int, limit: int | None = None) -> None:
    limit = max_nodes() if limit is None else limit
    if nodes < MIN_NODES:
        raise BenchUsage(f"--nodes {nodes}: at least {MIN_NODES} (two hubs and two national nodes)")
    if nodes > limit:
        lo, hi = ephemeral_range()
        raise BenchUsage(f"--nodes {nodes}: at most {limit} on this machine (3 listening ports per node from "
                         f"{LISTEN_BASE} to {lo - 1}, about 3 connections per node in the local port range {lo}-{hi})")
    if messages < 1:
        raise BenchUsage(f"--messages {messages}: at least 1")


def federation(n: int, drop_root: Path) -> list[NodeSpec]:
    """The ``n`` nodes (see the module's text); national nodes deliver to ``drop_root/<id>``."""

    def national(nid: str, country: str, hub: str) -> NodeSpec:
        return NodeSpec(nid, "national", country, hub=hub,
                        delivery={"mode": "drop", "drop_dir": str(drop_root / nid), "poll_seconds": 1.0})

    specs = [NodeSpec("eu-hub", "hub", "NL", name="EU hub"), NodeSpec("latam-hub", "hub", "CO", name="Latin-American hub"),
             national("mx", "MX", "latam-hub"), national("es", "ES", "eu-hub")]
    if n > len(specs):
        specs.append(NodeSpec(REGISTRY, "service", "NL", hub="eu-hub", name="Lost and stolen firearms registry"))
    used: dict[str, int] = {"mx": 1, "es": 1}
    i = 0
    while len(specs) < n:
        country, hub = (AMERICAS[(i // 2) % len(AMERICAS)], "latam-hub") if i % 2 == 0 else \
            (EU[(i // 2) % len(EU)], "eu-hub")
        i += 1
        base = country.lower()
        used[base] = used.get(base, 0) + 1
        specs.append(national(base if used[base] == 1 else f"{base}-{used[base]}", country, hub))
    return specs


def witnesses(specs: list[NodeSpec]) -> dict[str, list[str]]:
    """Each node's witnesses (SPEC §7.3: its directly linked peers): a hub's nodes and the other hub; a
    node's hub."""
    out: dict[str, list[str]] = {}
    for s in specs:
        if s.kind == "hub":
            out[s.id] = sorted([o.id for o in specs if o.hub == s.id] + [h for h in HUBS if h != s.id])
        else:
            assert s.hub is not None
            out[s.id] = [s.hub]
    return out


def pairs(specs: list[NodeSpec], m: int, seed: int) -> list[tuple[str, str]]:
    """``m`` (from, to) pairs of distinct national nodes, uniformly at random (within a hub and across)."""
    nationals = [s.id for s in specs if s.kind == "national"]
    rnd = random.Random(seed)
    return [tuple(rnd.sample(nationals, 2)) for _ in range(m)]  # type: ignore[misc]


def _ro_rows(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def stored_bytes(data_dir: Path) -> tuple[int, int]:
    """What a node keeps in its data folder: (bytes of all its databases' tables and indexes as SQLite's
    ``dbstat`` counts them (payload), bytes of the pages in use (page size x (pages - free pages)))
    summed over every SQLite file, plus the files of its blob stores (in both)."""
    payload = pages = 0
    for f in sorted(data_dir.rglob("*")):
        if not f.is_file() or f.name.endswith(("-wal", "-shm", ".lock")):
            continue
        with f.open("rb") as fh:
            head = fh.read(16)
        if head == b"SQLite format 3\x00":
            con = sqlite3.connect(f"file:{f}?mode=ro", uri=True, timeout=30)
            try:
                payload += int(con.execute("SELECT coalesce(sum(payload), 0) FROM dbstat").fetchone()[0])
                size = int(con.execute("PRAGMA page_size").fetchone()[0])
                n = int(con.execute("PRAGMA page_count").fetchone()[0])
                free = int(con.execute("PRAGMA freelist_count").fetchone()[0])
                pages += size * (n - free)
            finally:
                con.close()
        elif "blob" in f.relative_to(data_dir).parts[0]:
            payload += f.stat().st_size
            pages += f.stat().st_size
    return payload, pages


def metric(ops_port: int, name: str, label: str = "") -> float:
    """The sum of the series of metric ``name`` on a node's ``/metrics`` (its ops listener) whose labels
    contain ``label`` (e.g. ``status="200"``; all series when empty)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/metrics", timeout=30) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + "{") and label in line) or (not label and line.startswith(name + " ")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _rss_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


@dataclass
class _Run:
    fed: Federation
    specs: list[NodeSpec]
    deadline: float
    progress: Progress
    sent: dict[str, tuple[float, str, str]] = field(default_factory=dict)  # jti -> (time, from, to)
    details: dict[str, Any] = field(default_factory=dict)  # figures beside the SPEC's keys (shown on stderr)

    def remaining(self, what: str) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"bench timed out while {what}")
        return left


async def _send(run: _Run, route: list[tuple[str, str]], size: int, rate: float) -> float:
    """Submit every message at its origin's local API (as its national system); returns the first send time."""
    sessions: dict[str, aiohttp.ClientSession] = {}
    timeout = aiohttp.ClientTimeout(total=run.remaining("sending"))
    for origin in sorted({f for f, _ in route}):
        conn = aiohttp.TCPConnector(ssl=local_tls(run.fed.config(origin), "system"), limit=4)
        sessions[origin] = aiohttp.ClientSession(connector=conn, timeout=timeout)
    bodies = {to: notice(size, to) for to in {t for _, t in route}}
    todo = list(enumerate(route))
    todo.reverse()
    t0 = time.time()
    start = time.monotonic()

    async def worker() -> None:
        while todo:
            i, (frm, to) = todo.pop()
            if rate > 0:
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            node = run.fed.nodes[frm]
            t = time.time()
            async with sessions[frm].post(f"https://127.0.0.1:{node.local_port}/local/v1/messages", data=bodies[to],
                                          headers={"Content-Type": STANDARD}) as r:
                doc = await r.json(content_type=None)
                if r.status != 201:
                    raise BenchError(f"{frm} refused a message to {to}: HTTP {r.status}: {doc}")
            run.sent[str(doc["id"])] = (t, frm, to)
            run.progress("sending", len(run.sent), len(route))

    try:
        workers = CONCURRENCY if rate <= 0 else max(CONCURRENCY, int(rate))
        await asyncio.gather(*(worker() for _ in range(min(workers, len(route)))))
    finally:
        for s in sessions.values():
            await s.close()
    return t0


async def _wait_delivered(run: _Run) -> dict[str, float]:
    """Until every message is in its recipient's drop folder; then each one's ``delivered_at`` there."""
    expect: dict[str, set[str]] = {}
    for jti, (_t, _f, to) in run.sent.items():
        expect.setdefault(to, set()).add(jti)
    found: set[str] = set()
    while True:
        for to, jtis in expect.items():
            folder = Path(run.fed.config(to).resolve(run.fed.config(to).delivery.drop_dir or "")) / "inbox"
            with_files = {p.name.split(".", 1)[0] for p in folder.iterdir()} if folder.is_dir() else set()
            found |= jtis & with_files
        run.progress("delivered", len(found), len(run.sent))
        if len(found) == len(run.sent):
            break
        run.remaining(f"waiting for delivery ({len(found)} of {len(run.sent)} in their recipients' drop folders)")
        await asyncio.sleep(0.2)
    at: dict[str, float] = {}
    for to, jtis in expect.items():
        for jti, t in _ro_rows(run.fed.nodes[to].data_dir / "node.db", "SELECT jti, delivered_at FROM inbox"):
            if jti in jtis:
                at[jti] = float(t)
    return at


async def _wait_receipts(run: _Run) -> None:
    """Until every message's receipt is back at its origin (its state there is ``delivered``)."""
    pending: dict[str, set[str]] = {}
    for jti, (_t, frm, _to) in run.sent.items():
        pending.setdefault(frm, set()).add(jti)
    while True:
        for frm in list(pending):
            done = {j for (j,) in _ro_rows(run.fed.nodes[frm].data_dir / "node.db",
                                          "SELECT jti FROM messages WHERE state = 'delivered'")}
            pending[frm] -= done
            if not pending[frm]:
                del pending[frm]
        left = sum(len(v) for v in pending.values())
        run.progress("receipts back", len(run.sent) - left, len(run.sent))
        if not left:
            return
        run.remaining(f"waiting for receipts ({left} of {len(run.sent)} not back at their origins)")
        await asyncio.sleep(0.5)


def _hub_queues_empty(run: _Run) -> bool:
    return all(not _ro_rows(run.fed.nodes[h].data_dir / "node.db", "SELECT 1 FROM outbox LIMIT 1") for h in HUBS)


def witness_freshness(run: _Run, now: float) -> tuple[int, int]:
    """(fresh, all) (log, witness) pairs: each node's served checkpoint (``GET /v1/audit/checkpoint``) read
    for the newest cosignature of each of its witnesses; fresh when at most 3 x ``witness_refresh`` old."""
    expected = witnesses(run.specs)
    fresh = total = 0
    for nid, wits in expected.items():
        status, doc = run.fed.call(nid, "auditor", "GET", "/v1/audit/checkpoint")
        newest: dict[str, int] = {}
        if status == 200:
            text = doc if isinstance(doc, str) else doc.decode() if isinstance(doc, bytes) else ""
            try:
                note = parse_note(text)
            except NoteError as exc:
                raise BenchError(f"{nid}: its checkpoint does not parse: {exc}") from None
            for sig in note.signatures:
                if len(sig.signature) != 72:
                    continue  # the log's own signature
                try:
                    w = node_of_origin(sig.name)
                except NoteError:
                    w = sig.name
                newest[w] = max(newest.get(w, 0), cosignature_timestamp(sig))
        limit = 3 * run.fed.config(nid).limits.witness_refresh
        for w in wits:
            total += 1
            if w in newest and now - newest[w] <= limit:
                fresh += 1
    return fresh, total


def run(nodes: int, messages: int, *, size: int = 1024, rate: float = 0.0, idle: float = 60.0, seed: int = 1,
        manifest_poll: float = 30.0, timeout: float = 1800.0, workdir: Path | None = None, progress: Progress | None = None,
        details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole run; returns the SPEC §11 (1.1) object (``details``, when given, receives more figures:
    passages per hub, the hubs' disk pages in use per message, the witness pairs counted). Stops every
    process it started; deletes its folder unless ``workdir`` was given."""
    check_args(nodes, messages)
    report = progress or no_progress
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="traza-scale-")
        workdir = Path(tmp.name)
    try:
        report(f"building {nodes} nodes", 0, 1)
        specs = federation(nodes, workdir / "drop")
        try:
            ports = listen_ports(3 * nodes)
        except NoFreePorts as exc:
            raise BenchError(str(exc)) from None
        fed = Federation(workdir, specs, log_format="json", ports=ports,
                         manifest_poll_seconds=manifest_poll)
        report(f"building {nodes} nodes", 1, 1)
        r = _Run(fed, specs, time.monotonic() + timeout, report, details=details if details is not None else {})
        try:
            return _measure(r, nodes, messages, size, rate, idle, seed)
        finally:
            fed.stop_all()
    finally:
        if tmp is not None:
            tmp.cleanup()


def _measure(r: _Run, nodes: int, messages: int, size: int, rate: float, idle: float, seed: int) -> dict[str, Any]:
    fed = r.fed
    phase = f"starting {nodes} nodes"
    r.progress(phase, 0, nodes)
    t = time.monotonic()
    for nid in fed.nodes:
        fed.spawn(nid)
    for i, nid in enumerate(fed.nodes):
        fed.wait_ready(nid, timeout=r.remaining("starting the nodes"))
        r.progress(phase, i + 1, nodes)
    ready_s = time.monotonic() - t
    hubs = {h: fed.procs[h].pid for h in HUBS}
    kept0 = {h: stored_bytes(fed.nodes[h].data_dir) for h in HUBS}
    cpu0 = proc_cpu(list(hubs.values()))
    t_cpu = time.monotonic()

    route = pairs(r.specs, messages, seed)
    t0 = asyncio.run(_send(r, route, size, rate))
    at = asyncio.run(_wait_delivered(r))
    asyncio.run(_wait_receipts(r))
    cpu1 = proc_cpu(list(hubs.values()))
    busy_s = time.monotonic() - t_cpu
    while not _hub_queues_empty(r):
        r.remaining("waiting for the hubs' queues to empty")
        time.sleep(0.2)
    kept1 = {h: stored_bytes(fed.nodes[h].data_dir) for h in HUBS}

    # a message and its receipt pass through one hub (within a hub) or both (across)
    hub_of = {s.id: s.hub for s in r.specs}
    passages = {h: 0 for h in HUBS}
    for _t, frm, to in r.sent.values():
        for h in {hub_of[frm], hub_of[to]}:
            assert h is not None
            passages[h] += 1
    through = sum(passages.values())
    kept = sum(kept1[h][0] - kept0[h][0] for h in HUBS) / through
    disk = sum(kept1[h][1] - kept0[h][1] for h in HUBS) / through
    lat = sorted((at[j] - s[0]) * 1000 for j, s in r.sent.items())
    last = max(at.values())

    # the idle minute: manifest polls served by the hubs (every node polls one: its hub, or the other hub),
    # in the steady state: a node's first poll after its start fetches the whole manifest (it names no ETag
    # yet), so the minute starts once every node has polled
    def polls() -> float:
        return sum(metric(fed.nodes[h].ops_port, "traza_manifest_polls_total") for h in HUBS)

    while (n_polls := polls()) < nodes:
        r.remaining(f"waiting for every node's first manifest poll ({n_polls:.0f} of {nodes})")
        r.progress("first manifest polls", int(n_polls), nodes)
        time.sleep(1.0)
    r.progress("first manifest polls", nodes, nodes)
    whole = [sum(metric(fed.nodes[h].ops_port, f"traza_manifest_{m}_total", 'status="200"') for h in HUBS)
             for m in ("poll_bytes", "polls")]
    r.details["manifest_whole_poll_bytes"] = round(whole[0] / whole[1]) if whole[1] else None
    polled0 = sum(metric(fed.nodes[h].ops_port, "traza_manifest_poll_bytes_total") for h in HUBS)
    quiet0 = {h: stored_bytes(fed.nodes[h].data_dir) for h in HUBS}
    idle_cpu0 = proc_cpu(list(hubs.values()))
    t_idle = time.monotonic()
    while (left := idle - (time.monotonic() - t_idle)) > 0:
        r.remaining("idle")
        r.progress("idle", int(idle - left), int(idle))
        time.sleep(min(1.0, left))
    r.progress("idle", int(idle), int(idle))
    polled1 = sum(metric(fed.nodes[h].ops_port, "traza_manifest_poll_bytes_total") for h in HUBS)
    minutes = (time.monotonic() - t_idle) / 60
    idle_cpu = (proc_cpu(list(hubs.values())) - idle_cpu0) / minutes  # CPU seconds a minute, both hubs, quiet
    quiet1 = {h: stored_bytes(fed.nodes[h].data_dir) for h in HUBS}
    # the hubs' background (witnessing, manifest polls, checkpoints) at the idle rate, taken out of the busy window
    r.details["hub_idle_cpu_ms_per_min"] = round(idle_cpu * 1000, 1)
    r.details["hub_cpu_ms_per_message_less_idle"] = round((cpu1 - cpu0 - idle_cpu * busy_s / 60) * 1000 / through, 3)
    r.details["hub_idle_bytes_per_min"] = {h: round((quiet1[h][0] - quiet0[h][0]) / minutes) for h in HUBS}
    fresh, pairs_n = witness_freshness(r, time.time())
    rss = [_rss_kib(p.pid, "VmHWM") / 1024 for p in fed.procs.values() if p.poll() is None]
    if len(rss) != nodes:
        raise BenchError(f"{nodes - len(rss)} node processes exited during the run (logs in {fed.root})")
    result = {
        "nodes": nodes, "messages": messages, "delivered": len(at),
        "ready_s": round(ready_s, 2),
        "traza_eps": round(messages / max(last - t0, 1e-6), 1),
        "p50_ms": round(statistics.median(lat), 2), "p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 2),
        "rss_mib_per_node": round(statistics.mean(rss), 1),
        "hub_cpu_ms_per_message": round((cpu1 - cpu0) * 1000 / through, 3),
        "hub_bytes_per_message": round(kept),
        "manifest_poll_bytes_per_node_min": round((polled1 - polled0) / nodes / minutes),
        "witness_fresh_ratio": round(fresh / pairs_n, 4),
    }
    r.details.update({"hub_passages": passages, "hub_disk_bytes_per_message": round(disk),
                      "witness_pairs_fresh": fresh, "witness_pairs": pairs_n, "idle_s": round(minutes * 60, 1),
                      "hub_bytes_kept": {h: kept1[h][0] - kept0[h][0] for h in HUBS}})
    return result
