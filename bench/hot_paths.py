"""CPU per envelope of the relay's pure hot paths, in process (not a test).

    .venv/bin/python bench/hot_paths.py            # a table
    .venv/bin/python bench/hot_paths.py --json     # one JSON object, µs per envelope for each path

`traza bench` runs four node processes on this machine's two cores; its CPU per envelope moves by ±5 %
from run to run as the VM's speed drifts, so a change worth 1–5 % cannot be seen there (docs/benchmark.md,
"Session 10"). This measures the pure code a hub runs for every envelope, on one thread with no I/O, so
that such a change can be measured: each path over a batch of ``--batch`` envelopes (the kit's in-memory
federation: real keys, real signatures, mx → latam-hub → eu-hub → es), ``--repeats`` times, reporting
the lower quartile of the CPU time (``time.process_time``) per envelope. Compare two trees by running it
with each on ``PYTHONPATH`` in turn, alternating.

Paths: ``verify_envelope`` (at eu-hub: the origin token and a batched hop record, the batch signature
checked once per request as a node does), ``verify_ack`` (batched acks, once per batch signature),
``sign_hops`` / ``sign_acks`` (one batch signature and the elements), ``decode_batch`` (the strict JSON of
a ``POST /v1/envelopes`` body), ``stored_reads`` (what the forward loop reads from each stored envelope
it sends: its blob references and its token), ``audit_entries`` (the two entries a hub writes per envelope
relayed, ``envelope.accepted`` and ``envelope.forwarded``: checked, encoded canonically, hashed into the
log's compact range; the SQL insert is not included).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the kit's federation

from kit.federation import KNOWN_TYPES, NOW, batched_traffic

from gateway.audit import log as audit_log
from gateway.core import batchsig, merkle, strictjson
from gateway.core import envelope as envelope_mod
from gateway.core.envelope import (
    append_hops_batched,
    encode_envelope,
    make_acks_batched,
    token_digest,
    verify_ack,
    verify_envelope,
)
from gateway.core.events import EnvelopeAccepted, EnvelopeForwarded, as_entry
from gateway.crypto.keys import verifier_for
from gateway.node import outbound

# a tree from before stored_token (session 10) read a stored envelope's token as it did then
stored_token: Callable[[bytes], str] = getattr(envelope_mod, "stored_token", None) or (
    lambda raw: envelope_mod.decode_envelope(raw).token)

PATHS = ("verify_envelope", "verify_ack", "sign_hops", "sign_acks", "decode_batch", "stored_reads", "audit_entries")


def measure(batch: int, repeats: int) -> dict[str, float]:
    """µs of CPU per envelope for each of :data:`PATHS` (lower quartile over ``repeats``)."""
    t = batched_traffic(batch)
    fed, sent, jtis, acks, hop_items, ack_claims, signer = (t.fed, t.sent, t.jtis, t.acks, t.hop_items, t.ack_claims,
                                                            t.tf.signers["latam-hub"])
    at_eu = [encode_envelope(e) for e in t.at_eu]
    stored = [encode_envelope(e) for e in sent]
    body = b'{"envelopes":[' + b",".join(at_eu) + b"]}"

    def verify_envelopes() -> None:
        seen = batchsig.Seen()
        for raw in at_eu:
            verify_envelope(raw, here="eu-hub", peer="latam-hub", fed=fed, now=NOW, key_verifier=verifier_for,
                            known_types=KNOWN_TYPES, seen=seen)

    def verify_acks() -> None:
        seen = batchsig.Seen()
        for ack, j, e in zip(acks, jtis, sent, strict=True):
            verify_ack(ack, fed=fed, expected_iss="latam-hub", expected_aud="mx", jti=j, token=e.token, now=NOW,
                       key_verifier=verifier_for, seen=seen)

    # the two entries a hub writes for each envelope it relays, as its audit facade stages them
    events = [ev for e, j in zip(sent, jtis, strict=True) for ev in (
        EnvelopeAccepted(jti=j, mt="notice", iss="mx", aud="es", dig=token_digest(e.token), from_="mx",
                         to="eu-hub"),
        EnvelopeForwarded(jti=j, mt="notice", iss="mx", aud="es", dig=token_digest(e.token), from_="latam-hub",
                          to="eu-hub", ack_idx=1234))]

    def audit_entries() -> None:
        cr = merkle.CompactRange()
        for i, ev in enumerate(events):
            entry = {**audit_log.prepare(as_entry(ev)), "idx": i, "ts": "2026-12-07T00:00:00.000000Z", "node": "latam-hub"}
            cr.append(merkle.leaf_hash(audit_log._sorted.encode(entry)))

    def stored_reads() -> None:
        for raw in stored:
            outbound._blob_refs(raw)
            stored_token(raw)

    paths: dict[str, Callable[[], object]] = {
        "verify_envelope": verify_envelopes,
        "verify_ack": verify_acks,
        "sign_hops": lambda: append_hops_batched(hop_items, signer=signer, now=NOW),
        "sign_acks": lambda: make_acks_batched(ack_claims, signer=signer, now=NOW),
        "decode_batch": lambda: strictjson.loads(body, "envelopes"),
        "stored_reads": stored_reads,
        "audit_entries": audit_entries,
    }
    out = {}
    for name in PATHS:
        fn = paths[name]
        fn()  # warm: caches, first-call costs
        times = []
        for _ in range(repeats):
            t0 = time.process_time()
            fn()
            times.append(time.process_time() - t0)
        times.sort()
        out[name] = round(times[len(times) // 4] / batch * 1e6, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--batch", type=int, default=32, help="envelopes per batch (default 32)")
    ap.add_argument("--repeats", type=int, default=40, help="timed repeats of each path (default 40)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if not 1 <= args.batch <= batchsig.MAX_BATCH or args.repeats < 1:
        ap.error(f"--batch must be 1..{batchsig.MAX_BATCH} and --repeats at least 1")
    res = measure(args.batch, args.repeats)
    if args.json:
        print(json.dumps({"batch": args.batch, "repeats": args.repeats, "us_per_envelope": res}))
    else:
        for name, us in res.items():
            print(f"{name:16s} {us:9.2f} µs per envelope")
    return 0


if __name__ == "__main__":
    sys.exit(main())
