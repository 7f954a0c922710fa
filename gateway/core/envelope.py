"""Envelopes (SPEC §3): building origin tokens and hop records, and verifying them at every node.

Verification follows SPEC §4.2. Steps 1–9 need no I/O and live here; steps 10–12 (replay check, durable
store with its audit entry, ack) belong to the caller, which owns the store. Every step is numbered in a
comment that matches the SPEC. The function returns a ``Verified`` envelope or raises one ``TrazaError``
carrying a SPEC §9 code.

Cryptography is injected: ``KeyVerifier`` builds a verify function from the *manifest's* algorithm and
JWK (``gateway.crypto.keys.verifier_for``), ``Signer`` signs; payload decryption is a callable too. The
current time is always an argument.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from typing import Annotated, Any, Protocol

import msgspec

from gateway.core import batchsig, handling, strictjson
from gateway.core.b64 import b64url_decode, b64url_encode
from gateway.core.codes import CLASSIFICATION_ORDER, Classification, HandlingCode, Purpose
from gateway.core.errors import Code, TrazaError
from gateway.core.jws import Compact, VerifyFn, encode_compact, parse_compact
from gateway.core.manifest import Federation, NodeKey

TYP_ENVELOPE = "traza-envelope+jwt"
TYP_HOP = "traza-hop+jwt"
TYP_ACK = "traza-ack+jwt"

SUITES = {
    "MLKEM768_X25519": "MLKEM768_X25519/HKDF_SHA256/AES_256_GCM",
    "X25519": "X25519/HKDF_SHA256/AES_256_GCM",
}
# Messages that are never answered with a receipt or an error (SPEC §5: no loops).
NO_REPLY_TYPES = frozenset({"receipt", "error"})


class Signer(Protocol):
    """What signs for a node: ``gateway.crypto.keys.SigningKey`` is one."""

    @property
    def kid(self) -> str: ...

    @property
    def alg(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


# (alg from the manifest, public JWK) -> verify function; raises ValueError if the JWK does not fit.
KeyVerifier = Callable[[str, dict[str, Any]], VerifyFn]
# (ciphertext, info, enc kid) -> plaintext; raises any exception on failure.
PayloadOpener = Callable[[bytes, bytes, str], bytes]
# (plaintext, info) -> ciphertext, sealed to the recipient's enc key.
PayloadSealer = Callable[[bytes, bytes], bytes]


class Limits(msgspec.Struct, frozen=True):
    max_envelope: int = 1024 * 1024
    clock_skew: int = 120
    max_ttl: int = 30 * 24 * 3600


DEFAULT_LIMITS = Limits()


# --- wire structures -----------------------------------------------------------------------------------


class Envelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    token: str
    payload: str
    hops: list[str] = []

    @property
    def size(self) -> int:
        return len(self.token) + len(self.payload) + sum(len(h) for h in self.hops)


class EncInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    suite: str
    kid: str


class PayloadInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sha256: str
    len: int
    ct: str
    enc: EncInfo | None = None


class BlobEnc(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How an encrypted blob's content key travels (an extension of SPEC §3.1 ``blobs``, see docs/blobs.md):
    the 32-byte key sealed with HPKE to the recipient's ``enc`` key ``kid`` (b64url, ``key``)."""

    suite: str
    kid: str
    key: str


class BlobRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    sha256: str
    len: int
    ct: str
    name: str
    enc: BlobEnc | None = None  # set when the blob is encrypted (the bytes that travel are ``TZB1`` chunks)


class RetentionDates(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Claim ``ret`` (issue #15): the reference's ``retention.review_by`` / ``delete_by`` (YYYY-MM-DD) the
    origin gives a message; each node holding its content honours them (gateway/core/retention.py)."""

    review_by: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")] | None = None
    delete_by: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")] | None = None


class Claims(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    iss: str
    aud: str
    jti: str
    iat: int
    exp: int
    mt: str
    sv: int
    cid: str
    hc: HandlingCode
    cls: Classification
    pur: Purpose
    pld: PayloadInfo
    irt: str | None = None
    blobs: list[BlobRef] | None = None
    hr: str | None = None  # handling restrictions (1.1, issue #15): required with hc H3
    ret: RetentionDates | None = None  # retention.review_by / delete_by (issue #15), when the origin gives them
    ot: str | None = None  # onward transfer (1.1, issue #15): ALLOWED, PROVIDER_CONSENT_REQUIRED, PROHIBITED


class HopClaims(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename={"from_": "from"}):
    iss: str
    jti: str
    prev: str
    from_: str
    to: str
    iat: int


class AckClaims(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    iss: str
    aud: str
    jti: str
    dig: str
    iat: int
    idx: int


class Verified(msgspec.Struct, frozen=True):
    """An envelope that passed SPEC §4.2 steps 1–9 at ``here``."""

    envelope: Envelope
    claims: Claims
    hops: list[HopClaims]
    payload: bytes  # the payload bytes as sent (ciphertext when encrypted)
    dig: str  # b64url SHA-256 of the token string
    sender: str  # the node that handed it to us (last hop's iss, or the token's iss)
    next_hop: str | None  # None when this node is the recipient
    plaintext: bytes | None = None  # at the recipient only
    body: Any = None  # decoded message body at the recipient only


# --- helpers -------------------------------------------------------------------------------------------


def sha256_b64url(data: bytes | str) -> str:
    raw = data.encode("ascii") if isinstance(data, str) else data
    return b64url_encode(hashlib.sha256(raw).digest())


def token_digest(token: str) -> str:
    """``dig`` of acks and receipts: b64url SHA-256 of the token string."""
    return sha256_b64url(token)


def payload_info(jti: str, iss: str, aud: str) -> bytes:
    """HPKE ``info`` binding a payload to its message (SPEC §3.2)."""
    return f"traza/v1|{jti}|{iss}|{aud}".encode()


_envelope_decoder = msgspec.json.Decoder(Envelope)
_envelope_encoder = msgspec.json.Encoder()


def decode_envelope(raw: bytes | dict[str, Any]) -> Envelope:
    """An envelope from its JSON text (strict JSON, SPEC §3.4) or from data already decoded strictly."""
    try:
        if isinstance(raw, dict):
            return msgspec.convert(raw, Envelope, strict=True)
        return strictjson.decode(raw, _envelope_decoder, "envelope")
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise TrazaError(Code.MALFORMED, f"envelope: {exc}") from None


class _StoredToken(msgspec.Struct):
    token: str


_stored_token_decoder = msgspec.json.Decoder(_StoredToken)


def stored_token(raw: bytes) -> str:
    """The token of an envelope this node stored. It passed the strict checks (:func:`decode_envelope`,
    :func:`verify_envelope`) when it was received or built, so it is read here without them (``malformed``
    if it cannot be read at all)."""
    try:
        return _stored_token_decoder.decode(raw).token
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise TrazaError(Code.MALFORMED, f"stored envelope: {exc}") from None


def encode_envelope(env: Envelope) -> bytes:
    return _envelope_encoder.encode(env)


def _claims_dict(c: msgspec.Struct) -> dict[str, Any]:
    d: dict[str, Any] = msgspec.to_builtins(c)
    return d


# --- building ------------------------------------------------------------------------------------------


def build_envelope(
    *,
    signer: Signer,
    iss: str,
    aud: str,
    jti: str,
    mt: str,
    body: bytes,
    now: float,
    ttl: int,
    hc: HandlingCode = "H0",
    cls: Classification = "BASIC_PROTECTION_LEVEL",
    pur: Purpose = "INVESTIGATION",
    hr: str | None = None,
    ot: str | None = None,
    cid: str | None = None,
    irt: str | None = None,
    ret: RetentionDates | None = None,
    seal: PayloadSealer | None = None,
    enc_kem: str | None = None,
    enc_kid: str | None = None,
    blobs: list[BlobRef] | None = None,
    ct: str = "application/json",
) -> Envelope:
    """Sign an origin token over ``body`` (encrypted with ``seal`` when given) and wrap it."""
    if (seal is None) != (enc_kid is None):
        raise ValueError("seal and enc_kid go together")
    payload = body
    enc = None
    if seal is not None:
        assert enc_kid is not None
        payload = seal(body, payload_info(jti, iss, aud))
        enc = EncInfo(suite=SUITES[enc_kem or "MLKEM768_X25519"], kid=enc_kid)
    iat = int(now)
    claims = Claims(
        iss=iss,
        aud=aud,
        jti=jti,
        iat=iat,
        exp=iat + ttl,
        mt=mt,
        sv=1,
        cid=cid or jti,
        hc=hc,
        cls=cls,
        pur=pur,
        pld=PayloadInfo(sha256=sha256_b64url(payload), len=len(payload), ct=ct, enc=enc),
        irt=irt,
        blobs=blobs,
        hr=hr,
        ret=ret,
        ot=ot,
    )
    header = {"alg": signer.alg, "kid": signer.kid, "typ": TYP_ENVELOPE}
    token = encode_compact(header, _claims_dict(claims), signer.sign)
    return Envelope(token=token, payload=b64url_encode(payload), hops=[])


def hop_claims_for(env: Envelope, *, here: str, jti: str, came_from: str, to: str, received_at: float) -> HopClaims:
    """The claims of this relaying node's hop record on ``env`` (SPEC §3.3), signed alone or in a batch."""
    prev_elem = env.hops[-1] if env.hops else env.token
    return HopClaims(iss=here, jti=jti, prev=sha256_b64url(prev_elem), from_=came_from, to=to, iat=int(received_at))


def append_hop(env: Envelope, *, signer: Signer, here: str, jti: str, came_from: str, to: str, received_at: float) -> Envelope:
    """Add this relaying node's hop record (SPEC §3.3)."""
    claims = hop_claims_for(env, here=here, jti=jti, came_from=came_from, to=to, received_at=received_at)
    header = {"alg": signer.alg, "kid": signer.kid, "typ": TYP_HOP}
    hop = encode_compact(header, _claims_dict(claims), signer.sign)
    return Envelope(token=env.token, payload=env.payload, hops=[*env.hops, hop])


def append_hops_batched(items: list[tuple[Envelope, HopClaims]], *, signer: Signer, now: float) -> list[Envelope]:
    """Protocol 1.1 (docs/protocol.md): add each envelope's hop record as a batched element, all under one
    batch signature. ``items`` pairs each envelope with its claims (:func:`hop_claims_for`, one signer)."""
    leaves = [_claims_json(c) for _e, c in items]
    iss = {c.iss for _e, c in items}
    if len(iss) != 1:
        raise ValueError(f"one batch has one signer, not {sorted(iss)}")
    elements = batchsig.sign_batch(leaves, kind="hop", iss=iss.pop(), kid=signer.kid, alg=signer.alg,
                                   sign=signer.sign, now=now)
    return [Envelope(token=e.token, payload=e.payload, hops=[*e.hops, el]) for (e, _c), el in zip(items, elements, strict=True)]


def ack_claims_for(*, here: str, peer: str, jti: str, token: str, idx: int, now: float,
                   dig: str | None = None) -> AckClaims:
    """The claims of this node's ack of ``token``; ``dig`` is its :func:`token_digest` when the caller has
    it already (``Verified.dig``), else it is computed."""
    return AckClaims(iss=here, aud=peer, jti=jti, dig=token_digest(token) if dig is None else dig, iat=int(now),
                     idx=idx)


def make_ack(signer: Signer, *, here: str, peer: str, jti: str, token: str, idx: int, now: float) -> str:
    claims = ack_claims_for(here=here, peer=peer, jti=jti, token=token, idx=idx, now=now)
    return encode_compact({"alg": signer.alg, "kid": signer.kid, "typ": TYP_ACK}, _claims_dict(claims), signer.sign)


def make_acks_batched(claims: list[AckClaims], *, signer: Signer, now: float) -> list[str]:
    """Protocol 1.1: one batched ack element per claims, all under one batch signature."""
    iss = {c.iss for c in claims}
    if len(iss) != 1:
        raise ValueError(f"one batch has one signer, not {sorted(iss)}")
    return batchsig.sign_batch([_claims_json(c) for c in claims], kind="ack", iss=iss.pop(), kid=signer.kid,
                               alg=signer.alg, sign=signer.sign, now=now)


def _claims_json(c: msgspec.Struct) -> bytes:
    return _envelope_encoder.encode(_claims_dict(c))


# --- verification --------------------------------------------------------------------------------------


def _bad_sig(detail: str) -> TrazaError:
    return TrazaError(Code.BAD_SIGNATURE, detail)


def check_signed(
    compact: Compact, *, fed: Federation, signer_node: str, now: float, key_verifier: KeyVerifier
) -> NodeKey:
    """SPEC §3.1: the key comes from the manifest entry of ``kid``: it must belong to ``signer_node``,
    have use ``sig``, be within its validity and not revoked; the algorithm is the manifest's, and a header
    that names another algorithm is refused (algorithm confusion)."""
    kid = compact.header["kid"]
    ref = fed.keys.get(kid)
    if ref is None:
        raise _bad_sig(f"unknown key id {kid!r}")
    if ref.node != signer_node:
        raise _bad_sig(f"key id {kid!r} belongs to {ref.node!r}, not to the signer {signer_node!r}")
    key = ref.key
    if key.use != "sig":
        raise _bad_sig(f"key id {kid!r} is a {key.use!r} key, not a signing key")
    if kid in fed.revoked_kids:
        raise _bad_sig(f"key id {kid!r} is revoked")
    if ref.not_before is not None and now < ref.not_before:
        raise _bad_sig(f"key id {kid!r} is not valid before {key.not_before}")
    if ref.not_after is not None and now > ref.not_after:
        raise _bad_sig(f"key id {kid!r} expired at {key.not_after}")
    alg = key.alg
    if alg is None or key.jwk is None:
        raise _bad_sig(f"key id {kid!r} has no algorithm or JWK in the manifest")
    if compact.header["alg"] != alg:
        raise _bad_sig(f"header alg {compact.header['alg']!r} differs from the manifest's {alg!r} for {kid!r}")
    try:
        verify = key_verifier(alg, key.jwk)
    except ValueError as exc:
        raise _bad_sig(f"key id {kid!r}: {exc}") from None
    if not verify(compact.signing_input, compact.signature):
        raise _bad_sig(f"signature by {kid!r} does not verify")
    return key


def _convert(data: dict[str, Any], typ: type[msgspec.Struct], what: str) -> Any:
    try:
        return msgspec.convert(data, typ, strict=True)
    except msgspec.ValidationError as exc:
        raise TrazaError(Code.MALFORMED, f"{what}: {exc}") from None


def verify_envelope(
    raw: bytes | dict[str, Any] | Envelope,
    *,
    here: str,
    peer: str | None,
    fed: Federation,
    now: float,
    key_verifier: KeyVerifier,
    known_types: Collection[str],
    limits: Limits = DEFAULT_LIMITS,
    open_payload: PayloadOpener | None = None,
    decode_body: Callable[[str, bytes], Any] | None = None,
    seen: batchsig.Seen | None = None,
) -> Verified:
    """SPEC §4.2 steps 1–9 at node ``here`` for an envelope received from TLS peer ``peer``.

    ``peer`` is None only for an envelope this node made itself (checked before it leaves). At the
    recipient, ``open_payload`` decrypts an encrypted payload and ``decode_body`` validates the body.
    ``seen`` (shared by the envelopes of one request) verifies each batch signature once (protocol 1.1).
    """
    # 1. Size limits.
    if isinstance(raw, (bytes, bytearray)) and len(raw) > limits.max_envelope + 64 * 1024:
        raise TrazaError(Code.TOO_LARGE, f"envelope of {len(raw)} bytes exceeds {limits.max_envelope}")
    # 2. Strict decoding: unknown envelope members are rejected.
    env = raw if isinstance(raw, Envelope) else decode_envelope(raw)
    if env.size > limits.max_envelope:
        raise TrazaError(Code.TOO_LARGE, f"envelope of {env.size} bytes exceeds {limits.max_envelope}")
    token = parse_compact(env.token, typ=TYP_ENVELOPE)
    hops = [_parse_hop(h, i, seen) for i, h in enumerate(env.hops)]
    try:
        payload = b64url_decode(env.payload)
    except ValueError:
        raise TrazaError(Code.MALFORMED, "envelope.payload is not unpadded base64url") from None

    # 3. TLS peer → manifest node.
    if peer is not None and fed.node(peer) is None:
        raise TrazaError(Code.UNKNOWN_NODE, f"TLS peer {peer!r} is not a node of the manifest")
    if fed.node(here) is None:
        raise TrazaError(Code.INTERNAL, f"this node {here!r} is not in the manifest")

    # 4. Token header and signature (SPEC §3.1). The signer is the claimed issuer.
    iss_claim = token.claims.get("iss")
    if not isinstance(iss_claim, str):
        raise TrazaError(Code.MALFORMED, "token: iss is missing")
    check_signed(token, fed=fed, signer_node=iss_claim, now=now, key_verifier=key_verifier)

    # 5. Claims.
    claims: Claims = _convert(token.claims, Claims, "token claims")
    if claims.exp <= claims.iat:
        raise TrazaError(Code.MALFORMED, "token: exp is not after iat")
    if now >= claims.exp:
        raise TrazaError(Code.EXPIRED, f"message {claims.jti} expired at {claims.exp}")
    if claims.iat > now + limits.clock_skew:
        raise TrazaError(Code.NOT_YET_VALID, f"iat {claims.iat} is beyond the clock skew of {limits.clock_skew} s")
    if claims.exp - claims.iat > limits.max_ttl:
        raise TrazaError(Code.TTL_TOO_LONG, f"TTL {claims.exp - claims.iat} s exceeds {limits.max_ttl} s")
    if claims.mt not in known_types:
        raise TrazaError(Code.UNKNOWN_TYPE, f"message type {claims.mt!r} is not known")
    if claims.sv != 1:
        raise TrazaError(Code.UNKNOWN_TYPE, f"schema version {claims.sv} of {claims.mt!r} is not known")
    for who in ("iss", "aud"):
        if fed.node(getattr(claims, who)) is None:
            raise TrazaError(Code.UNKNOWN_NODE, f"{who} {getattr(claims, who)!r} is not a node of the manifest")
    if claims.iss == claims.aud:
        raise TrazaError(Code.ROUTE_VIOLATION, f"the message is addressed to its own sender {claims.iss!r}: "
                         "sender and recipient must be different nodes")

    # 6. Hop chain (SPEC §3.3).
    hop_claims: list[HopClaims] = []
    prev_elem = env.token
    expected_from = claims.iss
    def check_sig(compact: Compact, node: str) -> NodeKey:
        return check_signed(compact, fed=fed, signer_node=node, now=now, key_verifier=key_verifier)

    for i, (hop_dict, hop) in enumerate(hops):
        h_iss = hop_dict.get("iss")
        if not isinstance(h_iss, str):
            raise TrazaError(Code.MALFORMED, f"hops[{i}]: iss is missing")
        if isinstance(hop, batchsig.Element):
            if not fed.nodes[here].batch:
                raise TrazaError(Code.MALFORMED, f"hops[{i}] is a batched hop record (protocol 1.1) but {here!r} "
                                 "does not take batch signatures (manifest)")
            batchsig.check_element(hop, kind="hop", what=f"hops[{i}]", check_sig=check_sig, seen=seen,
                                   leaf_claims=hop_dict)
        else:
            check_sig(hop, h_iss)
        hc: HopClaims = _convert(hop_dict, HopClaims, f"hops[{i}] claims")
        if hc.jti != claims.jti:
            raise _bad_sig(f"hops[{i}] is for message {hc.jti}, not {claims.jti}")
        if hc.prev != sha256_b64url(prev_elem):
            raise _bad_sig(f"hops[{i}].prev does not bind the previous element (hop inserted, removed or reordered)")
        if hc.from_ != expected_from:
            raise TrazaError(Code.ROUTE_VIOLATION, f"hops[{i}].from is {hc.from_!r}, expected {expected_from!r}")
        if i + 1 < len(hops) and hc.to != hops[i + 1][0].get("iss"):
            raise TrazaError(Code.ROUTE_VIOLATION, f"hops[{i}].to is {hc.to!r}, not the next hop's issuer")
        hop_claims.append(hc)
        prev_elem = env.hops[i]
        expected_from = hc.iss
    sender = expected_from
    if hop_claims:
        if hop_claims[-1].to != here:
            raise TrazaError(Code.ROUTE_VIOLATION, f"last hop is addressed to {hop_claims[-1].to!r}, not {here!r}")
    if peer is not None and sender != peer:
        raise TrazaError(Code.PEER_MISMATCH, f"envelope was last sent by {sender!r} but TLS peer is {peer!r}")

    # From here on the envelope is authentic (every signature and the chain to the TLS peer checked):
    # a refusal names its message id as verified (TrazaError.jti), so it may index evidence.
    try:
        # 7. Route: this node is aud or the correct next hop on the derived route.
        route = fed.route(claims.iss, claims.aud)
        travelled = [claims.iss, *(h.iss for h in hop_claims)]
        if peer is not None or hop_claims:
            travelled.append(here)
        elif here != claims.iss:
            raise TrazaError(Code.ROUTE_VIOLATION, f"an envelope with no hops and no peer must be {here!r}'s own")
        if route[: len(travelled)] != travelled:
            raise TrazaError(
                Code.ROUTE_VIOLATION,
                f"path {' → '.join(travelled)} is not on the route {' → '.join(route)}",
            )
        is_recipient = here == claims.aud
        next_hop = None if is_recipient else route[len(travelled)]

        # 8. Policy: type from sender kind to recipient kind; classification ceilings; encryption rule.
        iss_node, aud_node, here_node = fed.nodes[claims.iss], fed.nodes[claims.aud], fed.nodes[here]
        rule = fed.manifest.policy.get(claims.mt)
        if rule is None:
            raise TrazaError(Code.POLICY_DENIED, f"no policy allows {claims.mt!r} in this federation")
        if iss_node.kind not in rule.senders:
            raise TrazaError(Code.POLICY_DENIED, f"{claims.mt!r} may not be sent by a {iss_node.kind} node")
        if aud_node.kind not in rule.recipients:
            raise TrazaError(Code.POLICY_DENIED, f"{claims.mt!r} may not be sent to a {aud_node.kind} node")
        # handling codes and purpose limitation (gateway.core.handling, issue #15)
        handling.check_restrictions(claims.hc, claims.hr)
        handling.check_onward_marking(claims.hc, claims.ot)
        handling.check_purpose(claims.mt, claims.pur, rule.purposes)
        level = CLASSIFICATION_ORDER[claims.cls]
        for node in (here_node, fed.nodes[next_hop] if next_hop else None):
            if node is not None and level > CLASSIFICATION_ORDER[node.max_classification]:
                raise TrazaError(
                    Code.CLASSIFICATION_EXCEEDED,
                    f"{claims.cls} exceeds {node.id}'s ceiling {node.max_classification}",
                )
        through_hub = any(fed.nodes[n].kind == "hub" for n in route[1:-1])
        if rule.encrypt_through_hubs and through_hub and claims.pld.enc is None:
            raise TrazaError(Code.ENCRYPTION_REQUIRED, f"{claims.mt!r} must be encrypted when it passes through a hub")
        if claims.pld.enc is not None:
            ref = fed.keys.get(claims.pld.enc.kid)
            if ref is None or ref.node != claims.aud or ref.key.use != "enc":
                raise TrazaError(
                    Code.ENCRYPTION_REQUIRED, f"payload is not encrypted to an enc key of {claims.aud!r}"
                )
            if claims.pld.enc.suite != SUITES.get(ref.key.kem or "", ""):
                raise TrazaError(Code.ENCRYPTION_REQUIRED, f"suite {claims.pld.enc.suite!r} does not fit key {ref.key.kid}")

        # 9. Payload digest and length; at the recipient only, decryption and body validation.
        if len(payload) != claims.pld.len or sha256_b64url(payload) != claims.pld.sha256:
            raise TrazaError(Code.PAYLOAD_MISMATCH, "payload does not match pld.sha256/pld.len")
        plaintext = None
        body = None
        if is_recipient:
            plaintext = payload
            if claims.pld.enc is not None:
                if open_payload is None:
                    raise TrazaError(Code.DECRYPT_FAILED, "no decryption key available at the recipient")
                try:
                    plaintext = open_payload(payload, payload_info(claims.jti, claims.iss, claims.aud), claims.pld.enc.kid)
                except Exception:
                    raise TrazaError(Code.DECRYPT_FAILED, f"payload of {claims.jti} could not be decrypted") from None
            if decode_body is not None:
                body = decode_body(claims.mt, plaintext)

    except TrazaError as err:
        err.jti = claims.jti
        raise

    return Verified(
        envelope=env,
        claims=claims,
        hops=hop_claims,
        payload=payload,
        dig=token_digest(env.token),
        sender=sender,
        next_hop=next_hop,
        plaintext=plaintext,
        body=body,
    )


def _parse_hop(text: str, i: int, seen: batchsig.Seen | None) -> tuple[dict[str, Any], Compact | batchsig.Element]:
    """A hop element's claims (not yet verified) and its parsed form: a version-1 compact JWS, or a
    batched element (protocol 1.1) whose claims are its leaf."""
    if batchsig.is_batched(text):
        el = batchsig.parse_element(text, f"hops[{i}]", seen)
        return strictjson.object_of(el.leaf, f"hops[{i}]: leaf"), el
    c = parse_compact(text, typ=TYP_HOP)
    return c.claims, c


def verify_ack(
    ack: str,
    *,
    fed: Federation,
    expected_iss: str,
    expected_aud: str,
    jti: str,
    token: str | None = None,
    dig: str | None = None,
    now: float,
    key_verifier: KeyVerifier,
    seen: batchsig.Seen | None = None,
) -> AckClaims:
    """Check an ack from the peer we sent ``token`` to: signed by it, for us, for this token. A batched
    ack (protocol 1.1) is checked through its batch signature, once per ``seen``. A sender that stored
    the token's digest (:func:`token_digest`, ``messages.dig``) passes it as ``dig`` instead of the token."""
    if dig is None:
        if token is None:
            raise ValueError("verify_ack needs the token acknowledged or its digest")
        dig = token_digest(token)
    if batchsig.is_batched(ack):
        el = batchsig.parse_element(ack, "ack", seen)

        def check_sig(compact: Compact, node: str) -> NodeKey:
            if node != expected_iss:
                raise _bad_sig(f"ack batch is signed by {node!r}, expected {expected_iss!r}")
            return check_signed(compact, fed=fed, signer_node=node, now=now, key_verifier=key_verifier)
        data = batchsig.check_element(el, kind="ack", what="ack", check_sig=check_sig, seen=seen)
    else:
        compact = parse_compact(ack, typ=TYP_ACK)
        check_signed(compact, fed=fed, signer_node=expected_iss, now=now, key_verifier=key_verifier)
        data = compact.claims
    claims: AckClaims = _convert(data, AckClaims, "ack claims")
    if claims.iss != expected_iss or claims.aud != expected_aud:
        raise _bad_sig(f"ack is from {claims.iss!r} to {claims.aud!r}, expected {expected_iss!r} to {expected_aud!r}")
    if claims.jti != jti or claims.dig != dig:
        raise _bad_sig(f"ack does not acknowledge message {jti}")
    return claims
