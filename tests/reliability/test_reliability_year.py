"""A federation that lives a year (issue #12, "Done when"): four real nodes (latam-hub, eu-hub, mx, es)
in-process over real mTLS on 127.0.0.1, on one injected clock, through 400 simulated days, a week per
step. Everything an operator does in that year is done with the verbs of `traza pki` / `traza manifest`
on the federation folder (`FederationDir`), with the simulated date as ``now``:

- the TLS certificates (90 days) are renewed when the node's own ``traza_expiry_seconds{what=
  "tls_certificate"}`` (read from ``metrics_text()``, computed on the injected clock) falls under the
  alert's 14 days, and the manifest (90 days) is bumped the same way;
- every node's ``sig``, ``enc`` and ``audit`` keys are rotated once (30-day overlaps), and es's current
  signing key is revoked and replaced;
- the federation CA is rolled over (`new-ca`, `renew-tls` of every node, `retire-ca`);
- the authorities are rotated (a new set, one authority re-keyed), signed by the old and the new set;
- every simulated week mx and es send each other a message, the recipient's national system takes it and
  the origin gets the receipt; a bundle exported on day 1 verifies on day 400 with `traza audit
  verify-bundle` (the CLI, run as a process).

What the clock does and does not cover. Every node takes ``clock=`` (envelopes, keys' validity, manifest
expiry, checkpoints, retries: sim time flows at real speed between steps, plus a week at each step). TLS
certificate validity is checked by OpenSSL, not by Traza: here the certificates are issued on the
simulated dates and each node runs with ``tls_at_clock=True``, which pins OpenSSL's verification time of
every TLS context of the node to the injected clock (``X509_VERIFY_PARAM_set_time``) at each reload (the
manifest poll the test runs after each step). Idle peer connections are closed at each step (a week is far
more than the 45 s keep-alive), so each week's messages make new handshakes, checked at the simulated
date: a certificate left to expire would be refused. Not covered: that production nodes check against the
system clock (they do: nothing pins it there), anything between the weekly steps, clock skew between
nodes, and the real files being copied to other machines (all nodes read the federation folder).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import msgspec
from core.message_examples import example
from kit.nodes import bundle_of, started
from kit.waiting import eventually

from gateway.crypto.pki import cert_info
from gateway.localfed import NodeSpec, build
from gateway.node import Node
from gateway.store import relay as st
from gateway.trust.pki import FederationDir

ROOT = Path(__file__).resolve().parents[2]
DAY = 86400.0
DAYS = 400
STEPS = [*range(0, DAYS, 7), DAYS]  # day 0, 7, ..., 399, then 400
WARN = 14 * DAY  # the alert rule's horizon (deploy/prometheus/alerts.yml)
LIMITS = {"retry_min": 0.05, "retry_max": 0.5, "checkpoint_interval": 0.5}
SPECS = [NodeSpec("latam-hub", "hub", "CO"), NodeSpec("eu-hub", "hub", "NL"),
         NodeSpec("mx", "national", "MX", hub="latam-hub"), NodeSpec("es", "national", "ES", hub="eu-hub",
                                                                     sig_alg="ES256")]
NAMES = [s.id for s in SPECS]
BODY = msgspec.json.encode(example("notice"))


class SimClock:
    """Real time plus an offset that jumps forward: the federation's calendar."""

    def __init__(self) -> None:
        self.start = time.time()
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def day(self) -> float:
        return (self() - self.start) / DAY


def expiry_seconds(node: Node) -> dict[str, float]:
    """``traza_expiry_seconds{what}`` as a Prometheus scrape of the node would read it."""
    text, _ = node.metrics_text()
    out = {}
    for line in text.decode().splitlines():
        if line.startswith("traza_expiry_seconds{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('what="', 1)[1].split('"', 1)[0]] = float(value)
    return out


async def events(node: Node, event: str) -> list[dict[str, Any]]:
    doc = await node.audit_entries({"event": event, "limit": "1000"})
    return [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]


async def in_inbox(node: Node, jti: str) -> bool:
    return any(r[1] == jti for r in await node.inbox_page(0, 10_000))


async def receipted(node: Node, jti: str) -> bool:
    status = await node.message_status(jti)
    return status is not None and status["state"] == "delivered"


async def exchange(a: Node, b: Node) -> str:
    """``a`` sends ``b`` a notice; ``b``'s national system takes it; ``a`` gets the receipt. Its id."""
    jti = await a.submit(mt="notice", to=b.id, body=BODY, system="test")
    await eventually(lambda: in_inbox(b, jti), timeout=30.0)
    assert await b.inbox_ack(jti, "test")
    await eventually(lambda: receipted(a, jti), timeout=30.0)
    return jti


class Operator:
    """The federation's operators: the `traza pki` / `traza manifest` verbs on the folder, dated by the clock."""

    def __init__(self, fd: FederationDir, clock: SimClock) -> None:
        self.fd = fd
        self.clock = clock
        self.log: list[str] = []

    def publish(self, why: str) -> None:
        now = self.clock()
        self.fd.sign("eu", now=now)
        res = self.fd.sign("ameripol", now=now)
        assert res.published, (why, res.status)
        self.log.append(f"day {self.clock.day():.0f}: manifest v{res.version} ({why})")


async def test_a_four_node_federation_lives_400_days_with_renewals_rotations_and_a_ca_rollover(tmp_path):
    t_real = time.monotonic()
    clock = SimClock()
    built = build(tmp_path / "fed", SPECS, limits=LIMITS, manifest_poll_seconds=3600.0, now=clock())
    fd = FederationDir(tmp_path / "fed" / "pki")
    op = Operator(fd, clock)
    first_serials = {n: cert_info(fd.node_files(n).tls_cert.read_bytes()).serial_hex for n in NAMES}
    done: set[str] = set()
    sent: list[tuple[int, str]] = []

    async with AsyncExitStack() as stack:
        nodes: dict[str, Node] = {}
        for n in NAMES:
            nodes[n] = await stack.enter_async_context(
                started(built[n].config, clock=clock, tls_at_clock=True))
        mx, es = nodes["mx"], nodes["es"]

        def once(name: str, day: float) -> bool:
            if clock.day() >= day and name not in done:
                done.add(name)
                return True
            return False

        for week, day in enumerate(STEPS):
            clock.offset = day * DAY
            # --- what the operators do this week -----------------------------------------------------
            for use, day in (("sig", 98), ("enc", 126), ("audit", 154)):
                if once(f"rotate-{use}", day):
                    for n in NAMES:
                        fd.rotate_key(n, use, now=clock(), overlap_days=30)
                    op.publish(f"{use} keys rotated")
            if once("revoke", 196):  # es's signing key is compromised: revoked and replaced at once
                fd.revoke(now=clock(), kid="es/sig/2")
                assert fd.rotate_key("es", "sig", now=clock()).kid == "es/sig/3"
                op.publish("es/sig/2 revoked, es/sig/3")
            if once("new-ca", 238):
                fd.new_ca(now=clock())
                op.publish("CA rollover: second CA")
            if once("rollover-renew", 245):
                for n in NAMES:
                    fd.renew_tls(n, now=clock())
                    op.log.append(f"day {clock.day():.0f}: renew-tls {n} under the new CA")
            if once("retire-ca", 259):
                fd.retire_ca(now=clock())
                op.publish("CA rollover: old CA retired")
            if once("authorities", 301):
                fd.rotate_authorities(["eu", "ameripol", "interpol"], 2, now=clock(), rekey=["eu"])
                op.publish("authorities rotated (eu re-keyed, mx out, interpol in)")
            # what the alerts ask for: traza_expiry_seconds on each node's own (injected) clock
            for n, node in nodes.items():
                exp = expiry_seconds(node)
                if exp["tls_certificate"] < WARN:
                    fd.renew_tls(n, now=clock())
                    op.log.append(f"day {clock.day():.0f}: renew-tls {n} ({exp['tls_certificate'] / DAY:.1f} days left)")
            if min(expiry_seconds(node)["manifest"] for node in nodes.values()) < WARN:
                fd.bump(now=clock())
                op.publish("bump before expiry")
            # --- the nodes: poll (apply the manifest, reload keys and certificates, pin TLS time), and a
            # week's idle connections are long closed
            for node in nodes.values():
                await node.poll_manifest()
                for cl in node.clients.values():
                    await cl.close()
            for n, node in nodes.items():
                assert node.fed.version == nodes["latam-hub"].fed.version, (n, week)
                assert expiry_seconds(node)["tls_certificate"] > 0, (n, week, op.log)
                assert node.is_ready() == (True, "ok"), (n, week)
            # --- a week's traffic, both ways, with receipts ------------------------------------------
            sent.append((week, await exchange(mx, es)))
            sent.append((week, await exchange(es, mx)))
            if week == 0:
                day1 = await eventually(lambda: bundle_of(mx, sent[0][1]), timeout=30.0)
                (tmp_path / "day1.json").write_bytes(day1)
        last = await eventually(lambda: bundle_of(es, sent[-1][1]), timeout=30.0)
        (tmp_path / "day400.json").write_bytes(last)

        # --- day 400: what the year left ----------------------------------------------------------------
        assert clock.day() >= DAYS
        assert len(sent) == 2 * len(STEPS)
        ca2 = (fd.root / "ca" / "ca-2.pem").read_text()
        for n, node in nodes.items():
            kids = node.keyring.kids()
            assert kids["sig"] == [f"{n}/sig/{3 if n == 'es' else 2}"], (n, kids)
            assert kids["enc"][0] == f"{n}/enc/2" and kids["audit"] == [f"{n}/audit/2"], (n, kids)
            rotated = {(e["use"], e["kid"]) for e in await events(node, "key.rotated")}
            assert {u for u, _ in rotated} == {"sig", "enc", "audit", "tls"}, (n, rotated)
            assert node.tls_serial != first_serials[n] and node.tls_kid != f"{n}/tls/1"
            assert "TLS CA 2" in cert_info(node.tls_cert.read_bytes()).issuer
            assert node.fed.manifest.tls_ca == [ca2]
            assert "auth/eu/2" in {k.kid for k in node.trust.anchor.keys}
            assert await node.db.read(st.dead_letters) == []
        assert es.signer.kid == "es/sig/3"
        # TLS certificates were renewed by the expiry alerts (days 77, 154, 231, 322, 399) and the rollover
        assert sum("renew-tls" in line for line in op.log) >= 5 * len(NAMES), op.log

    # the bundle exported on day 1 verifies on day 400, with the CLI, as an auditor would run it
    for name, jti in (("day1.json", sent[0][1]), ("day400.json", sent[-1][1])):
        r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "audit", "verify-bundle",
                            str(tmp_path / name)], capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert r.returncode == 0, (name, r.stdout, r.stderr)
        assert jti in r.stdout, r.stdout
    took = time.monotonic() - t_real
    print(f"400 simulated days in {took:.1f} s real; {len(sent)} messages with receipts; " + "; ".join(op.log))
    assert took < 120, f"the simulated year took {took:.0f} s"
