"""`traza manifest` verbs: sign, verify, bump (start a new version). Thin over ``gateway.trust.pki``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from gateway.cli.pki import failures
from gateway.core.timeutil import parse_rfc3339
from gateway.failures import CheckFailed
from gateway.trust.pki import FederationDir, federation_summary
from gateway.trust.trusted import ManifestRejected


def cmd_sign(args: argparse.Namespace) -> int:
    with failures():
        res = FederationDir(args.dir).sign(args.authority, now=time.time())
    for kid in res.signed:
        print(f"{kid} signed manifest version {res.version}")
    for kid in res.already:
        print(f"{kid} had already signed manifest version {res.version}")
    print(f"manifest version {res.version}: {res.status}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    now = time.time()
    fd = FederationDir(args.dir)
    with failures():
        try:
            res = fd.verify(now=now, anchor=args.anchor)
        except ManifestRejected as exc:
            hint = ""
            if "0 valid signature(s)" in exc.reason and "no signatures" in exc.reason:
                hint = " (run `traza manifest sign DIR --authority NAME`)"
            raise CheckFailed(f"manifest verify {fd.root}: {exc.reason}{hint}") from None
    fed = res.federation
    lines = federation_summary(fed)
    days = (parse_rfc3339(fed.manifest.expires_at) - now) / 86400
    if args.json:
        m = fed.manifest
        print(json.dumps({
            "ok": True, "federation": m.federation, "version": m.version, "issued_at": m.issued_at,
            "expires_at": m.expires_at, "expires_in_days": round(days, 1),
            "nodes": [{"id": n.id, "kind": n.kind, "country": n.country, "hub": n.hub} for n in m.nodes],
            "authorities": [k.kid for k in m.authorities.keys], "threshold": res.trusted.threshold,
            "valid_signatures": res.trusted.valid, "signatures": res.signatures,
            "rotation": None if res.new is None else {"valid_signatures": res.new.valid, "threshold": res.new.threshold},
            "revoked": {"kids": len(m.revoked.kids), "cert_serials": len(m.revoked.cert_serials)},
            "anchor": str(res.anchor)}, ensure_ascii=False))
        return 0
    print(f"manifest OK: {lines[0]}")
    for line in lines[1:]:
        print(f"  {line}")
    print(f"  signatures: {res.trusted.valid} valid of threshold {res.trusted.threshold} "
          f"({res.signatures} in manifest.sig); expires in {days:.1f} days")
    if res.new is not None:
        print(f"  authority rotation: {res.new.valid} valid of the new threshold {res.new.threshold}")
    print(f"  trust anchor: {res.anchor}")
    return 0


def cmd_bump(args: argparse.Namespace) -> int:
    with failures():
        v = FederationDir(args.dir).bump(now=time.time(), days=args.days)
    print(f"started manifest version {v} (unsigned; sign it with the authorities' threshold)")
    return 0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "manifest", help="sign and check the federation manifest", description="Sign and check the manifest."
    )
    verbs = p.add_subparsers(dest="manifest_verb", metavar="VERB", required=True)

    q = verbs.add_parser("sign", help="add an authority's signature to manifest.sig",
                         description="Add an authority's signature to DIR/manifest.sig (idempotent).")
    q.add_argument("dir", type=Path, metavar="DIR")
    q.add_argument("--authority", required=True, help="authority name, e.g. eu")
    q.set_defaults(func=cmd_sign)

    q = verbs.add_parser("verify", help="check manifest.json and manifest.sig against the trust anchor",
                         description="Check DIR/manifest.json and DIR/manifest.sig against the trust anchor "
                                     "with every SPEC §2 rule; exit 1 naming what failed.")
    q.add_argument("dir", type=Path, metavar="DIR")
    q.add_argument("--anchor", type=Path, help="trust anchor file (default DIR/trust-anchor.json)")
    q.add_argument("--json", action="store_true",
                   help="print the verified manifest's summary as one JSON object (a failed check: one line on "
                        "stderr, exit 1)")
    q.set_defaults(func=cmd_verify)

    q = verbs.add_parser("bump", help="start a new manifest version (renewal, before changes)",
                         description="Start a new version: version+1, issued now, new expiry, no signatures.")
    q.add_argument("dir", type=Path, metavar="DIR")
    q.add_argument("--days", type=int, help="validity in days (default: the federation's, 90)")
    q.set_defaults(func=cmd_bump)
