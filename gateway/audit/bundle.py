"""Evidence bundles (SPEC §7.4): build one from a node's log, verify one offline from the file alone.

Offline verification, in order (each step names what failed):
 1. the JSON is exactly the ``traza-evidence/v1`` shape (unknown or missing members are refused);
 2. the checkpoint is signed by ``keys.log`` (name = origin line = ``traza/<federation>/<node>`` of
    ``node``);
 3. every key in ``keys.witnesses`` has a valid tlog-cosignature v1 on that checkpoint;
 4. every entry is in the tree of the checkpoint (RFC 9162 inclusion proof), is canonical JSON, says
    its own index, this node and this ``jti``;
 5. the envelope token verifies with its ``keys.signing`` key (algorithm from the key entry; a header
    naming another algorithm is refused), is for ``jti``, and the kid belongs to its ``iss``;
 6. each hop verifies and chains (``prev``, ``from``/``to``), each ack verifies and acknowledges this
    token (``dig`` = b64url SHA-256 of the token string); an ack given by this node names an included
    entry (``idx``);
 7. the receipt, if any, verifies, its payload matches, and it may answer for this message (SPEC §5):
    signed by the message's recipient, addressed to its origin, ``for``/``irt`` this message, ``dig`` this
    token;
 8. the keys: with pins (``--manifest``, ``--log-key``; gateway/audit/trustkeys.py) each must be the
    pinned one, else the report says they are the file's own (internal consistency only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from gateway.audit.checkpoints import cosignature_verifier, ed25519_note_verifier
from gateway.audit.db import AuditError
from gateway.audit.reader import AuditReader
from gateway.audit.trustkeys import KeyNotTrusted, Pins, UsedKey, unpinned_note
from gateway.core import batchsig
from gateway.core.b64 import b64_decode, b64_encode, b64url_decode
from gateway.core.canonical import CanonicalError, canonical_bytes
from gateway.core.envelope import TYP_ACK, TYP_ENVELOPE, TYP_HOP, sha256_b64url, token_digest
from gateway.core.errors import TrazaError
from gateway.core.handling import MEANINGS, notice
from gateway.core.jws import Compact, parse_compact
from gateway.core.merkle import ProofError, leaf_hash, verify_inclusion
from gateway.core.note import (
    NoteError,
    cosignature_timestamp,
    node_of_origin,
    open_checkpoint,
    parse_checkpoint_text,
    parse_note,
)
from gateway.core.policy import Answer, Sent, check_answer_body, check_answer_signer
from gateway.core.timeutil import rfc3339_seconds
from gateway.crypto.keys import verifier_for

FORMAT = "traza-evidence/v1"


class BundleError(Exception):
    """The evidence bundle does not prove what it claims; the message names the part at fault."""


# -- the file format -------------------------------------------------------------------------------


class _S(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


class BEnvelope(_S, frozen=True):
    token: str
    hops: list[str]


class BReceipt(_S, frozen=True):
    token: str
    payload: str


class BEntry(_S, frozen=True):
    index: int
    entry: str
    proof: list[str]


class BLogKey(_S, frozen=True):
    name: str
    public_key: str


class BSigningKey(_S, frozen=True):
    kid: str
    alg: str
    jwk: dict[str, Any]


class BKeys(_S, frozen=True):
    log: BLogKey
    witnesses: list[BLogKey]
    signing: list[BSigningKey]


class Bundle(_S, frozen=True, omit_defaults=True):
    format: str
    jti: str
    node: str
    envelope: BEnvelope
    acks: list[str]
    receipt: BReceipt | None
    checkpoint: str
    entries: list[BEntry]
    keys: BKeys
    # issue #15: the mark of an H1 message ("H1: not for judicial proceedings without the provider's
    # permission"), so that the exported file carries it; the verifier derives it from the signed token
    # and refuses a file whose mark differs from it
    handling_notice: str | None = None


_decoder = msgspec.json.Decoder(Bundle)
_json = msgspec.json.Decoder()


def encode_bundle(bundle: Bundle) -> bytes:
    """Pretty JSON for the file (the content, not the whitespace, is what verification checks)."""
    return msgspec.json.format(msgspec.json.encode(bundle), indent=2) + b"\n"


# -- building ----------------------------------------------------------------------------------------


class NotCovered(AuditError):
    """The message's entries are not all covered by a signed checkpoint yet: ask again after the next."""


Witnessed = Literal["required", "preferred"]


def build_bundle(reader: AuditReader, jti: str, *, size: int | None = None,
                 witnessed: Witnessed = "preferred") -> Bundle:
    """The evidence bundle of message ``jti`` from this node's log, against the latest checkpoint that
    carries a witness cosignature and covers the message's entries (or the checkpoint of ``size``).

    ``witnessed="required"`` (``GET /v1/evidence/<jti>``, SPEC §4.4): no such checkpoint is
    :class:`NotCovered`. ``"preferred"`` (the local auditor's ``/audit/v1/bundle`` and ``traza audit
    export``, SPEC §7.4): then the latest checkpoint, which ``verify-bundle`` reports as not witnessed.
    The envelope, acks, receipt and signing keys come from what the relay recorded with
    :func:`gateway.audit.log.stage_evidence`."""
    node = reader.node
    if node is None:
        raise AuditError("the audit database does not record its node id")
    indices = reader.jti_indices(jti)
    if not indices:
        raise AuditError(f"no audit entry is about message {jti}")
    cp = reader.checkpoint(size) if size is not None else reader.cosigned_checkpoint()
    if size is None and (cp is None or indices[-1] >= cp.size):
        if witnessed == "required":
            latest = "" if cp is None else f" (the latest cosigned checkpoint has size {cp.size})"
            raise NotCovered(
                f"no cosigned checkpoint covers entry {indices[-1]} about {jti} yet{latest}; ask again once "
                "a witness has cosigned a later checkpoint"
            )
        cp = reader.checkpoint()  # not witnessed yet: the latest, which the bundle shows uncosigned
    if cp is None:
        raise NotCovered("no signed checkpoint yet: wait for the next checkpoint")
    if indices[-1] >= cp.size:
        raise NotCovered(
            f"entry {indices[-1]} about {jti} is not covered by the checkpoint of size {cp.size} yet; "
            "export again after the next checkpoint"
        )
    log_name = parse_checkpoint_text(parse_note(cp.note).text).origin
    envelopes: list[BEnvelope] = []
    acks: list[str] = []
    receipt: BReceipt | None = None
    for kind, value in reader.evidence(jti):
        if kind == "envelope":
            envelopes.append(msgspec.json.decode(value, type=BEnvelope))
        elif kind == "ack":
            acks.append(value)
        else:
            receipt = msgspec.json.decode(value, type=BReceipt)
    if not envelopes:
        raise AuditError(f"no envelope of message {jti} was recorded on this node")
    envelope = max(envelopes, key=lambda e: len(e.hops))  # as this node last held it
    kids: list[str] = []
    tokens = (
        [(envelope.token, TYP_ENVELOPE)]
        + [(h, TYP_HOP) for h in envelope.hops]
        + [(a, TYP_ACK) for a in acks]
    )
    if receipt is not None:
        tokens.append((receipt.token, TYP_ENVELOPE))
    for tok, typ in tokens:
        parsed = batchsig.parse_element(tok, typ).batch if batchsig.is_batched(tok) else parse_compact(tok, typ=typ)
        kid = parsed.header["kid"]
        if kid not in kids:
            kids.append(kid)
    signing: list[BSigningKey] = []
    for kid in kids:
        key = reader.signing_key(kid)
        if key is None:
            raise AuditError(f"signing key {kid} used in the evidence of {jti} was not recorded")
        signing.append(BSigningKey(kid=kid, alg=key[0], jwk=_json.decode(key[1])))
    entries = [
        BEntry(
            index=i,
            entry=b64_encode(reader.entry(i)),
            proof=[b64_encode(h) for h in reader.inclusion_proof(i, cp.size)],
        )
        for i in indices
    ]
    return Bundle(
        handling_notice=notice(parse_compact(envelope.token, typ=TYP_ENVELOPE).claims.get("hc")),
        format=FORMAT,
        jti=jti,
        node=node,
        envelope=envelope,
        acks=acks,
        receipt=receipt,
        checkpoint=cp.served(),
        entries=entries,
        keys=BKeys(
            log=BLogKey(name=log_name, public_key=cp.public_key),
            witnesses=[BLogKey(name=n, public_key=k) for n, k, _ in cp.cosignatures],
            signing=signing,
        ),
    )


# -- offline verification ------------------------------------------------------------------------------


@dataclass
class BundleReport:
    jti: str
    node: str
    size: int
    root: str
    proven: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    newest_cosignature: int | None = None  # timestamp of the newest witness cosignature (SPEC §7.2, 1.1)
    token_digest: str = ""  # b64url SHA-256 of the verified envelope token
    handling: str | None = None  # the signed handling code of the message (issue #15)
    handling_notice: str | None = None  # its mark, shown first by every view (H1)
    keys: list[UsedKey] = field(default_factory=list)  # every key relied on, and where it came from


def _b64(text: str, what: str) -> bytes:
    try:
        return b64_decode(text)
    except ValueError as exc:
        raise BundleError(f"{what}: {exc}") from None


_JWK_MEMBERS = {
    "EdDSA": ({"kty": "OKP", "crv": "Ed25519"}, ("x",)),
    "ES256": ({"kty": "EC", "crv": "P-256"}, ("x", "y")),
}


def _check_jwk(key: BSigningKey) -> None:
    """Exactly the public members of the algorithm's key, each coordinate canonical base64url of 32
    bytes (a lenient decoder would accept flipped padding bits as the same key)."""
    where = f"keys.signing {key.kid}"
    if key.alg not in _JWK_MEMBERS:
        raise BundleError(f"{where}: algorithm {key.alg!r} is not allowed in this federation")
    fixed, coords = _JWK_MEMBERS[key.alg]
    if set(key.jwk) != set(fixed) | set(coords):
        raise BundleError(f"{where}: JWK members {sorted(key.jwk)} are not those of an {key.alg} public key")
    for name, value in fixed.items():
        if key.jwk[name] != value:
            raise BundleError(f"{where}: JWK {name} is {key.jwk[name]!r}, expected {value!r}")
    for name in coords:
        try:
            ok = isinstance(key.jwk[name], str) and len(b64url_decode(key.jwk[name])) == 32
        except ValueError:
            ok = False
        if not ok:
            raise BundleError(f"{where}: JWK {name} is not canonical base64url of 32 bytes")


class _Signers:
    def __init__(self, keys: list[BSigningKey]) -> None:
        self.keys: dict[str, BSigningKey] = {}
        for k in keys:
            if k.kid in self.keys:
                raise BundleError(f"keys.signing: kid {k.kid} appears twice")
            _check_jwk(k)
            self.keys[k.kid] = k
        self.used: set[str] = set()

    def verify(self, token: str, typ: str, what: str) -> dict[str, Any]:
        """The claims of ``token`` once its signature verifies with its ``keys.signing`` entry. A batched
        hop record or ack (protocol 1.1, docs/protocol.md) carries its inclusion path and the batch
        signature: the batch JWS is verified here, the path to its root, and the leaf is the claims."""
        if batchsig.is_batched(token) and typ in (TYP_HOP, TYP_ACK):
            try:
                el = batchsig.parse_element(token, what)
                claims = batchsig.check_element(el, kind="hop" if typ == TYP_HOP else "ack", what=what,
                                                check_sig=lambda c, node: self._check(c, what))
            except TrazaError as exc:
                raise BundleError(f"{what}: {exc.detail}") from None
            return claims
        try:
            c = parse_compact(token, typ=typ)
        except TrazaError as exc:
            raise BundleError(f"{what}: {exc.detail}") from None
        return self._check(c, what)

    def _check(self, c: Compact, what: str) -> dict[str, Any]:
        """The claims of a parsed JWS once its signature verifies with its ``keys.signing`` entry and the key
        belongs to the issuer the claims name."""
        kid = c.header["kid"]
        key = self.keys.get(kid)
        if key is None:
            raise BundleError(f"{what}: signed by {kid}, which is not in keys.signing")
        if c.header["alg"] != key.alg:
            raise BundleError(f"{what}: header alg {c.header['alg']!r} is not {key.alg!r}, the alg of {kid}")
        try:
            verify = verifier_for(key.alg, key.jwk)
        except ValueError as exc:
            raise BundleError(f"keys.signing {kid}: {exc}") from None
        if not verify(c.signing_input, c.signature):
            raise BundleError(f"{what}: signature by {kid} does not verify")
        iss = c.claims.get("iss")
        if not isinstance(iss, str) or kid.split("/")[0] != iss:
            raise BundleError(f"{what}: key {kid} does not belong to its issuer {iss!r}")
        self.used.add(kid)
        return c.claims


def verify_bundle(raw: bytes, pins: Pins | None = None) -> BundleReport:
    """Verify an evidence bundle offline. Returns what it proves and the keys it relied on; raises
    :class:`BundleError`. With ``pins`` (gateway/audit/trustkeys.py) every key of the file must be the
    pinned one; without, the report says the keys are the file's own."""
    # 1. shape
    try:
        b = _decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise BundleError(f"not a {FORMAT} bundle: {exc}") from None
    if b.format != FORMAT:
        raise BundleError(f"format is {b.format!r}, expected {FORMAT!r}")
    # 2. checkpoint signed by the node's log key
    try:
        if node_of_origin(b.keys.log.name) != b.node:
            raise BundleError(f"keys.log name {b.keys.log.name!r} is not the log of node {b.node!r}")
    except NoteError as exc:
        raise BundleError(f"keys.log: {exc}") from None
    log_pub = _b64(b.keys.log.public_key, "keys.log.public_key")
    if len(log_pub) != 32:
        raise BundleError("keys.log.public_key is not a 32-byte Ed25519 key")
    try:
        cp, note = open_checkpoint(b.checkpoint, ed25519_note_verifier(b.keys.log.name, log_pub))
    except NoteError as exc:
        raise BundleError(f"checkpoint: {exc}") from None
    if cp.extensions:
        raise BundleError("checkpoint: Traza checkpoints carry no extension lines")
    report = BundleReport(jti=b.jti, node=b.node, size=cp.size, root=b64_encode(cp.root))
    report.proven.append(
        f"checkpoint {cp.origin} size {cp.size} root {b64_encode(cp.root)} is signed by the log key of {b.node}"
    )
    # 3. witness cosignatures
    names = [w.name for w in b.keys.witnesses]
    if len(set(names)) != len(names):
        raise BundleError("keys.witnesses: a witness appears twice")
    for w in b.keys.witnesses:
        wpub = _b64(w.public_key, f"keys.witnesses {w.name}")
        if len(wpub) != 32:
            raise BundleError(f"keys.witnesses {w.name}: not a 32-byte Ed25519 key")
        try:
            wv = cosignature_verifier(w.name, wpub)
        except NoteError as exc:
            raise BundleError(f"keys.witnesses: {exc}") from None
        sigs = [s for s in note.signatures if wv.matches(s)]
        if not sigs:
            raise BundleError(f"checkpoint has no cosignature by witness {w.name}")
        for s in sigs:
            if not wv.check(note.text, s):
                raise BundleError(f"cosignature by witness {w.name} does not verify")
            ts = cosignature_timestamp(s)
            report.proven.append(f"witness {w.name} cosigned this checkpoint at {rfc3339_seconds(ts)}")
            report.newest_cosignature = max(ts, report.newest_cosignature or ts)
    if not b.keys.witnesses:
        report.notes.append("no witness cosignature: the checkpoint is only as good as the node's own word")
    # 4. entries in the tree
    if not b.entries:
        raise BundleError("entries: none")
    seen: set[int] = set()
    entries: dict[int, dict[str, Any]] = {}
    for n, e in enumerate(b.entries):
        what = f"entries[{n}] (index {e.index})"
        if e.index in seen:
            raise BundleError(f"{what}: index appears twice")
        seen.add(e.index)
        data = _b64(e.entry, f"{what}.entry")
        proof = [_b64(h, f"{what}.proof") for h in e.proof]
        try:
            verify_inclusion(e.index, cp.size, leaf_hash(data), proof, cp.root)
        except ProofError as exc:
            raise BundleError(f"{what}: {exc}") from None
        try:
            value = _json.decode(data)
            canonical = isinstance(value, dict) and canonical_bytes(value) == data
        except (msgspec.DecodeError, CanonicalError):
            canonical = False
        if not canonical:
            raise BundleError(f"{what}: entry is not a canonical JSON object")
        for key, want in (("idx", e.index), ("node", b.node), ("jti", b.jti)):
            if value.get(key) != want:
                raise BundleError(f"{what}: entry {key} is {value.get(key)!r}, expected {want!r}")
        entries[e.index] = value
    # 5. the envelope token
    signers = _Signers(b.keys.signing)
    claims = signers.verify(b.envelope.token, TYP_ENVELOPE, "envelope token")
    if claims.get("jti") != b.jti:
        raise BundleError(f"envelope token is for message {claims.get('jti')!r}, not {b.jti!r}")
    dig = report.token_digest = token_digest(b.envelope.token)
    report.proven.append(
        f"message {b.jti} ({claims.get('mt')}) was signed by {claims.get('iss')} for {claims.get('aud')} "
        f"at {rfc3339_seconds(int(claims.get('iat', 0)))}; token digest {dig}"
    )
    # the marking the provider signed (issue #15); an H1 mark in the file must be the token's
    hc = claims.get("hc")
    report.handling = hc if isinstance(hc, str) else None
    report.handling_notice = notice(report.handling)
    if b.handling_notice is not None and b.handling_notice != report.handling_notice:
        raise BundleError(f"handling_notice {b.handling_notice!r} does not match the signed handling code {hc!r}")
    if report.handling in MEANINGS:
        marked = (f"marked {report.handling} by its provider {claims.get('iss')} ({MEANINGS[report.handling]}), "
                  f"classification {claims.get('cls')}, purpose {claims.get('pur')}")
        if claims.get("hr"):
            marked += f"; handling restrictions: {claims.get('hr')}"
        report.proven.append(marked)
    for idx in sorted(entries):
        v = entries[idx]
        detail = ", ".join(f"{k} {v[k]}" for k in ("from", "to", "code") if k in v)
        line = f"log entry {idx}: {v.get('event')} at {v.get('ts')}" + (f" ({detail})" if detail else "")
        if "dig" in v and v["dig"] != dig:
            line += f" — records another token digest {v['dig']}"
        report.proven.append(line + f", included in the checkpoint of size {cp.size}")
    # 6. hops and acks
    prev, sender, sent_to = b.envelope.token, claims.get("iss"), None
    for n, hop in enumerate(b.envelope.hops):
        h = signers.verify(hop, TYP_HOP, f"hop {n + 1}")
        if h.get("jti") != b.jti:
            raise BundleError(f"hop {n + 1} is for message {h.get('jti')!r}")
        if h.get("prev") != token_digest(prev):
            raise BundleError(f"hop {n + 1}: prev does not chain to the previous element")
        if h.get("from") != sender:
            raise BundleError(f"hop {n + 1}: from {h.get('from')!r}, expected {sender!r}")
        if n > 0 and sent_to != h.get("iss"):
            raise BundleError(f"hop {n}: sent to {sent_to!r} but hop {n + 1} is by {h.get('iss')!r}")
        report.proven.append(
            f"hop {n + 1}: {h.get('iss')} received it from {h.get('from')} and sent it to {h.get('to')}"
        )
        prev, sender, sent_to = hop, h.get("iss"), h.get("to")
    for n, ack in enumerate(b.acks):
        a = signers.verify(ack, TYP_ACK, f"ack {n + 1}")
        if a.get("jti") != b.jti or a.get("dig") != dig:
            raise BundleError(f"ack {n + 1} does not acknowledge this token of message {b.jti}")
        line = f"ack {n + 1}: {a.get('iss')} acknowledged this token to {a.get('aud')}"
        if a.get("iss") == b.node:
            if a.get("idx") not in entries:
                raise BundleError(
                    f"ack {n + 1} by {b.node} names audit entry {a.get('idx')!r}, not in the bundle"
                )
            line += f", recorded as log entry {a['idx']} ({entries[a['idx']].get('event')})"
        else:
            line += f" (its own log entry {a.get('idx')})"
        report.proven.append(line)
    # 7. the receipt: signed by the message's recipient, for this message and this token (SPEC §5 "Who may
    #    answer", the rule the origin node applies before it records a delivery)
    if b.receipt is not None:
        r = signers.verify(b.receipt.token, TYP_ENVELOPE, "receipt token")
        if r.get("mt") != "receipt":
            raise BundleError(f"receipt token is a {r.get('mt')!r}, not a receipt")
        try:
            payload = b64url_decode(b.receipt.payload)
        except ValueError as exc:
            raise BundleError(f"receipt payload: {exc}") from None
        pld = r.get("pld") or {}
        if pld.get("sha256") != sha256_b64url(payload) or pld.get("len") != len(payload):
            raise BundleError("receipt payload does not match the digest and length its token signs")
        sent = Sent(jti=b.jti, iss=str(claims.get("iss")), aud=str(claims.get("aud")), dig=dig)
        body: dict[str, Any] | None = None
        if pld.get("enc") is None:
            try:
                body = _json.decode(payload)
            except msgspec.DecodeError as exc:
                raise BundleError(f"receipt body is not JSON: {exc}") from None
            if not isinstance(body, dict):
                raise BundleError("receipt body is not a JSON object")
        answer = Answer(mt="receipt", jti=str(r.get("jti")), iss=str(r.get("iss")), aud=str(r.get("aud")),
                        irt=r.get("irt"), for_=str(body.get("for") if body is not None else r.get("irt")),
                        dig=body.get("dig") if body is not None else None)
        try:
            check_answer_signer(answer, sent, here=sent.iss)
            if body is not None:
                check_answer_body(answer, sent)
        except TrazaError as err:
            raise BundleError(f"receipt does not prove delivery: {err.detail}") from None
        line = f"receipt from {r.get('iss')} to {r.get('aud')}"
        if body is not None:
            line += f": {body.get('status')} at {body.get('at')}"
        else:
            line += " (encrypted body: its signer and message are checked, its dig is not readable offline)"
            report.notes.append("the receipt's body is encrypted to the origin: its dig (which token it "
                                "acknowledges) cannot be checked offline")
        report.proven.append(line)
    unused = set(signers.keys) - signers.used
    if unused:
        raise BundleError(f"keys.signing lists keys no token uses: {', '.join(sorted(unused))}")
    # 8. the keys relied on: pinned (manifest, --log-key) or, said plainly, the file's own
    pins = pins or Pins()
    try:
        report.keys.append(pins.log_key(b.node, b.keys.log.name, log_pub))
        report.keys.extend(pins.witness_key(w.name, b64_decode(w.public_key)) for w in b.keys.witnesses)
        report.keys.extend(pins.signing_key(k.kid, k.alg, k.jwk) for k in b.keys.signing)
    except KeyNotTrusted as exc:
        raise BundleError(str(exc)) from None
    loose = unpinned_note(report.keys, b.node)
    if loose is not None:
        report.notes.append(loose)
    return report


# -- evidence across hops (SPEC §4.4, 1.1): one file holding every route node's bundle ------------------

ROUTE_FORMAT = "traza-route-evidence/v1"


NO_BUNDLE = msgspec.Raw(b"null")


class RouteHop(_S, frozen=True, omit_defaults=True):
    node: str
    bundle: msgspec.Raw = NO_BUNDLE  # that node's traza-evidence/v1 bundle, as it sent it
    missing: str | None = None  # why there is none (unreachable, refused, not yet checkpointed)


class RouteBundle(_S, frozen=True):
    format: str
    jti: str
    route: list[str]
    hops: list[RouteHop]


@dataclass
class RouteReport:
    jti: str
    route: list[str]
    hops: list[tuple[str, BundleReport | None, str | None]]  # (node, its report, or why it is missing)


_route_decoder = msgspec.json.Decoder(RouteBundle)


def encode_route_bundle(jti: str, route: list[str], parts: list[tuple[str, bytes | None, str | None]]) -> bytes:
    """The route file: for each node of ``route`` (in order) its bundle bytes, or why there is none."""
    hops = [RouteHop(node=n, bundle=NO_BUNDLE if b is None else msgspec.Raw(b.strip()), missing=why)
            for n, b, why in parts]
    doc = RouteBundle(format=ROUTE_FORMAT, jti=jti, route=route, hops=hops)
    return msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"


def is_route_bundle(raw: bytes) -> bool:
    try:
        doc = _json.decode(raw)
    except msgspec.DecodeError:
        return False
    return isinstance(doc, dict) and doc.get("format") == ROUTE_FORMAT


def verify_route_bundle(raw: bytes, pins: Pins | None = None) -> RouteReport:
    """Verify every hop's bundle of a route file offline, each as :func:`verify_bundle` does, and that
    they are all about one signed message (the same token) on the route the file names. BundleError
    naming the hop (``hop 2 (latam-hub): ...``) at the first fault; a hop with no bundle is reported, not
    an error (the file says why)."""
    try:
        doc = _route_decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise BundleError(f"not a {ROUTE_FORMAT} file: {exc}") from None
    if doc.format != ROUTE_FORMAT:
        raise BundleError(f"format is {doc.format!r}, expected {ROUTE_FORMAT!r}")
    if [h.node for h in doc.hops] != doc.route or len(set(doc.route)) != len(doc.route) or not doc.route:
        raise BundleError(f"the hops ({', '.join(h.node for h in doc.hops)}) are not the route "
                          f"({' -> '.join(doc.route)}) in order")
    out: list[tuple[str, BundleReport | None, str | None]] = []
    token: tuple[int, str] | None = None
    for i, hop in enumerate(doc.hops, 1):
        where = f"hop {i} ({hop.node})"
        if bytes(hop.bundle) == b"null":
            out.append((hop.node, None, hop.missing or "no bundle"))
            continue
        try:
            report = verify_bundle(bytes(hop.bundle), pins)
        except BundleError as exc:
            raise BundleError(f"{where}: {exc}") from None
        if report.node != hop.node or report.jti != doc.jti:
            raise BundleError(f"{where}: the bundle is evidence of node {report.node!r} about message "
                              f"{report.jti!r}, not of {hop.node!r} about {doc.jti!r}")
        if token is None:
            token = (i, report.token_digest)
        elif report.token_digest != token[1]:
            raise BundleError(f"{where}: holds another token of message {doc.jti} than hop {token[0]}")
        out.append((hop.node, report, None))
    if token is None:
        raise BundleError("no hop holds a bundle")
    return RouteReport(jti=doc.jti, route=list(doc.route), hops=out)
