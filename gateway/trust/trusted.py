"""Which federation manifest a node trusts (SPEC §2), python-tuf ``trusted_metadata_set`` style.

Every rule for accepting a manifest is in this module. It takes bytes and a reference time and does no
I/O: the caller reads the files (or the ``GET /v1/manifest`` answer), calls :meth:`TrustedManifest.update`
and persists what it accepted afterwards.

A manifest is accepted only if, in this order (the numbers match the comments in ``update``):

1. ``manifest.json`` is UTF-8 JSON, an object, and is byte for byte its own canonical form (SPEC §2:
   keys sorted, no insignificant whitespace, no floats). The signed bytes are the served bytes, so a
   change of any byte is either "not JSON", "not canonical" or a signature failure.
2. ``manifest.sig`` is ``{"signatures": [{"kid", "sig"}, ...]}``.
3. At least ``threshold`` distinct keys of the currently trusted authority set (the trust anchor at
   first) verify an Ed25519 signature over those bytes. Signatures by kids outside the set are ignored;
   a kid (or a public key under two kids) signing twice counts once.
4. The document is a well-formed manifest (``gateway.core.manifest.decode_manifest``); its authority
   keys are distinct public keys.
5. The federation name is the trusted one (the anchor's at first) and never changes.
6. If the authorities (threshold or keys) differ from the trusted set, ``threshold`` distinct keys of the
   NEW set verify it too (authority rotation needs the old and the new set).
7. Not expired at ``now``; ``issued_at`` not later than ``now + skew``.
8. ``version`` is greater than the trusted version (no rollback). The same version with the same bytes
   is a no-op that returns the trusted view; the same version with other bytes is refused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.core import strictjson
from gateway.core.b64 import b64_decode, b64_encode, b64url_encode
from gateway.core.canonical import CanonicalError, canonical_bytes
from gateway.core.manifest import Authorities, Federation, Manifest, ManifestError, decode_manifest
from gateway.core.timeutil import parse_rfc3339, rfc3339_seconds
from gateway.crypto.keys import Ed25519Key, ed25519_verify

DEFAULT_SKEW = 120.0  # SPEC §11 clock skew

_AUTH_KID = re.compile(r"^auth/[a-z][a-z0-9-]{0,31}/[1-9][0-9]*\Z")
_BYTE = re.compile(r"\(byte (\d+)\)")


class ManifestRejected(Exception):
    """A manifest (or trust anchor) was not accepted. ``reason`` names exactly what failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def diagnostics(self) -> str:
        return f"manifest rejected: {self.reason}"


class NoTrustedManifest(LookupError):
    """Asked for the trusted manifest before any was accepted."""


# --------------------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------------------


def parse_json(raw: bytes, what: str) -> Any:
    """Strict JSON (SPEC §3.4): UTF-8, one value, no trailing bytes, no repeated member name, nesting at
    most 32 deep, integers within ±2^53. Errors name ``what`` and, for a syntax fault, the byte offset."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestRejected(f"{what}: not JSON at byte {exc.start} (invalid UTF-8)") from None
    try:
        return strictjson.loads(raw, what)
    except strictjson.StrictJSONError as exc:
        if exc.rule != "syntax":
            raise ManifestRejected(exc.detail) from None
    try:  # only to name the byte of a syntax fault as this module always has
        msgspec.json.decode(raw)
        raise ManifestRejected(f"{what}: not JSON")
    except msgspec.DecodeError as exc:
        m = _BYTE.search(str(exc))
        pos = int(m.group(1)) if m else len(raw)
        detail = str(exc).split(": ", 1)[-1] if m else "truncated"
        raise ManifestRejected(f"{what}: not JSON at byte {pos} ({_BYTE.sub('', detail).strip()})") from None


def manifest_signing_bytes(manifest: dict[str, Any] | bytes) -> bytes:
    """The canonical bytes authorities sign: of the parsed JSON object (never of a re-encoded struct)."""
    obj = parse_json(manifest, "manifest.json") if isinstance(manifest, bytes) else manifest
    if not isinstance(obj, dict):
        raise ManifestRejected(f"manifest.json: a manifest is a JSON object, not {type(obj).__name__}")
    try:
        return canonical_bytes(obj)
    except CanonicalError as exc:
        raise ManifestRejected(f"manifest.json: {exc}") from None


def check_canonical(raw: bytes) -> bytes:
    """Return ``raw`` if it is exactly the canonical form of the JSON it holds; else name the first
    differing byte. Never returns a re-encoding: the bytes checked are the bytes signed and served."""
    canon = manifest_signing_bytes(raw)
    if canon != raw:
        n = next((i for i, (a, b) in enumerate(zip(raw, canon, strict=False)) if a != b), min(len(raw), len(canon)))
        raise ManifestRejected(
            f"manifest.json: not in canonical form (first difference at byte {n}; SPEC §2 canonical "
            "JSON: keys sorted, no whitespace, no floats, no trailing newline)"
        )
    return raw


@dataclass(frozen=True)
class Signature:
    kid: str
    sig: str  # standard base64 as found in the file


def parse_signatures(sig_bytes: bytes) -> list[Signature]:
    """Decode ``manifest.sig`` (SPEC §2). Structure errors are refused; a signature that does not decode
    or verify is kept and simply does not count."""
    doc = parse_json(sig_bytes, "manifest.sig")
    if not isinstance(doc, dict) or set(doc) != {"signatures"}:
        raise ManifestRejected('manifest.sig: expected exactly {"signatures": [...]}')
    sigs = doc["signatures"]
    if not isinstance(sigs, list):
        raise ManifestRejected("manifest.sig: signatures must be a list")
    out: list[Signature] = []
    for i, s in enumerate(sigs):
        if not isinstance(s, dict) or set(s) != {"kid", "sig"}:
            raise ManifestRejected(f'manifest.sig: signatures[{i}]: expected exactly {{"kid", "sig"}}')
        if not isinstance(s["kid"], str) or not isinstance(s["sig"], str):
            raise ManifestRejected(f"manifest.sig: signatures[{i}]: kid and sig must be strings")
        out.append(Signature(s["kid"], s["sig"]))
    return out


def encode_signatures(sigs: list[dict[str, str]] | list[Signature]) -> bytes:
    """``manifest.sig`` bytes (canonical JSON, one trailing newline)."""
    items = [s if isinstance(s, dict) else {"kid": s.kid, "sig": s.sig} for s in sigs]
    return canonical_bytes({"signatures": items}) + b"\n"


def sign_manifest(manifest: dict[str, Any] | bytes, kid: str, key: Ed25519Key) -> dict[str, str]:
    """One authority signature ``{"kid", "sig"}`` over the manifest's canonical bytes (SPEC §2)."""
    if not _AUTH_KID.match(kid):
        raise ValueError(f"authority kid {kid!r} must look like auth/<name>/<n>")
    return {"kid": kid, "sig": b64_encode(key.sign(manifest_signing_bytes(manifest)))}


# --------------------------------------------------------------------------------------------------
# Trust anchor
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthorityKeyInfo:
    kid: str
    public_key: str  # standard base64 of the 32-byte Ed25519 key


class TrustAnchor:
    """A set of authority keys with a threshold, bound to a federation name.

    JSON form (installed with every node): ``{"federation", "threshold", "keys": [{"kid", "alg":
    "Ed25519", "public_key"}]}``."""

    def __init__(self, federation: str, threshold: int, keys: list[AuthorityKeyInfo]) -> None:
        if not federation:
            raise ManifestRejected("trust anchor: federation must not be empty")
        kids = [k.kid for k in keys]
        if len(set(kids)) != len(kids):
            raise ManifestRejected("trust anchor: duplicate kid in keys")
        for k in keys:
            if not _AUTH_KID.match(k.kid):
                raise ManifestRejected(f"trust anchor: kid {k.kid!r} must look like auth/<name>/<n>")
            try:
                raw = b64_decode(k.public_key)
            except ValueError as exc:
                raise ManifestRejected(f"trust anchor: {k.kid}: public_key: {exc}") from None
            if len(raw) != 32:
                raise ManifestRejected(f"trust anchor: {k.kid}: public_key must be 32 bytes, got {len(raw)}")
        if len({k.public_key for k in keys}) != len(keys):
            raise ManifestRejected("trust anchor: the same public key appears under two kids")
        if not isinstance(threshold, int) or isinstance(threshold, bool) or not 1 <= threshold <= len(keys):
            raise ManifestRejected(f"trust anchor: threshold {threshold!r} is not within 1..{len(keys)}")
        self.federation = federation
        self.threshold = threshold
        self.keys: tuple[AuthorityKeyInfo, ...] = tuple(keys)

    def __repr__(self) -> str:
        return f"TrustAnchor({self.federation!r}, threshold={self.threshold}, kids={[k.kid for k in self.keys]})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TrustAnchor):
            return NotImplemented
        return (
            self.federation == other.federation
            and self.threshold == other.threshold
            and sorted((k.kid, k.public_key) for k in self.keys)
            == sorted((k.kid, k.public_key) for k in other.keys)
        )

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_authorities(cls, federation: str, authorities: Authorities) -> TrustAnchor:
        return cls(federation, authorities.threshold, [AuthorityKeyInfo(k.kid, k.public_key) for k in authorities.keys])

    @classmethod
    def from_dict(cls, doc: Any) -> TrustAnchor:
        if isinstance(doc, dict) and {"manifest", "signatures"} <= set(doc):
            raise ManifestRejected("this is a signed manifest, not a trust anchor: point it at the federation's "
                                   "trust-anchor.json (beside published/ in the PKI folder)")
        if isinstance(doc, dict) and {"nodes", "authorities"} <= set(doc):
            raise ManifestRejected("this is a manifest, not a trust anchor: point it at the federation's "
                                   "trust-anchor.json (beside published/ in the PKI folder)")
        if not isinstance(doc, dict) or set(doc) != {"federation", "threshold", "keys"}:
            raise ManifestRejected('trust anchor: expected exactly {"federation", "threshold", "keys"}')
        if not isinstance(doc["federation"], str) or not isinstance(doc["keys"], list):
            raise ManifestRejected("trust anchor: federation must be a string and keys a list")
        keys = []
        for i, k in enumerate(doc["keys"]):
            if not isinstance(k, dict) or set(k) != {"kid", "alg", "public_key"}:
                raise ManifestRejected(f'trust anchor: keys[{i}]: expected exactly {{"kid", "alg", "public_key"}}')
            if k["alg"] != "Ed25519":
                raise ManifestRejected(f"trust anchor: keys[{i}]: alg must be Ed25519, got {k['alg']!r}")
            if not isinstance(k["kid"], str) or not isinstance(k["public_key"], str):
                raise ManifestRejected(f"trust anchor: keys[{i}]: kid and public_key must be strings")
            keys.append(AuthorityKeyInfo(k["kid"], k["public_key"]))
        return cls(doc["federation"], doc["threshold"], keys)

    @classmethod
    def from_json(cls, raw: bytes) -> TrustAnchor:
        return cls.from_dict(parse_json(raw, "trust anchor"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "federation": self.federation,
            "threshold": self.threshold,
            "keys": [{"kid": k.kid, "alg": "Ed25519", "public_key": k.public_key} for k in self.keys],
        }

    def to_json(self) -> bytes:
        return canonical_bytes(self.to_dict()) + b"\n"

    def same_authorities(self, authorities: Authorities) -> bool:
        """True if ``authorities`` has this threshold and exactly these (kid, public key) pairs."""
        return self.threshold == authorities.threshold and sorted(
            (k.kid, k.public_key) for k in self.keys
        ) == sorted((k.kid, k.public_key) for k in authorities.keys)

    def count_valid(self, data: bytes, sigs: list[Signature]) -> tuple[int, list[str]]:
        """Distinct keys of this set with a valid signature over ``data``, and one note per signature.

        A signature by a kid outside the set is ignored; the same kid, or the same public key under
        another kid, counts once."""
        by_kid = {k.kid: k for k in self.keys}
        good: set[str] = set()  # public keys
        notes: list[str] = []
        for s in sigs:
            k = by_kid.get(s.kid)
            if k is None:
                notes.append(f"{s.kid}: not an authority of this set (ignored)")
                continue
            try:
                sig = b64_decode(s.sig)
            except ValueError:
                notes.append(f"{s.kid}: sig is not standard base64")
                continue
            if not ed25519_verify(k.public_key, data, sig):
                notes.append(f"{s.kid}: does not verify over these bytes (altered, or signed before a change)")
                continue
            if k.public_key in good:
                notes.append(f"{s.kid}: duplicate (counted once)")
                continue
            good.add(k.public_key)
            notes.append(f"{s.kid}: valid")
        return len(good), notes


# --------------------------------------------------------------------------------------------------
# The trusted manifest
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureReport:
    """How a manifest's signatures fared against one authority set (for summaries)."""

    valid: int
    threshold: int
    notes: tuple[str, ...]


def version_of(raw: bytes) -> int:
    """The ``version`` of a manifest this node saved itself (its floor after a restart), read without
    checking anything else: 0 when it cannot be read as one."""
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return 0
    v = doc.get("version") if isinstance(doc, dict) else None
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0


class TrustedManifest:
    """The manifest this node trusts, advanced only through :meth:`update` (no I/O)."""

    def __init__(self, anchor: TrustAnchor, *, skew: float = DEFAULT_SKEW, floor: int = 0) -> None:
        """``floor``: the newest version this node trusted before it (re)started (the version of the
        manifest it saved, even one that has expired since): nothing older is accepted, so that a restart
        cannot undo revocations through an older manifest that expires later."""
        self._anchor = anchor
        self._skew = skew
        self._floor = floor
        self._manifest: Manifest | None = None
        self._federation: Federation | None = None
        self._raw = b""
        self._sig_raw = b""
        self._served: tuple[bytes, bytes, bytes, str] | None = None  # (raw, sig_raw, body, etag)
        self.last_report: dict[str, SignatureReport] = {}
        # kid -> when a manifest listing it was first accepted here: new keys are used once the other nodes
        # can know them too (Federation.usable_key)
        self.known_since: dict[str, float] = {}

    # ---- read side ----------------------------------------------------------------------------

    @property
    def has_manifest(self) -> bool:
        return self._federation is not None

    @property
    def federation(self) -> Federation:
        if self._federation is None:
            raise NoTrustedManifest("no manifest has been accepted yet")
        return self._federation

    @property
    def version(self) -> int:
        """The trusted version, 0 before the first manifest."""
        return self._manifest.version if self._manifest is not None else 0

    @property
    def floor(self) -> int:
        """The oldest version this state may accept: the version trusted before a restart, or in force."""
        return max(self._floor, self.version)

    @property
    def raw(self) -> bytes:
        """The exact canonical ``manifest.json`` bytes that were accepted (to serve and persist)."""
        if self._manifest is None:
            raise NoTrustedManifest("no manifest has been accepted yet")
        return self._raw

    @property
    def sig_raw(self) -> bytes:
        """The ``manifest.sig`` bytes that were accepted with :attr:`raw`."""
        if self._manifest is None:
            raise NoTrustedManifest("no manifest has been accepted yet")
        return self._sig_raw

    @property
    def anchor(self) -> TrustAnchor:
        """The authority set now trusted: the installed anchor at first, then the accepted manifest's
        authorities. Persist it with the manifest: a restarted node starts from it (after a rotation
        the installed anchor alone no longer verifies the current manifest)."""
        if self._manifest is None:
            return self._anchor
        return TrustAnchor.from_authorities(self._manifest.federation, self._manifest.authorities)

    def is_expired(self, now: float) -> bool:
        return self._federation is not None and now >= self._federation.expires_at

    def served(self) -> bytes:
        """The ``GET /v1/manifest`` body (SPEC §4.4): ``{"manifest": {...}, "signatures": [...]}``."""
        return self._served_pair()[0]

    def etag(self) -> str:
        """The ``ETag`` of :meth:`served` (SPEC §4.4, 1.1): a strong entity tag, the b64url SHA-256 of the
        served body, which is made of ``manifest.json`` and ``manifest.sig`` and of nothing else."""
        return self._served_pair()[1]

    def _served_pair(self) -> tuple[bytes, str]:
        raw, sig_raw = self.raw, self.sig_raw
        cached = self._served
        if cached is None or cached[0] is not raw or cached[1] is not sig_raw:
            doc = {
                "manifest": msgspec.json.decode(raw),
                "signatures": [{"kid": s.kid, "sig": s.sig} for s in parse_signatures(sig_raw)],
            }
            body = canonical_bytes(doc)
            cached = self._served = (raw, sig_raw, body, f'"{b64url_encode(hashlib.sha256(body).digest())}"')
        return cached[2], cached[3]

    # ---- write side ---------------------------------------------------------------------------

    def update(self, manifest_bytes: bytes, sig_bytes: bytes, now: float, *, skew: float | None = None) -> Federation:
        """Accept ``manifest_bytes`` (with its ``manifest.sig``) if every SPEC §2 rule holds; return the
        new Federation view. Raises ManifestRejected naming the failed rule; state is unchanged then."""
        skew = self._skew if skew is None else skew
        trusted = self.anchor

        # 1. Canonical JSON object: the bytes signed are exactly these bytes.
        raw = check_canonical(bytes(manifest_bytes))
        # 2. Signature file structure.
        sigs = parse_signatures(bytes(sig_bytes))
        # 3. Threshold of the trusted authority set.
        report: dict[str, SignatureReport] = {}
        valid, notes = trusted.count_valid(raw, sigs)
        report["trusted"] = SignatureReport(valid, trusted.threshold, tuple(notes))
        if valid < trusted.threshold:
            raise ManifestRejected(
                f"manifest.sig: {valid} valid signature(s) from the trusted authorities, threshold is "
                f"{trusted.threshold}" + _notes(notes, sigs)
            )
        # 4. Well-formed manifest with distinct authority keys.
        try:
            m = decode_manifest(raw)
        except ManifestError as exc:
            raise ManifestRejected(f"manifest.json: {exc}") from None
        for k in m.authorities.keys:
            if not _AUTH_KID.match(k.kid):
                raise ManifestRejected(f"manifest.json: authorities: kid {k.kid!r} must look like auth/<name>/<n>")
        try:
            new_set = TrustAnchor.from_authorities(m.federation, m.authorities)
        except ManifestRejected as exc:
            raise ManifestRejected(f"manifest.json: authorities: {exc.reason.removeprefix('trust anchor: ')}") from None
        # 5. Federation name never changes.
        if m.federation != trusted.federation:
            raise ManifestRejected(
                f"federation {m.federation!r} is not the trusted federation {trusted.federation!r}"
            )
        # 6. Authority rotation: the new set's threshold must verify too.
        if not trusted.same_authorities(m.authorities):
            nvalid, nnotes = new_set.count_valid(raw, sigs)
            report["new"] = SignatureReport(nvalid, new_set.threshold, tuple(nnotes))
            if nvalid < new_set.threshold:
                raise ManifestRejected(
                    f"manifest.sig: the manifest changes the authorities and has {nvalid} valid signature(s) "
                    f"from the NEW authorities, threshold is {new_set.threshold}" + _notes(nnotes, sigs)
                )
        # 7. Freshness.
        expires_at = parse_rfc3339(m.expires_at)
        if now >= expires_at:
            raise ManifestRejected(f"manifest version {m.version} expired at {m.expires_at} (now {rfc3339_seconds(now)})")
        if parse_rfc3339(m.issued_at) > now + skew:
            raise ManifestRejected(
                f"manifest version {m.version} issued_at {m.issued_at} is in the future "
                f"(now {rfc3339_seconds(now)}, skew {skew:g} s)"
            )
        # 8. No rollback: below the version in force, nor below the one trusted before a restart.
        if m.version < self._floor:
            raise ManifestRejected(
                f"version {m.version} is older than version {self._floor}, which this node trusted before it "
                f"restarted (rollback); install a manifest of version {self._floor} or newer"
            )
        if self._manifest is not None:
            if m.version < self._manifest.version:
                raise ManifestRejected(
                    f"version {m.version} is not greater than trusted version {self._manifest.version} (rollback)"
                )
            if m.version == self._manifest.version:
                if raw == self._raw:
                    self.last_report = report
                    return self.federation  # the same manifest again: nothing to do
                raise ManifestRejected(
                    f"version {m.version} is not greater than trusted version {self._manifest.version} "
                    "(same version, different content)"
                )
        self._manifest = m
        self._federation = Federation(m)
        for kid in self._federation.keys:
            self.known_since.setdefault(kid, now)
        self._raw = raw
        self._sig_raw = bytes(sig_bytes)
        self.last_report = report
        return self._federation


def _notes(notes: list[str], sigs: list[Signature]) -> str:
    if not sigs:
        return " (manifest.sig has no signatures)"
    return " [" + "; ".join(notes) + "]"


def split_served(body: bytes) -> tuple[bytes, bytes]:
    """Split a ``GET /v1/manifest`` body into canonical ``manifest.json`` bytes and ``manifest.sig``
    bytes for :meth:`TrustedManifest.update`."""
    doc = parse_json(body, "GET /v1/manifest")
    if not isinstance(doc, dict) or set(doc) != {"manifest", "signatures"}:
        raise ManifestRejected('GET /v1/manifest: expected exactly {"manifest", "signatures"}')
    try:
        sig_bytes = canonical_bytes({"signatures": doc["signatures"]})
    except CanonicalError as exc:
        raise ManifestRejected(f"GET /v1/manifest: signatures: {exc}") from None
    return manifest_signing_bytes(doc["manifest"]), sig_bytes


@dataclass(frozen=True)
class AuditedManifest:
    """A manifest an auditor pins keys with (``traza audit verify-bundle --manifest``): its view and how far
    it was authenticated, in words for the report."""

    federation: Federation
    how: str  # e.g. "signed by 2 of its authorities (threshold 2); expired at ..."

    @property
    def label(self) -> str:
        return f"manifest {self.federation.name} version {self.federation.version}"


def audit_manifest(raw: bytes, sig_raw: bytes | None, anchor: TrustAnchor | None, now: float) -> AuditedManifest:
    """Check a manifest for pinning audit keys, with the rules of :meth:`TrustedManifest.update` as of its
    own ``issued_at`` (evidence outlives manifests: one that has expired since still names the keys of its
    time, and the report says it expired). ``sig_raw`` None: no ``manifest.sig`` to check (said so).
    ``anchor`` None: the manifest's own authorities (it proves they signed it, not who they are). Raises
    ManifestRejected naming the fault."""
    try:
        m = decode_manifest(check_canonical(raw))
    except ManifestError as exc:
        raise ManifestRejected(f"manifest.json: {exc}") from None
    if sig_raw is None:
        fed, how = Federation(m), "manifest.sig not found beside it: its authorities' signatures were NOT checked"
    else:
        own = anchor is None
        trusted = TrustedManifest(anchor or TrustAnchor.from_authorities(m.federation, m.authorities))
        fed = trusted.update(raw, sig_raw, parse_rfc3339(m.issued_at))
        rep = trusted.last_report["trusted"]
        how = (f"signed by {rep.valid} of {'its own' if own else 'the trust anchor'} authorities "
               f"(threshold {rep.threshold})" + (" (pin the authorities with --anchor FILE)" if own else ""))
    if now >= fed.expires_at:
        how += f"; expired at {m.expires_at}"
    return AuditedManifest(fed, how)
