"""Which keys an audit verification relies on, and whether anything outside the checked material vouches
for them (pure: no I/O).

A bundle (SPEC §7.4) and a node's database carry their own keys: checked with those alone, they prove
that they are internally consistent, not that the node's audit key or a witness signed them. An auditor
pins keys from outside: ``--manifest`` (the federation manifest: a log key must be the ``audit`` key of
its node, a witness key the ``audit`` key of the node its name ``traza/<federation>/<node>`` names, a
token's key the ``sig`` key of its kid; none revoked) and ``--log-key`` (the node's audit key, as a C2SP
vkey ``<name>+<key id>+<base64(0x01 || key)>`` or the bare base64 key). Every key used is reported with
where it came from; a pinned key that does not match is :class:`KeyNotTrusted` naming the key and the
node.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.core.b64 import b64_decode, b64_encode, b64url_encode
from gateway.core.canonical import canonical_bytes
from gateway.core.manifest import Federation
from gateway.core.note import NoteError, check_key_name, key_id, node_of_origin, origin_for

FROM_BUNDLE = "from the bundle, not pinned"
PINNED = "pinned with --log-key"

_KEY_ID = re.compile(r"^[0-9a-f]{8}\Z")
_JWK_REQUIRED = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y")}  # RFC 7638 §3.2


class KeyNotTrusted(ValueError):
    """A key the material relies on is not the pinned one (the message names the key and the node)."""


@dataclass(frozen=True)
class LogKeyPin:
    """A trusted log (audit) key: its Ed25519 public key and, from a vkey, its key name."""

    public_key: bytes
    name: str | None = None

    def text(self) -> str:
        return vkey(self.name, self.public_key) if self.name else b64_encode(self.public_key)


def vkey(name: str, public_key: bytes) -> str:
    """The C2SP signed-note verifier key of an Ed25519 log key: ``<name>+<key id hex>+<base64(0x01||key)>``."""
    return f"{name}+{key_id(name, 0x01, public_key).hex()}+{b64_encode(bytes([0x01]) + public_key)}"


def parse_log_key(text: str) -> LogKeyPin:
    """``--log-key``: a C2SP vkey ``name+keyid+base64(0x01 || key)`` (as ``verify-bundle`` prints it) or the
    bare base64 Ed25519 public key (as the manifest holds it). ValueError naming the fault."""
    try:
        bare: bytes | None = b64_decode(text)
    except ValueError:
        bare = None
    if bare is not None and len(bare) == 32:
        return LogKeyPin(bare)
    if "+" in text and (bare is None or text.count("+") >= 2):  # a vkey (base64 may hold a "+" too)
        parts = text.split("+", 2)
        if len(parts) != 3:
            raise ValueError(f"{text[:80]!r} is neither a base64 key nor a vkey NAME+KEYID+BASE64")
        name, kid, b64 = parts
        try:
            check_key_name(name)
        except NoteError as exc:
            raise ValueError(f"vkey: {exc}") from None
        if not _KEY_ID.match(kid):
            raise ValueError(f"vkey: key id {kid[:20]!r} is not 8 lower-case hex digits")
        raw = _b64(b64, "vkey key")
        if len(raw) != 33 or raw[0] != 0x01:
            raise ValueError("vkey: the key is not type 0x01 (Ed25519) followed by 32 bytes")
        if key_id(name, 0x01, raw[1:]).hex() != kid:
            raise ValueError(f"vkey: key id {kid} is not the key id of {name} with this key")
        return LogKeyPin(raw[1:], name)
    raw = _b64(text, "key")
    if len(raw) != 32:
        raise ValueError(f"key {text[:60]!r} is {len(raw)} bytes, an Ed25519 public key is 32")
    return LogKeyPin(raw)


def _b64(text: str, what: str) -> bytes:
    try:
        return b64_decode(text)
    except ValueError as exc:
        raise ValueError(f"{what} is not standard base64 ({exc})") from None


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of a public key."""
    required = _JWK_REQUIRED.get(str(jwk.get("kty")), tuple(sorted(jwk)))
    return b64url_encode(hashlib.sha256(canonical_bytes({k: jwk[k] for k in required if k in jwk})).digest())


@dataclass(frozen=True)
class UsedKey:
    """A key a verification relied on: ``role`` log, witness or signing; ``name`` its key name (log,
    witness) or kid; ``key_id`` the C2SP key id (hex) or, for a JWK, its RFC 7638 thumbprint;
    ``public_key`` base64 (Ed25519) or the JWK's algorithm; ``source`` where it came from."""

    role: str
    name: str
    key_id: str
    public_key: str
    source: str

    def line(self) -> str:
        what = "key id" if self.role != "signing" else "JWK thumbprint"
        return f"{self.role} key {self.name}: {what} {self.key_id}, {self.public_key} ({self.source})"

    def to_json(self) -> dict[str, str]:
        return {"role": self.role, "name": self.name, "key_id": self.key_id, "public_key": self.public_key,
                "source": self.source}


@dataclass(frozen=True)
class Pins:
    """What the auditor trusts: the manifest (``federation``, described by ``manifest``) and pinned log
    keys. Empty: nothing is pinned, every key comes from the material itself."""

    federation: Federation | None = None
    manifest: str = ""  # e.g. "manifest traza-demo version 7"
    log_keys: tuple[LogKeyPin, ...] = ()

    @property
    def pinned(self) -> bool:
        return self.federation is not None or bool(self.log_keys)

    def _audit_key(self, role: str, name: str, public_key: bytes, node: str) -> str:
        """The manifest's kid of ``node``'s audit key ``public_key`` under key name ``name``."""
        fed = self.federation
        assert fed is not None
        what = f"{role} key {name} (key id {key_id(name, 0x01 if role == 'log' else 0x04, public_key).hex()})"
        try:
            want = origin_for(fed.name, node)
        except NoteError as exc:
            raise KeyNotTrusted(f"{what}: {exc}") from None
        if name != want:
            raise KeyNotTrusted(f"{what}: the name of node {node}'s key in federation {fed.name} is {want}")
        n = fed.node(node)
        if n is None:
            raise KeyNotTrusted(f"{what}: node {node} is not in the {self.manifest}")
        b64 = b64_encode(public_key)
        kids = [k.kid for k in n.keys if k.use == "audit" and k.public_key == b64]
        if not kids:
            raise KeyNotTrusted(f"{what}, {b64}, is not an audit key of node {node} in the {self.manifest}")
        if all(kid in fed.revoked_kids for kid in kids):
            raise KeyNotTrusted(f"{what} is {kids[0]} of node {node}, revoked in the {self.manifest}")
        return next(kid for kid in kids if kid not in fed.revoked_kids)

    def log_key(self, node: str, name: str, public_key: bytes) -> UsedKey:
        """Check the log key of ``node`` against the pins; its report line."""
        sources: list[str] = []
        kid = key_id(name, 0x01, public_key).hex()
        if self.log_keys:
            if not any(p.public_key == public_key and p.name in (None, name) for p in self.log_keys):
                pinned = ", ".join(p.text() for p in self.log_keys)
                raise KeyNotTrusted(f"log key {name} (key id {kid}, {b64_encode(public_key)}) of node {node} is "
                                    f"not the key pinned with --log-key ({pinned})")
            sources.append(PINNED)
        if self.federation is not None:
            sources.append(f"{self._audit_key('log', name, public_key, node)} in the {self.manifest}")
        return UsedKey("log", name, kid, b64_encode(public_key), "; ".join(sources) or FROM_BUNDLE)

    def witness_key(self, name: str, public_key: bytes) -> UsedKey:
        kid = key_id(name, 0x04, public_key).hex()
        source = FROM_BUNDLE
        if self.federation is not None:
            try:
                node = node_of_origin(name)
            except NoteError:
                raise KeyNotTrusted(f"witness key {name} (key id {kid}) is not named traza/<federation>/<node> "
                                    f"of a node in the {self.manifest}") from None
            source = f"{self._audit_key('witness', name, public_key, node)} in the {self.manifest}"
        return UsedKey("witness", name, kid, b64_encode(public_key), source)

    def signing_key(self, kid: str, alg: str, jwk: Mapping[str, Any]) -> UsedKey:
        thumb = jwk_thumbprint(jwk)
        source = FROM_BUNDLE
        fed = self.federation
        if fed is not None:
            ref = fed.keys.get(kid)
            node = kid.split("/")[0]
            if ref is None or ref.key.use != "sig":
                raise KeyNotTrusted(f"signing key {kid} (JWK thumbprint {thumb}) is not a signing key of node "
                                    f"{node} in the {self.manifest}")
            if ref.key.alg != alg or ref.key.jwk is None or jwk_thumbprint(ref.key.jwk) != thumb:
                raise KeyNotTrusted(f"signing key {kid} (JWK thumbprint {thumb}) is not the key of node {node} "
                                    f"named {kid} in the {self.manifest}")
            if kid in fed.revoked_kids:
                raise KeyNotTrusted(f"signing key {kid} of node {node} is revoked in the {self.manifest}")
            source = f"in the {self.manifest}"
        return UsedKey("signing", kid, thumb, alg, source)


def unpinned_note(keys: Sequence[UsedKey], node: str) -> str | None:
    """The plain warning an unpinned verification owes its reader, or None when every key is pinned."""
    loose = [k for k in keys if k.source == FROM_BUNDLE]
    if not loose:
        return None
    if len(loose) == len(keys):
        return (f"every key was taken from the bundle itself, not pinned: this proves the file is internally "
                f"consistent, not that node {node} or its witnesses signed it; pin them with --manifest FILE "
                "(or the log key with --log-key KEY)")
    roles = sorted({k.role for k in loose})
    return f"the {' and '.join(roles)} keys were taken from the bundle itself, not pinned (pin them with --manifest FILE)"
