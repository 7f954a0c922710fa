"""`traza pki` verbs: create a federation folder, add nodes, issue local certificates, revoke, rotate
node keys and authorities, renew TLS certificates and roll the federation CA over. Thin: the work is in ``gateway.trust.pki``. Private keys are written 0600 and never printed."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.config import ConfigError, load_config, set_client_certificate
from gateway.core.codes import CLASSIFICATIONS
from gateway.crypto.pki import CA_DAYS, MAX_LEAF_DAYS, PkiError
from gateway.failures import CheckFailed, UsageError
from gateway.trust.pki import (
    DEFAULT_POLICY,
    KINDS,
    LOCAL_ROLES,
    OVERLAP_DAYS,
    SIG_ALGS,
    FederationDir,
    FederationDirError,
    FederationUsageError,
)
from gateway.trust.trusted import ManifestRejected

KEM_CHOICES = ("MLKEM768_X25519", "X25519")


@contextmanager
def failures() -> Iterator[None]:
    """Turn trust-layer errors into the CLI's exit statuses (2 usage, 1 failed check)."""
    try:
        yield
    except FederationUsageError as exc:
        raise UsageError(str(exc)) from None
    except FederationDirError as exc:
        raise CheckFailed(str(exc)) from None
    except ManifestRejected as exc:
        raise CheckFailed(exc.reason) from None
    except PkiError as exc:
        raise CheckFailed(str(exc)) from None


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _version_note(version: int, started: bool) -> str:
    if started:
        return f"the draft was signed: started version {version} (signatures cleared, sign it again)"
    return f"draft version {version} (unsigned)"


def cmd_init(args: argparse.Namespace) -> int:
    with failures():
        fd = FederationDir.init(
            args.dir, federation=args.federation, authorities=_names(args.authorities), threshold=args.threshold,
            now=time.time(), sig_alg=args.sig_alg, kem=args.kem, days=args.days,
        )
    print(f"federation {args.federation} created in {fd.root}")
    print(f"  authorities: {', '.join(f'auth/{n}/1' for n in _names(args.authorities))} (threshold {args.threshold})")
    print(f"  trust anchor: {fd.anchor_path}  (install it with every node)")
    print(f"  TLS CA: {fd.ca_cert_path}")
    print(f"  draft manifest: {fd.manifest_path} (version 1, {len(DEFAULT_POLICY)} message types in the default policy)")
    print("next: traza pki add-node DIR NODE ...; then traza manifest sign DIR --authority NAME")
    return 0


def cmd_add_node(args: argparse.Namespace) -> int:
    with failures():
        fd = FederationDir(args.dir)
        files, version, started = fd.add_node(
            args.node, kind=args.kind, country=args.country, endpoint=args.endpoint, now=time.time(),
            hub=args.hub, peers=_names(args.peers or ""), max_classification=args.max_classification,
            sig_alg=args.sig_alg, kem=args.kem, name=args.name, batch=args.batch,
        )
    print(f"node {args.node} ({args.kind}, {args.country.upper()}) added: {_version_note(version, started)}")
    print(f"  keys: {files.sig_kid} ({files.sig_alg}), {files.enc_kid} ({files.kem}), {files.audit_kid}")
    print(f"  TLS certificate: {files.tls_cert}")
    print(f"  local CA: {files.local_ca}; client certificates: {', '.join(sorted(files.clients))}")
    return 0


def cmd_issue_local(args: argparse.Namespace) -> int:
    with failures():
        cert, _key, serial = FederationDir(args.dir).issue_local(args.node, args.role, args.name, now=time.time())
    print(f"local {args.role} certificate for {args.name!r} on {args.node}: {cert} (serial {serial})")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    with failures():
        res = FederationDir(args.dir).revoke(now=time.time(), kid=args.kid, cert_serial=args.cert_serial)
    what = f"key id {args.kid}" if args.kid else f"certificate serial {args.cert_serial}"
    if res is None:
        print(f"{what} is already revoked in the draft; nothing changed")
    else:
        print(f"{what} revoked: {_version_note(*res)}")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    with failures():
        version, started, kids = FederationDir(args.dir).rotate_authorities(
            _names(args.authorities), args.threshold, now=time.time(), rekey=_names(args.rekey or "")
        )
    print(f"authorities of version {version}: {', '.join(kids)} (threshold {args.threshold})")
    if started:
        print("  the draft was signed: signatures cleared")
    print("  sign it with the current authorities' threshold AND the new authorities' threshold")
    return 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    with failures():
        res = FederationDir(args.dir).rotate_key(args.node, args.use, now=time.time(), overlap_days=args.overlap)
    print(f"new key {res.kid}: {res.file} (0600); {_version_note(res.version, res.started)}")
    if res.retiring:
        print(f"  {', '.join(res.retiring)} keep(s) verifying until {res.not_after}, then are refused")
    print("next: traza manifest sign DIR --authority NAME (threshold); the node loads the new key when it applies "
          "the manifest (or on SIGHUP)")
    return 0


def cmd_renew_tls(args: argparse.Namespace) -> int:
    if args.config is not None:
        if not args.local:
            raise UsageError("--config goes with --local ROLE:NAME (it names the local client certificate a node "
                             "config uses)")
        try:  # before anything is issued: the config must be readable and set the two keys
            client = load_config(args.config).client
        except ConfigError as exc:
            raise CheckFailed(str(exc)) from None
        role = args.local.partition(":")[0]
        if getattr(client, f"{role}_cert", None) is None or getattr(client, f"{role}_key", None) is None:
            raise CheckFailed(f"{args.config}: client.{role}_cert and client.{role}_key: not set; add them to [client]")
    with failures():
        fd = FederationDir(args.dir)
        if args.local:
            role, sep, name = args.local.partition(":")
            if not sep:
                raise UsageError(f"--local {args.local!r}: give ROLE:NAME, e.g. system:default")
            res = fd.renew_local(args.node, role, name, now=time.time(), days=args.days)
        else:
            res = fd.renew_tls(args.node, now=time.time(), days=args.days)
    what = f"local {args.local} certificate of {args.node}" if args.local else f"TLS certificate of {args.node}"
    print(f"new {what}: {res.cert} (serial {res.serial}, replaces {res.previous}; valid until {res.not_after})")
    print(f"  key: {res.key} (0600); issuer {res.issuer}")
    if args.local:
        if args.config is not None:
            with failures():
                try:
                    old_cert, _ = set_client_certificate(args.config, role, res.cert, res.key)
                except ConfigError as exc:
                    raise CheckFailed(str(exc)) from None
            print(f"  {args.config}: [client] {role}_cert and {role}_key now name it (were {old_cert})")
        print("next: give both files to that client (it presents the new certificate from its next connection); "
              f"the old one stays valid until it expires or is revoked (traza pki revoke --cert-serial {res.previous})")
    else:
        print(f"next: copy both files beside the node's certificate ({res.cert.name}, {res.key.name}); the node swaps "
              "it in at its next manifest poll or on SIGHUP, without a restart or a dropped connection")
        if not res.ca_published:
            print("  warning: its CA is not in the published manifest yet: sign and publish the manifest with it "
                  "(traza pki new-ca) and let every node apply it before installing this certificate")
    return 0


def cmd_group(args: argparse.Namespace) -> int:
    members = [] if args.remove else _names(args.members)
    if not args.remove and not members:
        raise UsageError("--members: name at least one node (or --remove the group)")
    with failures():
        version, started = FederationDir(args.dir).set_group(args.name, members, now=time.time())
    what = f"group {args.name}: {', '.join(members)}" if members else f"group {args.name} removed"
    print(f"{what}; {_version_note(version, started)}")
    print(f"next: traza manifest sign DIR --authority NAME (threshold); then `traza send --to group:{args.name}` "
          "sends one message to each member")
    return 0


def cmd_new_local_ca(args: argparse.Namespace) -> int:
    with failures():
        res = FederationDir(args.dir).new_local_ca(args.node, now=time.time(), days=args.days)
    print(f"new local CA {res.number} of {args.node}: {res.cert}; it issues local client certificates from now on")
    print(f"  {res.trust} (keys.local_ca) now holds {len(res.trusted)}: {'; '.join(res.trusted)}")
    print(f"next (local CA rollover): 1. copy {res.trust.name} to the node (it trusts both CAs after SIGHUP or its next "
          f"manifest poll); 2. traza pki renew-tls DIR {args.node} --local ROLE:NAME for every client, and give them the "
          f"new files; 3. traza pki retire-local-ca DIR {args.node}, copy {res.trust.name} again")
    return 0


def cmd_retire_local_ca(args: argparse.Namespace) -> int:
    with failures():
        res = FederationDir(args.dir).retire_local_ca(args.node, now=time.time(), force=args.force)
    print(f"removed from {res.trust}: {'; '.join(res.removed)}; it now holds {res.trusted[0]} only")
    print(f"next: copy {res.trust.name} to the node as keys.local_ca: after SIGHUP or its next manifest poll, client "
          "certificates of the retired CA are refused at once, on open connections too")
    return 0


def cmd_new_ca(args: argparse.Namespace) -> int:
    with failures():
        res = FederationDir(args.dir).new_ca(now=time.time(), days=args.days)
    print(f"new federation TLS CA {res.number}: {res.cert}; {_version_note(res.version, res.started)}")
    print(f"  tls_ca now lists {len(res.tls_ca)}: {'; '.join(res.tls_ca)}")
    print("next (CA rollover): 1. sign and publish this manifest, and let every node apply it (they then trust "
          "both CAs); 2. traza pki renew-tls DIR NODE for every node (issued under the new CA) and install them; "
          "3. traza pki retire-ca DIR, sign and publish")
    return 0


def cmd_retire_ca(args: argparse.Namespace) -> int:
    with failures():
        res = FederationDir(args.dir).retire_ca(now=time.time(), force=args.force)
    print(f"removed from tls_ca: {'; '.join(res.removed)}; {_version_note(res.version, res.started)}")
    print(f"  tls_ca now lists {res.tls_ca[0]} only; once this manifest is published, certificates of the retired "
          "CA(s) are refused by every node at once")
    return 0


def _add(sub: Any, name: str, help_: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_)
    p.set_defaults(func=func)
    return p


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "pki", help="federation keys and certificates", description="Create and manage a federation folder."
    )
    verbs = p.add_subparsers(dest="pki_verb", metavar="VERB", required=True)

    q = _add(verbs, "init-federation", "authority keys, TLS CA, trust anchor and a draft manifest", cmd_init)
    q.add_argument("dir", type=Path, metavar="DIR")
    q.add_argument("--authorities", required=True, help="comma-separated authority names, e.g. eu,mx,ameripol")
    q.add_argument("--threshold", type=int, required=True, help="signatures needed on a manifest")
    q.add_argument("--federation", default="traza-demo", help="federation name (default traza-demo)")
    q.add_argument("--sig-alg", choices=SIG_ALGS, default="EdDSA", help="default node signing algorithm")
    q.add_argument("--kem", choices=KEM_CHOICES, default="MLKEM768_X25519", help="default node encryption KEM")
    q.add_argument("--days", type=int, default=90, help="manifest validity in days (default 90)")

    q = _add(verbs, "add-node", "node keys, TLS certificate and local CA; adds the node to the draft", cmd_add_node)
    q.add_argument("dir", type=Path, metavar="DIR")
    q.add_argument("node", metavar="NODE")
    q.add_argument("--kind", choices=KINDS, required=True)
    q.add_argument("--country", required=True, help="ISO 3166-1 alpha-2, e.g. MX")
    q.add_argument("--endpoint", required=True, help="https://host:port of the peer API")
    q.add_argument("--hub", help="the node's hub (national and service nodes)")
    q.add_argument("--peers", help="comma-separated nodes linked directly")
    q.add_argument("--max-classification", choices=CLASSIFICATIONS, default="BASIC_PROTECTION_LEVEL")
    q.add_argument("--sig-alg", choices=SIG_ALGS, help="default: the federation's")
    q.add_argument("--kem", choices=KEM_CHOICES, help="default: the federation's")
    q.add_argument("--name", help="display name")
    q.add_argument("--batch", action="store_true",
                   help="the node takes batch signatures (protocol 1.1: one signed Merkle root per batch of hop "
                        "records or acks; docs/protocol.md)")

    q = _add(verbs, "issue-local", "another local API client certificate from a node's local CA", cmd_issue_local)
    q.add_argument("dir", type=Path, metavar="DIR")
    q.add_argument("node", metavar="NODE")
    q.add_argument("--role", choices=LOCAL_ROLES, required=True)
    q.add_argument("--name", required=True, help="who (letters, digits, . _ -)")

    q = _add(verbs, "revoke", "add a key id or certificate serial to the draft's revoked set", cmd_revoke)
    q.add_argument("dir", type=Path, metavar="DIR")
    g = q.add_mutually_exclusive_group(required=True)
    g.add_argument("--kid", help="key id, e.g. es/sig/1")
    g.add_argument("--cert-serial", help="certificate serial number in hex")

    q = _add(verbs, "rotate-key", "a node's next sig, enc or audit key in the draft; the old one ends after an overlap",
             cmd_rotate_key)
    q.add_argument("dir", type=Path, metavar="DIR")
    q.add_argument("node", metavar="NODE")
    q.add_argument("--use", choices=("sig", "enc", "audit"), required=True)
    q.add_argument("--overlap", type=float, default=OVERLAP_DAYS, metavar="DAYS",
                   help=f"days the old key keeps verifying (default {OVERLAP_DAYS})")

    q = _add(verbs, "rotate-authorities", "replace the authorities in the draft (old and new sets must sign)",
             cmd_rotate)
    q.add_argument("dir", type=Path, metavar="DIR")
    q.add_argument("--authorities", required=True, help="comma-separated names of the new set")
    q.add_argument("--threshold", type=int, required=True)
    q.add_argument("--rekey", help="comma-separated names that get a new key (n+1)")

    q = _add(verbs, "renew-tls", "a new TLS certificate for a node (or one of its local clients), beside the old one",
             cmd_renew_tls)
    q.add_argument("dir", type=Path, metavar="DIR")
    q.add_argument("node", metavar="NODE")
    q.add_argument("--local", metavar="ROLE:NAME", help="renew this local API client certificate instead, "
                   "e.g. system:default")
    q.add_argument("--days", type=int, default=MAX_LEAF_DAYS, help=f"validity in days (default {MAX_LEAF_DAYS})")
    q.add_argument("--config", type=Path, metavar="FILE", help="with --local: also point [client] ROLE_cert and "
                   "ROLE_key of this node config at the new files")

    q = _add(verbs, "group", "set a named recipient group of the draft (a fan-out target, group:NAME), or "
             "remove it", cmd_group)
    q.add_argument("dir", type=Path, metavar="DIR")
    q.add_argument("name", metavar="NAME")
    m = q.add_mutually_exclusive_group(required=True)
    m.add_argument("--members", metavar="NODE,NODE...", help="its members, in order")
    m.add_argument("--remove", action="store_true", help="remove the group")

    q = _add(verbs, "new-local-ca", "local CA rollover step 1: a new local CA for a node, trusted beside the "
             "current one", cmd_new_local_ca)
    q.add_argument("dir", type=Path, metavar="DIR")
    q.add_argument("node", metavar="NODE")
    q.add_argument("--days", type=int, default=CA_DAYS, help=f"validity in days (default {CA_DAYS})")

    q = _add(verbs, "retire-local-ca", "local CA rollover step 3: the node trusts only its current local CA",
             cmd_retire_local_ca)
    q.add_argument("dir", type=Path, metavar="DIR")
    q.add_argument("node", metavar="NODE")
    q.add_argument("--force", action="store_true", help="even if some local client certificate is still from "
                   "the old CA")

    q = _add(verbs, "new-ca", "CA rollover step 1: a new federation TLS CA, trusted beside the current one",
             cmd_new_ca)
    q.add_argument("dir", type=Path, metavar="DIR")
    q.add_argument("--days", type=int, default=CA_DAYS, help=f"validity in days (default {CA_DAYS})")

    q = _add(verbs, "retire-ca", "CA rollover step 3: remove every CA but the newest from tls_ca", cmd_retire_ca)
    q.add_argument("dir", type=Path, metavar="DIR")
    q.add_argument("--force", action="store_true", help="even if some node's certificate is still from an old CA")
