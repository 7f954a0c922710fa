"""Crash test (issue 4): kill -9 the relaying hub while 2,000 messages flow mx → latam-hub → eu-hub → es,
restart it, and check every message reaches es's inbox exactly once and every node's audit log verifies.

The design under test: a node acks an envelope only after it is committed, and dedupes by jti, so a crash
may cause re-sends but never a loss or a second inbox entry."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import pytest
from fedproc import Federation  # tests/e2e helper

STANDARD = "application/vnd.traza.message+json"
TOTAL = 2000
KILL_AFTER = 700  # submissions accepted by mx before latam-hub is killed
CONCURRENCY = 24


def _ssl_context(fed: Federation, node: str) -> ssl.SSLContext:
    cfg = fed.config(node)
    manifest = json.loads(cfg.resolve(cfg.trust.manifest).read_text())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata="\n".join(manifest["tls_ca"]))
    assert cfg.client.system_cert and cfg.client.system_key
    ctx.load_cert_chain(str(cfg.resolve(cfg.client.system_cert)), str(cfg.resolve(cfg.client.system_key)))
    return ctx


async def _submit_all(fed: Federation, node: str, to: str, n: int, progress: list[str]) -> list[str]:
    """POST ``n`` notices to ``node``'s local API over a pooled TLS session; returns the message ids."""
    url = f"https://{fed.config(node).listen.local}/local/v1/messages"
    sem = asyncio.Semaphore(CONCURRENCY)
    connector = aiohttp.TCPConnector(ssl=_ssl_context(fed, node), limit=CONCURRENCY)

    async def one(session: aiohttp.ClientSession, i: int) -> str:
        msg = {"type": "notice", "to": to, "handling": "H1", "classification": "BASIC_PROTECTION_LEVEL",
               "purpose": "INVESTIGATION", "body": {"title": f"crash test {i}", "text": f"notice number {i}"}}
        async with sem:
            for attempt in range(5):
                async with session.post(url, data=json.dumps(msg).encode(),
                                        headers={"Content-Type": STANDARD}) as resp:
                    doc = await resp.json(content_type=None)
                    if resp.status == 201:
                        progress.append(doc["id"])
                        return str(doc["id"])
                    if resp.status not in (429, 503) or attempt == 4:
                        raise AssertionError(f"submit {i} to {node}: HTTP {resp.status} {doc}")
                await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        return list(await asyncio.gather(*(one(session, i) for i in range(n))))


def _inbox_jtis(fed: Federation, node: str) -> list[str]:
    db = fed.nodes[node].data_dir / "node.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [r[0] for r in con.execute("SELECT jti FROM inbox")]
    finally:
        con.close()


def _submitted(th: threading.Thread, result: dict[str, object], total: int, timeout: float) -> set[str]:
    """The ids the submitting thread got back, once it has finished: ``total`` of them, all distinct."""
    th.join(timeout=timeout)
    assert not th.is_alive(), f"submissions did not finish within {timeout:g} s"
    if "error" in result:
        raise AssertionError(f"submitting failed: {result['error']!r}")
    ids = result["ids"]
    assert isinstance(ids, list) and len(ids) == total and len(set(ids)) == total
    return set(ids)


def _inbox_when_complete(fed: Federation, node: str, want: set[str], timeout: float) -> list[str]:
    """``node``'s inbox once it holds every id in ``want`` (or after ``timeout`` s), read again 2 s later
    so that late re-sends land before anything is counted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not want <= set(_inbox_jtis(fed, node)):
        time.sleep(0.5)
    time.sleep(2.0)
    return _inbox_jtis(fed, node)


@pytest.mark.slow
def test_hub_kill_9_mid_flow_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    t_start = time.monotonic()
    fed = Federation(tmp_path, limits={"retry_min": 0.2, "retry_max": 2.0, "checkpoint_interval": 1.0})
    try:
        fed.start_all()
        progress: list[str] = []
        result: dict[str, object] = {}

        def submitter() -> None:
            try:
                result["ids"] = asyncio.run(_submit_all(fed, "mx", "es", TOTAL, progress))
            except BaseException as exc:  # reported by the main thread
                result["error"] = exc

        th = threading.Thread(target=submitter, daemon=True)
        th.start()
        fed.wait_for(lambda: len(progress) >= KILL_AFTER or not th.is_alive(), timeout=90, interval=0.05)
        assert th.is_alive(), f"all submissions finished before the kill ({result.get('error')!r})"
        # the hub should be mid-relay: some (not all) of the submitted messages already past it
        fed.stop("latam-hub", signal.SIGKILL)
        at_kill = (len(progress), len(_inbox_jtis(fed, "es")))
        print(f"latam-hub killed with {at_kill[0]} submitted at mx and {at_kill[1]} in es's inbox")
        time.sleep(1.0)  # mx keeps accepting and queueing while its next hop is down
        fed.start("latam-hub")
        want = _submitted(th, result, TOTAL, timeout=120)
        got = _inbox_when_complete(fed, "es", want, timeout=180)
        missing = want - set(got)
        dupes = {j for j in got if got.count(j) > 1} if len(got) != len(set(got)) else set()
        assert not missing, f"{len(missing)} of {TOTAL} messages never reached es (e.g. {sorted(missing)[:3]})"
        assert not dupes, f"{len(dupes)} messages are in es's inbox more than once (e.g. {sorted(dupes)[:3]})"
        assert set(got) == want, f"es's inbox holds unexpected ids: {sorted(set(got) - want)[:3]}"

        # every node's audit log (including the hub's, which was killed mid-write) verifies
        fed.stop_all()
        for node, n in fed.nodes.items():
            r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "audit", "verify", "--db",
                                str(n.data_dir / "node.db"), "--no-progress"],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, f"audit verify {node}: {r.stdout}{r.stderr}"
    finally:
        fed.stop_all()
        print(f"crash test took {time.monotonic() - t_start:.1f} s")
