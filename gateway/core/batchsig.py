"""Batch signatures (protocol 1.1, issue #17; the format is ``docs/protocol.md``). Pure: no I/O, time and
cryptography passed in.

A node that hands a batch of envelopes on signs **one** compact JWS over the RFC 9162 Merkle root of the
per-envelope claims (hop records, or acks) instead of one JWS per envelope. Each envelope then carries a
*batched element* that stays verifiable alone and offline::

    tzb1.<b64url leaf>.<index>.<path>.<batch JWS>

- ``leaf``: the exact JSON bytes of that envelope's claims (the claims a version-1 hop record or ack
  would carry), base64url without padding;
- ``index``: the leaf's position in the batch, decimal without leading zeros;
- ``path``: the RFC 9162 inclusion path of the leaf, lowest level first, each hash base64url (43
  characters) and joined by ``~`` (empty for a batch of one);
- ``batch JWS``: compact JWS, header ``{"alg", "kid", "typ": "traza-batch+jwt"}``, claims
  ``{"iss", "kind": "hop"|"ack", "n", "root", "iat"}`` — ``n`` leaves, ``root`` the b64url Merkle root
  (leaf hash ``SHA-256(0x00 || leaf)``, interior ``SHA-256(0x01 || left || right)``).

A verifier checks the batch JWS with the key of ``kid`` (which must belong to the batch's ``iss``, as for
any signature, :func:`gateway.core.envelope.check_signed`), then that the leaf's inclusion path leads from
``index`` in a tree of ``n`` leaves to ``root``, then reads the leaf as the claims of its kind, whose
``iss`` must be the batch's. A :class:`Seen` memo lets a receiver verify each batch signature once per
request, however many envelopes name it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import msgspec

from gateway.core import merkle, strictjson
from gateway.core.b64 import b64url_decode, b64url_encode
from gateway.core.errors import Code, TrazaError
from gateway.core.jws import Compact, SignFn, encode_compact, parse_compact
from gateway.core.manifest import Federation

PREFIX = "tzb1"
TYP_BATCH = "traza-batch+jwt"
MAX_BATCH = 4096  # leaves per batch signature (a request holds at most max_batch envelopes, 256 by default)
Kind = Literal["hop", "ack"]
# check_sig(batch JWS, signer node): raises TrazaError unless the signature is good and the key the signer's
CheckSig = Callable[[Compact, str], object]


class BatchClaims(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    iss: str
    kind: Kind
    n: int
    root: str
    iat: int


class Element(msgspec.Struct, frozen=True):
    """A parsed batched element: the leaf bytes, its place, its path and the parsed batch JWS."""

    text: str
    leaf: bytes
    index: int
    path: list[bytes]
    batch: Compact


def is_batched(element: str) -> bool:
    """True when ``element`` is a batched element (a version-1 compact JWS never starts with ``tzb1.``:
    its first part is a base64url JSON object, which starts with ``ey``)."""
    return element.startswith(PREFIX + ".")


def _bad(detail: str) -> TrazaError:
    return TrazaError(Code.BAD_SIGNATURE, detail)


def _perfect_nodes(leaves: Sequence[bytes]) -> dict[merkle.NodeId, bytes]:
    """Every perfect subtree hash of a tree over ``leaves`` (leaf hashes), by (level, index)."""
    nodes: dict[merkle.NodeId, bytes] = {(0, i): h for i, h in enumerate(leaves)}
    level, count = 0, len(leaves)
    while count > 1:
        for i in range(count // 2):
            nodes[(level + 1, i)] = merkle.node_hash(nodes[(level, 2 * i)], nodes[(level, 2 * i + 1)])
        level, count = level + 1, count // 2
    return nodes


def sign_batch(leaves: Sequence[bytes], *, kind: Kind, iss: str, kid: str, alg: str,
               sign: SignFn, now: float) -> list[str]:
    """One batched element per leaf (the claims JSON of each envelope, in batch order), all under one
    batch JWS signed with ``sign`` (one signature for the whole batch)."""
    n = len(leaves)
    if not 0 < n <= MAX_BATCH:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH} leaves, not {n}")
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    root = merkle.root_of(hashes)
    claims = msgspec.to_builtins(BatchClaims(iss=iss, kind=kind, n=n, root=b64url_encode(root), iat=int(now)))
    jws = encode_compact({"alg": alg, "kid": kid, "typ": TYP_BATCH}, claims, sign)
    nodes = _perfect_nodes(hashes)
    encoded: dict[bytes, str] = {}  # each node's hash is on many paths: encoded once
    out = []
    for i, leaf in enumerate(leaves):
        path = merkle.fold_plan(merkle.inclusion_plan(i, n), nodes)
        steps = []
        for h in path:
            e = encoded.get(h)
            if e is None:
                e = encoded[h] = b64url_encode(h)
            steps.append(e)
        out.append(f"{PREFIX}.{b64url_encode(leaf)}.{i}.{'~'.join(steps)}.{jws}")
    return out


def parse_element(text: str, what: str, seen: Seen | None = None) -> Element:
    """Split and decode a batched element; every structural fault is ``malformed`` naming ``what``. With
    ``seen``, a batch JWS already parsed during the request is not decoded again (the n elements of a
    batch all name the same one)."""
    parts = text.split(".", 4)
    if len(parts) != 5 or parts[0] != PREFIX:
        raise TrazaError(Code.MALFORMED, f"{what}: a batched element is {PREFIX}.<leaf>.<index>.<path>.<batch JWS>")
    _, leaf_b64, index_text, path_text, jws = parts
    try:
        leaf = b64url_decode(leaf_b64)
        path = [b64url_decode(p) for p in path_text.split("~")] if path_text else []
    except ValueError as exc:
        raise TrazaError(Code.MALFORMED, f"{what}: undecodable leaf or path ({exc})") from None
    if not index_text.isdigit() or not index_text.isascii() or (len(index_text) > 1 and index_text[0] == "0"):
        raise TrazaError(Code.MALFORMED, f"{what}: index {index_text[:20]!r} is not a decimal without leading zeros")
    if len(index_text) > 6:
        raise TrazaError(Code.MALFORMED, f"{what}: index {index_text[:20]!r} is beyond any batch")
    batch = seen.parsed.get(jws) if seen is not None else None
    if batch is None:
        batch = parse_compact(jws, typ=TYP_BATCH)
        if seen is not None:
            seen.parsed[jws] = batch
    return Element(text=text, leaf=leaf, index=int(index_text), path=path, batch=batch)


class Seen:
    """Batch signatures already verified during one request (by the batch JWS text): a receiver checks
    a batch's signature once, then only the inclusion path of each further element. ``parsed`` holds the
    batch JWSs decoded so far (only those that parsed: a malformed one is refused each time)."""

    def __init__(self) -> None:
        self.ok: dict[str, BatchClaims] = {}
        self.parsed: dict[str, Compact] = {}


def batch_claims(batch: Compact, what: str) -> BatchClaims:
    try:
        claims = msgspec.convert(batch.claims, BatchClaims, strict=True)
    except msgspec.ValidationError as exc:
        raise TrazaError(Code.MALFORMED, f"{what}: batch claims: {exc}") from None
    if not 0 < claims.n <= MAX_BATCH:
        raise TrazaError(Code.MALFORMED, f"{what}: batch size {claims.n} is not within 1..{MAX_BATCH}")
    return claims


def check_element(el: Element, *, kind: Kind, what: str, check_sig: CheckSig, seen: Seen | None = None,
                  leaf_claims: dict[str, Any] | None = None) -> dict[str, Any]:
    """Verify ``el``'s batch signature (through ``check_sig(compact, signer_node)``, which raises on a bad
    one; skipped when ``seen`` already holds this batch) and its inclusion; return the leaf's claims (its
    JSON object, decoded strictly, or ``leaf_claims`` when the caller decoded it already).

    Refuses (``bad_signature``): a batch of another kind, a path that does not lead to the signed root
    (a path or leaf of another batch, a leaf moved to another index), and a leaf whose ``iss`` is not
    the batch signer's (a root signed by someone else)."""
    jws = el.batch.token
    claims = seen.ok.get(jws) if seen is not None else None
    if claims is None:
        claims = batch_claims(el.batch, what)
        if claims.kind != kind:
            raise _bad(f"{what}: a batch of {claims.kind} records, not of {kind} records")
        check_sig(el.batch, claims.iss)
        if seen is not None:
            seen.ok[jws] = claims
    try:
        root = b64url_decode(claims.root)
        merkle.verify_inclusion(el.index, claims.n, merkle.leaf_hash(el.leaf), el.path, root)
    except (ValueError, merkle.ProofError) as exc:
        raise _bad(f"{what}: not in the signed batch ({exc})") from None
    data = leaf_claims if leaf_claims is not None else strictjson.object_of(el.leaf, f"{what}: leaf")
    leaf_iss = data.get("iss")
    if leaf_iss != claims.iss:
        raise _bad(f"{what}: the leaf names {leaf_iss!r} but the batch is signed by {claims.iss!r}")
    return data


# --- negotiation (docs/protocol.md "Negotiation") -----------------------------------------------------


def hops_negotiated(fed: Federation, here: str, iss: str, aud: str) -> bool:
    """Whether ``here`` may sign its hop record on a message ``iss`` → ``aud`` in a batch: every node that
    will check the record — ``here`` and each node after it on the route, the recipient included —
    advertises ``"batch": true`` in the manifest. Otherwise a version-1 hop record (a node that did not
    advertise it is never handed an element it may not read)."""
    try:
        route = fed.route(iss, aud)
    except KeyError:
        return False
    if here not in route:
        return False
    return all(fed.nodes[n].batch for n in route[route.index(here):])


def acks_negotiated(fed: Federation, here: str, peer: str) -> bool:
    """Whether ``here`` answers ``peer``'s batch with batched acks: both advertise ``"batch": true``."""
    a, b = fed.nodes.get(here), fed.nodes.get(peer)
    return a is not None and b is not None and a.batch and b.batch
