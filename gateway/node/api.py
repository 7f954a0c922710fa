"""The backends of the local, operations and audit APIs that ``gateway.transport`` serves: the inbox
and its acks (which send the receipt), message status, submission through the adapter, the
operator views and dead-letter actions, audit queries, health, readiness and Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from functools import partial
from typing import TYPE_CHECKING, Any

from gateway.audit.bundle import NotCovered, Witnessed, encode_route_bundle
from gateway.audit.db import AuditError
from gateway.audit.selfcheck import StoreReport
from gateway.audit.tree import log_size
from gateway.core.envelope import NO_REPLY_TYPES
from gateway.core.errors import Code, TrazaError
from gateway.core.events import AuthDenied, EvidenceRequested
from gateway.core.handling import marking, notice
from gateway.core.insights import insights
from gateway.core.relay import DeadLetterAction, InboxAcked
from gateway.core.retry import peer_status
from gateway.core.timeutil import rfc3339_seconds
from gateway.national.delivery import inbox_item, row_form, token_claims
from gateway.national.submission import Sidecar, read_submission
from gateway.node.expiry import Expiry, expiries
from gateway.node.state import _NodeState, _rfc3339
from gateway.store import insights as si
from gateway.store import lookup
from gateway.store import relay as st
from gateway.transport.peer import PeerUnavailable, Problem

# states of a message this node sent that end without an answer (gateway.core.relay)
FAILED_STATES = frozenset({"failed", "dead", "discarded"})


class ApiMixin(_NodeState):
    # from Node (declared here for the type checker; state.py is the shared declaration)
    store_report: StoreReport
    if TYPE_CHECKING:
        def witness_status(self) -> list[dict[str, Any]]: ...

    # --- local delivery ------------------------------------------------------------------------------

    async def inbox_page(self, after: int, limit: int) -> list[lookup.InboxRow]:
        return await self.db.read(lambda c: lookup.inbox_page(c, after, limit))

    async def inbox_ack(self, jti: str, who: str, status: str = "DELIVERED", detail: str | None = None) -> bool:
        """The national system has taken ``jti``: audit the delivery and send the receipt (once)."""
        now = self.clock()
        event = InboxAcked(jti=jti, who=who, status=status, detail=detail)
        first = (await self._decide(partial(self.relay.inbox_acked, event, now=now), now)).commands > 0
        if first:
            await self._note_untranslated(jti, who)
        return first

    async def _note_untranslated(self, jti: str, who: str) -> None:
        """Once per message, when it is taken: log ``delivery.untranslated`` if the national system got it
        in the standard form because the adapter could not write it (the same rule in every mode:
        gateway.national.delivery.national_form)."""
        try:
            row = await self.db.read(lambda c: lookup.inbox_message(c, jti))
            form = row_form(self.adapter, row) if row is not None else None
        except Exception as exc:  # the ack is done; only the note is lost
            self.log.warning("delivery.untranslated_check_failed", jti=jti, detail=f"{type(exc).__name__}: {exc}"[:300])
            return
        if form is not None and form.untranslated is not None:
            self.log.warning("delivery.untranslated", jti=jti, to=who, adapter=self.adapter.name,
                             content_type=form.content_type, reason=form.untranslated)

    async def message_status(self, jti: str) -> dict[str, Any] | None:
        def fn(conn: sqlite3.Connection) -> dict[str, Any] | None:
            m = st.get_message(conn, jti)
            if m is None:
                return None
            steps = [{**step, "at": _rfc3339(step["at"])} for step in st.timeline(conn, jti)]
            out: dict[str, Any] = {"id": jti, "type": m.mt, "from": m.iss, "to": m.aud, "conversation": m.cid,
                                   "state": m.state, "reply_to": m.irt, "timeline": steps}
            # the marking from the signed token (issue #15): handling code and restrictions, classification,
            # purpose; an H1 message carries its notice ("not for judicial proceedings ...")
            found = lookup.token_of(conn, jti)
            claims = token_claims(found[1]) if found else None
            if claims:
                out.update({k: v for k, v in marking(claims).items() if k != "reply_to"})
                out["handling_notice"] = notice(claims.get("hc"))
            return out

        return await self.db.read(fn)

    # --- local API backend (SPEC §6) ----------------------------------------------------------------

    async def local_submit(self, content_type: str, data: bytes, system: str, sidecar: Sidecar | None = None) -> str:
        """One message from the national system (a drop-folder file, with its sidecar when it has one): its id."""
        ids, _ = await self._local_submission(content_type, data, system, fan_out=False, sidecar=sidecar)
        return ids[0]

    async def local_submit_request(self, content_type: str, data: bytes, system: str) -> dict[str, Any]:
        """``POST /local/v1/messages`` (SPEC §6): ``{"id", "status_url"}``; for ``"to"`` a list or
        ``group:NAME`` (1.1, the standard form), a fan-out: ``{"conversation", "ids"}``."""
        ids, cid = await self._local_submission(content_type, data, system, fan_out=True)
        if cid is None:
            return {"id": ids[0], "status_url": f"/local/v1/messages/{ids[0]}"}
        return {"conversation": cid, "ids": ids}

    async def _local_submission(self, content_type: str, data: bytes, system: str, *,
                                fan_out: bool, sidecar: Sidecar | None = None) -> tuple[list[str], str | None]:
        """The message ids and, for a fan-out, the conversation id (gateway/national/submission.py reads it)."""
        sub = read_submission(self.adapter, content_type, data, groups=self.fed.groups, here=self.id, fan_out=fan_out,
                              sidecar=sidecar)
        attachments = self.origin.check_attachments(sub.named) if sub.named is not None else []
        for att in sub.files:
            attachments.append(await asyncio.to_thread(self.origin.import_attachment, att))
        ids, cid = await self.origin.submit_many(
            mt=sub.mt, recipients=sub.recipients, body=sub.body, system=system, hc=sub.hc, hr=sub.hr, ot=sub.ot,
            cls=sub.cls, pur=sub.pur, irt=sub.irt, ttl=sub.ttl, attachments=attachments or None, ret=sub.ret)
        return ids, (cid if sub.fan_out else None)

    def _inbox_item(self, row: lookup.InboxRow) -> dict[str, Any]:
        """One delivered message as the inbox shows it: the national form and its delivery metadata."""
        return inbox_item(self.adapter, row, self.plain_blobs.read_index(row.jti))

    async def local_inbox(self, after: int, limit: int) -> dict[str, Any]:
        rows = await self.inbox_page(after, limit)
        out = [self._inbox_item(row) for row in rows]
        nxt = out[-1]["cursor"] if out else after
        return {"messages": out, "next": str(nxt)}

    async def local_inbox_message(self, jti: str) -> dict[str, Any] | None:
        """One message delivered to this node, acknowledged or not (``acknowledged_at``); None if none."""
        row = await self.db.read(lambda c: lookup.inbox_message(c, jti))
        if row is None:
            return None
        return {**self._inbox_item(row), "reply_to": row.irt,
                "acknowledged_at": None if row.taken_at is None else _rfc3339(row.taken_at)}

    async def conversation(self, cid: str) -> dict[str, Any] | None:
        """Conversation ``cid`` on this node (SPEC §6): each message this node's national system sent in it,
        with its state and the answers delivered here (``reply_to`` it); ``received``: what was delivered
        here in it answering none of them. None if this node has no message of the conversation."""
        def fn(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], list[lookup.InboxRow]]:
            return (lookup.conversation_sent(conn, cid, self.id, NO_REPLY_TYPES),
                    lookup.conversation_inbox(conn, cid))

        sent, delivered = await self.db.read(fn)
        if not sent and not delivered:
            return None
        ours = {m["id"] for m in sent}
        answers: dict[str, list[dict[str, Any]]] = {}
        received = []
        for row in delivered:
            item = {**self._inbox_item(row), "reply_to": row.irt,
                    "acknowledged_at": None if row.taken_at is None else _rfc3339(row.taken_at)}
            irt = row.irt
            if irt is not None and irt in ours:
                answers.setdefault(irt, []).append(item)
            else:
                received.append(item)
        messages = [{**m, "sent_at": _rfc3339(m["sent_at"]), "answers": answers.get(m["id"], [])} for m in sent]
        failed = sum(m["state"] in FAILED_STATES for m in messages)
        answered = sum(bool(m["answers"]) for m in messages)
        return {"conversation": cid, "messages": messages, "received": received,
                "summary": {"recipients": len({m["to"] for m in messages}), "answered": answered,
                            "pending": sum(not m["answers"] and m["state"] not in FAILED_STATES for m in messages),
                            "failed": failed}}

    async def ops_view(self, what: str) -> Any:
        now = self.clock()
        if what == "queues":
            return {"queues": await self.db.read(partial(st.queue_depths, now=now))}
        if what == "overdue":  # forwarded, no receipt after limits.receipt_overdue (the receipt watchdog)
            rows = await self.db.read(st.overdue)
            return {"overdue": [{**r, "overdue_since": rfc3339_seconds(int(r["overdue_since"])),
                                 "forwarded_at": rfc3339_seconds(int(r.pop("updated_at"))),
                                 "exp": rfc3339_seconds(r["exp"]), "expired": r["exp"] <= now} for r in rows],
                    "after_s": self.cfg.limits.receipt_overdue}
        if what == "dead-letters":
            rows = await self.db.read(st.dead_letters)
            # the signed expiry: a dead letter whose exp has passed cannot be retried (ops_dead_letter)
            return {"dead_letters": [{**d, "at": _rfc3339(d["at"]), "exp": rfc3339_seconds(d["exp"]),
                                      "expired": d["exp"] <= now}
                                     for d in rows]}
        if what == "peers":
            peers = []
            for nid, node in sorted(self.fed.nodes.items()):
                if nid == self.id or not self.fed.linked(self.id, nid):
                    continue
                br = self.outbound.breakers.get(nid)
                state = br.state(now) if br else "idle"
                err = self.outbound.last_error.get(nid)
                peers.append({"id": nid, "kind": node.kind, "endpoint": node.urls[0], "endpoints": list(node.urls),
                              "status": peer_status(state), "state": state,
                              "failures": br.failures if br else 0,
                              "last_error": err[1] if err else None,
                              "last_error_at": _rfc3339(err[0]) if err else None})
            return {"peers": peers}
        counts = await self.db.read(st.counts_by_state)
        return {"node": self.id, "federation": self.fed.name, "manifest_version": self.fed.version,
                "manifest_expires_at": self.fed.manifest.expires_at, "queue_depth": self.queue_depth,
                "messages": counts, "counters": dict(self.counters), "witnesses": self.witness_status()}

    async def ops_dead_letter(self, dl_id: int, action: str, operator: str) -> dict[str, Any]:
        """Retry (queue again) or discard dead letter ``dl_id``; audited as ``operator.action``. Raises
        KeyError if there is no such dead letter, and TrazaError ``expired`` for a retry of a message whose
        signed ``exp`` has passed: nothing changes (the dead letter stays), and the refusal is audited."""
        now = self.clock()
        found = await self.db.read(lambda c: st.get_dead_letter(c, dl_id))
        if found is None:
            raise KeyError(dl_id)
        event = DeadLetterAction(dl_id=dl_id, action="retry" if action == "retry" else "discard", operator=operator)
        await self._operator_decision(partial(self.relay.dead_letter_action, event, now=now), now)
        return {"id": dl_id, "jti": found[0], "action": action, "peer": found[1]}

    # --- what the dashboard sees (gateway.ops.dashboard.DashboardNode) ----------------------------------

    @property
    def log_origin(self) -> str:
        return self.audit.origin

    def expiries(self) -> list[Expiry]:
        return expiries(self)

    async def recent_audit_entries(self, event: str, limit: int) -> list[tuple[int, bytes]]:
        return await self.audit.recent(event, limit)

    async def audit_entries(self, query: dict[str, str]) -> dict[str, Any]:
        try:
            return await self.audit.entries(query)
        except ValueError as exc:
            raise TrazaError(Code.MALFORMED, str(exc)) from None

    async def insights(self) -> dict[str, Any]:
        """``GET /ops/v1/stats`` (issue #16): aggregates of what this node holds, small cells suppressed,
        computed on a reader thread as the rows stream from the store."""
        countries = {n.id: n.country for n in self.fed.manifest.nodes}

        def fn(conn: sqlite3.Connection) -> dict[str, Any]:
            return insights(si.sent_rows(conn), si.answer_rows(conn), countries)

        return {"node": self.id, "generated_at": _rfc3339(self.clock()), **await self.db.read(fn)}

    async def retention_report(self) -> dict[str, Any]:
        """``GET /ops/v1/retention`` (issue #15): the content this node holds, until when and by which rule."""
        now = self.clock()
        rows = await self.retention.report(now)
        for r in rows:
            for k in ("since", "until", "review_by"):
                r[k] = None if r[k] is None else _rfc3339(r[k])
        return {"node": self.id, "generated_at": _rfc3339(now), "messages": rows}

    async def audit_search(self, query: dict[str, str]) -> list[tuple[int, bytes]]:
        return await self.audit.search(query)

    async def audit_inclusion(self, index: int, size: int | None) -> dict[str, Any]:
        try:
            return await self.audit.inclusion(index, size)
        except AuditError as exc:  # a size beyond the log: the caller's fault
            raise TrazaError(Code.MALFORMED, str(exc)) from None

    async def audit_bundle(self, jti: str, *, witnessed: Witnessed = "preferred") -> bytes | None:
        """This node's evidence bundle of ``jti`` (None if nothing is about it): for the local auditor
        against the latest cosigned checkpoint covering it, else the latest checkpoint; ``witnessed=
        "required"`` (peers, SPEC §4.4) only against a cosigned one, else 409 ``not_checkpointed``."""
        try:
            return await self.audit.bundle(jti, witnessed=witnessed)
        except NotCovered as exc:
            wait = max(1, round(self.cfg.limits.checkpoint_interval))
            raise Problem(409, "not_checkpointed", f"{exc}; retry after the next checkpoint (signed every {wait} s)",
                          {"Retry-After": str(wait)}) from None
        except AuditError as exc:  # e.g. entries about this id but no envelope of it recorded here
            raise Problem(404, "not_found", f"no evidence bundle for message {jti!r} on this node: {exc}") from None

    # --- evidence across hops (SPEC §4.4, 1.1) -----------------------------------------------------------

    async def peer_evidence(self, peer: str, jti: str) -> bytes:
        """``GET /v1/evidence/<jti>`` asked by ``peer``: this node's bundle of the message, only to a node on
        its route (origin, hubs, recipient); 403 ``policy_denied`` otherwise, and for a message this node
        does not hold (the same answer: a peer learns nothing of what it may not ask about). Audited."""
        m = await self.db.read(lambda c: st.get_message(c, jti))
        route = self.fed.route(m.iss, m.aud) if m is not None and m.iss in self.fed.nodes and m.aud in self.fed.nodes else []
        if peer not in route:
            reason = f"{peer} is not on the route of a message {jti} held here"
            self.audit_event_bg(EvidenceRequested(jti=jti, peer=peer, side="served", outcome="refused", reason=reason))
            self.log.warning("evidence.refused", peer=peer, jti=jti)
            raise Problem(403, Code.POLICY_DENIED.value, reason)
        try:
            bundle = await self.audit_bundle(jti, witnessed="required")
        except Problem as exc:
            self.audit_event_bg(EvidenceRequested(jti=jti, peer=peer, side="served", outcome="failed", reason=exc.detail))
            raise
        assert bundle is not None
        self.audit_event_bg(EvidenceRequested(jti=jti, peer=peer, side="served", outcome="ok"))
        return bundle

    async def audit_route_bundle(self, jti: str) -> bytes:
        """``GET /audit/v1/route-bundle?jti=`` (auditor): this node's bundle of the message and every other
        route node's (asked with ``GET /v1/evidence``), in route order, in one file; a node that cannot
        give its part is listed with the reason. Problem 404 for a message this node does not hold."""
        m = await self.db.read(lambda c: st.get_message(c, jti))
        if m is None or m.iss not in self.fed.nodes or m.aud not in self.fed.nodes:
            raise Problem(404, "not_found", f"no message {jti!r} on this node")
        route = self.fed.route(m.iss, m.aud)

        async def part(node: str) -> tuple[str, bytes | None, str | None]:
            try:
                data = (await self.audit_bundle(jti, witnessed="required") if node == self.id  # as every hop's
                        else await self.fetch_evidence(node, jti))
            except Problem as exc:
                return node, None, f"{exc.code}: {exc.detail}"
            except (TrazaError, PeerUnavailable) as exc:
                return node, None, str(exc)[:300]
            return node, data, None

        parts = await asyncio.gather(*(part(n) for n in route))
        return encode_route_bundle(jti, route, list(parts))

    async def fetch_evidence(self, node: str, jti: str) -> bytes:
        """Ask ``node`` for its evidence of message ``jti`` (the auditor's view across hops); audited here.
        TrazaError for a refusal (its code), PeerUnavailable when it cannot be asked."""
        try:
            data = await self._client(node).get_evidence(jti)
        except TrazaError as exc:
            self.audit_event_bg(EvidenceRequested(jti=jti, peer=node, side="asked", outcome="refused", reason=exc.detail))
            raise
        except PeerUnavailable as exc:
            self.audit_event_bg(EvidenceRequested(jti=jti, peer=node, side="asked", outcome="failed",
                                                  reason=str(exc)[:300]))
            raise
        self.audit_event_bg(EvidenceRequested(jti=jti, peer=node, side="asked", outcome="ok"))
        return data

    def local_denied(self, path: str, remote: str, reason: str) -> None:
        self.audit_event_bg(AuthDenied(listener="local", path=path, remote=remote, detail=reason))
        self.metrics.auth_denied.labels("local").inc()
        self.log.warning("auth.denied", listener="local", path=path, detail=reason)

    # --- operations listener ---------------------------------------------------------------------------

    def healthy(self) -> bool:
        return not self.stopping.is_set()

    def is_ready(self) -> tuple[bool, str]:
        if not self.ready:
            return False, "starting"
        if self.trust.is_expired(self.clock()):
            return False, f"manifest version {self.fed.version} has expired"
        if not self.db.healthy:  # until a transaction commits again
            return False, f"storage: writes are failing ({self.db.last_error})"
        return True, "ok"

    def metrics_text(self) -> tuple[bytes, str]:
        m = self.metrics
        now = self.clock()
        m.queue_depth.clear()  # a drained queue leaves no stale depth or age behind (TrazaQueueStuck)
        m.queue_oldest.clear()
        for q in self.db.read_sync(partial(st.queue_depths, now=now)):
            m.queue_depth.labels(q["peer"]).set(q["depth"])
            m.queue_oldest.labels(q["peer"]).set(q["oldest_age_s"])
        m.dead_letters.set(len(self.db.read_sync(st.dead_letters)))
        m.manifest_version.set(self.fed.version)
        m.storage_up.set(1 if self.db.healthy else 0)
        m.audit_backlog.set(len(self.audit_backlog))
        m.inbox_depth.set(self.db.read_sync(st.inbox_waiting))
        m.audit_entries.set(self.db.read_sync(log_size))
        m.store_check_ok.set(1 if self.store_report.ok else 0)
        try:
            disk = shutil.disk_usage(self.data_dir)
            m.data_free.set(disk.free)
            m.data_size.set(disk.total)
        except OSError as exc:
            self.log.warning("metrics.disk_failed", detail=str(exc)[:300])
        m.witness_age.clear()  # a witness unlinked by a new manifest leaves no series behind
        m.witness_stale.clear()
        for w in self.witness_status():
            if w["age_s"] is not None:
                m.witness_age.labels(w["id"]).set(w["age_s"])
            m.witness_stale.labels(w["id"]).set(1 if w["stale"] else 0)
        m.expiry.clear()  # a rotated key or a replaced CA leaves no stale series behind
        try:
            for e in expiries(self):
                m.expiry.labels(e.id).set(e.not_after - now)
        except (TrazaError, OSError) as exc:  # an unreadable certificate: the other metrics still go out
            self.log.warning("metrics.expiry_failed", detail=str(exc)[:300])
        return m.render()
