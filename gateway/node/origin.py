"""Origin: messages this node makes (issue #11: a composed service of the node).

Envelopes built, signed and (when the route crosses a hub or policy says so) encrypted from the local API
(:meth:`Origin.submit`) or inside another transaction (receipts and errors, :meth:`Origin.reply_in_txn`);
each is verified like a received one, then stored, audited and queued for its first hop. Attachments are
encrypted in chunks to new blobs. The receipt watchdog marks messages forwarded without a receipt after
``receipt_overdue`` and an operator may resend them.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

from adapters.base import Attachment
from gateway.core import handling
from gateway.core.auditquery import requesting
from gateway.core.b64 import b64url_encode
from gateway.core.codes import DEFAULT_CLASSIFICATION, DEFAULT_PURPOSE
from gateway.core.envelope import (
    NO_REPLY_TYPES,
    SUITES,
    TYP_ENVELOPE,
    BlobEnc,
    BlobRef,
    Envelope,
    Limits,
    RetentionDates,
    Verified,
    build_envelope,
    encode_envelope,
    verify_envelope,
)
from gateway.core.errors import Code, TrazaError
from gateway.core.events import EnvelopeAccepted, PolicyDenied, ReceiptOverdue
from gateway.core.ids import uuid7
from gateway.core.jws import parse_compact
from gateway.core.messages import MESSAGE_TYPES, decode_body
from gateway.core.policy import ANSWER_TYPES
from gateway.core.relay import Resend
from gateway.core.timeutil import rfc3339
from gateway.crypto.chunks import encrypt_file, new_content_key, seal_content_key
from gateway.crypto.hpke import seal
from gateway.crypto.keys import SigningKey, verifier_for
from gateway.node.services import Shared
from gateway.node.supervise import pause
from gateway.store import lookup
from gateway.store import relay as st
from gateway.store.blobs import BadBlobName, BlobError, BlobStore, BlobTooLarge


class Origin:
    """Makes this node's messages; watches for their receipts."""

    def __init__(self, shared: Shared, *, limits: Limits, signer: Callable[[], SigningKey], blobs: BlobStore,
                 plain_blobs: BlobStore, wake: Callable[[str], None], queued: Callable[[int], None],
                 evidence_keys: Callable[..., list[dict[str, Any]]]) -> None:
        self.s = shared
        self.limits = limits
        self.signer = signer  # the signing key of the moment (it rotates)
        self.blobs = blobs  # as they travel
        self.plain_blobs = plain_blobs  # as the national system gave them
        self.wake = wake  # a first hop has something new
        self.queued = queued  # from inside a write: the outbox grew by n once it commits
        self.evidence_keys = evidence_keys

    async def submit(self, *, mt: str, to: str, body: bytes, system: str, hc: str = "H0",
                     cls: str = DEFAULT_CLASSIFICATION, pur: str = DEFAULT_PURPOSE, irt: str | None = None,
                     ttl: int | None = None, cid: str | None = None,
                     attachments: list[dict[str, Any]] | None = None, hr: str | None = None,
                     ret: dict[str, str] | None = None, ot: str | None = None) -> str:
        """Build, sign (and encrypt when the route crosses a hub) a message from this node. Raises
        TrazaError (schema_invalid, unknown_node, policy_denied, ...) for what cannot be sent; a refusal
        by a handling or purpose rule (gateway.core.handling) is audited (``policy.denied``) first.
        ``attachments`` name complete blobs of the plaintext store (``sha256``, ``len``, ``ct``, ``name``)."""
        ids, _ = await self.submit_many(mt=mt, recipients=[to], body=body, system=system, hc=hc, cls=cls, pur=pur,
                                        irt=irt, ttl=ttl, cid=cid, attachments=attachments, hr=hr, ret=ret,
                                        ot=ot)
        return ids[0]

    async def submit_many(self, *, mt: str, recipients: list[str], body: bytes, system: str, hc: str = "H0",
                          cls: str = DEFAULT_CLASSIFICATION, pur: str = DEFAULT_PURPOSE, irt: str | None = None,
                          ttl: int | None = None, cid: str | None = None,
                          attachments: list[dict[str, Any]] | None = None,
                          hr: str | None = None, ret: dict[str, str] | None = None,
                          ot: str | None = None) -> tuple[list[str], str]:
        """:meth:`submit` to each of ``recipients`` (SPEC §6, 1.1 fan-out): one envelope per recipient, all
        in one conversation (``cid``, else the first message's id), stored in one transaction: every
        envelope is built and verified first, so a recipient that cannot be sent to (unknown, refused by
        policy, no encryption key...) fails the whole submission, naming it, and nothing is queued.
        Returns the message ids, in the order of ``recipients``, and the conversation id."""
        now = self.s.clock()
        if mt in ANSWER_TYPES:  # SPEC §5: only the node answers, from what it saw happen
            raise TrazaError(Code.POLICY_DENIED, f"a national system cannot submit a {mt!r}: the node sends "
                             "receipts (after POST /local/v1/inbox/<id>/ack) and errors itself")
        decode_body(mt, body, admit=True)  # admission rules: a message being accepted (issue #15)
        fed = self.s.fed
        fan_out = len(recipients) > 1
        for to in recipients:
            if fed.node(to) is None:
                raise TrazaError(Code.UNKNOWN_NODE, f"recipient {to!r} is not a node of the manifest")
            await self.check_handling(mt=mt, to=to, body=body, system=system, hc=hc, hr=hr, ot=ot, pur=pur, irt=irt,
                                      now=now)
        if irt and cid is None:
            orig = await self.s.db.read(lambda c: st.get_message(c, irt))
            cid = orig.cid if orig else irt
        verified: list[Verified] = []
        for to in recipients:
            jti = uuid7(now, os.urandom(10))
            cid = cid or (jti if fan_out else None)
            try:
                blobs = None
                if attachments:
                    enc_to = self.s.enc_key(to, now) if self._seal_kw(mt, to, now) else None
                    try:
                        blobs = await asyncio.to_thread(self.outgoing_blobs, attachments, jti, enc_to)
                    except (OSError, BlobError) as exc:  # e.g. the uploaded file went away meanwhile
                        raise TrazaError(Code.BLOB_MISSING, f"attachments: {exc}") from None
                env = self._build(mt=mt, to=to, body=body, now=now, hc=hc, cls=cls, pur=pur, irt=irt, cid=cid,
                                  ttl=ttl or self.s.cfg.limits.default_ttl, jti=jti, blobs=blobs, hr=hr, ret=ret,
                                  ot=ot)
                verified.append(verify_envelope(encode_envelope(env), here=self.s.here, peer=None, fed=fed, now=now,
                                                key_verifier=verifier_for, known_types=MESSAGE_TYPES,
                                                limits=self.limits))
            except TrazaError as exc:
                # SPEC §4.2: every rejection is audited with its code, also the ones the envelope's own checks
                # make here (a ceiling, the policy, the encryption rule), before the national system hears it
                await self._audit_refused(exc, mt=mt, to=to, system=system, hc=hc, pur=pur, now=now)
                if not fan_out:
                    raise
                raise TrazaError(exc.code, f"recipient {to}: {exc.detail} (nothing was sent)", fault=exc.fault) from None

        who = requesting(msgspec.json.decode(body))  # who asked, for the audit log (never the body itself)

        def store(conn: sqlite3.Connection) -> None:
            for v in verified:
                self.store_origin(conn, v, now, f"local:system:{system}", who)

        await self.s.db.write(store)
        for v in verified:
            assert v.next_hop is not None
            self.wake(v.next_hop)
            self.s.count("messages_submitted")
            self.s.metrics.submitted.labels(mt).inc()
            self.s.log.info("envelope", jti=v.claims.jti, peer=v.next_hop, status="submitted", mt=mt,
                            **({"conversation": v.claims.cid} if fan_out else {}))
        return [v.claims.jti for v in verified], verified[0].claims.cid

    def _build(self, *, mt: str, to: str, body: bytes, now: float, ttl: int, hc: str = "H0",
               cls: str = DEFAULT_CLASSIFICATION, pur: str = DEFAULT_PURPOSE, irt: str | None = None,
               cid: str | None = None, jti: str | None = None, blobs: list[BlobRef] | None = None,
               hr: str | None = None, ret: dict[str, str] | None = None, ot: str | None = None) -> Envelope:
        jti = jti or uuid7(now, os.urandom(10))
        kw = self._seal_kw(mt, to, now)
        dates = RetentionDates(**ret) if ret else None
        return build_envelope(signer=self.signer(), iss=self.s.here, aud=to, jti=jti, mt=mt, body=body, now=now,
                              ttl=ttl, hc=hc, cls=cls, pur=pur, cid=cid, irt=irt, blobs=blobs, hr=hr, ret=dates,  # type: ignore[arg-type]
                              ot=ot,
                              **kw)

    async def check_handling(self, *, mt: str, to: str, body: bytes, system: str, hc: str, hr: str | None,
                             pur: str, irt: str | None, now: float, ot: str | None = None) -> None:
        """The handling and purpose rules (gateway.core.handling) at submission; a refusal is audited as
        ``policy.denied`` (durably, before the national system hears of it) and raised."""
        ids = handling.linked_ids(mt, msgspec.json.decode(body), irt)
        rule = self.s.fed.manifest.policy.get(mt)

        def linked(conn: sqlite3.Connection) -> list[handling.Linked]:
            out = []
            for jti in ids:
                found = lookup.token_of(conn, jti)
                if found is not None and found[1]:
                    claims = parse_compact(found[1], typ=TYP_ENVELOPE).claims
                    ot = claims.get("ot")
                    out.append(handling.Linked(jti=jti, iss=found[0], hc=str(claims.get("hc")),
                                               ot=ot if isinstance(ot, str) else None))
            return out

        held = await self.s.db.read(linked) if ids else []
        try:
            handling.check_restrictions(hc, hr)
            handling.check_onward_marking(hc, ot)
            handling.check_purpose(mt, pur, rule.purposes if rule else None)
            handling.check_onward(held, here=self.s.here, to=to)
        except handling.HandlingRefused as exc:
            h2 = next((m.jti for m in held if m.hc == "H2"), None) if exc.rule == handling.RULE_H2 else None
            if exc.rule == handling.RULE_ONWARD and exc.field == "body.links":
                h2 = next((m.jti for m in held if handling.onward(m.hc, m.ot) != "ALLOWED"), None)
            event = PolicyDenied(rule=exc.rule, code=exc.code.value, detail=exc.detail[:2000], mt=mt, to=to,
                                 from_=f"local:system:{system}", handling=hc, purpose=pur, linked=h2)
            await self.s.db.write(lambda conn: self.s.audit.stage(conn, [event], now))
            self.s.log.warning("submission.refused", rule=exc.rule, code=exc.code.value, mt=mt, to=to,
                               detail=exc.detail[:300])
            raise

    async def _audit_refused(self, exc: TrazaError, *, mt: str, to: str, system: str, hc: str, pur: str,
                             now: float) -> None:
        """A submission the checks of its envelope refused: ``policy.denied`` with the code as its rule."""
        event = PolicyDenied(rule=exc.code.value, code=exc.code.value, detail=exc.detail[:2000], mt=mt, to=to,
                             from_=f"local:system:{system}", handling=hc, purpose=pur)
        await self.s.db.write(lambda conn: self.s.audit.stage(conn, [event], now))
        self.s.log.warning("submission.refused", rule=exc.code.value, code=exc.code.value, mt=mt, to=to,
                           detail=exc.detail[:300])

    def _seal_kw(self, mt: str, to: str, now: float) -> dict[str, Any]:
        """build_envelope's sealing arguments when a message of type ``mt`` to ``to`` is encrypted, else {}."""
        fed = self.s.fed
        route = fed.route(self.s.here, to)
        through_hub = any(fed.nodes[n].kind == "hub" for n in route[1:-1])
        rule = fed.manifest.policy.get(mt)
        # content is always sealed when it passes a hub; answers (receipts, errors: ids, codes and times)
        # follow their policy, unencrypted by default, so that an evidence bundle shows their ``for`` and
        # ``dig`` to anyone who checks it offline (docs/security.md)
        encrypt = (through_hub and mt not in ANSWER_TYPES) or bool(rule and rule.encrypt_through_hubs and len(route) > 2)
        kw: dict[str, Any] = {}
        if encrypt:
            ek = self.s.enc_key(to, now)
            if ek is None or ek.kem is None or ek.public_key is None:
                raise TrazaError(Code.ENCRYPTION_REQUIRED, f"{to!r} has no valid encryption key")
            kem, pub = ek.kem, ek.public_key
            kw = {"seal": lambda pt, info: seal(kem, pub, pt, info), "enc_kem": kem, "enc_kid": ek.kid}
        return kw

    def store_origin(self, conn: sqlite3.Connection, v: Verified, now: float, source: str,
                     who: dict[str, Any] | None = None) -> int:
        """Store a message made here, queued for its first hop; ``who`` asked (``unit``, ``officer``,
        ``case``: gateway/core/auditquery.py) goes into its ``envelope.accepted`` entry."""
        c = v.claims
        for b in c.blobs or []:
            self.blobs.note_expiry(b.sha256, c.exp)
        data = encode_envelope(v.envelope)
        assert v.next_hop is not None
        (idx,) = self.s.audit.stage(conn, [EnvelopeAccepted(jti=c.jti, mt=c.mt, iss=c.iss, aud=c.aud, dig=v.dig,
                                                          from_=source, to=v.next_hop, **(who or {}))], now)
        self.s.audit.stage_evidence(conn, c.jti, envelope={"token": v.envelope.token, "hops": []},
                                  keys=self.evidence_keys(self.s.here))
        st.insert_message(conn, st.StoredMessage(
            jti=c.jti, dig=v.dig, mt=c.mt, iss=c.iss, aud=c.aud, cid=c.cid, irt=c.irt, cls=c.cls, exp=c.exp,
            envelope=data, size=len(data), received_from=None, received_at=now, ack=None, ack_idx=idx,
            state="queued", next_hop=v.next_hop, updated_at=now))
        st.add_timeline(conn, c.jti, "queued", now, node=self.s.here, detail=source)
        assert v.next_hop is not None
        st.enqueue(conn, c.jti, v.next_hop, now)
        self.queued(+1)
        return idx

    def reply_in_txn(self, conn: sqlite3.Connection, *, mt: str, to: str, body: dict[str, Any], irt: str,
                      cid: str, now: float, source: str) -> str | None:
        """Create a receipt or error message to ``to`` inside the caller's transaction."""
        if to == self.s.here:
            return None
        raw = msgspec.json.encode(body)
        env = self._build(mt=mt, to=to, body=raw, now=now, ttl=self.s.cfg.limits.default_ttl, irt=irt, cid=cid,
                          cls="UNCLASSIFIED")
        v = verify_envelope(encode_envelope(env), here=self.s.here, peer=None, fed=self.s.fed, now=now,
                            key_verifier=verifier_for, known_types=MESSAGE_TYPES, limits=self.limits)
        self.store_origin(conn, v, now, source)
        return v.claims.jti

    def outgoing_blobs(self, attachments: list[dict[str, Any]], jti: str, enc_to: Any) -> list[BlobRef]:
        """Origin: the ``blobs`` claim for plaintext blobs of the local store; encrypts each one in chunks
        to a new blob (its content key sealed to ``enc_to``, the recipient's manifest enc key) when the
        payload is encrypted. Runs in a thread."""
        out: list[BlobRef] = []
        for a in attachments:
            sha = a["sha256"]
            if enc_to is None:
                self.blobs.link_from(self.plain_blobs, sha)
                out.append(BlobRef(sha256=sha, len=a["len"], ct=a["ct"], name=a["name"]))
                continue
            ck = new_content_key()
            tmp = self.blobs.temp_path()
            try:
                esha, elen = encrypt_file(self.plain_blobs.path(sha), tmp, ck)
                self.blobs.adopt(tmp, esha)
            finally:
                tmp.unlink(missing_ok=True)
            sealed = seal_content_key(enc_to.kem, enc_to.public_key, ck, esha, jti)
            out.append(BlobRef(sha256=esha, len=elen, ct=a["ct"], name=a["name"],
                               enc=BlobEnc(suite=SUITES[enc_to.kem], kid=enc_to.kid, key=b64url_encode(sealed))))
        # the national system's uploads this message names, as a recipient indexes what it decrypted: its
        # retention counts and purges them (once no other message held here names them)
        self.plain_blobs.write_index(jti, [{"sha256": a["sha256"], "len": a["len"], "ct": a["ct"], "name": a["name"]}
                                           for a in attachments])
        return out

    def check_attachments(self, items: Any) -> list[dict[str, Any]]:
        """The standard form's ``attachments`` (blobs uploaded with PUT /local/v1/blobs first)."""
        if not isinstance(items, list):
            raise TrazaError(Code.SCHEMA_INVALID, "expected a list - at `$.attachments`")
        out = []
        for i, a in enumerate(items):
            where = f"$.attachments[{i}]"
            if not isinstance(a, dict) or set(a) - {"sha256", "len", "ct", "name"}:
                raise TrazaError(Code.SCHEMA_INVALID, f"expected an object with sha256, len, ct, name - at `{where}`")
            sha, n, ct, name = a.get("sha256"), a.get("len"), a.get("ct"), a.get("name")
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise TrazaError(Code.SCHEMA_INVALID, f"len must be a non-negative integer - at `{where}.len`")
            if not isinstance(ct, str) or not ct or len(ct) > 255:
                raise TrazaError(Code.SCHEMA_INVALID, f"ct must be a media type - at `{where}.ct`")
            if not isinstance(name, str) or not name or len(name) > 255 or "/" in name or "\\" in name:
                raise TrazaError(Code.SCHEMA_INVALID, f"name must be a file name without folders - at `{where}.name`")
            try:
                present = isinstance(sha, str) and self.plain_blobs.has(sha, n)
            except BadBlobName:
                raise TrazaError(Code.SCHEMA_INVALID, f"sha256 is not a base64url SHA-256 - at `{where}.sha256`") from None
            if not present:
                raise TrazaError(Code.BLOB_MISSING, f"blob {sha} of {n} bytes has not been uploaded "
                                                    f"(PUT /local/v1/blobs/{sha} first) - at `{where}`")
            out.append({"sha256": sha, "len": n, "ct": ct, "name": name})
        return out

    def import_attachment(self, att: Attachment) -> dict[str, Any]:
        """An adapter's attachment (bytes or a file) into the plaintext store."""
        try:
            if att.data is not None:
                sha, n = self.plain_blobs.put_bytes(att.data)
            elif att.path is not None:
                sha, n = self.plain_blobs.put_file(Path(att.path))
            else:
                raise TrazaError(Code.INTERNAL, f"attachment {att.name} has neither data nor path")
        except BlobTooLarge as exc:
            raise TrazaError(Code.TOO_LARGE, f"attachment {att.name}: {exc}") from None
        except (OSError, BlobError) as exc:
            raise TrazaError(Code.INTERNAL, f"attachment {att.name}: {exc}") from None
        if sha != att.sha256 or n != att.length:
            raise TrazaError(Code.SCHEMA_INVALID, f"attachment {att.name}: digest or length differs from the adapter's")
        return {"sha256": sha, "len": n, "ct": att.media_type, "name": att.name}

    # --- receipt watchdog (issue #11) ------------------------------------------------------------------

    async def watchdog_loop(self) -> None:
        """Mark this node's messages that were forwarded ``receipt_overdue`` seconds ago and still have no
        receipt or error: ``receipt.overdue`` audited once each, a timeline step, the metric."""
        timeout = self.s.cfg.limits.receipt_overdue
        while not self.s.stopping.is_set():
            await self.check_receipts(self.s.clock())
            await pause(self.s.stopping, min(30.0, max(0.05, timeout / 4)))

    async def check_receipts(self, now: float) -> list[str]:
        """One watchdog pass at ``now``: the ids newly marked overdue."""
        timeout = self.s.cfg.limits.receipt_overdue

        def fn(conn: sqlite3.Connection) -> list[str]:
            late = st.mark_overdue(conn, origin=self.s.here, forwarded_before=now - timeout, now=now,
                                   no_receipt=NO_REPLY_TYPES)
            for m in late:
                self.s.audit.stage(conn, [ReceiptOverdue(jti=m.jti, mt=m.mt, iss=m.iss, aud=m.aud, dig=m.dig,
                                                       from_=self.s.here, to=m.next_hop or m.aud,
                                                       forwarded_at=rfc3339(m.updated_at),
                                                       after_s=int(timeout))], now)
                st.add_timeline(conn, m.jti, "overdue", now, node=self.s.here,
                                detail=f"no receipt {int(now - m.updated_at)} s after it was forwarded")
            return [m.jti for m in late]

        late = await self.s.db.write(fn)
        for jti in late:
            self.s.log.warning("receipt.overdue", jti=jti, after_s=int(timeout))
        self.s.metrics.receipts_overdue.set(len(await self.s.db.read(st.overdue)))
        return late

    async def resend(self, jti: str, operator: str) -> dict[str, Any]:
        """Operator: offer an overdue message again to its first hop, the same envelope and ``jti`` (a hop
        that already holds it answers ``duplicate``; nothing is delivered twice). Audited, refusals too."""
        now = self.s.clock()
        # KeyError: no such message sent from this node
        await self.s.operator_decision(partial(self.s.rules.resend, Resend(jti=jti, operator=operator), now=now), now)
        m = await self.s.db.read(lambda c: st.get_message(c, jti))
        assert m is not None and m.next_hop is not None
        return {"jti": jti, "action": "resend", "peer": m.next_hop}
