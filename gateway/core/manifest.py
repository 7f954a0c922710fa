"""Federation manifest model (SPEC §2) and the pure queries on it: nodes, keys, revocation, routes.

Loading from disk, threshold verification and rollback protection live in ``gateway.trust``; this module
only describes the document and answers questions about it, so routing and envelope verification can use
it without I/O.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from gateway.core import strictjson
from gateway.core.codes import NODE_ID, Classification, Purpose, is_country
from gateway.core.errors import TrazaError
from gateway.core.timeutil import parse_rfc3339

NodeKind = Literal["national", "hub", "service"]
KeyUse = Literal["sig", "enc", "audit", "tls"]
SigAlg = Literal["EdDSA", "ES256"]
Kem = Literal["MLKEM768_X25519", "X25519"]

KID = re.compile(r"^(?:[a-z][a-z0-9-]{1,31}/(?:sig|enc|audit|tls)|auth/[a-z][a-z0-9-]{0,31})/[1-9][0-9]*\Z")


GROUP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,63}\Z")


class _S(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


class AuthorityKey(_S, frozen=True):
    kid: str
    alg: Literal["Ed25519"]
    public_key: str


class Authorities(_S, frozen=True):
    threshold: int
    keys: list[AuthorityKey]


class Revoked(_S, frozen=True):
    cert_serials: list[str] = []
    kids: list[str] = []


class NodeKey(_S, frozen=True, omit_defaults=True):
    kid: str
    use: KeyUse
    alg: str | None = None
    jwk: dict[str, Any] | None = None
    kem: Kem | None = None
    public_key: str | None = None
    not_before: str | None = None
    not_after: str | None = None


class Node(_S, frozen=True, omit_defaults=True):
    id: str
    kind: NodeKind
    country: str
    name: str
    max_classification: Classification
    keys: list[NodeKey]
    endpoint: str | None = None
    endpoints: list[str] = []  # 1.1: the replicas of one node (SPEC §2); ``endpoint`` is the one-element case
    hub: str | None = None
    peers: list[str] = []
    # 1.1 (issue #17, docs/protocol.md): the node takes batch signatures (batched hop records and acks)
    batch: bool = False

    @property
    def urls(self) -> tuple[str, ...]:
        """Every address of the node, ``endpoint`` first, then ``endpoints``, without repeats or a
        trailing ``/``."""
        given = ([self.endpoint] if self.endpoint else []) + list(self.endpoints)
        return tuple(dict.fromkeys(u.rstrip("/") for u in given))


class PolicyRule(_S, frozen=True, omit_defaults=True):
    senders: list[NodeKind]
    recipients: list[NodeKind]
    encrypt_through_hubs: bool = False
    # purpose limitation (issue #15, optional): the purposes (SPEC §3.1 ``pur``) allowed for this type;
    # absent, every purpose is allowed (manifests written before it stay valid)
    purposes: list[Purpose] | None = None
    # retention (issue #15, optional): the longest a node of each kind keeps the content of a message of
    # this type, in days from its arrival there (gateway/core/retention.py); absent, no federation limit
    retention_days: dict[NodeKind, Annotated[float, Meta(ge=0, le=36500)]] | None = None


class Manifest(_S, frozen=True):
    federation: str
    version: int
    issued_at: str
    expires_at: str
    authorities: Authorities
    tls_ca: list[str]
    revoked: Revoked
    nodes: list[Node]
    policy: dict[str, PolicyRule]
    groups: dict[str, list[str]] = {}  # 1.1: named recipient lists (SPEC §2, §6)


class ManifestError(ValueError):
    """The manifest document itself is inconsistent (names the field at fault)."""


_decoder = msgspec.json.Decoder(Manifest)


def endpoint_fault(url: str) -> str | None:
    """Why ``url`` is not a node endpoint, ``https://host[:port]`` (SPEC §2; a trailing ``/`` allowed), else
    None. Shared by the manifest's decoder and ``traza pki`` (gateway/trust/pki.py)."""
    if any(ch.isspace() for ch in url):
        return "it contains white space"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return "its port is not a number from 1 to 65535"
    if parts.scheme != "https":
        return "it is not https"
    if not parts.hostname:
        return "it has no host"
    if parts.username is not None or parts.password is not None:
        return "it names a user"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "it has a path, a query or a fragment"
    if port is not None and not 1 <= port <= 65535:
        return "its port is not a number from 1 to 65535"
    return None


def decode_manifest(raw: bytes) -> Manifest:
    """Decode and check a manifest's internal consistency. Raises ``ManifestError`` naming the field."""
    try:
        m = strictjson.decode(raw, _decoder, "manifest")
    except TrazaError as exc:  # strict JSON (SPEC §3.4)
        raise ManifestError(exc.detail) from None
    except msgspec.ValidationError as exc:
        raise ManifestError(f"manifest: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ManifestError(f"manifest: not JSON ({exc})") from None
    check_manifest(m)
    return m


def check_manifest(m: Manifest) -> None:
    try:
        parse_rfc3339(m.issued_at)
        parse_rfc3339(m.expires_at)
    except ValueError as exc:
        raise ManifestError(f"manifest: issued_at/expires_at: {exc}") from None
    if m.version < 1:
        raise ManifestError("manifest: version must be a positive integer")
    a = m.authorities
    kids = [k.kid for k in a.keys]
    if len(set(kids)) != len(kids):
        raise ManifestError("manifest: authorities.keys: duplicate kid")
    if not 1 <= a.threshold <= len(kids):
        raise ManifestError(f"manifest: authorities.threshold {a.threshold} is not within 1..{len(kids)}")
    seen: set[str] = set()
    all_kids: set[str] = set(kids)
    ids = {n.id for n in m.nodes}
    kinds = {n.id: n.kind for n in m.nodes}
    for i, n in enumerate(m.nodes):
        where = f"manifest: nodes[{i}] ({n.id})"
        if not NODE_ID.match(n.id):
            raise ManifestError(f"{where}: id does not match {NODE_ID.pattern}")
        if n.id in seen:
            raise ManifestError(f"{where}: duplicate node id")
        seen.add(n.id)
        if not re.match(r"^[A-Z]{2}\Z", n.country) or not is_country(n.country):
            raise ManifestError(f"{where}: country {n.country!r} is not an ISO 3166-1 alpha-2 code (upper case, "
                                "e.g. MX)")
        if n.kind == "hub":
            if n.hub is not None:
                raise ManifestError(f"{where}: a hub has no hub")
        elif n.hub is None or n.hub not in ids:
            raise ManifestError(f"{where}: hub {n.hub!r} is not a node of the manifest")
        elif kinds[n.hub] != "hub":  # routes run hub(A) -> hub(B), hubs linked to each other (SPEC §2)
            raise ManifestError(f"{where}: hub {n.hub!r} is a {kinds[n.hub]} node, not a hub")
        for p in n.peers:
            if p not in ids:
                raise ManifestError(f"{where}: peer {p!r} is not a node of the manifest")
        if not n.urls:
            raise ManifestError(f"{where}: no endpoint (give endpoint or endpoints)")
        for url in n.urls:
            why = endpoint_fault(url)
            if why is not None:
                raise ManifestError(f"{where}: endpoint {url!r} is not https://host[:port] ({why})")
        for k in n.keys:
            if not k.kid.startswith(f"{n.id}/{k.use}/") or not KID.match(k.kid):
                raise ManifestError(f"{where}: key {k.kid!r} must be named {n.id}/{k.use}/<n>")
            if k.kid in all_kids:
                raise ManifestError(f"{where}: duplicate key id {k.kid!r}")
            all_kids.add(k.kid)
            if k.use == "sig" and (k.alg not in ("EdDSA", "ES256") or k.jwk is None):
                raise ManifestError(f"{where}: signing key {k.kid} needs alg EdDSA|ES256 and a jwk")
            if k.use == "enc" and (k.kem is None or k.public_key is None):
                raise ManifestError(f"{where}: encryption key {k.kid} needs kem and public_key")
            if k.use == "audit" and (k.alg != "Ed25519" or k.public_key is None):
                raise ManifestError(f"{where}: audit key {k.kid} needs alg Ed25519 and public_key")
    for mt, rule in m.policy.items():
        if not rule.senders or not rule.recipients:
            raise ManifestError(f"manifest: policy.{mt}: senders and recipients must not be empty")
        if rule.purposes is not None and not rule.purposes:
            raise ManifestError(f"manifest: policy.{mt}.purposes: empty (leave it out to allow every purpose)")
    for name, members in m.groups.items():
        where = f"manifest: groups.{name}"
        if not GROUP_NAME.match(name):
            raise ManifestError(f"{where}: {name!r} is not a group name ({GROUP_NAME.pattern})")
        if not members:
            raise ManifestError(f"{where}: empty")
        for member in members:
            if member not in ids:
                raise ManifestError(f"{where}: {member!r} is not a node of the manifest")
        dup = next((x for i, x in enumerate(members) if x in members[:i]), None)
        if dup is not None:
            raise ManifestError(f"{where}: repeats {dup!r}")


def key_number(kid: str) -> int:
    """The ``<n>`` of a key id ``<node>/<use>/<n>``."""
    return int(kid.rsplit("/", 1)[1])


class KeyRef(msgspec.Struct, frozen=True):
    """A manifest key with its owner and validity window as epoch seconds."""

    node: str
    key: NodeKey
    not_before: float | None
    not_after: float | None


class Federation:
    """Indexed, read-only view of one manifest: the questions routing and verification ask."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.nodes: dict[str, Node] = {n.id: n for n in manifest.nodes}
        self.keys: dict[str, KeyRef] = {}
        for n in manifest.nodes:
            for k in n.keys:
                nb = parse_rfc3339(k.not_before) if k.not_before else None
                na = parse_rfc3339(k.not_after) if k.not_after else None
                self.keys[k.kid] = KeyRef(node=n.id, key=k, not_before=nb, not_after=na)
        self.revoked_kids = frozenset(manifest.revoked.kids)
        self.revoked_serials = frozenset(s.lower().lstrip("0") for s in manifest.revoked.cert_serials)
        self.expires_at = parse_rfc3339(manifest.expires_at)
        self.groups: dict[str, tuple[str, ...]] = {g: tuple(ms) for g, ms in manifest.groups.items()}

    @property
    def name(self) -> str:
        return self.manifest.federation

    @property
    def version(self) -> int:
        return self.manifest.version

    def node(self, node_id: str) -> Node | None:
        return self.nodes.get(node_id)

    def valid_keys(self, node_id: str, use: KeyUse, now: float | None) -> list[NodeKey]:
        """The unrevoked keys of ``use`` for ``node_id``, newest (highest key number) first; with ``now``,
        only those within their ``not_before``..``not_after`` at ``now``."""
        found: list[tuple[int, NodeKey]] = []
        for ref in self.keys.values():
            k = ref.key
            if ref.node != node_id or k.use != use or k.kid in self.revoked_kids:
                continue
            if now is not None and (
                (ref.not_before is not None and now < ref.not_before)
                or (ref.not_after is not None and now > ref.not_after)
            ):
                continue
            found.append((key_number(k.kid), k))
        return [k for _, k in sorted(found, key=lambda t: -t[0])]

    def current_key(self, node_id: str, use: KeyUse, now: float) -> NodeKey | None:
        """The newest valid, unrevoked key of ``use`` for ``node_id`` at ``now``."""
        keys = self.valid_keys(node_id, use, now)
        return keys[0] if keys else None

    def usable_key(self, node_id: str, use: KeyUse, now: float, known_since: Mapping[str, float],
                   settle: float) -> NodeKey | None:
        """The key of ``use`` of ``node_id`` to sign or seal with at ``now``: the newest valid one that has
        been known here (``known_since``: when this node first trusted a manifest listing it; a kid not
        in it counts as known since ``now``) for at least ``settle`` seconds, so that the other nodes,
        polling their manifests, know it too; if none has, the oldest valid one, which they all accept
        during the overlap (docs/trust.md, "Node key rotation")."""
        keys = self.valid_keys(node_id, use, now)
        for k in keys:
            if known_since.get(k.kid, now) <= now - settle:
                return k
        return keys[-1] if keys else None

    def is_serial_revoked(self, serial: int) -> bool:
        return format(serial, "x") in self.revoked_serials

    def linked(self, a: str, b: str) -> bool:
        """A and B talk directly: either lists the other in ``peers``, one is the other's hub, or both are hubs."""
        na, nb = self.nodes.get(a), self.nodes.get(b)
        if na is None or nb is None or a == b:
            return False
        if b in na.peers or a in nb.peers or na.hub == b or nb.hub == a:
            return True
        return na.kind == "hub" and nb.kind == "hub"

    def route(self, src: str, dst: str) -> list[str]:
        """Derived route from ``src`` to ``dst`` inclusive (SPEC §2): direct if linked, else
        src → hub(src) → hub(dst) → dst with repeats skipped. Raises KeyError for unknown nodes."""
        a, b = self.nodes[src], self.nodes[dst]
        if src == dst:
            return [src]
        if self.linked(src, dst):
            return [src, dst]
        path = [src, a.hub or src, b.hub or dst, dst]
        out: list[str] = []
        for p in path:
            if not out or out[-1] != p:
                out.append(p)
        return out

    def next_hop(self, here: str, src: str, dst: str) -> str | None:
        """The node after ``here`` on the route from ``src`` to ``dst`` (None if ``here`` is the end or
        not on the route)."""
        r = self.route(src, dst)
        if here not in r:
            return None
        i = r.index(here)
        return r[i + 1] if i + 1 < len(r) else None
