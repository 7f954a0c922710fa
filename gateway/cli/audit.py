"""`traza audit` verbs (SPEC §10): verify a log, show entries, prove inclusion, export and verify
evidence bundles. A log is read from its database file (``--db``) or from a running node's auditor API
(``--url`` with an auditor client certificate)."""

from __future__ import annotations

import argparse
import csv
import functools
import json
import sqlite3
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.audit.bundle import (
    BundleError,
    build_bundle,
    encode_bundle,
    is_route_bundle,
    verify_bundle,
    verify_route_bundle,
)
from gateway.audit.checkpoints import CHECKPOINT_FILE, ed25519_note_verifier, read_checkpoint_file
from gateway.audit.db import AuditError
from gateway.audit.reader import AuditReader
from gateway.audit.selfcheck import quick_check
from gateway.audit.trustkeys import LogKeyPin, Pins, UsedKey, parse_log_key
from gateway.audit.verify import CheckpointRecord, VerifyFailed, VerifyReport, checkpoint_size, verify_log
from gateway.core.auditquery import CSV_COLUMNS, csv_row, parse_query
from gateway.core.b64 import b64_decode, b64_encode
from gateway.core.errors import TrazaError
from gateway.core.merkle import ProofError, leaf_hash, verify_inclusion
from gateway.core.note import NoteError, node_of_origin, open_checkpoint, parse_checkpoint_text, parse_note
from gateway.core.printable import json_safe, printable
from gateway.core.timeutil import duration_text, rfc3339_seconds
from gateway.failures import CheckFailed, UsageError
from gateway.store.dialect import is_url, redact
from gateway.trust.trusted import AuditedManifest, ManifestRejected, TrustAnchor, audit_manifest


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "audit", help="verify a node's tamper-evident audit log and evidence bundles"
    )
    verbs = p.add_subparsers(dest="audit_verb", metavar="VERB", required=True)

    def source(q: argparse.ArgumentParser) -> None:
        g = q.add_mutually_exclusive_group(required=True)
        g.add_argument("--db", type=_db_source, metavar="FILE|URL",
                       help="the node's database file, or its postgresql:// URL (read-only)")
        g.add_argument("--url", metavar="URL", help="a running node's local API, e.g. https://127.0.0.1:7201")
        q.add_argument("--cert", type=Path, help="auditor client certificate (PEM) for --url")
        q.add_argument("--key", type=Path, help="auditor client key (PEM) for --url")
        q.add_argument("--ca", type=Path, help="CA certificate(s) (PEM) that sign the node's certificate")

    v = verbs.add_parser(
        "verify",
        help="recompute the tree from every entry; check every checkpoint, cosignature and consistency",
        description="Exit 0 if the whole log verifies; exit 1 naming the first bad index or checkpoint.",
    )
    source(v)
    v.add_argument(
        "--log-key",
        action="append",
        metavar="KEY",
        help="trusted Ed25519 audit key of the node: base64 (as in the manifest) or a C2SP vkey "
        "NAME+KEYID+BASE64 (as verify-bundle prints it); repeatable. Default: the manifest's (--manifest), "
        "else with --db the key recorded with each checkpoint",
    )
    v.add_argument(
        "--witness",
        action="append",
        metavar="NAME=B64",
        help="trusted witness key (cosignature key name = base64 Ed25519 key); repeatable. "
        "Default: the audit keys of the manifest's nodes (--manifest), else with --db the keys recorded "
        "with each cosignature, else (--url) none: cosignatures are reported as not verified",
    )
    _pin_options(v, log_key=False)
    v.add_argument("--min-cosignatures", type=int, default=0, metavar="N", help="require N valid cosignatures on the latest checkpoint (older ones keep one a day per witness)")
    v.add_argument("--no-progress", action="store_true", help="no progress bar")
    v.add_argument("--json", action="store_true",
                   help="print the report as one JSON object (a failed check: one line on stderr, exit 1)")
    v.set_defaults(func=_one_line(_verify))

    s = verbs.add_parser("show", help="print the audit entries about one message (JSON lines)")
    source(s)
    s.add_argument("--jti", required=True, metavar="ID", help="message id")
    s.set_defaults(func=_one_line(_show))

    se = verbs.add_parser("search", help="audit entries by time, event, message type, peer, outcome, requesting "
                          "unit or officer, case reference (JSON lines, or CSV)")
    source(se)
    for name, meta, text in (("since", "TIME", "from this RFC 3339 time"), ("until", "TIME", "before this time"),
                             ("event", "EVENT", "e.g. envelope.accepted"), ("type", "TYPE", "message type"),
                             ("peer", "NODE", "a node the entry names"), ("outcome", "CODE", "a code or outcome"),
                             ("unit", "TEXT", "part of the requesting unit"), ("officer", "TEXT", "part of the officer"),
                             ("case", "TEXT", "part of a case reference issuer:number")):
        se.add_argument(f"--{name}", metavar=meta, help=text)
    se.add_argument("--limit", type=int, default=1000, metavar="N", help="at most N entries (default 1000)")
    se.add_argument("--csv", action="store_true", help="CSV (one row per entry; formulas neutralised) instead of JSON lines")
    se.set_defaults(func=_one_line(_search))

    pr = verbs.add_parser("prove", help="print and check the inclusion proof of one entry")
    source(pr)
    pr.add_argument("--index", type=int, required=True, metavar="I", help="entry index")
    pr.add_argument(
        "--size", type=int, metavar="N", help="tree size (default: the latest checkpoint covering I)"
    )
    pr.set_defaults(func=_one_line(_prove))

    e = verbs.add_parser("export", help="write the evidence bundle (SPEC §7.4) of one message")
    source(e)
    e.add_argument("--jti", required=True, metavar="ID", help="message id")
    e.add_argument("-o", "--output", required=True, type=Path, metavar="FILE", help="bundle file to write")
    e.add_argument("--route", action="store_true", help="with --url: every route node's evidence in one file "
                   "(the node asks the others over the peer API; traza-route-evidence/v1)")
    e.set_defaults(func=_one_line(_export))

    b = verbs.add_parser(
        "verify-bundle", help="verify an evidence bundle offline and print what it proves and the keys it relied on",
        description="Exit 0 if the bundle verifies, 1 naming the first fault (a key that is not the pinned one "
        "included), 2 on bad usage (an unreadable --manifest or --log-key). Without --manifest or --log-key the "
        "keys are the file's own: the result proves internal consistency only, and the output says so.")
    b.add_argument("file", type=Path, metavar="FILE")
    _pin_options(b, log_key=True)
    b.add_argument("--json", action="store_true",
                   help='print {"ok", "file", "jti", "node", "size", "root", "proven", "notes", "handling", '
                   '"handling_notice", "keys", "pinned", "manifest"} (a route file: "hops" with each hop\'s keys)')
    b.set_defaults(func=_verify_bundle)

    def run(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=run)


# -- pinned keys (gateway/audit/trustkeys.py) ----------------------------------------------------------


def _pin_options(q: argparse.ArgumentParser, *, log_key: bool) -> None:
    q.add_argument("--manifest", type=Path, metavar="FILE",
                   help="federation manifest.json to pin keys with (its manifest.sig beside it is checked): the log "
                   "key must be the node's audit key, witness keys audit keys of its nodes, token keys their sig keys")
    q.add_argument("--anchor", type=Path, metavar="FILE",
                   help="trust anchor (trust-anchor.json) whose authorities must have signed --manifest "
                   "(default: the manifest's own authorities)")
    if log_key:
        q.add_argument("--log-key", action="append", metavar="KEY",
                       help="the node's audit key: a C2SP vkey NAME+KEYID+BASE64 (as this command prints it) or the "
                       "base64 Ed25519 key (as in the manifest); repeatable (rotated keys)")


def _log_keys(texts: list[str] | None) -> tuple[LogKeyPin, ...]:
    pins = []
    for text in texts or ():
        try:
            pins.append(parse_log_key(text))
        except ValueError as exc:
            raise UsageError(f"--log-key {text[:80]!r}: {exc}") from None
    return tuple(pins)


def _manifest(args: argparse.Namespace) -> AuditedManifest | None:
    """``--manifest FILE`` (with ``manifest.sig`` beside it, and ``--anchor``), checked; UsageError naming
    the file and the fault (exit 2)."""
    if args.manifest is None:
        if args.anchor is not None:
            raise UsageError("--anchor needs --manifest (the anchor's authorities must have signed it)")
        return None
    path: Path = args.manifest
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"--manifest {path}: {exc.strerror}") from None
    sig_path = path.with_name("manifest.sig")
    try:
        sig_raw: bytes | None = sig_path.read_bytes()
    except FileNotFoundError:
        sig_raw = None
    except OSError as exc:
        raise UsageError(f"--manifest {path}: {sig_path}: {exc.strerror}") from None
    anchor = None
    if args.anchor is not None:
        try:
            anchor = TrustAnchor.from_json(args.anchor.read_bytes())
        except OSError as exc:
            raise UsageError(f"--anchor {args.anchor}: {exc.strerror}") from None
        except (ValueError, ManifestRejected) as exc:
            raise UsageError(f"--anchor {args.anchor}: {exc}") from None
        if sig_raw is None:
            raise UsageError(f"--anchor needs {sig_path} (the signatures to check against it)")
    try:
        return audit_manifest(raw, sig_raw, anchor, time.time())
    except ManifestRejected as exc:
        raise UsageError(f"--manifest {path}: {exc.reason}") from None


def _pins(args: argparse.Namespace) -> tuple[Pins, AuditedManifest | None]:
    audited = _manifest(args)
    pins = Pins(federation=None if audited is None else audited.federation,
                manifest="" if audited is None else audited.label, log_keys=_log_keys(args.log_key))
    return pins, audited


def _manifest_json(args: argparse.Namespace, audited: AuditedManifest | None) -> dict[str, Any] | None:
    if audited is None:
        return None
    return {"file": str(args.manifest), "federation": audited.federation.name,
            "version": audited.federation.version, "checked": audited.how}


# -- sources -----------------------------------------------------------------------------------------


def _db_source(text: str) -> Path | str:
    """``--db``: a SQLite file, or a PostgreSQL database by its ``postgresql://`` URL."""
    return text if is_url(text) else Path(text)


def _db_name(db: Path | str) -> str:
    return redact(db) if isinstance(db, str) else str(db)


def _one_line(verb: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A database that turns out unreadable midway (a malformed page, not a database) is one line, exit 1."""

    @functools.wraps(verb)
    def run(args: argparse.Namespace) -> int:
        try:
            return verb(args)
        except Exception as exc:
            if not isinstance(exc, sqlite3.DatabaseError) and not type(exc).__module__.startswith("psycopg"):
                raise
            raise CheckFailed(f"{_db_name(args.db)}: the database cannot be read ({exc})") from None

    return run


def _open_db(path: Path | str) -> AuditReader:
    if isinstance(path, str):  # PostgreSQL
        try:
            return AuditReader(path)
        except AuditError as exc:
            raise CheckFailed(str(exc)) from None
    if not path.is_file():
        raise UsageError(f"{path}: no such database file")
    try:
        return AuditReader(path)
    except AuditError as exc:
        raise CheckFailed(str(exc)) from None


class _Http:
    """A small client of the node's auditor API (SPEC §6) and checkpoint endpoint (SPEC §4.4)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.base = args.url.rstrip("/")
        self.context = None
        if self.base.startswith("https://"):
            if not (args.cert and args.key and args.ca):
                raise UsageError(
                    "--url https://... needs --cert, --key and --ca (an auditor client certificate)"
                )
            from gateway.crypto.tls import client_context

            try:
                self.context = client_context(args.cert, args.key, [args.ca.read_text()])
            except (ValueError, OSError) as exc:
                raise UsageError(str(exc)) from None
        elif not self.base.startswith("http://"):
            raise UsageError(f"--url {args.url!r} is not an http(s) URL")

    def get(self, path: str, **params: Any) -> bytes:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.base}{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, context=self.context, timeout=60) as resp:  # noqa: S310
                data: bytes = resp.read()
                return data
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            raise CheckFailed(f"GET {url}: HTTP {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise CheckFailed(f"GET {url}: {exc}") from None

    def json(self, path: str, **params: Any) -> Any:
        try:
            return json.loads(self.get(path, **params))
        except json.JSONDecodeError as exc:
            raise CheckFailed(f"GET {path}: not JSON ({exc})") from None

    def entries(self, **filters: Any) -> Iterator[tuple[int, bytes]]:
        start: int | None = 0
        while start is not None:
            page = self.json("/audit/v1/entries", **{"from": start, **filters})
            try:
                for item in page["entries"]:
                    yield int(item["index"]), b64_decode(item["entry"])
                start = page.get("next")
            except (KeyError, TypeError, ValueError) as exc:
                raise CheckFailed(f"/audit/v1/entries: unexpected response ({exc})") from None


# -- verify ------------------------------------------------------------------------------------------


def _witness_args(args: argparse.Namespace) -> dict[str, list[bytes]] | None:
    """``--witness NAME=BASE64`` (repeatable; a name may come twice, e.g. a rotated key)."""
    if not args.witness:
        return None
    witnesses: dict[str, list[bytes]] = {}
    for item in args.witness:
        name, sep, key = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--witness {item!r} is not NAME=BASE64KEY")
        try:
            raw = b64_decode(key)
        except ValueError as exc:
            raise UsageError(f"--witness {item!r}: key is not standard base64: {exc}") from None
        if len(raw) != 32:
            raise UsageError(f"--witness {item!r}: an Ed25519 public key is 32 bytes, not {len(raw)}")
        witnesses.setdefault(name, []).append(raw)
    return witnesses


@dataclass
class _VerifyKeys:
    """The keys ``traza audit verify`` checks a log with, and where they came from (for the report)."""

    log: list[bytes] | None
    log_from: str
    witnesses: dict[str, list[bytes]] | None
    witnesses_from: str


def _verify_keys(args: argparse.Namespace, origin: str | None, *, recorded: str | None) -> _VerifyKeys:
    """``--log-key``/``--witness`` first, then ``--manifest`` (the audit key of the log's node; every other
    node's audit keys as witnesses ``traza/<federation>/<node>``), else ``recorded`` (the database's)."""
    pins = _log_keys(args.log_key)
    if origin is not None:
        for p in pins:
            if p.name is not None and p.name != origin:
                raise CheckFailed(f"--log-key {p.text()} is the key of {p.name}, the log is {origin}")
    keys = _VerifyKeys(
        [p.public_key for p in pins] or None, "--log-key", _witness_args(args), "--witness")
    audited = _manifest(args)
    if audited is not None and origin is not None:
        fed = audited.federation
        try:
            node = node_of_origin(origin)
        except NoteError as exc:
            raise CheckFailed(str(exc)) from None
        if origin != f"traza/{fed.name}/{node}":
            raise CheckFailed(f"the log's origin {origin} is not of federation {fed.name} ({audited.label})")
        if keys.log is None:
            keys.log = [b64_decode(k.public_key) for k in fed.valid_keys(node, "audit", None) if k.public_key]
            keys.log_from = f"the {audited.label}"
            if not keys.log:
                raise CheckFailed(f"node {node} has no unrevoked audit key in the {audited.label}")
        if keys.witnesses is None:
            keys.witnesses = {f"traza/{fed.name}/{n}": [b64_decode(k.public_key)
                                                       for k in fed.valid_keys(n, "audit", None) if k.public_key]
                              for n in sorted(fed.nodes) if n != node}
            keys.witnesses_from = f"the {audited.label}"
    if keys.log is None:
        keys.log_from = recorded or ""
    if keys.witnesses is None:
        keys.witnesses_from = recorded or "none"
    return keys


def _progress(total: int, enabled: bool) -> tuple[Any, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    bar = Progress(
        TextColumn("verifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal and total >= 50_000),
    )
    task = bar.add_task("entries", total=total)
    return bar, lambda n: bar.update(task, completed=n)


def _verify(args: argparse.Namespace) -> int:
    # bad usage (exit 2) before any work
    _log_keys(args.log_key)
    _witness_args(args)
    _manifest(args)
    only_latest = False
    if args.db is not None:
        with _open_db(args.db) as reader:
            found = quick_check(reader.conn) if isinstance(args.db, Path) else None  # PostgreSQL checks its pages
            if found is not None:
                raise CheckFailed(f"{args.db}: PRAGMA quick_check: {found}")
            records = [
                CheckpointRecord(
                    cp.served(), cp.public_key, {n: k for n, k, _ in cp.cosignatures}, (cp.size, cp.root)
                )
                for cp in reader.checkpoints()
            ]
            keys = _verify_keys(args, reader.origin or _origin_of(records), recorded="recorded in the database")
            kept = _kept_checkpoint(args.db, records) if isinstance(args.db, Path) else None
            if kept is not None:
                records.append(kept)
            bar, progress = _progress(reader.size(), not args.no_progress)
            try:
                with bar:
                    report = verify_log(
                        reader.iter_entries(),
                        records,
                        node=reader.node,
                        origin=reader.origin,
                        log_keys=keys.log,
                        witness_keys=keys.witnesses,
                        min_cosignatures=args.min_cosignatures,
                        consistency=reader.consistency_proof,
                        progress=progress,
                        strict_witnesses=True,
                    )
            except VerifyFailed as exc:
                where = ""
                in_db = {r.recorded[0] for r in records if r.recorded is not None}
                if kept is not None and exc.checkpoint_size == checkpoint_size(kept) not in in_db:
                    where = f" (the checkpoint kept in {args.db.parent / CHECKPOINT_FILE})"
                raise CheckFailed(f"audit log {_db_name(args.db)} does not verify: {exc}{where}") from None
        source = _db_name(args.db)
    else:
        kept = None
        if not args.log_key and args.manifest is None:
            raise UsageError("--url needs --log-key or --manifest (the node's audit key from the manifest)")
        http = _Http(args)
        served = http.get("/v1/audit/checkpoint").decode("utf-8", "replace")
        keys = _verify_keys(args, _origin_of([CheckpointRecord(served)]), recorded=None)
        only_latest = True  # the API serves the latest checkpoint only (SPEC §4.4)
        try:
            report = verify_log(
                ((i, e, None) for i, e in http.entries()),
                [CheckpointRecord(served)],
                log_keys=keys.log,
                witness_keys=keys.witnesses,
                min_cosignatures=args.min_cosignatures,
                strict_witnesses=True,
            )
        except VerifyFailed as exc:
            raise CheckFailed(f"audit log at {args.url} does not verify: {exc}") from None
        source = args.url
    kept_file = args.db.parent / CHECKPOINT_FILE if isinstance(args.db, Path) and kept is not None else None
    pinned = keys.log_from != "recorded in the database"
    if args.json:
        print(json_safe(json.dumps({
            "ok": True, "source": source, "origin": report.origin, "node": report.node, "size": report.size,
            "root": b64_encode(report.root), "checkpoints": report.checkpoints, "latest_size": report.latest_size,
            "latest_root": b64_encode(report.latest_root), "cosignatures": report.cosignatures,
            "witnesses": sorted(report.witnesses), "log_key_pinned": pinned, "log_keys_from": keys.log_from,
            "witness_keys_from": keys.witnesses_from, "unverified_cosignatures": report.unverified,
            "only_latest_checkpoint": only_latest,
            "kept_checkpoint": None if kept_file is None else str(kept_file), "warnings": list(report.warnings),
        }, ensure_ascii=False)))
        return 0
    _print_report(source, report, keys, pinned=pinned, only_latest=only_latest)
    if kept_file is not None:
        print(f"   {kept_file} (the node's copy of its last checkpoint) verified too")
    return 0


def _origin_of(records: list[CheckpointRecord]) -> str | None:
    """The origin line of the first checkpoint (the log's name), or None if there is none or it is malformed
    (verification then names the fault)."""
    for r in records[:1]:
        try:
            return parse_checkpoint_text(parse_note(r.served).text).origin
        except NoteError:
            return None
    return None


def _kept_checkpoint(db: Path, records: list[CheckpointRecord]) -> CheckpointRecord | None:
    """The copy of the node's last checkpoint kept beside its database (``last-checkpoint``), if there is
    one, to check the log against too: a log shorter than it lost its tail. Its log key is the one recorded
    with the database's latest checkpoint (or ``--log-key``); its cosignatures are checked with the witness
    keys recorded in the database."""
    try:
        kept = read_checkpoint_file(db.parent / CHECKPOINT_FILE)
    except AuditError as exc:
        raise CheckFailed(str(exc)) from None
    if kept is None or any(r.served == kept[0] for r in records):
        return None
    witnesses: dict[str, str] = {}
    for r in records:
        witnesses.update(r.witness_keys)
    return CheckpointRecord(kept[0], records[-1].log_key if records else None, witnesses)


def _print_report(source: str, r: VerifyReport, keys: _VerifyKeys, *, pinned: bool, only_latest: bool) -> None:
    print(printable(f"OK {r.origin or source}: {r.size} entries recomputed from {source}"))
    if r.checkpoints:
        what = f"{r.checkpoints} checkpoints signed" + (
            " (the latest: the only one the API serves)" if only_latest else " and consistent")
        print(f"   {what}; latest size {r.latest_size} root {b64_encode(r.latest_root)}")
        print(printable(f"   log key: {keys.log_from}"))
        who = printable(", ".join(sorted(r.witnesses))) or "none"
        print(printable(f"   {r.cosignatures} witness cosignatures verified (witnesses: {who}; keys: {keys.witnesses_from})"))
        for name, why in sorted(r.unverified.items()):
            print(printable(f"   cosignature NOT verified: {name}: {why}"))
        if r.newest_cosignatures:  # how fresh the witnessing is (SPEC §7.2, 1.1)
            now = time.time()
            fresh = "; ".join(f"{n} at {rfc3339_seconds(t)} ({duration_text(now - t)} ago)"
                              for n, t in sorted(r.newest_cosignatures.items()))
            print(printable(f"   newest cosignature per witness: {fresh}"))
    if not pinned:
        print(
            "   note: log key taken from the database itself; pin it with --log-key or --manifest to check it "
            "against the manifest"
        )
    if only_latest:
        print("   note: over --url only the latest checkpoint is served (GET /v1/audit/checkpoint): older "
              "checkpoints and their consistency are checked with --db, and by the witnesses")
    for w in r.warnings:
        print(f"   warning: {printable(w)}")


# -- show / prove ------------------------------------------------------------------------------------


def _show(args: argparse.Namespace) -> int:
    if args.db is not None:
        with _open_db(args.db) as reader:
            rows = [(i, reader.entry(i)) for i in reader.jti_indices(args.jti)]
    else:
        rows = list(_Http(args).entries(jti=args.jti))
    if not rows:
        raise CheckFailed(f"no audit entry is about message {args.jti}")
    for _, raw in rows:  # entries quote peers: what JSON leaves raw (U+2028, C1, bidi) is escaped
        sys.stdout.write(json_safe(raw.decode("utf-8", "replace")) + "\n")
    return 0


def _search(args: argparse.Namespace) -> int:
    filters = {k: v for k in ("since", "until", "event", "type", "peer", "outcome", "unit", "officer", "case")
               if (v := getattr(args, k)) is not None}
    filters["limit"] = str(args.limit)
    if args.db is not None:
        try:
            query = parse_query(filters)
        except TrazaError as exc:
            raise UsageError(exc.detail) from None
        with _open_db(args.db) as reader:
            rows = reader.search(query)
    else:
        page = json.loads(_Http(args).get("/audit/v1/search", **filters))
        rows = [(int(e["index"]), json.dumps(e["entry"], separators=(",", ":")).encode()) for e in page["entries"]]
    if args.csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for i, raw in rows:
            w.writerow([json_safe(c) for c in csv_row(i, json.loads(raw))])
        return 0
    for _, raw in rows:
        sys.stdout.write(json_safe(raw.decode("utf-8", "replace")) + "\n")
    return 0


def _prove_db(args: argparse.Namespace) -> tuple[bytes, list[bytes], int, bytes, str]:
    with _open_db(args.db) as reader:
        latest = reader.checkpoint()
        if args.size is not None:
            size = args.size
        elif latest is not None and latest.size > args.index:
            size = latest.size
        else:
            size = reader.size()
        checkpoint = reader.checkpoint(size)
        try:
            entry = reader.entry(args.index)
            proof = reader.inclusion_proof(args.index, size)
            root = reader.root(size)
        except (AuditError, ProofError) as exc:
            raise CheckFailed(str(exc)) from None
        if checkpoint is None:
            return entry, proof, size, root, "root of the stored tree (no checkpoint of this size)"
        origin = parse_checkpoint_text(parse_note(checkpoint.note).text).origin
        try:
            cp, _ = open_checkpoint(
                checkpoint.note, ed25519_note_verifier(origin, b64_decode(checkpoint.public_key))
            )
        except NoteError as exc:
            raise CheckFailed(f"checkpoint of size {size}: {exc}") from None
        return entry, proof, size, cp.root, "signed checkpoint"


def _prove_url(args: argparse.Namespace) -> tuple[bytes, list[bytes], int, bytes, str]:
    http = _Http(args)
    served = http.get("/v1/audit/checkpoint").decode("utf-8", "replace")
    try:
        cp = parse_checkpoint_text(parse_note(served).text)
    except NoteError as exc:
        raise CheckFailed(f"/v1/audit/checkpoint: {exc}") from None
    size = cp.size if args.size is None else args.size
    if size != cp.size:
        raise UsageError(
            f"over --url only the latest checkpoint (size {cp.size}) has a root to prove against"
        )
    page = http.json("/audit/v1/entries", **{"from": args.index, "to": args.index + 1, "limit": 1})
    resp = http.json("/audit/v1/proof/inclusion", index=args.index, size=size)
    try:
        entry = b64_decode(page["entries"][0]["entry"])
        proof = [b64_decode(h) for h in resp["hashes"]]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise CheckFailed(f"entry {args.index}: unexpected auditor API response ({exc})") from None
    return entry, proof, size, cp.root, "latest checkpoint served by the node (signature not checked)"


def _prove(args: argparse.Namespace) -> int:
    entry, proof, size, root, against = _prove_db(args) if args.db is not None else _prove_url(args)
    try:
        verify_inclusion(args.index, size, leaf_hash(entry), proof, root)
    except ProofError as exc:
        raise CheckFailed(f"entry {args.index} in the tree of size {size}: {exc}") from None
    out = {
        "index": args.index,
        "size": size,
        "leaf_hash": b64_encode(leaf_hash(entry)),
        "hashes": [b64_encode(h) for h in proof],
        "root": b64_encode(root),
        "against": against,
        "entry": json.loads(entry),
    }
    print(json_safe(json.dumps(out, indent=2, ensure_ascii=False)))
    return 0


# -- bundles -----------------------------------------------------------------------------------------


def _write_output(path: Path, data: bytes) -> None:
    """Write a verified bundle file (its folder made first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _export(args: argparse.Namespace) -> int:
    if args.route:
        if args.db is not None:
            raise UsageError("--route needs --url: the running node asks the other nodes of the route")
        data = _Http(args).get("/audit/v1/route-bundle", jti=args.jti)
        try:
            route = verify_route_bundle(data)
        except BundleError as exc:
            raise CheckFailed(f"the route evidence of {args.jti} does not verify: {exc}") from None
        _write_output(args.output, data)
        missing = [f"{n} ({why})" for n, r, why in route.hops if r is None]
        print(f"wrote {args.output}: evidence of {len(route.hops) - len(missing)} of {len(route.hops)} nodes on the "
              f"route {' -> '.join(route.route)}" + (f"; missing: {'; '.join(missing)}" if missing else "")
              + f" (check with: traza audit verify-bundle {args.output})")
        return 0
    if args.db is not None:
        with _open_db(args.db) as reader:
            try:
                data = encode_bundle(build_bundle(reader, args.jti))
            except AuditError as exc:
                raise CheckFailed(f"cannot export {args.jti}: {exc}") from None
    else:
        data = _Http(args).get("/audit/v1/bundle", jti=args.jti)
    try:
        report = verify_bundle(data)
    except BundleError as exc:
        raise CheckFailed(f"the bundle of {args.jti} does not verify: {exc}") from None
    _write_output(args.output, data)
    print(
        f"wrote {args.output}: {len(report.proven)} facts proven (check with: traza audit verify-bundle {args.output})"
    )
    if report.handling_notice:  # issue #15: every export of an H1 message is marked
        print(f"! {report.handling_notice}")
    return 0


def _verify_route_bundle(args: argparse.Namespace, data: bytes, pins: Pins, audited: AuditedManifest | None) -> int:
    try:
        route = verify_route_bundle(data, pins)
    except BundleError as exc:
        raise CheckFailed(f"{args.file} does not verify: {exc}") from None
    if args.json:
        print(json_safe(json.dumps({"ok": True, "file": str(args.file), "jti": route.jti, "route": route.route,
                                    "pinned": pins.pinned, "manifest": _manifest_json(args, audited),
                                    "hops": [{"node": n, "proven": r.proven if r else None, "missing": why,
                                              "keys": [k.to_json() for k in r.keys] if r else None,
                                              "notes": r.notes if r else None}
                                             for n, r, why in route.hops]}, ensure_ascii=False)))
        return 0
    print(printable(f"OK {args.file}: evidence about message {route.jti} along {' -> '.join(route.route)}"))
    _print_manifest(args, audited)
    for i, (node, report, why) in enumerate(route.hops, 1):
        if report is None:
            print(printable(f" hop {i} ({node}): no evidence in the file: {why}"))
            continue
        print(printable(f" hop {i} ({node}): verified"))
        for line in report.proven:
            print(f"   - {printable(line)}")
        _print_keys(report.keys, "   ")
        for line in report.notes:
            print(f"     note: {printable(line)}")
    return 0


def _print_manifest(args: argparse.Namespace, audited: AuditedManifest | None) -> None:
    if audited is not None:
        print(printable(f" keys pinned with {args.manifest}: {audited.label}, {audited.how}"))


def _print_keys(keys: list[UsedKey], indent: str) -> None:
    print(f"{indent}keys relied on:")
    for k in keys:
        print(f"{indent}  * {printable(k.line())}")


def _verify_bundle(args: argparse.Namespace) -> int:
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise UsageError(f"{args.file}: {exc.strerror}") from None
    pins, audited = _pins(args)
    if is_route_bundle(data):
        return _verify_route_bundle(args, data, pins, audited)
    try:
        report = verify_bundle(data, pins)
    except BundleError as exc:
        raise CheckFailed(f"{args.file} does not verify: {exc}") from None
    if args.json:
        print(json_safe(json.dumps({"ok": True, "file": str(args.file), "jti": report.jti, "node": report.node,
                                    "size": report.size, "root": report.root, "proven": report.proven,
                                    "notes": report.notes, "handling": report.handling,
                                    "handling_notice": report.handling_notice,
                                    "keys": [k.to_json() for k in report.keys], "pinned": pins.pinned,
                                    "manifest": _manifest_json(args, audited)}, ensure_ascii=False)))
        return 0
    print(printable(f"OK {args.file}: evidence about message {report.jti} on node {report.node}"))
    if report.handling_notice:  # from the signed token (issue #15), before anything else
        print(f" ! {report.handling_notice}")
    for line in report.proven:  # the bundle's words (an attacker may have made the file)
        print(f" - {printable(line)}")
    if report.newest_cosignature is not None:  # how fresh the witnessing is (SPEC §7.2, 1.1)
        ts = report.newest_cosignature
        print(f" - the newest witness cosignature is from {rfc3339_seconds(ts)}, "
              f"{duration_text(time.time() - ts)} before this check")
    _print_manifest(args, audited)
    _print_keys(report.keys, " ")
    for line in report.notes:
        print(f"   note: {printable(line)}")
    return 0
