"""Retention at a node (issue #15): every ``[retention] interval`` the content whose time has come is
purged (:mod:`gateway.core.retention` decides, :mod:`gateway.store.retention` removes the rows): the
plaintext body in the inbox, the envelope (token and payload ciphertext) and the blobs the message
named, plaintext and ciphertext, once no other message still held names them. Each removal is audited
as ``payload.purged`` (what, and the blob's digest) in the same transaction; the blob files go after the
commit. The evidence (audit entries, token, hop records, acks, digests) stays: the message's evidence
bundle still verifies. ``report`` lists what is held and until when (``traza retention report``)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from typing import Any

from gateway.core import retention as rules_mod
from gateway.core.envelope import TYP_ENVELOPE
from gateway.core.events import PayloadPurged
from gateway.core.jws import parse_compact
from gateway.node.services import Shared
from gateway.node.supervise import pause
from gateway.store import retention as st_ret
from gateway.store.blobs import BlobStore


def _claims(token: str | None) -> dict[str, Any]:
    if token is None:
        return {}
    try:
        return parse_compact(token, typ=TYP_ENVELOPE).claims
    except Exception:  # a token this node verified when it took the message in; unreadable: no facts from it
        return {}


def _date(ret: object, key: str) -> float | None:
    value = ret.get(key) if isinstance(ret, dict) else None
    if not isinstance(value, str):
        return None
    try:
        return rules_mod.day_start(value)
    except ValueError:
        return None


class Retention:
    """The retention passes and report of one node."""

    def __init__(self, shared: Shared, *, blobs: BlobStore, plain_blobs: BlobStore) -> None:
        self.s = shared
        self.blobs = blobs  # as they travel (ciphertext)
        self.plain_blobs = plain_blobs  # the national system's plaintext

    def rules(self) -> rules_mod.Rules:
        r = self.s.cfg.retention
        fed = self.s.fed
        me = fed.node(self.s.here)
        policy: dict[str, dict[str, float]] = {mt: {str(k): d for k, d in rule.retention_days.items()}
                                               for mt, rule in fed.manifest.policy.items() if rule.retention_days}
        return rules_mod.Rules(kind=me.kind if me is not None else "national", days=r.days, types=dict(r.types),
                               policy=policy)

    def _facts(self, rows: list[st_ret.HeldRow], now: float) -> list[tuple[rules_mod.Held, st_ret.HeldRow, dict[str, Any]]]:
        out = []
        for row in rows:
            claims = _claims(row.token)
            role: rules_mod.Role = ("recipient" if row.aud == self.s.here else
                                    "origin" if row.iss == self.s.here else "transit")
            if role == "recipient":
                needed = row.body and not row.taken
            elif role == "origin":  # a resend of an overdue message needs its envelope until it expires
                needed = row.in_outbox or (row.state == "forwarded" and now < row.exp)
            else:
                needed = row.in_outbox
            ret = claims.get("ret")
            out.append((rules_mod.Held(jti=row.jti, mt=row.mt, role=role, since=row.received_at, exp=row.exp,
                                       needed=needed, review_by=_date(ret, "review_by"),
                                       delete_by=_date(ret, "delete_by")), row, claims))
        return out

    def _blobs_of(self, jti: str, claims: dict[str, Any]) -> tuple[set[str], set[str]]:
        """(ciphertext, plaintext) blob names message ``jti`` carries here."""
        cipher = {b["sha256"] for b in claims.get("blobs") or [] if isinstance(b, dict) and "sha256" in b}
        plain = {e["sha256"] for e in self.plain_blobs.read_index(jti) or [] if "sha256" in e}
        return cipher, plain

    async def report(self, now: float) -> list[dict[str, Any]]:
        """What this node holds and until when, oldest first."""
        rows = await self.s.db.read(st_ret.held)
        facts = self._facts(rows, now)
        verdicts = rules_mod.judge([f[0] for f in facts], self.rules(), now)
        out = []
        for (h, row, claims), v in zip(facts, verdicts, strict=True):
            cipher, plain = await asyncio.to_thread(self._blobs_of, h.jti, claims)
            held = [w for w, on in (("body", row.body), ("envelope", row.envelope)) if on]
            out.append({"id": h.jti, "type": h.mt, "role": h.role, "from": row.iss, "to": row.aud,
                        "since": h.since, "held": held, "blobs": len(cipher | plain), "until": v.until,
                        "rule": v.rule, "due": v.due, "waiting": v.waiting, "review_by": v.review_by,
                        "review_due": v.review_due})
        return out

    async def run_once(self, now: float) -> list[PayloadPurged]:
        """Purge what is due at ``now``; the ``payload.purged`` events written (one per body, envelope and blob)."""
        rows = await self.s.db.read(st_ret.held)
        facts = self._facts(rows, now)
        verdicts = rules_mod.judge([f[0] for f in facts], self.rules(), now)
        going = {v.jti for v in verdicts if v.due}
        if not going:
            return []
        blobs: dict[str, tuple[set[str], set[str]]] = {}
        for h, _row, claims in facts:
            blobs[h.jti] = await asyncio.to_thread(self._blobs_of, h.jti, claims)
        kept_cipher: set[str] = set().union(*(c for j, (c, _p) in blobs.items() if j not in going))
        kept_plain: set[str] = set().union(*(p for j, (_c, p) in blobs.items() if j not in going))

        def fn(conn: sqlite3.Connection) -> list[PayloadPurged]:
            events: list[PayloadPurged] = []
            for jti in sorted(going):
                events += [PayloadPurged(jti=jti, what=w) for w in st_ret.purge(conn, jti)]
                cipher, plain = blobs[jti]
                events += [PayloadPurged(jti=jti, what="blob", sha256=sha) for sha in sorted(cipher - kept_cipher)
                           if self.blobs.has(sha)]
                events += [PayloadPurged(jti=jti, what="plaintext blob", sha256=sha)
                           for sha in sorted(plain - kept_plain) if self.plain_blobs.has(sha)]
            if events:
                self.s.audit.stage(conn, list(events), now)
            return events

        events = await self.s.db.write(fn)
        for e in events:  # after the commit: a rollback leaves a file kept, never one gone too early
            if e.sha256 is not None:
                (self.blobs if e.what == "blob" else self.plain_blobs).delete(e.sha256)
        for jti in going:
            with contextlib.suppress(OSError):
                (self.plain_blobs.root / "index" / f"{jti}.json").unlink(missing_ok=True)
        if events:
            self.s.count("payloads_purged", len(events))
            self.s.log.info("payload.purged", messages=len(going), items=len(events))
        return events

    async def loop(self) -> None:
        """A pass every ``[retention] interval`` seconds, on the node's clock."""
        interval = self.s.cfg.retention.interval
        while not self.s.stopping.is_set():
            if await pause(self.s.stopping, interval):
                break
            try:
                await self.run_once(self.s.clock())
            except Exception as exc:  # logged; the next pass tries again
                self.s.log.warning("retention.failed", detail=str(exc)[:200])
