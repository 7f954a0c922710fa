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

import msgspec

from adapters.base import AdapterError, media_type
from adapters.standard import MEDIA_TYPE as STANDARD_CT
from gateway.audit.bundle import NotCovered
from gateway.audit.db import AuditError
from gateway.audit.selfcheck import StoreReport
from gateway.audit.tree import log_size
from gateway.core import strictjson
from gateway.core.codes import DEFAULT_CLASSIFICATION, DEFAULT_PURPOSE
from gateway.core.envelope import NO_REPLY_TYPES
from gateway.core.errors import Code, TrazaError
from gateway.core.events import AuthDenied
from gateway.core.relay import DeadLetterAction, InboxAcked
from gateway.core.retry import peer_status
from gateway.core.timeutil import rfc3339_seconds
from gateway.node.expiry import expiries
from gateway.node.state import _NodeState, _rfc3339
from gateway.store import lookup
from gateway.store import relay as st
from gateway.transport.delivery import inbox_item
from gateway.transport.peer import Problem

# states of a message this node sent that end without an answer (gateway.core.relay)
FAILED_STATES = frozenset({"failed", "dead", "discarded"})


class ApiMixin(_NodeState):
    # from Node and WitnessMixin (declared here for the type checker; state.py is the shared declaration)
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
        return (await self._decide(partial(self.relay.inbox_acked, event, now=now), now)).commands > 0

    async def message_status(self, jti: str) -> dict[str, Any] | None:
        def fn(conn: sqlite3.Connection) -> dict[str, Any] | None:
            m = st.get_message(conn, jti)
            if m is None:
                return None
            steps = [{**step, "at": _rfc3339(step["at"])} for step in st.timeline(conn, jti)]
            return {"id": jti, "type": m.mt, "from": m.iss, "to": m.aud, "conversation": m.cid, "state": m.state,
                    "reply_to": m.irt, "timeline": steps}

        return await self.db.read(fn)

    # --- local API backend (SPEC §6) ----------------------------------------------------------------

    async def local_submit(self, content_type: str, data: bytes, system: str) -> str:
        attachments: list[dict[str, Any]] = []
        doc: Any = None
        mtype = media_type(content_type)
        if mtype.endswith(("/json", "+json")):  # strict JSON (SPEC §3.4): malformed (400) before the adapter
            doc = strictjson.loads(data, "submission")
        if mtype == STANDARD_CT and b'"attachments"' in data:
            # the standard form may name blobs uploaded first with PUT /local/v1/blobs (docs/blobs.md)
            if isinstance(doc, dict) and "attachments" in doc:
                attachments = self.origin.check_attachments(doc.pop("attachments"))
                data = msgspec.json.encode(doc)
        try:
            tr = self.adapter.to_standard(data, content_type)
        except AdapterError as exc:
            raise TrazaError(Code.SCHEMA_INVALID, str(exc)) from None
        env = tr.envelope()
        to = env.get("to")
        if not to:
            raise TrazaError(Code.SCHEMA_INVALID, "no recipient - at `$.to`")
        for att in tr.attachments:
            attachments.append(await asyncio.to_thread(self.origin.import_attachment, att))
        body = msgspec.json.encode(tr.body)
        return await self.origin.submit(
            mt=tr.mt, to=to, body=body, system=system, hc=env.get("handling") or "H0", hr=env.get("handling_restrictions"),
            cls=env.get("classification") or DEFAULT_CLASSIFICATION, pur=env.get("purpose") or DEFAULT_PURPOSE,
            irt=env.get("reply_to"), ttl=env.get("ttl_seconds"), attachments=attachments or None)

    def _inbox_item(self, row: lookup.InboxRow) -> dict[str, Any]:
        """One delivered message as the inbox shows it: the national form and its delivery metadata."""
        return inbox_item(self.adapter, row, self.plain_blobs.read_index(row[1]))

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
        return {**self._inbox_item(row), "reply_to": row[8],
                "acknowledged_at": None if row[7] is None else _rfc3339(row[7])}

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
            item = {**self._inbox_item(row), "reply_to": row[8],
                    "acknowledged_at": None if row[7] is None else _rfc3339(row[7])}
            irt = row[8]
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
                peers.append({"id": nid, "kind": node.kind, "endpoint": node.endpoint,
                              "status": peer_status(state), "state": state,
                              "failures": br.failures if br else 0})
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

    async def audit_entries(self, query: dict[str, str]) -> dict[str, Any]:
        try:
            return await self.audit.entries(query)
        except ValueError as exc:
            raise TrazaError(Code.MALFORMED, str(exc)) from None

    async def audit_inclusion(self, index: int, size: int | None) -> dict[str, Any]:
        try:
            return await self.audit.inclusion(index, size)
        except AuditError as exc:  # a size beyond the log: the caller's fault
            raise TrazaError(Code.MALFORMED, str(exc)) from None

    async def audit_bundle(self, jti: str) -> bytes | None:
        try:
            return await self.audit.bundle(jti)
        except NotCovered as exc:
            wait = max(1, round(self.cfg.limits.checkpoint_interval))
            raise Problem(409, "not_checkpointed", f"{exc}; retry after the next checkpoint (signed every {wait} s)",
                          {"Retry-After": str(wait)}) from None
        except AuditError as exc:  # e.g. entries about this id but no envelope of it recorded here
            raise Problem(404, "not_found", f"no evidence bundle for message {jti!r} on this node: {exc}") from None

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
