"""Originating messages: envelopes this node builds, signs and (when the route crosses a hub or policy
says so) encrypts, from the local API (``submit``) or inside another transaction (receipts and error
messages, ``_reply_in_txn``). Each is verified like a received one, then stored, audited and queued
for its first hop.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from typing import Any

import msgspec

from gateway.core.codes import DEFAULT_CLASSIFICATION, DEFAULT_PURPOSE
from gateway.core.envelope import (
    BlobRef,
    Envelope,
    Verified,
    build_envelope,
    encode_envelope,
    verify_envelope,
)
from gateway.core.errors import Code, TrazaError
from gateway.core.events import EnvelopeAccepted
from gateway.core.ids import uuid7
from gateway.core.messages import MESSAGE_TYPES, decode_body
from gateway.core.policy import ANSWER_TYPES
from gateway.crypto.hpke import seal
from gateway.crypto.keys import verifier_for
from gateway.node.state import _NodeState
from gateway.store import relay as st
from gateway.store.blobs import BlobError


class OriginMixin(_NodeState):
    # --- originating (local API) ---------------------------------------------------------------------

    async def submit(self, *, mt: str, to: str, body: bytes, system: str, hc: str = "H0",
                     cls: str = DEFAULT_CLASSIFICATION, pur: str = DEFAULT_PURPOSE, irt: str | None = None,
                     ttl: int | None = None, cid: str | None = None,
                     attachments: list[dict[str, Any]] | None = None) -> str:
        """Build, sign (and encrypt when the route crosses a hub) a message from this node. Raises
        TrazaError (schema_invalid, unknown_node, policy_denied, ...) for what cannot be sent.
        ``attachments`` name complete blobs of the plaintext store (``sha256``, ``len``, ``ct``, ``name``)."""
        now = self.clock()
        if mt in ANSWER_TYPES:  # SPEC §5: only the node answers, from what it saw happen
            raise TrazaError(Code.POLICY_DENIED, f"a national system cannot submit a {mt!r}: the node sends "
                             "receipts (after POST /local/v1/inbox/<id>/ack) and errors itself")
        decode_body(mt, body)
        fed = self.fed
        if fed.node(to) is None:
            raise TrazaError(Code.UNKNOWN_NODE, f"recipient {to!r} is not a node of the manifest")
        if irt and cid is None:
            orig = await self.db.read(lambda c: st.get_message(c, irt))
            cid = orig.cid if orig else irt
        jti = uuid7(now, os.urandom(10))
        blobs = None
        if attachments:
            enc_to = fed.current_key(to, "enc", now) if self._seal_kw(mt, to, now) else None
            try:
                blobs = await asyncio.to_thread(self._outgoing_blobs, attachments, jti, enc_to)
            except (OSError, BlobError) as exc:  # e.g. the uploaded file went away meanwhile
                raise TrazaError(Code.BLOB_MISSING, f"attachments: {exc}") from None
        env = self._build(mt=mt, to=to, body=body, now=now, hc=hc, cls=cls, pur=pur, irt=irt, cid=cid,
                          ttl=ttl or self.cfg.limits.default_ttl, jti=jti, blobs=blobs)
        v = verify_envelope(encode_envelope(env), here=self.id, peer=None, fed=fed, now=now,
                            key_verifier=verifier_for, known_types=MESSAGE_TYPES, limits=self.limits)
        await self.db.write(lambda conn: self._store_origin(conn, v, now, f"local:system:{system}"))
        assert v.next_hop is not None
        self._wake(v.next_hop)
        self.count("messages_submitted")
        self.metrics.submitted.labels(mt).inc()
        self.log.info("envelope", jti=v.claims.jti, peer=v.next_hop, status="submitted", mt=mt)
        return v.claims.jti

    def _build(self, *, mt: str, to: str, body: bytes, now: float, ttl: int, hc: str = "H0",
               cls: str = DEFAULT_CLASSIFICATION, pur: str = DEFAULT_PURPOSE, irt: str | None = None,
               cid: str | None = None, jti: str | None = None, blobs: list[BlobRef] | None = None) -> Envelope:
        jti = jti or uuid7(now, os.urandom(10))
        kw = self._seal_kw(mt, to, now)
        return build_envelope(signer=self.signer, iss=self.id, aud=to, jti=jti, mt=mt, body=body, now=now,
                              ttl=ttl, hc=hc, cls=cls, pur=pur, cid=cid, irt=irt, blobs=blobs, **kw)  # type: ignore[arg-type]

    def _seal_kw(self, mt: str, to: str, now: float) -> dict[str, Any]:
        """build_envelope's sealing arguments when a message of type ``mt`` to ``to`` is encrypted, else {}."""
        fed = self.fed
        route = fed.route(self.id, to)
        through_hub = any(fed.nodes[n].kind == "hub" for n in route[1:-1])
        rule = fed.manifest.policy.get(mt)
        # content is always sealed when it passes a hub; answers (receipts, errors: ids, codes and times)
        # follow their policy, unencrypted by default, so that an evidence bundle shows their ``for`` and
        # ``dig`` to anyone who checks it offline (docs/security.md)
        encrypt = (through_hub and mt not in ANSWER_TYPES) or bool(rule and rule.encrypt_through_hubs and len(route) > 2)
        kw: dict[str, Any] = {}
        if encrypt:
            ek = fed.current_key(to, "enc", now)
            if ek is None or ek.kem is None or ek.public_key is None:
                raise TrazaError(Code.ENCRYPTION_REQUIRED, f"{to!r} has no valid encryption key")
            kem, pub = ek.kem, ek.public_key
            kw = {"seal": lambda pt, info: seal(kem, pub, pt, info), "enc_kem": kem, "enc_kid": ek.kid}
        return kw

    def _store_origin(self, conn: sqlite3.Connection, v: Verified, now: float, source: str) -> int:
        c = v.claims
        for b in c.blobs or []:
            self.blobs.note_expiry(b.sha256, c.exp)
        data = encode_envelope(v.envelope)
        assert v.next_hop is not None
        (idx,) = self.audit.stage(conn, [EnvelopeAccepted(jti=c.jti, mt=c.mt, iss=c.iss, aud=c.aud, dig=v.dig,
                                                          from_=source, to=v.next_hop)], now)
        self.audit.stage_evidence(conn, c.jti, envelope={"token": v.envelope.token, "hops": []},
                                  keys=self._signing_keys(self.id))
        st.insert_message(conn, st.StoredMessage(
            jti=c.jti, dig=v.dig, mt=c.mt, iss=c.iss, aud=c.aud, cid=c.cid, irt=c.irt, cls=c.cls, exp=c.exp,
            envelope=data, size=len(data), received_from=None, received_at=now, ack=None, ack_idx=idx,
            state="queued", next_hop=v.next_hop, updated_at=now))
        st.add_timeline(conn, c.jti, "queued", now, node=self.id, detail=source)
        assert v.next_hop is not None
        st.enqueue(conn, c.jti, v.next_hop, now)
        self._queued(+1)
        return idx

    def _reply_in_txn(self, conn: sqlite3.Connection, *, mt: str, to: str, body: dict[str, Any], irt: str,
                      cid: str, now: float, source: str) -> str | None:
        """Create a receipt or error message to ``to`` inside the caller's transaction."""
        if to == self.id:
            return None
        raw = msgspec.json.encode(body)
        env = self._build(mt=mt, to=to, body=raw, now=now, ttl=self.cfg.limits.default_ttl, irt=irt, cid=cid,
                          cls="UNCLASSIFIED")
        v = verify_envelope(encode_envelope(env), here=self.id, peer=None, fed=self.fed, now=now,
                            key_verifier=verifier_for, known_types=MESSAGE_TYPES, limits=self.limits)
        self._store_origin(conn, v, now, source)
        return v.claims.jti
