"""A federation folder: authority keys, the TLS CA, node keys and certificates, and the draft manifest.

This is what ``traza pki ...`` and ``traza manifest ...`` operate on (layout in ``docs/trust.md``)::

    DIR/federation.json            public settings: name, default algorithms, validity
    DIR/trust-anchor.json          the anchor to install with a NEW node (authorities of the last published
                                   manifest, or the initial set)
    DIR/manifest.json              the draft (canonical JSON, exactly the bytes authorities sign)
    DIR/manifest.sig               {"signatures": [{"kid", "sig"}]}
    DIR/published/manifest.{json,sig}   the last manifest that met every rule (written by `manifest sign`)
    DIR/history/                   every published version and every anchor it replaced
    DIR/authorities/<name>/<n>.key Ed25519 private key of auth/<name>/<n>            (0600)
    DIR/ca/ca.pem, ca/ca.key       federation TLS CA                                   (key 0600)
    DIR/ca/ca-<n>.{pem,key}        the next federation CAs (`pki new-ca`, a CA rollover) (key 0600)
    DIR/nodes/<id>/node.json       public index of the node's keys and files
    DIR/nodes/<id>/tls/{cert.pem,cert.key,ca.pem}                                      (key 0600)
    DIR/nodes/<id>/tls/cert-<n>.{pem,key}   renewed node certificates (`pki renew-tls`)  (key 0600)
    DIR/nodes/<id>/keys/{sig-<n>.key,enc-<n>.key,audit-<n>.key}                        (0600)
    DIR/nodes/<id>/local/{ca.pem,ca.key}                                               (key 0600)
    DIR/nodes/<id>/local/clients/<role>-<name>.{pem,key}                               (key 0600)
    DIR/nodes/<id>/local/clients/<role>-<name>@<n>.{pem,key}  renewed (`pki renew-tls --local`) (0600)

Every private key file, and only those, ends in ``.key``; it is written with ``write_private`` (mode
0600, in 0700 folders) and never printed. Every function takes
``now`` (epoch seconds); nothing here reads the clock.

Draft editing rule: an edit (add-node, revoke, rotate-authorities) of a draft that carries any signature
starts a new version (version + 1, issued_at = now, expires_at = now + validity) and clears
``manifest.sig``; an unsigned draft is already the next version and is edited in place.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from gateway.core.canonical import canonical_bytes
from gateway.core.codes import CLASSIFICATION_ORDER, NODE_ID, is_country
from gateway.core.manifest import (
    KID,
    Federation,
    Manifest,
    ManifestError,
    decode_manifest,
    endpoint_fault,
)
from gateway.core.timeutil import parse_rfc3339, rfc3339_seconds
from gateway.crypto import pki as x509pki
from gateway.crypto.hpke import KEMS, EncKey
from gateway.crypto.keys import Ed25519Key, SigningKey, atomic_write, write_private
from gateway.trust.trusted import (
    AuthorityKeyInfo,
    ManifestRejected,
    SignatureReport,
    TrustAnchor,
    TrustedManifest,
    check_canonical,
    encode_signatures,
    parse_json,
    parse_signatures,
    sign_manifest,
)

FORMAT = "traza-federation-dir/v1"
MANIFEST_DAYS = 90
SIG_KEY_DAYS = 365
OVERLAP_DAYS = 30  # default overlap of a rotated key: the old one keeps verifying this long
ROTATABLE = ("sig", "enc", "audit")
AUTHORITY_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}\Z")
KINDS = ("national", "hub", "service")
SIG_ALGS = ("EdDSA", "ES256")
LOCAL_ROLES = ("system", "operator", "auditor")
INITIAL_CLIENT = "default"  # name of the local client certificate add-node issues for each role

_ANY = ["national", "hub", "service"]

# SPEC §5 "sent by → to", as the default policy of a new federation. "→ requester/asker/submitter/origin"
# rows (answers, receipts, errors, notices) are allowed from any kind to any kind: the conversation, not
# the kind, decides who answers. Every type carrying case content is encrypted through hubs; receipt and
# error carry only ids, codes and times, so they are not.
DEFAULT_POLICY: dict[str, dict[str, Any]] = {
    "trace.request": {"senders": ["national"], "recipients": ["national", "service"], "encrypt_through_hubs": True},
    "trace.acknowledgement": {"senders": _ANY, "recipients": _ANY, "encrypt_through_hubs": True},
    "trace.response": {"senders": _ANY, "recipients": _ANY, "encrypt_through_hubs": True},
    "firearm.status.query": {"senders": ["national"], "recipients": ["national", "service"], "encrypt_through_hubs": True},
    "firearm.status.answer": {"senders": _ANY, "recipients": _ANY, "encrypt_through_hubs": True},
    "ballistic.submission": {"senders": ["national"], "recipients": ["national", "hub"], "encrypt_through_hubs": True},
    "ballistic.hit": {"senders": _ANY, "recipients": _ANY, "encrypt_through_hubs": True},
    "licence.verify.query": {"senders": ["national"], "recipients": ["national"], "encrypt_through_hubs": True},
    "licence.verify.answer": {"senders": _ANY, "recipients": _ANY, "encrypt_through_hubs": True},
    "notice": {"senders": _ANY, "recipients": _ANY, "encrypt_through_hubs": True},
    "receipt": {"senders": _ANY, "recipients": _ANY, "encrypt_through_hubs": False},
    "error": {"senders": _ANY, "recipients": _ANY, "encrypt_through_hubs": False},
}


class FederationDirError(Exception):
    """A failed check on a federation folder (exit status 1). The message names file and reason."""


class FederationUsageError(FederationDirError):
    """Bad arguments found after parsing (exit status 2)."""


# --------------------------------------------------------------------------------------------------
# small file helpers
# --------------------------------------------------------------------------------------------------


def write_public(path: Path, data: bytes) -> None:
    """Atomic write of a public file (mode 0644)."""
    atomic_write(path, data, 0o644)


def _json_file(data: Any) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"


def _secret_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _dt(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(now), dt.UTC)


# --------------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeFiles:
    """Where one node's files are (what a node config points at). Paths are absolute."""

    node: str
    dir: Path
    sig_key: Path
    sig_kid: str
    sig_alg: str
    enc_key: Path
    enc_kid: str
    kem: str
    audit_key: Path
    audit_kid: str
    tls_cert: Path
    tls_key: Path
    tls_ca: Path
    local_ca: Path  # the file the node trusts for its local clients (keys.local_ca): every local CA in force
    local_ca_key: Path  # the key of the local CA that issues now
    local_ca_cert: Path  # its certificate (the same file as local_ca outside a local CA rollover)
    clients: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # "<role>:<name>" -> (cert, key)


@dataclass(frozen=True)
class VerifyResult:
    federation: Federation
    raw: bytes
    trusted: SignatureReport
    new: SignatureReport | None  # the new authorities' count when the manifest rotates them
    anchor: Path
    signatures: int  # entries in manifest.sig


@dataclass(frozen=True)
class RotateResult:
    kid: str  # the new key
    file: Path  # its private key file (0600)
    retiring: list[str]  # older keys that now end at not_after
    not_after: str
    version: int
    started: bool


@dataclass(frozen=True)
class RenewResult:
    cert: Path  # the new certificate (beside the old one)
    key: Path  # its private key (0600)
    serial: str  # hex, the revocation-list form
    previous: str  # serial of the certificate it replaces
    issuer: str
    not_after: str
    ca_published: bool  # the issuing CA is in the last published manifest's tls_ca (else peers refuse it)


@dataclass(frozen=True)
class LocalCaResult:
    number: int  # local/ca-<n>
    cert: Path  # the local CA that issues from now on
    trust: Path  # the file the node reads (keys.local_ca)
    trusted: list[str]  # subjects of the CAs that file now holds
    removed: list[str]  # subjects removed (retire-local-ca)


@dataclass(frozen=True)
class CaResult:
    number: int  # ca/ca-<n>
    cert: Path
    tls_ca: list[str]  # subjects of the draft's tls_ca after the change
    removed: list[str]  # subjects removed (retire-ca)
    version: int
    started: bool


@dataclass(frozen=True)
class SignResult:
    signed: list[str]  # kids that added a signature
    already: list[str]  # kids whose valid signature was already there
    version: int
    published: bool
    status: str  # why it is or is not published yet


# --------------------------------------------------------------------------------------------------
# the folder
# --------------------------------------------------------------------------------------------------


class FederationDir:
    """One federation folder. Methods check first and write last; errors raise FederationDirError."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()

    # ---- paths ----
    @property
    def settings_path(self) -> Path:
        return self.root / "federation.json"

    @property
    def anchor_path(self) -> Path:
        return self.root / "trust-anchor.json"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def sig_path(self) -> Path:
        return self.root / "manifest.sig"

    @property
    def published_dir(self) -> Path:
        return self.root / "published"

    @property
    def ca_cert_path(self) -> Path:
        return self.root / "ca" / "ca.pem"

    @property
    def ca_key_path(self) -> Path:
        return self.root / "ca" / "ca.key"

    def node_dir(self, node_id: str) -> Path:
        return self.root / "nodes" / node_id

    def authority_dir(self, name: str) -> Path:
        return self.root / "authorities" / name

    # ---- reading ----
    def _require(self) -> dict[str, Any]:
        if not self.settings_path.is_file():
            raise FederationDirError(
                f"{self.root}: not a federation folder ({self.settings_path.name} is missing; "
                "run `traza pki init-federation` first)"
            )
        try:
            settings: dict[str, Any] = json.loads(self.settings_path.read_bytes())
        except ValueError as exc:
            raise FederationDirError(f"{self.settings_path}: not JSON ({exc})") from None
        if settings.get("format") != FORMAT:
            raise FederationDirError(f"{self.settings_path}: format is {settings.get('format')!r}, expected {FORMAT!r}")
        return settings

    def read_draft(self) -> tuple[bytes, dict[str, Any]]:
        """The draft's exact bytes and parsed object (checked canonical and well-formed)."""
        self._require()
        try:
            raw = self.manifest_path.read_bytes()
        except FileNotFoundError:
            raise FederationDirError(f"{self.manifest_path}: missing") from None
        try:
            check_canonical(raw)
            decode_manifest(raw)
        except ManifestRejected as exc:
            raise FederationDirError(f"{self.manifest_path}: {exc.reason.removeprefix('manifest.json: ')}") from None
        except ManifestError as exc:
            raise FederationDirError(f"{self.manifest_path}: {exc}") from None
        obj: dict[str, Any] = msgspec.json.decode(raw)
        return raw, obj

    def read_signatures(self) -> list[dict[str, str]]:
        if not self.sig_path.exists():
            return []
        try:
            return [{"kid": s.kid, "sig": s.sig} for s in parse_signatures(self.sig_path.read_bytes())]
        except ManifestRejected as exc:
            raise FederationDirError(f"{self.sig_path}: {exc.reason.removeprefix('manifest.sig: ')}") from None

    def read_anchor(self, path: Path | None = None) -> TrustAnchor:
        p = path or self.anchor_path
        try:
            return TrustAnchor.from_json(p.read_bytes())
        except FileNotFoundError:
            raise FederationDirError(f"{p}: trust anchor file not found") from None
        except ManifestRejected as exc:
            raise FederationDirError(f"{p}: {exc.reason}") from None

    def _published(self) -> tuple[bytes, bytes] | None:
        m, s = self.published_dir / "manifest.json", self.published_dir / "manifest.sig"
        if m.is_file() and s.is_file():
            return m.read_bytes(), s.read_bytes()
        return None

    def node_files(self, node_id: str) -> NodeFiles:
        """The files of a node made by :meth:`add_node` (from its ``node.json``)."""
        d = self.node_dir(node_id)
        try:
            info = json.loads((d / "node.json").read_bytes())
        except FileNotFoundError:
            raise FederationDirError(f"{d / 'node.json'}: node {node_id!r} has no files here") from None
        clients = {f"{c['role']}:{c['name']}": (d / c["cert"], d / c["key"]) for c in info["local_clients"]}
        return NodeFiles(
            node=node_id, dir=d,
            sig_key=d / info["sig"]["file"], sig_kid=info["sig"]["kid"], sig_alg=info["sig"]["alg"],
            enc_key=d / info["enc"]["file"], enc_kid=info["enc"]["kid"], kem=info["enc"]["kem"],
            audit_key=d / info["audit"]["file"], audit_kid=info["audit"]["kid"],
            tls_cert=d / info["tls"]["cert"], tls_key=d / info["tls"]["key"], tls_ca=d / info["tls"]["ca"],
            local_ca=d / info["local_ca"].get("trust", info["local_ca"]["cert"]),
            local_ca_key=d / info["local_ca"]["key"], local_ca_cert=d / info["local_ca"]["cert"],
            clients=clients,
        )

    # ---- init ----
    @classmethod
    def init(
        cls,
        root: Path | str,
        *,
        federation: str,
        authorities: list[str],
        threshold: int,
        now: float,
        sig_alg: str = "EdDSA",
        kem: str = "MLKEM768_X25519",
        days: int = MANIFEST_DAYS,
    ) -> FederationDir:
        """Authority keys, the TLS CA, the trust anchor and a draft manifest (version 1, no nodes)."""
        self = cls(root)
        if not re.match(r"^[a-z][a-z0-9-]{0,62}\Z", federation):
            raise FederationUsageError(f"--federation {federation!r}: use lower-case letters, digits and '-'")
        if not authorities:
            raise FederationUsageError("--authorities: at least one authority name is needed")
        for name in authorities:
            if not AUTHORITY_NAME.match(name):
                raise FederationUsageError(f"--authorities: {name!r} does not match {AUTHORITY_NAME.pattern}")
        if len(set(authorities)) != len(authorities):
            raise FederationUsageError("--authorities: a name is repeated")
        if not 1 <= threshold <= len(authorities):
            raise FederationUsageError(f"--threshold {threshold} is not within 1..{len(authorities)}")
        if sig_alg not in SIG_ALGS:
            raise FederationUsageError(f"--sig-alg {sig_alg!r} is not one of {', '.join(SIG_ALGS)}")
        if kem not in KEMS:
            raise FederationUsageError(f"--kem {kem!r} is not one of {', '.join(KEMS)}")
        if not 1 <= days <= 366:
            raise FederationUsageError(f"--days {days} is not within 1..366")
        for p in (self.settings_path, self.manifest_path, self.anchor_path, self.root / "authorities", self.root / "ca"):
            if p.exists():
                raise FederationDirError(
                    f"{self.root}: already holds a federation ({p.name} exists); refusing to overwrite it"
                )
        if self.root.exists() and not self.root.is_dir():
            raise FederationDirError(f"{self.root}: exists and is not a folder")

        keys = {name: Ed25519Key.generate() for name in authorities}
        ca = x509pki.make_federation_ca(federation, now=_dt(now))
        anchor = TrustAnchor(
            federation, threshold,
[AuthorityKeyInfo(f"auth/{n}/1", k.public_b64) for n, k in keys.items()]
        )
        manifest = {
            "federation": federation,
            "version": 1,
            "issued_at": rfc3339_seconds(now),
            "expires_at": rfc3339_seconds(now + days * 86400),
            "authorities": {
                "threshold": threshold,
                "keys": [{"kid": f"auth/{n}/1", "alg": "Ed25519", "public_key": k.public_b64} for n, k in keys.items()],
            },
            "tls_ca": [ca.cert_pem.decode("ascii")],
            "revoked": {"cert_serials": [], "kids": []},
            "nodes": [],
            "policy": DEFAULT_POLICY,
        }
        raw = canonical_bytes(manifest)
        decode_manifest(raw)  # our own output must be a valid manifest

        self.root.mkdir(parents=True, exist_ok=True)
        for n, k in keys.items():
            write_private(_secret_dir(self.authority_dir(n)) / "1.key", k.private_pem())
        _secret_dir(self.ca_key_path.parent)
        write_private(self.ca_key_path, ca.key_pem)
        write_public(self.ca_cert_path, ca.cert_pem)
        write_public(self.anchor_path, anchor.to_json())
        write_public(self.manifest_path, raw)
        write_public(self.sig_path, encode_signatures([]))
        settings = {
            "format": FORMAT, "federation": federation, "created_at": rfc3339_seconds(now),
            "sig_alg": sig_alg, "kem": kem, "manifest_days": days,
        }
        write_public(self.settings_path, _json_file(settings))  # last: marks the folder complete
        return self

    # ---- draft editing ----
    def _edit(self, mutate: Callable[[dict[str, Any]], None], now: float) -> tuple[int, bool]:
        """Apply ``mutate`` to the draft under the editing rule; return (version, new_version_started)."""
        settings = self._require()
        _, obj = self.read_draft()
        sigs = self.read_signatures()
        pub = self._published()
        pub_version = 0
        if pub is not None:
            try:
                pub_version = int(msgspec.json.decode(pub[0])["version"])
            except (ValueError, KeyError, TypeError, msgspec.DecodeError):
                pub_version = 0
        new_version = bool(sigs) or obj["version"] <= pub_version
        if new_version:
            obj["version"] = max(obj["version"], pub_version) + 1
            obj["issued_at"] = rfc3339_seconds(now)
            obj["expires_at"] = rfc3339_seconds(now + int(settings.get("manifest_days", MANIFEST_DAYS)) * 86400)
        mutate(obj)
        raw = canonical_bytes(obj)
        try:
            decode_manifest(raw)
        except ManifestError as exc:
            raise FederationDirError(f"{self.manifest_path}: the change would make an invalid manifest: {exc}") from None
        write_public(self.manifest_path, raw)
        if new_version or sigs:
            write_public(self.sig_path, encode_signatures([]))
        return obj["version"], new_version

    def bump(self, *, now: float, days: int | None = None) -> int:
        """Start a new version: version + 1, issued_at = now, expires_at = now + days, no signatures."""
        settings = self._require()
        _, obj = self.read_draft()
        pub = self._published()
        pub_version = int(msgspec.json.decode(pub[0])["version"]) if pub else 0
        d = int(days if days is not None else settings.get("manifest_days", MANIFEST_DAYS))
        if not 1 <= d <= 366:
            raise FederationUsageError(f"--days {d} is not within 1..366")
        obj["version"] = max(obj["version"], pub_version) + 1
        obj["issued_at"] = rfc3339_seconds(now)
        obj["expires_at"] = rfc3339_seconds(now + d * 86400)
        write_public(self.manifest_path, canonical_bytes(obj))
        write_public(self.sig_path, encode_signatures([]))
        return int(obj["version"])

    # ---- nodes ----
    def add_node(
        self,
        node_id: str,
        *,
        kind: str,
        country: str,
        endpoint: str,
        now: float,
        hub: str | None = None,
        peers: Iterable[str] = (),
        max_classification: str = "BASIC_PROTECTION_LEVEL",
        sig_alg: str | None = None,
        kem: str | None = None,
        name: str | None = None,
        batch: bool = False,
    ) -> tuple[NodeFiles, int, bool]:
        """Keys, certificates and local CA of a new node, and its entry in the draft manifest (``batch``:
        it advertises batch signatures, protocol 1.1, docs/protocol.md)."""
        settings = self._require()
        _, draft = self.read_draft()
        sig_alg = sig_alg or settings.get("sig_alg", "EdDSA")
        kem = kem or settings.get("kem", "MLKEM768_X25519")
        peers = list(peers)
        country = country.upper()
        # checks first, nothing written yet
        if not NODE_ID.match(node_id):
            raise FederationUsageError(f"node id {node_id!r} does not match {NODE_ID.pattern}")
        if kind not in KINDS:
            raise FederationUsageError(f"--kind {kind!r} is not one of {', '.join(KINDS)}")
        if not re.match(r"^[A-Z]{2}\Z", country) or not is_country(country):
            raise FederationUsageError(f"--country {country!r} is not an ISO 3166-1 alpha-2 country code "
                                       "(e.g. MX, ES, NL)")
        why = endpoint_fault(endpoint)
        if why is not None:
            raise FederationUsageError(f"--endpoint {endpoint!r} must be https://host[:port]: {why}")
        if max_classification not in CLASSIFICATION_ORDER:
            raise FederationUsageError(
                f"--max-classification {max_classification!r} is not one of {', '.join(CLASSIFICATION_ORDER)}"
            )
        if sig_alg not in SIG_ALGS:
            raise FederationUsageError(f"--sig-alg {sig_alg!r} is not one of {', '.join(SIG_ALGS)}")
        if kem not in KEMS:
            raise FederationUsageError(f"--kem {kem!r} is not one of {', '.join(KEMS)}")
        nodes = {n["id"]: n for n in draft["nodes"]}
        if node_id in nodes:
            raise FederationDirError(f"{self.manifest_path}: node {node_id!r} is already in the manifest")
        if self.node_dir(node_id).exists():
            raise FederationDirError(
                f"{self.node_dir(node_id)}: already exists but {node_id!r} is not in the manifest; "
                "remove the folder first"
            )
        if kind == "hub":
            if hub:
                raise FederationUsageError(f"--hub: a hub ({node_id}) has no hub")
        else:
            if not hub:
                raise FederationUsageError(f"--hub: a {kind} node needs its hub")
            if hub not in nodes:
                raise FederationDirError(f"--hub {hub!r}: no such node in the manifest (add the hub first)")
            if nodes[hub]["kind"] != "hub":
                raise FederationDirError(f"--hub {hub!r}: is a {nodes[hub]['kind']} node, not a hub")
        for p in peers:
            if p not in nodes:
                raise FederationDirError(f"--peers: {p!r} is not a node of the manifest (add it first)")
            if p == node_id:
                raise FederationUsageError("--peers: a node cannot list itself")
        if len(set(peers)) != len(peers):
            raise FederationUsageError("--peers: a node is repeated")

        when = _dt(now)
        ca = self.current_ca()
        tls = x509pki.issue_node_cert(ca, node_id, now=when)
        sig = SigningKey.generate(f"{node_id}/sig/1", sig_alg)  # type: ignore[arg-type]
        enc = EncKey.generate(f"{node_id}/enc/1", kem)
        audit = Ed25519Key.generate()
        local_ca = x509pki.make_local_ca(settings["federation"], node_id, now=when)
        clients = {role: x509pki.issue_local_cert(local_ca, role, INITIAL_CLIENT, now=when) for role in LOCAL_ROLES}

        entry: dict[str, Any] = {
            "id": node_id, "kind": kind, "country": country,
            "name": name or f"{node_id} ({kind}, {country})",
            "endpoint": endpoint.rstrip("/"), "max_classification": max_classification,
            "keys": [
                {"kid": sig.kid, "use": "sig", "alg": sig_alg, "jwk": sig.public_jwk(),
                 "not_before": rfc3339_seconds(now - 300), "not_after": rfc3339_seconds(now + SIG_KEY_DAYS * 86400)},
                enc.manifest_entry(),
                {"kid": f"{node_id}/audit/1", "use": "audit", "alg": "Ed25519", "public_key": audit.public_b64},
            ],
        }
        if hub:
            entry["hub"] = hub
        if peers:
            entry["peers"] = peers
        if batch:
            entry["batch"] = True
        # validate the resulting manifest before writing any file
        try:
            decode_manifest(canonical_bytes({**draft, "nodes": [*draft["nodes"], entry]}))
        except ManifestError as exc:
            raise FederationDirError(f"node {node_id}: {exc}") from None

        d = self.node_dir(node_id)
        _secret_dir(d)
        _secret_dir(d / "keys")
        write_private(d / "keys" / "sig-1.key", sig.private_pem())
        write_private(d / "keys" / "enc-1.key", enc.private_bytes())
        write_private(d / "keys" / "audit-1.key", audit.private_pem())
        _secret_dir(d / "tls")
        write_private(d / "tls" / "cert.key", tls.key_pem)
        write_public(d / "tls" / "cert.pem", tls.cert_pem)
        write_public(d / "tls" / "ca.pem", ca.cert_pem)
        _secret_dir(d / "local")
        write_private(d / "local" / "ca.key", local_ca.key_pem)
        write_public(d / "local" / "ca.pem", local_ca.cert_pem)
        client_rows = []
        for role, issued in clients.items():
            row = self._write_client(node_id, role, INITIAL_CLIENT, issued)
            client_rows.append(row)
        info = {
            "node": node_id, "federation": settings["federation"], "kind": kind,
            "sig": {"kid": sig.kid, "alg": sig_alg, "file": "keys/sig-1.key"},
            "enc": {"kid": enc.kid, "kem": kem, "file": "keys/enc-1.key"},
            "audit": {"kid": f"{node_id}/audit/1", "alg": "Ed25519", "file": "keys/audit-1.key"},
            "tls": {"cert": "tls/cert.pem", "key": "tls/cert.key", "ca": "tls/ca.pem", "serial": tls.serial_hex},
            "local_ca": {"cert": "local/ca.pem", "key": "local/ca.key"},
            "local_clients": client_rows,
        }
        write_public(d / "node.json", _json_file(info))

        def mutate(obj: dict[str, Any]) -> None:
            obj["nodes"].append(entry)

        try:
            version, started = self._edit(mutate, now)
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)  # no half-added node
            raise
        return self.node_files(node_id), version, started

    def _write_client(self, node_id: str, role: str, name: str, issued: x509pki.Issued) -> dict[str, str]:
        d = _secret_dir(self.node_dir(node_id) / "local" / "clients")
        base = f"{role}-{name}"
        write_private(d / f"{base}.key", issued.key_pem)
        write_public(d / f"{base}.pem", issued.cert_pem)
        return {"role": role, "name": name, "cert": f"local/clients/{base}.pem", "key": f"local/clients/{base}.key",
                "serial": issued.serial_hex}

    def issue_local(self, node_id: str, role: str, name: str, *, now: float) -> tuple[Path, Path, str]:
        """Another local client certificate from the node's local CA; returns (cert, key, serial hex)."""
        self._require()
        if role not in LOCAL_ROLES:
            raise FederationUsageError(f"--role {role!r} is not one of {', '.join(LOCAL_ROLES)}")
        files = self.node_files(node_id)
        key = f"{role}:{name}"
        if key in files.clients:
            raise FederationDirError(f"{files.clients[key][0]}: a {role} certificate named {name!r} already exists")
        ca = x509pki.load_issued(files.local_ca_cert.read_bytes(), files.local_ca_key.read_bytes())
        try:
            issued = x509pki.issue_local_cert(ca, role, name, now=_dt(now))
        except x509pki.PkiError as exc:
            raise FederationUsageError(str(exc)) from None
        row = self._write_client(node_id, role, name, issued)
        info_path = files.dir / "node.json"
        info = json.loads(info_path.read_bytes())
        info["local_clients"].append(row)
        write_public(info_path, _json_file(info))
        return files.dir / row["cert"], files.dir / row["key"], row["serial"]

    # ---- TLS certificates: renewal and the federation CA rollover ----
    def _cas(self) -> list[tuple[int, Path, Path]]:
        """(n, certificate, key) of each federation CA made here, oldest first: ``ca/ca.pem`` is 1, then
        ``ca/ca-<n>.pem`` (``new-ca``)."""
        out = [(1, self.ca_cert_path, self.ca_key_path)]
        for p in self.ca_cert_path.parent.glob("ca-*.pem"):
            m = re.fullmatch(r"ca-([1-9][0-9]*)\.pem", p.name)
            if m and int(m.group(1)) > 1:
                out.append((int(m.group(1)), p, p.with_suffix(".key")))
        return sorted(out)

    def current_ca(self) -> x509pki.Issued:
        """The newest federation CA, with its key: what issues node certificates (add-node, renew-tls)."""
        _, cert, key = self._cas()[-1]
        try:
            return x509pki.load_issued(cert.read_bytes(), key.read_bytes())
        except OSError as exc:
            raise FederationDirError(f"{exc.filename}: cannot read the federation CA ({exc.strerror})") from None
        except (ValueError, x509pki.PkiError) as exc:
            raise FederationDirError(f"{cert}: not a usable federation CA ({exc})") from None

    def _published_tls_ca(self) -> list[str]:
        pub = self._published()
        if pub is None:
            return []
        try:
            return list(msgspec.json.decode(pub[0])["tls_ca"])
        except (msgspec.DecodeError, KeyError, TypeError):
            return []

    def renew_tls(self, node_id: str, *, now: float, days: int = x509pki.MAX_LEAF_DAYS) -> RenewResult:
        """A new TLS certificate for ``node_id`` (new key, new serial, the same names) from the newest
        federation CA, written beside the old one as ``tls/cert-<n>.pem`` / ``cert-<n>.key``; ``node.json``
        then names it. The manifest does not change (it lists CAs and revoked serials, not node
        certificates): copy both files beside the node's certificate and it swaps them in at its next
        manifest poll or on SIGHUP, without a restart."""
        self._require()
        _, draft = self.read_draft()
        if not any(n["id"] == node_id for n in draft["nodes"]):
            raise FederationDirError(f"{self.manifest_path}: node {node_id!r} is not in the manifest")
        files = self.node_files(node_id)
        ca = self.current_ca()
        if ca.cert_pem.decode("ascii") not in draft["tls_ca"]:
            raise FederationDirError(
                f"{self._cas()[-1][1]}: the newest federation CA is not in the draft's tls_ca; add it back or "
                "retire it before renewing")
        try:
            old = x509pki.cert_info(files.tls_cert.read_bytes())
        except OSError as exc:
            raise FederationDirError(f"{files.tls_cert}: cannot read the current certificate ({exc.strerror})") from None
        except x509pki.PkiError as exc:
            raise FederationDirError(f"{files.tls_cert}: {exc}") from None
        try:
            issued = x509pki.issue_node_cert(
                ca, node_id, now=_dt(now), days=days,
                dns_names=tuple(d for d in old.san_dns if d != "localhost"),
                ip_addresses=tuple(i for i in old.san_ips if i != "127.0.0.1"))
        except x509pki.PkiError as exc:
            raise FederationUsageError(str(exc)) from None
        tls_dir = files.dir / "tls"
        numbers = [1] + [int(m.group(1)) for p in tls_dir.glob("cert-*.pem")
                         if (m := re.fullmatch(r"cert-([1-9][0-9]*)\.pem", p.name))]
        n = max(numbers) + 1
        cert, key = tls_dir / f"cert-{n}.pem", tls_dir / f"cert-{n}.key"
        write_private(key, issued.key_pem)
        write_public(cert, issued.cert_pem)
        write_public(tls_dir / "ca.pem", "".join(draft["tls_ca"]).encode("ascii"))
        info_path = files.dir / "node.json"
        info = json.loads(info_path.read_bytes())
        info.setdefault("previous_tls", []).append(info["tls"])
        info["tls"] = {"cert": f"tls/cert-{n}.pem", "key": f"tls/cert-{n}.key", "ca": "tls/ca.pem",
                       "serial": issued.serial_hex}
        write_public(info_path, _json_file(info))
        new = x509pki.cert_info(issued.cert_pem)
        return RenewResult(cert=cert, key=key, serial=issued.serial_hex, previous=old.serial_hex, issuer=new.issuer,
                           not_after=rfc3339_seconds(new.not_after.timestamp()),
                           ca_published=ca.cert_pem.decode("ascii") in self._published_tls_ca())

    def renew_local(self, node_id: str, role: str, name: str, *, now: float,
                    days: int = x509pki.MAX_LEAF_DAYS) -> RenewResult:
        """A new local API client certificate for ``<role>:<name>`` (new key, new serial) from the node's
        local CA, written beside the old one as ``local/clients/<role>-<name>@<n>.pem`` / ``.key`` (``@``
        cannot occur in a name, so no other client's files are touched); ``node.json`` then names it. The
        node needs nothing: its local listener trusts the local CA, not a certificate."""
        self._require()
        files = self.node_files(node_id)
        ident = f"{role}:{name}"
        if ident not in files.clients:
            have = ", ".join(sorted(files.clients)) or "none"
            raise FederationDirError(f"{files.dir / 'node.json'}: node {node_id!r} has no local certificate {ident!r} "
                                     f"(it has: {have}); issue one with `traza pki issue-local`")
        ca = x509pki.load_issued(files.local_ca_cert.read_bytes(), files.local_ca_key.read_bytes())
        try:
            issued = x509pki.issue_local_cert(ca, role, name, now=_dt(now), days=days)
        except x509pki.PkiError as exc:
            raise FederationUsageError(str(exc)) from None
        d = files.dir / "local" / "clients"
        base = f"{role}-{name}"
        n = 2
        while (d / f"{base}@{n}.pem").exists() or (d / f"{base}@{n}.key").exists():
            n += 1
        cert, key = d / f"{base}@{n}.pem", d / f"{base}@{n}.key"
        write_private(key, issued.key_pem)
        write_public(cert, issued.cert_pem)
        info_path = files.dir / "node.json"
        info = json.loads(info_path.read_bytes())
        row = next(r for r in info["local_clients"] if r["role"] == role and r["name"] == name)
        previous = row["serial"]
        row.setdefault("previous", []).append({k: row[k] for k in ("cert", "key", "serial")})
        row.update({"cert": f"local/clients/{base}@{n}.pem", "key": f"local/clients/{base}@{n}.key",
                    "serial": issued.serial_hex})
        write_public(info_path, _json_file(info))
        new = x509pki.cert_info(issued.cert_pem)
        return RenewResult(cert=cert, key=key, serial=issued.serial_hex, previous=previous, issuer=new.issuer,
                           not_after=rfc3339_seconds(new.not_after.timestamp()), ca_published=True)

    # ---- a node's local CA: rollover (new-local-ca, renew-tls --local for each client, retire-local-ca) ----
    def new_local_ca(self, node_id: str, *, now: float, days: int = x509pki.CA_DAYS) -> LocalCaResult:
        """Step 1 of a local CA rollover: a new local CA for ``node_id`` (``local/ca-<n>.pem`` / ``.key``)
        that issues local client certificates from now on, added to the file the node trusts
        (``local/ca.pem``, ``keys.local_ca``) beside the current one. The node picks it up on SIGHUP or at
        its next manifest poll. Refused while that file already holds more than one CA (a rollover in progress)."""
        settings = self._require()
        files = self.node_files(node_id)
        held = files.local_ca.read_bytes()
        if held.count(b"-----BEGIN CERTIFICATE-----") > 1:
            raise FederationDirError(f"{files.local_ca}: already holds more than one local CA (a rollover is in "
                                     "progress); finish it with `traza pki retire-local-ca` first")
        if not 1 <= days <= 20 * 366:
            raise FederationUsageError(f"--days {days} is not within 1..{20 * 366}")
        local = files.dir / "local"
        n = 2
        while (local / f"ca-{n}.pem").exists() or (local / f"ca-{n}.key").exists():
            n += 1
        ca = x509pki.make_local_ca(settings["federation"], node_id, now=_dt(now), days=days, number=n)
        info_path = files.dir / "node.json"
        info = json.loads(info_path.read_bytes())
        row = info["local_ca"]
        if files.local_ca_cert == files.local_ca:  # the first rollover: keep the issuing CA in a file of its own
            first = local / "ca-1.pem"
            write_public(first, files.local_ca_cert.read_bytes())
            row["cert"] = "local/ca-1.pem"
        write_private(local / f"ca-{n}.key", ca.key_pem)
        write_public(local / f"ca-{n}.pem", ca.cert_pem)
        write_public(files.local_ca, held.rstrip(b"\n") + b"\n" + ca.cert_pem)
        row.setdefault("previous", []).append({"cert": row["cert"], "key": row["key"]})
        row.update({"cert": f"local/ca-{n}.pem", "key": f"local/ca-{n}.key", "trust": "local/ca.pem"})
        write_public(info_path, _json_file(info))
        return LocalCaResult(number=n, cert=local / f"ca-{n}.pem", trust=files.local_ca,
                             trusted=_subjects(files.local_ca.read_bytes()), removed=[])

    def retire_local_ca(self, node_id: str, *, now: float, force: bool = False) -> LocalCaResult:
        """Step 3 of a local CA rollover: the file the node trusts keeps only the local CA that issues now.
        Refused while a local client certificate ``node.json`` names is not issued by it, unless ``force``
        (once the node re-reads the file, those clients are refused at once)."""
        self._require()
        files = self.node_files(node_id)
        current = files.local_ca_cert.read_bytes()
        held = files.local_ca.read_bytes()
        if files.local_ca_cert == files.local_ca or held.count(b"-----BEGIN CERTIFICATE-----") < 2:
            raise FederationDirError(f"{files.local_ca}: holds only the current local CA; nothing to retire")
        behind = sorted(ident for ident, (cert, _) in files.clients.items()
                        if not x509pki.verify_issued_by(cert.read_bytes(), current))
        if behind and not force:
            raise FederationDirError(
                f"the local client certificates {', '.join(behind)} of {node_id} are not issued by the current local "
                f"CA ({files.local_ca_cert}): run `traza pki renew-tls DIR {node_id} --local ROLE:NAME` for each and "
                "give them to their holders first (or --force)")
        before = _subjects(held)
        write_public(files.local_ca, current)
        after = _subjects(current)
        return LocalCaResult(number=int(files.local_ca_cert.stem.rsplit("-", 1)[1]), cert=files.local_ca_cert,
                             trust=files.local_ca, trusted=after, removed=[s for s in before if s not in after])

    def new_ca(self, *, now: float, days: int = x509pki.CA_DAYS) -> CaResult:
        """Step 1 of a federation CA rollover: a new federation TLS CA (``ca/ca-<n>.pem``), added to the
        draft's ``tls_ca`` beside the current one. Once the manifest carrying both is published and
        applied everywhere, every node trusts certificates from either CA; ``renew-tls`` then issues
        under the new one; ``retire-ca`` (step 3) removes the old. Refused while ``tls_ca`` already lists
        more than one CA (a rollover in progress)."""
        settings = self._require()
        _, draft = self.read_draft()
        if len(draft["tls_ca"]) > 1:
            raise FederationDirError(
                f"{self.manifest_path}: tls_ca already lists {len(draft['tls_ca'])} CAs (a rollover is in progress); "
                "finish it with `traza pki retire-ca` first")
        if not 1 <= days <= 20 * 366:
            raise FederationUsageError(f"--days {days} is not within 1..{20 * 366}")
        n = self._cas()[-1][0] + 1
        ca = x509pki.make_federation_ca(settings["federation"], now=_dt(now), days=days, number=n)
        cert, key = self.ca_cert_path.parent / f"ca-{n}.pem", self.ca_cert_path.parent / f"ca-{n}.key"
        if cert.exists() or key.exists():
            raise FederationDirError(f"{cert}: already exists; remove it first")
        pem = ca.cert_pem.decode("ascii")

        def mutate(obj: dict[str, Any]) -> None:
            obj["tls_ca"] = [*obj["tls_ca"], pem]

        write_private(key, ca.key_pem)
        write_public(cert, ca.cert_pem)
        try:
            version, started = self._edit(mutate, now)
        except BaseException:
            cert.unlink(missing_ok=True)
            key.unlink(missing_ok=True)
            raise
        return CaResult(number=n, cert=cert, tls_ca=[*map(_subject, draft["tls_ca"]), _subject(pem)], removed=[],
                        version=version, started=started)

    def retire_ca(self, *, now: float, force: bool = False) -> CaResult:
        """Step 3 of a federation CA rollover: remove every CA but the newest from the draft's ``tls_ca``.
        Refused while a node's current certificate (``node.json``) is not issued by the newest CA, unless
        ``force``: published, the manifest makes every node refuse those certificates at once."""
        self._require()
        _, draft = self.read_draft()
        n, cert_path, _ = self._cas()[-1]
        current = cert_path.read_text("ascii")
        if current not in draft["tls_ca"]:
            raise FederationDirError(f"{cert_path}: the newest federation CA is not in the draft's tls_ca")
        old = [pem for pem in draft["tls_ca"] if pem != current]
        if not old:
            raise FederationDirError(f"{self.manifest_path}: tls_ca lists only the newest CA ({_subject(current)}); "
                                     "nothing to retire")
        behind = []
        for node in draft["nodes"]:
            try:
                f = self.node_files(node["id"])
                ok = x509pki.verify_issued_by(f.tls_cert.read_bytes(), current.encode("ascii"))
            except (FederationDirError, OSError, ValueError):
                ok = False
            if not ok:
                behind.append(node["id"])
        if behind and not force:
            raise FederationDirError(
                f"the certificates of {', '.join(behind)} are not issued by the newest CA ({cert_path}): run "
                "`traza pki renew-tls DIR NODE` for each and install them first (or --force)")

        def mutate(obj: dict[str, Any]) -> None:
            obj["tls_ca"] = [current]

        version, started = self._edit(mutate, now)
        return CaResult(number=n, cert=cert_path, tls_ca=[_subject(current)], removed=[_subject(p) for p in old],
                        version=version, started=started)

    # ---- key rotation ----
    def rotate_key(
        self, node_id: str, use: str, *, now: float, overlap_days: float = OVERLAP_DAYS
    ) -> RotateResult:
        """A new ``use`` key for ``node_id`` with the next key id (``<node>/<use>/<n+1>``), written beside the
        node's others (0600) and added to the draft with ``not_before`` = now; every older unrevoked key of
        that use gets ``not_after`` = now + overlap (or keeps an earlier one). ``node.json`` then names
        the new key. Verifiers accept the old key until its ``not_after``; a revoked key never."""
        settings = self._require()
        if use not in ROTATABLE:
            raise FederationUsageError(f"--use {use!r} is not one of {', '.join(ROTATABLE)}")
        if not 0 <= overlap_days <= 365:
            raise FederationUsageError(f"--overlap {overlap_days:g} is not within 0..365 days")
        _, draft = self.read_draft()
        entry = next((n for n in draft["nodes"] if n["id"] == node_id), None)
        if entry is None:
            raise FederationDirError(f"{self.manifest_path}: node {node_id!r} is not in the manifest")
        info_path = self.node_dir(node_id) / "node.json"
        try:
            info = json.loads(info_path.read_bytes())
        except FileNotFoundError:
            raise FederationDirError(f"{info_path}: node {node_id!r} has no files here") from None
        revoked = set(draft["revoked"]["kids"])
        mine = [k for k in entry["keys"] if k["use"] == use]
        n = max((int(k["kid"].rsplit("/", 1)[1]) for k in mine), default=0) + 1
        kid = f"{node_id}/{use}/{n}"
        live = [k for k in mine if k["kid"] not in revoked]
        last = max(mine, key=lambda k: int(k["kid"].rsplit("/", 1)[1]), default=None)
        rel = f"keys/{use}-{n}.key"
        path = self.node_dir(node_id) / rel
        if path.exists():
            raise FederationDirError(f"{path}: already exists but {kid} is not in the manifest; remove it first")
        new_entry: dict[str, Any]
        secret: bytes
        if use == "sig":
            alg = (last or {}).get("alg") or settings.get("sig_alg", "EdDSA")
            sk = SigningKey.generate(kid, alg)
            new_entry = {"kid": kid, "use": "sig", "alg": alg, "jwk": sk.public_jwk(),
                         "not_before": rfc3339_seconds(now), "not_after": rfc3339_seconds(now + SIG_KEY_DAYS * 86400)}
            secret, desc = sk.private_pem(), {"kid": kid, "alg": alg, "file": rel}
        elif use == "enc":
            kem = (last or {}).get("kem") or settings.get("kem", "MLKEM768_X25519")
            ek = EncKey.generate(kid, kem)
            new_entry = {**ek.manifest_entry(), "not_before": rfc3339_seconds(now)}
            secret, desc = ek.private_bytes(), {"kid": kid, "kem": kem, "file": rel}
        else:
            ak = Ed25519Key.generate()
            new_entry = {"kid": kid, "use": "audit", "alg": "Ed25519", "public_key": ak.public_b64,
                         "not_before": rfc3339_seconds(now)}
            secret, desc = ak.private_pem(), {"kid": kid, "alg": "Ed25519", "file": rel}
        ends = now + overlap_days * 86400
        retiring = [k["kid"] for k in live if not k.get("not_after") or parse_rfc3339(k["not_after"]) > ends]

        def mutate(obj: dict[str, Any]) -> None:
            node = next(x for x in obj["nodes"] if x["id"] == node_id)
            for k in node["keys"]:
                if k["kid"] in retiring:
                    k["not_after"] = rfc3339_seconds(ends)
            node["keys"].append(new_entry)

        write_private(_secret_dir(self.node_dir(node_id) / "keys") / f"{use}-{n}.key", secret)
        try:
            version, started = self._edit(mutate, now)
        except BaseException:
            path.unlink(missing_ok=True)  # no key file without its manifest entry
            raise
        info.setdefault("previous", []).append(info[use])
        info[use] = desc
        write_public(info_path, _json_file(info))
        return RotateResult(kid=kid, file=path, retiring=retiring, not_after=rfc3339_seconds(ends),
                            version=version, started=started)

    def set_endpoints(self, node_id: str, urls: list[str], *, now: float) -> tuple[int, bool]:
        """Give node ``node_id`` of the draft several addresses (SPEC §2, 1.1 ``endpoints``: the replicas of
        one node; peers spread batches over them and fail over between them; docs/ha.md)."""
        self._require()
        _, draft = self.read_draft()
        if node_id not in {n["id"] for n in draft["nodes"]}:
            raise FederationDirError(f"{self.manifest_path}: node {node_id!r} is not in the manifest")
        for u in urls:
            why = endpoint_fault(u)
            if why is not None:
                raise FederationUsageError(f"endpoint {u!r} must be https://host[:port]: {why}")
        if not urls or len(set(urls)) != len(urls):
            raise FederationUsageError(f"endpoints of {node_id}: at least one, none repeated")

        def mutate(obj: dict[str, Any]) -> None:
            for n in obj["nodes"]:
                if n["id"] == node_id:
                    n["endpoint"] = urls[0].rstrip("/")
                    if len(urls) > 1:
                        n["endpoints"] = [u.rstrip("/") for u in urls[1:]]
                    else:
                        n.pop("endpoints", None)

        return self._edit(mutate, now)

    # ---- revocation ----
    def set_group(self, name: str, members: list[str], *, now: float) -> tuple[int, bool]:
        """Set (or with no ``members`` remove) the recipient group ``name`` of the draft (SPEC §2, 1.1:
        ``groups``; a submission to ``group:NAME`` fans out to its members). The manifest's checks apply:
        members are nodes of the manifest, none repeated, the name ``[a-z][a-z0-9-]*``."""
        self._require()
        _, draft = self.read_draft()
        if not members and name not in draft.get("groups", {}):
            raise FederationUsageError(f"group {name!r}: not in the draft; give its members to create it")

        def mutate(obj: dict[str, Any]) -> None:
            groups = dict(obj.get("groups", {}))
            if members:
                groups[name] = list(members)
            else:
                groups.pop(name, None)
            if groups:
                obj["groups"] = groups
            else:
                obj.pop("groups", None)

        return self._edit(mutate, now)

    def revoke(self, *, now: float, kid: str | None = None, cert_serial: str | None = None) -> tuple[int, bool] | None:
        """Add a kid or a certificate serial to the draft's revoked set. None if it already was."""
        self._require()
        if (kid is None) == (cert_serial is None):
            raise FederationUsageError("give exactly one of --kid and --cert-serial")
        _, draft = self.read_draft()
        if kid is not None:
            if kid.startswith("auth/"):
                raise FederationUsageError(
                    f"--kid {kid}: authority keys are removed with `traza pki rotate-authorities`, not revoked"
                )
            if not KID.match(kid):
                raise FederationUsageError(f"--kid {kid!r} is not a key id (<node>/<use>/<n>)")
            if kid in draft["revoked"]["kids"]:
                return None
            owner = kid.split("/", 1)[0]
            keys = next(([k.get("kid") for k in n.get("keys", [])] for n in draft["nodes"] if n.get("id") == owner), None)
            if keys is None or kid not in keys:  # a typo would leave the compromised key trusted, unnoticed
                known = f"no node {owner!r}" if keys is None else f"{owner}'s keys: {', '.join(sorted(map(str, keys)))}"
                raise FederationUsageError(f"--kid {kid}: no node of the manifest has this key ({known})")
            value, member = kid, "kids"
        else:
            assert cert_serial is not None
            s = cert_serial.lower().removeprefix("0x").replace(":", "")
            if not re.match(r"^[0-9a-f]{1,40}\Z", s):
                raise FederationUsageError(f"--cert-serial {cert_serial!r} is not a hexadecimal serial number")
            s = s.lstrip("0") or "0"
            if s in draft["revoked"]["cert_serials"]:
                return None
            value, member = s, "cert_serials"

        def mutate(obj: dict[str, Any]) -> None:
            obj["revoked"][member] = sorted({*obj["revoked"][member], value})

        return self._edit(mutate, now)

    # ---- authority rotation ----
    def rotate_authorities(
        self, names: list[str], threshold: int, *, now: float, rekey: Iterable[str] = ()
    ) -> tuple[int, bool, list[str]]:
        """Replace the draft's authorities with ``names`` (new names get a key; names in ``rekey`` get key
        n+1). The result must be signed by the old set's and the new set's thresholds."""
        self._require()
        rekey = list(rekey)
        for n in [*names, *rekey]:
            if not AUTHORITY_NAME.match(n):
                raise FederationUsageError(f"authority name {n!r} does not match {AUTHORITY_NAME.pattern}")
        if len(set(names)) != len(names) or not names:
            raise FederationUsageError("--authorities: give distinct names")
        for n in rekey:
            if n not in names:
                raise FederationUsageError(f"--rekey {n}: not in --authorities")
        if not 1 <= threshold <= len(names):
            raise FederationUsageError(f"--threshold {threshold} is not within 1..{len(names)}")
        self.read_draft()
        new_keys: list[tuple[str, int, Ed25519Key]] = []
        entries = []
        for n in names:
            have = self._authority_keys(n)
            if not have or n in rekey:
                k_n = max(have, default=0) + 1
                key = Ed25519Key.generate()
                new_keys.append((n, k_n, key))
                entries.append({"kid": f"auth/{n}/{k_n}", "alg": "Ed25519", "public_key": key.public_b64})
            else:
                k_n = max(have)
                entries.append({"kid": f"auth/{n}/{k_n}", "alg": "Ed25519", "public_key": have[k_n].public_b64})
        for n, k_n, key in new_keys:
            write_private(_secret_dir(self.authority_dir(n)) / f"{k_n}.key", key.private_pem())

        def mutate(obj: dict[str, Any]) -> None:
            obj["authorities"] = {"threshold": threshold, "keys": entries}

        version, started = self._edit(mutate, now)
        return version, started, [e["kid"] for e in entries]

    def _authority_keys(self, name: str) -> dict[int, Ed25519Key]:
        d = self.authority_dir(name)
        out: dict[int, Ed25519Key] = {}
        if not d.is_dir():
            return out
        for p in d.glob("*.key"):
            if re.fullmatch(r"[1-9][0-9]*", p.stem):
                try:
                    out[int(p.stem)] = Ed25519Key.from_pem(p.read_bytes())
                except ValueError as exc:
                    raise FederationDirError(f"{p}: not an Ed25519 private key ({exc})") from None
        return out

    # ---- signing ----
    def sign(self, authority: str, *, now: float) -> SignResult:
        """Add ``authority``'s signature(s) to ``manifest.sig``: with each of its keys that is in the draft's
        authorities or in the trust anchor (both matter during a rotation). Idempotent."""
        self._require()
        if not AUTHORITY_NAME.match(authority):
            raise FederationUsageError(f"--authority {authority!r} does not match {AUTHORITY_NAME.pattern}")
        raw, draft = self.read_draft()
        if parse_rfc3339(draft["expires_at"]) <= now:
            raise FederationDirError(
                f"{self.manifest_path}: version {draft['version']} expired at {draft['expires_at']}; "
                "run `traza manifest bump` before signing"
            )
        have = self._authority_keys(authority)
        if not have:
            raise FederationDirError(f"{self.authority_dir(authority)}: no private key of authority {authority!r} here")
        anchor = self.read_anchor()
        wanted = {k["kid"]: k["public_key"] for k in draft["authorities"]["keys"]}
        wanted.update({k.kid: k.public_key for k in anchor.keys})
        sigs = self.read_signatures()
        signed, already = [], []
        for n, key in sorted(have.items()):
            kid = f"auth/{authority}/{n}"
            if kid not in wanted:
                continue
            if wanted[kid] != key.public_b64:
                raise FederationDirError(
                    f"{self.authority_dir(authority) / f'{n}.key'}: does not match {kid} in the manifest/anchor"
                )
            new = sign_manifest(raw, kid, key)
            existing = [s for s in sigs if s["kid"] == kid]
            if existing and any(s["sig"] == new["sig"] for s in existing):
                already.append(kid)  # Ed25519 is deterministic: same bytes, same signature
                continue
            sigs = [s for s in sigs if s["kid"] != kid] + [new]
            signed.append(kid)
        if not signed and not already:
            raise FederationDirError(
                f"authority {authority!r}: none of its keys ({', '.join(f'auth/{authority}/{n}' for n in sorted(have))}) "
                "is in the draft's authorities or the trust anchor"
            )
        if signed:
            write_public(self.sig_path, encode_signatures(sigs))
        try:
            res = self.verify(now=now, check_published=False)
        except (ManifestRejected, FederationDirError) as exc:
            reason = exc.reason if isinstance(exc, ManifestRejected) else str(exc)
            return SignResult(signed, already, draft["version"], False, f"not yet valid: {reason}")
        self._publish(res)
        return SignResult(signed, already, draft["version"], True, "meets every rule; published")

    def _publish(self, res: VerifyResult) -> None:
        sig_raw = self.sig_path.read_bytes()
        v = res.federation.version
        hist = self.root / "history"
        write_public(hist / f"manifest-v{v}.json", res.raw)
        write_public(hist / f"manifest-v{v}.sig", sig_raw)
        write_public(self.published_dir / "manifest.json", res.raw)
        write_public(self.published_dir / "manifest.sig", sig_raw)
        new_anchor = TrustAnchor.from_authorities(res.federation.name, res.federation.manifest.authorities)
        old = self.read_anchor()
        if new_anchor != old:
            write_public(hist / f"trust-anchor-before-v{v}.json", old.to_json())
            write_public(self.anchor_path, new_anchor.to_json())

    # ---- verification ----
    def verify(self, *, now: float, anchor: Path | None = None, skew: float = 120.0,
               check_published: bool = True) -> VerifyResult:
        """Check ``manifest.json``/``manifest.sig`` with :class:`TrustedManifest` against the trust anchor
        (default ``DIR/trust-anchor.json``), after the last published manifest when there is one (so a
        rollback below it is refused). A published manifest whose signatures do not verify (altered after
        it was published) bounds no version; it is reported as such unless ``check_published`` is false
        (``sign``, which publishes a verified manifest over it). Raises ManifestRejected naming what failed."""
        self._require()
        anchor_path = (anchor or self.anchor_path).absolute()
        ta = self.read_anchor(anchor_path)
        try:
            raw = self.manifest_path.read_bytes()
        except FileNotFoundError:
            raise FederationDirError(f"{self.manifest_path}: missing") from None
        try:
            sig_raw = self.sig_path.read_bytes()
        except FileNotFoundError:
            raise FederationDirError(f"{self.sig_path}: missing (no authority has signed)") from None
        tm = TrustedManifest(ta, skew=skew)
        pub = self._published()
        published_fault: str | None = None
        if pub is not None and pub[0] != raw:
            try:
                tm.update(pub[0], pub[1], now, skew=skew)
            except ManifestRejected as exc:
                tm = TrustedManifest(ta, skew=skew)
                if not _validly_signed(ta, *pub):
                    # altered or damaged after it was published: it proves nothing, not even a version
                    published_fault = exc.reason
                    pub = None
            if pub is not None and not tm.has_manifest:  # validly signed but e.g. expired: compare versions
                try:
                    pub_version = int(parse_json(pub[0], "published manifest.json")["version"])
                    new_version = parse_json(raw, "manifest.json").get("version")
                except (ValueError, KeyError, TypeError, AttributeError, ManifestRejected):
                    pub_version, new_version = 0, None
                if isinstance(new_version, int) and new_version <= pub_version:
                    raise ManifestRejected(
                        f"version {new_version} is not greater than published version {pub_version} (rollback)"
                    ) from None
        fed = tm.update(raw, sig_raw, now, skew=skew)
        if published_fault is not None and check_published:
            raise ManifestRejected(
                f"{self.published_dir / 'manifest.json'}: the published manifest's signature does not verify "
                f"({published_fault.removeprefix('manifest.sig: ')}): it was altered or damaged after it was "
                "published; `traza manifest sign DIR --authority NAME` publishes this verified manifest again")
        rep = tm.last_report
        return VerifyResult(
            federation=fed, raw=raw, trusted=rep["trusted"], new=rep.get("new"), anchor=anchor_path,
            signatures=len(parse_signatures(sig_raw)),
        )


def _subjects(pem: bytes) -> list[str]:
    return [x509pki.cert_info(c).subject for c in _split_pem(pem)]


def _split_pem(pem: bytes) -> list[bytes]:
    marker = b"-----BEGIN CERTIFICATE-----"
    return [marker + part for part in pem.split(marker)[1:]]


def _subject(pem: str) -> str:
    try:
        return x509pki.cert_info(pem.encode("ascii")).subject
    except (x509pki.PkiError, UnicodeError):
        return "(unreadable certificate)"


def _validly_signed(anchor: TrustAnchor, raw: bytes, sig_raw: bytes) -> bool:
    """The manifest bytes carry the anchor's threshold of valid signatures (whether or not still valid)."""
    try:
        valid, _ = anchor.count_valid(check_canonical(raw), parse_signatures(sig_raw))
    except ManifestRejected:
        return False
    return valid >= anchor.threshold


def federation_summary(fed: Federation) -> list[str]:
    """Short human lines about a manifest (no secrets)."""
    m: Manifest = fed.manifest
    nodes = ", ".join(f"{n.id} ({n.kind} {n.country}{', hub ' + n.hub if n.hub else ''})" for n in m.nodes) or "none"
    return [
        f"federation {m.federation}, version {m.version}",
        f"nodes: {len(m.nodes)}: {nodes}",
        f"issued {m.issued_at}, expires {m.expires_at}",
        f"revoked: {len(m.revoked.kids)} key id(s), {len(m.revoked.cert_serials)} certificate serial(s)",
        f"authorities: {', '.join(k.kid for k in m.authorities.keys)} (threshold {m.authorities.threshold})",
    ]
