"""Delivery of received messages to the national system (SPEC §6): inbox (pull), webhook (push) or a
drop folder. The inbox needs no task: the national system pulls ``/local/v1/inbox``.

Both push modes read the node's inbox (messages received and not yet taken, oldest first), hand each
message over in the node's national form (``adapter.from_standard``) and only then call
``node.inbox_ack`` (which marks it taken, audits ``envelope.delivered`` and queues the receipt, once).
A message acked is never pushed again. A crash after the hand-over and before the ack makes the node
hand the same message over again after the restart, under the same message id: the webhook receiver
must treat ``Traza-Message-Id`` as an idempotency key, and the drop folder rewrites the same file name.

The drop folder also reads national files from ``outbox/`` and submits them (``node.local_submit``).
docs/delivery.md describes the folder layout, headers, retry policy and crash cases.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import ssl
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

import aiohttp
import msgspec
import structlog

from adapters.base import Adapter, AdapterError, media_type
from adapters.standard import MEDIA_TYPE as STANDARD_CT
from adapters.standard import ORDER as STANDARD_ORDER
from adapters.standard import dump as standard_dump
from adapters.standard import to_form as standard_form
from gateway.core.envelope import TYP_ENVELOPE
from gateway.core.errors import Code, TrazaError, redact_values
from gateway.core.events import Event, LocalRejected
from gateway.core.handling import MARKING_FIELDS, delivery_meta
from gateway.core.jws import parse_compact
from gateway.core.retry import backoff
from gateway.core.timeutil import rfc3339
from gateway.national.submission import Sidecar, translate
from gateway.store import lookup
from gateway.store.db import Database

if TYPE_CHECKING:
    from gateway.config import Config

REJECTED_EVENT = str(LocalRejected.__struct_config__.tag)
# the marking of a message (gateway.core.handling.MARKING_FIELDS) as webhook headers
WEBHOOK_MARKING_HEADERS = {"handling": "Traza-Handling", "handling_restrictions": "Traza-Handling-Restrictions",
                           "onward_transfer": "Traza-Onward-Transfer",
                           "classification": "Traza-Classification", "purpose": "Traza-Purpose",
                           "reply_to": "Traza-Reply-To"}
# statuses that say "later", not "this message is wrong"
_TRANSIENT_4XX = (408, 429)
_BATCH = 100

log = structlog.get_logger("traza.delivery")


class Delivery(Protocol):
    async def run(self) -> None:
        """Deliver until cancelled."""


class DeliveryNode(Protocol):
    """The few members of gateway.node.Node that delivery uses."""

    @property
    def id(self) -> str: ...

    @property
    def adapter(self) -> Adapter: ...

    @property
    def db(self) -> Database: ...

    @property
    def inbox_event(self) -> asyncio.Event: ...

    @property
    def tls_cert(self) -> Path: ...

    @property
    def tls_key(self) -> Path: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    async def inbox_ack(self, jti: str, who: str, status: str = "DELIVERED", detail: str | None = None) -> bool: ...

    async def local_submit(self, content_type: str, data: bytes, system: str,
                           sidecar: Sidecar | None = None) -> str: ...

    def audit_event_bg(self, event: Event) -> None: ...


def make_delivery(node: DeliveryNode, cfg: Config) -> Delivery | None:
    """The delivery task for ``cfg.delivery.mode``; None for the pull inbox."""
    mode = cfg.delivery.mode
    if mode == "inbox":
        return None
    if mode == "webhook":
        return WebhookDelivery(node, cfg)
    if mode == "drop":
        return DropDelivery(node, cfg)
    raise ValueError(f"{cfg.path}: delivery.mode: {mode!r} is not available in this build")


# --- shared: the inbox in national form ----------------------------------------------------------------


@dataclass(frozen=True)
class NationalForm:
    """A delivered message as the national system receives it (:func:`national_form`): ``content`` of
    ``content_type``; ``untranslated`` says why the adapter could not write it (then ``content`` is the
    standard form with that statement as its member ``untranslated``), None when it is the adapter's form."""

    content_type: str
    content: bytes
    untranslated: str | None = None


def _fault(exc: BaseException) -> str:
    if isinstance(exc, AdapterError):
        return f"{exc.field}: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


def national_form(adapter: Adapter, mt: str, body: dict[str, Any], meta: dict[str, Any]) -> NationalForm:
    """The one rule of every delivery mode (pull inbox, webhook, drop folder): the adapter's
    ``from_standard``; when the adapter cannot write the message (a character its format cannot hold,
    any fault of the adapter), the standard form (``application/vnd.traza.message+json``) with a member
    ``untranslated`` saying what could not be translated and why. Never raises: a message is always
    handed over exactly once in a form the national system can read (docs/delivery.md)."""
    try:
        return NationalForm(adapter.output_content_type, adapter.from_standard(mt, body, meta))
    except Exception as exc:  # any adapter fault: the standard form instead
        note = (f"adapter {adapter.name} cannot write this message ({_fault(exc)[:300]}); "
                f"it is delivered in the standard form ({STANDARD_CT})")
    try:
        doc = standard_form(mt, body, meta)
    except Exception:  # the body as stored, unchecked: it was valid when accepted
        doc = {k: v for k, v in {"type": mt, **meta, "body": body}.items() if k in STANDARD_ORDER}
    doc = {"type": doc.pop("type"), "untranslated": note, **doc}
    return NationalForm(STANDARD_CT, standard_dump(doc), note)


@dataclass(frozen=True)
class Pending:
    """One message of the inbox, not yet taken, rendered in the node's national form (:func:`national_form`),
    with the delivery metadata (``meta``: :func:`gateway.core.handling.delivery_meta`) written into it."""

    seq: int
    jti: str
    mt: str
    iss: str
    cid: str
    delivered_at: float
    content: bytes
    meta: dict[str, Any] = field(default_factory=dict)
    content_type: str = ""
    untranslated: str | None = None


def token_claims(token: str | None) -> dict[str, Any] | None:
    """The claims of an origin token this node stored after verifying it (None when it is gone)."""
    if not token:
        return None
    claims: dict[str, Any] = parse_compact(token, typ=TYP_ENVELOPE).claims
    return claims


def row_meta(row: lookup.InboxRow) -> dict[str, Any]:
    """The delivery metadata of an inbox row: the same in every delivery mode (SPEC §6, 1.1)."""
    return delivery_meta(jti=row.jti, iss=row.iss, cid=row.cid, delivered_at=rfc3339(row.delivered_at),
                         claims=token_claims(row.token))


def row_form(adapter: Adapter, row: lookup.InboxRow) -> NationalForm | None:
    """The national form of an inbox row (:func:`national_form`); None once its payload was purged."""
    if row.body is None:
        return None
    return national_form(adapter, row.mt, msgspec.json.decode(row.body), row_meta(row))


def inbox_item(adapter: Adapter, row: lookup.InboxRow, files: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One delivered message as the local API shows it (``GET /local/v1/inbox``, ``/inbox/<id>``,
    conversations): the national form (``content``, None once the payload was purged after its
    retention; ``content_type`` and ``untranslated`` from :func:`national_form`), the delivery metadata
    beside it and ``files``, the blobs it carried (docs/blobs.md)."""
    meta = row_meta(row)
    form = row_form(adapter, row)
    item: dict[str, Any] = {"id": row.jti, "type": row.mt, "from": meta["from"], "conversation": meta["conversation"],
                            "delivered_at": meta["delivered_at"]}
    item.update({k: meta.get(k) for k in MARKING_FIELDS})
    item.update({"content_type": form.content_type if form else adapter.output_content_type,
                 "content": form.content.decode("utf-8") if form else None,
                 "untranslated": form.untranslated if form else None, "cursor": row.seq})
    if files:
        item["attachments"] = [{**f, "url": f"/local/v1/blobs/{f['sha256']}"} for f in files]
    return item


async def pending(node: DeliveryNode, after: int = 0, limit: int = _BATCH,
                  reported: set[str] | None = None) -> tuple[list[Pending], int | None]:
    """The oldest ``limit`` messages not yet taken after inbox position ``after``, in national form
    (:func:`national_form`: the standard form when the adapter cannot write one), and the position to
    read on from (None when this was the last page). A row whose metadata cannot be read (a damaged
    store) is logged as an error (once per id when ``reported`` is given) and left in the inbox: the
    messages after it are still delivered."""
    rows = await node.db.read(lambda c: lookup.inbox_page(c, after, limit))
    out = []
    for row in rows:
        seq, jti, body, delivered_at, mt, iss, cid, _taken, _irt, _token = row
        if body is None:  # purged after its retention: nothing left to hand over
            continue
        try:
            meta = row_meta(row)
            form = national_form(node.adapter, mt, msgspec.json.decode(body), meta)
        except Exception as exc:  # a damaged row must not stop delivery of the others
            if reported is None or jti not in reported:
                log.error("delivery.untranslatable", node=node.id, jti=jti, mt=mt, adapter=node.adapter.name,
                          detail=f"{type(exc).__name__}: {exc}"[:500])
                if reported is not None:
                    reported.add(jti)
            continue
        out.append(Pending(seq, jti, mt, iss, cid, delivered_at, form.content, meta, form.content_type,
                           form.untranslated))
    return out, (rows[-1][0] if len(rows) == limit else None)


async def still_waiting(node: DeliveryNode, jti: str) -> bool:
    """True while ``jti`` is in the inbox and not taken. The push modes ask it just before each hand-over:
    a page of :func:`pending` is read once, and the national system may take a message of it through the
    pull API meanwhile (docs/delivery.md: a message taken there is not pushed)."""
    row = await node.db.read(lambda c: lookup.inbox_message(c, jti))
    return row is not None and row.taken_at is None


def extension(content_type: str) -> str:
    """File extension of a media type: ``application/vnd.traza.mx+json`` -> ``json``, ``text/csv`` ->
    ``csv``, ``application/x-x3p`` -> ``x3p``."""
    sub = media_type(content_type).split("/", 1)[-1]
    if "+" in sub:
        return sub.rsplit("+", 1)[1]
    return sub.removeprefix("x-")


def content_type_for(adapter: Adapter, filename: str) -> str | None:
    """The media type a national file is read as, chosen by its extension from the adapter's accepted
    types (the first that fits); ``*.traza.json`` is the standard form. None if no type fits."""
    name = filename.lower()
    if name.endswith(".traza.json") and STANDARD_CT in adapter.content_types:
        return STANDARD_CT
    ext = name.rsplit(".", 1)[-1] if "." in name else ""
    for ct in adapter.content_types:
        if extension(ct) == ext:
            return ct
    return None


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=max(0.0, timeout))


# --- webhook -------------------------------------------------------------------------------------------


def webhook_ssl_context(cert: Path, key: Path, ca: Path | None) -> ssl.SSLContext:
    """TLS to the webhook server: verify it (and its host name) against ``ca`` or the system trust
    store, and present the node's client certificate."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca) if ca else None)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"delivery.webhook_ca: cannot load CA certificates from {ca}: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"keys.tls_cert: cannot load TLS certificate {cert} with key {key}: {exc}") from None
    return ctx


class WebhookDelivery:
    """POST each message, oldest first, to ``delivery.webhook_url`` until a 2xx, then ack it.

    A failure that concerns the server (no connection, TLS failure, 3xx (not followed), 5xx, 408, 429) pauses all delivery
    with exponential backoff and jitter (``limits.retry_min`` .. ``limits.retry_max``; 429/503
    ``Retry-After`` is honoured). A 4xx about one message (any other) is logged as an error with the
    status and the start of the body, and that message alone is retried with backoff; the others go on.
    Nothing is dropped."""

    def __init__(self, node: DeliveryNode, cfg: Config) -> None:
        d = cfg.delivery
        assert d.webhook_url is not None
        self.node = node
        self.url = d.webhook_url
        self.host = urlsplit(self.url).hostname or ""
        self.who = f"webhook:{self.host}"
        self.timeout = d.webhook_timeout
        self.sweep = max(d.poll_seconds, 1.0)
        self.retry_min = cfg.limits.retry_min
        self.retry_max = cfg.limits.retry_max
        self.ssl = webhook_ssl_context(node.tls_cert, node.tls_key,
                                       cfg.resolve(d.webhook_ca) if d.webhook_ca else None)
        self.rand: Callable[[], float] = random.random
        # backoff state: the server as a whole, and single messages the server refused
        self.server_failures = 0
        self.server_next = 0.0
        self.msg_failures: dict[str, int] = {}
        self.msg_next: dict[str, float] = {}
        self.posts = 0  # POST attempts made (for tests and logs)
        self.reported: set[str] = set()  # messages the adapter could not write (logged once)
        self.session: aiohttp.ClientSession | None = None

    def _delay(self, attempt: int) -> float:
        return backoff(attempt, rand=self.rand(), base=self.retry_min, cap=self.retry_max)

    async def run(self) -> None:
        self.session = session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl, limit=1),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )
        try:
            while True:
                self.node.inbox_event.clear()
                try:
                    wait = await self.deliver_due(session)
                except Exception:  # never let a fault end delivery: log it and sweep again
                    log.exception("webhook.sweep_failed", node=self.node.id, url=self.url)
                    wait = self.sweep
                await _wait(self.node.inbox_event, min(wait, self.sweep))
        finally:
            await session.close()

    async def deliver_due(self, session: aiohttp.ClientSession) -> float:
        """One sweep: POST every message that is due, oldest first. Returns seconds until the next try."""
        now = time.monotonic()
        if now < self.server_next:
            return self.server_next - now
        live: set[str] = set()
        after: int | None = 0
        while after is not None:
            items, after = await pending(self.node, after, reported=self.reported)
            live.update(p.jti for p in items)
            for p in items:
                if self.msg_next.get(p.jti, 0.0) > time.monotonic():
                    continue
                if not await still_waiting(self.node, p.jti):  # taken meanwhile (the pull API)
                    live.discard(p.jti)
                    continue
                if not await self._post_one(session, p):
                    after = None  # the server is failing: wait for it
                    break
        if not self.server_failures:
            for gone in [j for j in self.msg_next if j not in live]:  # taken meanwhile (e.g. via the inbox API)
                self.msg_next.pop(gone, None)
                self.msg_failures.pop(gone, None)
        nxt = [t for t in self.msg_next.values()] + ([self.server_next] if self.server_failures else [])
        return max(0.0, min(nxt) - time.monotonic()) if nxt else self.sweep

    def headers(self, p: Pending) -> dict[str, str]:
        """The POST's headers: the delivery metadata beside the national form (which carries it too);
        ``Traza-Handling-Restrictions`` is free text, percent-encoded UTF-8 (RFC 3986) to fit a header."""
        h = {
            "Content-Type": p.content_type or self.node.adapter.output_content_type,
            "Traza-Message-Id": p.jti,
            "Traza-Message-Type": p.mt,
            "Traza-From": p.iss,
            "Traza-Conversation": p.cid,
            "Traza-Delivered-At": rfc3339(p.delivered_at),
        }
        for key, name in WEBHOOK_MARKING_HEADERS.items():
            value = p.meta.get(key)
            if value is not None:
                h[name] = quote(value, safe=" ") if key == "handling_restrictions" else value
        if p.untranslated is not None:  # the adapter could not write it: the body is the standard form
            h["Traza-Untranslated"] = quote(p.untranslated, safe=" ")
        return h

    async def _post_one(self, session: aiohttp.ClientSession, p: Pending) -> bool:
        """POST one message; ack on 2xx. False when the server failed (stop this sweep)."""
        self.posts += 1
        retry_after: float | None = None
        try:
            async with session.post(self.url, data=p.content, headers=self.headers(p), allow_redirects=False) as resp:
                status = resp.status
                text = (await resp.content.read(500)).decode("utf-8", "replace")
                with contextlib.suppress(ValueError, TypeError):
                    retry_after = float(resp.headers.get("Retry-After", ""))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._server_failed(p, f"{type(exc).__name__}: {exc}", None)
            return False
        if 200 <= status < 300:
            self.server_failures = 0
            self.server_next = 0.0
            self.msg_failures.pop(p.jti, None)
            self.msg_next.pop(p.jti, None)
            try:
                await self.node.inbox_ack(p.jti, who=self.who)
            except Exception as exc:  # the receiver has it; the next sweep POSTs it again (same id)
                log.error("webhook.ack_failed", node=self.node.id, jti=p.jti, detail=str(exc)[:300])
                return False
            log.info("webhook.delivered", node=self.node.id, jti=p.jti, mt=p.mt, status=status, url=self.url)
            return True
        if 400 <= status < 500 and status not in _TRANSIENT_4XX:
            n = self.msg_failures[p.jti] = self.msg_failures.get(p.jti, 0) + 1
            delay = self._delay(n)
            self.msg_next[p.jti] = time.monotonic() + delay
            log.error("webhook.refused", node=self.node.id, jti=p.jti, mt=p.mt, url=self.url, status=status,
                      body=text[:300], attempt=n, retry_in=round(delay, 3),
                      hint="the national system refused this message; it stays queued until it accepts it")
            return True
        self._server_failed(p, f"HTTP {status}: {text[:300]}", retry_after)
        return False

    def _server_failed(self, p: Pending, detail: str, retry_after: float | None) -> None:
        self.server_failures += 1
        delay = self._delay(self.server_failures)
        if retry_after is not None and 0 < retry_after <= self.retry_max:
            delay = max(delay, retry_after)
        self.server_next = time.monotonic() + delay
        log.warning("webhook.unavailable", node=self.node.id, jti=p.jti, url=self.url, detail=detail,
                    attempt=self.server_failures, retry_in=round(delay, 3))


# --- drop folder ---------------------------------------------------------------------------------------


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _free_name(folder: Path, name: str, tag: str) -> str:
    """``name`` if ``folder`` has no such file, else ``name`` with ``~tag`` before its extension."""
    if not (folder / name).exists():
        return name
    stem, dot, ext = name.partition(".")
    return f"{stem}~{tag}{dot}{ext}"


class DropDelivery:
    """The drop folder (SPEC §6): ``inbox/`` receives each message as ``<message id>.<ext>``;
    national files placed in ``outbox/`` are submitted, then moved to ``sent/`` (with ``<name>.id``
    holding the assigned message id) or, when refused, to ``rejected/`` (with ``<name>.error.txt``).
    ``.tmp/`` and ``.submitting/`` are the node's own working folders."""

    SUBDIRS = ("inbox", "outbox", "sent", "rejected", ".tmp", ".submitting")

    def __init__(self, node: DeliveryNode, cfg: Config) -> None:
        assert cfg.delivery.drop_dir is not None
        self.node = node
        self.root = cfg.resolve(cfg.delivery.drop_dir)
        self.poll = cfg.delivery.poll_seconds
        self.max_file = cfg.limits.max_request  # the same cap as a POST to the local API
        self.inbox = self.root / "inbox"
        self.outbox = self.root / "outbox"
        self.sent = self.root / "sent"
        self.rejected = self.root / "rejected"
        self.tmp = self.root / ".tmp"
        self.submitting = self.root / ".submitting"
        self.ext = extension(node.adapter.output_content_type)
        self._seen: dict[str, tuple[int, int]] = {}  # outbox name -> (size, mtime_ns) at the last poll
        self._listed: set[str] = set()  # the names stable_files() saw in outbox/ (stable or not)
        # an adapter that reads X3P files takes each with its sidecar JSON beside it (docs/adapters.md)
        self.pairs = X3P_CT in node.adapter.content_types
        self.reported: set[str] = set()  # messages the adapter could not write (logged once)
        self._paused_until = 0.0
        self.ready = asyncio.Event()  # set once the folders exist and crash leftovers are settled

    # -- setup and crash recovery --

    def prepare(self) -> None:
        """Create the folders; finish or set aside what a crash left behind."""
        for name in self.SUBDIRS:
            (self.root / name).mkdir(parents=True, exist_ok=True)
        for f in self.tmp.iterdir():  # half-written inbox files: rewritten from the inbox on the next sweep
            with contextlib.suppress(OSError):
                f.unlink()
        for f in sorted(self.submitting.iterdir()):
            if f.name.endswith(".id") or not f.exists():  # (a sidecar moved with its X3P file already)
                continue
            if self.pairs and is_sidecar(f.name) and any(
                    (self.submitting / n).exists() for n in _x3p_names(f.name)):
                continue  # settled with its X3P file
            idf = self.submitting / f"{f.name}.id"
            if idf.exists():  # submitted, the id recorded: only the move to sent/ was interrupted
                self._to_sent(f, idf.read_text().strip())
            else:
                self._reject(f, "interrupted",
                             "the node stopped while submitting this file, so it may or may not have been sent; "
                             "check the messages this node sent (traza status, GET /local/v1/messages/<id>) "
                             "before placing it in outbox/ again", field=None)
        for idf in self.submitting.glob("*.id"):  # the file itself already reached sent/
            os.replace(idf, self.sent / idf.name)
        _fsync_dir(self.submitting)
        _fsync_dir(self.sent)

    async def run(self) -> None:
        await asyncio.to_thread(self.prepare)
        self.ready.set()
        log.info("drop.started", node=self.node.id, dir=str(self.root))
        while True:
            self.node.inbox_event.clear()
            try:
                await self.deliver_pending()
            except OSError as exc:
                log.error("drop.write_failed", node=self.node.id, dir=str(self.inbox), detail=str(exc))
            except Exception:  # never let a fault end delivery: log it and try again on the next poll
                log.exception("drop.deliver_failed", node=self.node.id, dir=str(self.inbox))
            try:
                await self.pick_up()
            except OSError as exc:
                log.error("drop.outbox_failed", node=self.node.id, dir=str(self.outbox), detail=str(exc))
            except Exception:
                log.exception("drop.outbox_failed", node=self.node.id, dir=str(self.outbox))
            await _wait(self.node.inbox_event, self.poll)

    # -- inbox: messages to the national system --

    def inbox_name(self, p: Pending) -> str:
        """``<id>.<ext>``; ``<id>.traza.json`` for a message in the standard form (the adapter could not
        write it: :func:`national_form`)."""
        return f"{p.jti}.traza.json" if p.untranslated is not None else f"{p.jti}.{self.ext}"

    def _write_atomic(self, name: str, data: bytes) -> None:
        tmp = self.tmp / name
        _write_file(tmp, data)
        os.replace(tmp, self.inbox / name)
        _fsync_dir(self.inbox)

    async def deliver_pending(self) -> int:
        """Write every message not yet taken into ``inbox/``, oldest first, acking each once written.
        Returns the number delivered."""
        n = 0
        after: int | None = 0
        while after is not None:
            items, after = await pending(self.node, after, reported=self.reported)
            for p in items:
                if not await still_waiting(self.node, p.jti):  # taken meanwhile (the pull API)
                    continue
                name = self.inbox_name(p)
                await asyncio.to_thread(self._write_atomic, name, p.content)
                if await self.node.inbox_ack(p.jti, who="drop"):
                    n += 1
                    log.info("drop.delivered", node=self.node.id, jti=p.jti, mt=p.mt, file=str(self.inbox / name))
        return n

    # -- outbox: national files to send --

    def stable_files(self) -> list[str]:
        """Names in ``outbox/`` ready to be read: regular files not starting with '.', whose size and
        modification time have not changed since the previous poll; oldest first."""
        now: dict[str, tuple[int, int]] = {}
        for e in os.scandir(self.outbox):
            if e.name.startswith(".") or not e.is_file(follow_symlinks=False):
                continue
            s = e.stat(follow_symlinks=False)
            now[e.name] = (s.st_size, s.st_mtime_ns)
        ready = [n for n, sig in now.items() if self._seen.get(n) == sig]
        self._seen = now
        self._listed = set(now)
        return sorted(ready, key=lambda n: (now[n][1], n))

    async def pick_up(self) -> int:
        """Submit the stable files of ``outbox/``; returns how many were sent."""
        if time.monotonic() < self._paused_until:
            return 0
        sent = 0
        ready = self.stable_files()
        for name in ready:
            sidecar: str | None = None
            if self.pairs:
                if is_sidecar(name):  # never a message of its own: taken with its .x3p
                    continue
                sc = sidecar_name(name)
                if sc is not None and sc in self._listed:
                    if sc not in ready:  # wait until both are stable
                        continue
                    sidecar = sc
            self._seen.pop(name, None)
            if sidecar is not None:
                self._seen.pop(sidecar, None)
            outcome = await self.submit_file(name, sidecar)
            if outcome == "sent":
                sent += 1
            elif outcome == "later":
                break
        return sent

    async def submit_file(self, name: str, sidecar: str | None = None) -> str:
        """Submit ``outbox/<name>`` (with ``outbox/<sidecar>``, the JSON beside an X3P file, when given):
        "sent", "rejected", "later" (the node is overloaded; the files are back in outbox/) or "gone" (it
        vanished before we took it). The sidecar travels with its file into .submitting/, sent/ or rejected/."""
        work = self.submitting / name
        if sidecar is not None:
            try:
                os.rename(self.outbox / sidecar, self.submitting / sidecar)
            except FileNotFoundError:
                sidecar = None  # gone meanwhile: the file is read without it (and refused if it needs it)
        try:
            os.rename(self.outbox / name, work)  # taken: never read from outbox/ again
        except FileNotFoundError:
            if sidecar is not None:
                os.rename(self.submitting / sidecar, self.outbox / sidecar)
            return "gone"
        await asyncio.to_thread(_fsync_dir, self.submitting)
        # read and translate it: whatever fails here, nothing was submitted, so it is a refusal
        try:
            found = await self._read_file(work, name, sidecar)
        except Exception as exc:
            why = refusal_of(exc, self.node.adapter.name)
            await asyncio.to_thread(self._reject, work, why.code, why.reason, why.field, why.trace)
            return "rejected"
        if isinstance(found, Refusal):
            await asyncio.to_thread(self._reject, work, found.code, found.reason, found.field)
            return "rejected"
        ct, data, side = found
        try:
            jti = await self.node.local_submit(ct, data, "drop", side)
        except TrazaError as exc:
            if exc.code is Code.OVERLOADED:
                if sidecar is not None:
                    os.rename(self.submitting / sidecar, self.outbox / sidecar)
                os.rename(work, self.outbox / name)
                self._paused_until = time.monotonic() + 5.0
                log.warning("drop.overloaded", node=self.node.id, file=name, detail=exc.detail)
                return "later"
            await asyncio.to_thread(self._reject, work, exc.code.value, exc.detail, None)
            return "rejected"
        await asyncio.to_thread(self._record_sent, work, jti)
        log.info("drop.submitted", node=self.node.id, file=name, jti=jti, content_type=ct)
        return "sent"

    async def _read_file(self, work: Path, name: str,
                         sidecar: str | None = None) -> tuple[str, bytes, Sidecar | None] | Refusal:
        """The media type and bytes of the taken file ``work``, read once by the adapter (for the national
        field of a fault; ``local_submit`` reads it again), or why it is refused. Raises what reading or
        translating raised (:func:`refusal_of` says what it means)."""
        size = (await asyncio.to_thread(work.stat)).st_size
        if size > self.max_file:
            return Refusal(Code.TOO_LARGE.value, f"{size} bytes is more than limits.max_request ({self.max_file} bytes)")
        data = await asyncio.to_thread(work.read_bytes)
        adapter = self.node.adapter
        ct = content_type_for(adapter, name)
        if ct is None:
            exts = sorted({extension(c) for c in adapter.content_types})
            return Refusal(Code.MALFORMED.value,
                           f"the extension of {name!r} is not one adapter {adapter.name} reads (it reads: "
                           f".{', .'.join(exts)}; and .traza.json for the standard form)", "file name")
        if sidecar is None:
            adapter.to_standard(data, ct)
            return ct, data, None
        side = Sidecar(sidecar, await asyncio.to_thread((self.submitting / sidecar).read_bytes))
        translate(adapter, data, side)
        return ct, data, side

    def _record_sent(self, work: Path, jti: str) -> None:
        idf = work.with_name(f"{work.name}.id")
        _write_file(idf, f"{jti}\n".encode())
        _fsync_dir(self.submitting)
        self._to_sent(work, jti)

    def _companion(self, work: Path) -> Path | None:
        """The sidecar in .submitting/ taken with ``work`` (an X3P file), if any."""
        sc = sidecar_name(work.name) if self.pairs else None
        path = self.submitting / sc if sc is not None else None
        return path if path is not None and path.is_file() else None

    def _to_sent(self, work: Path, jti: str) -> None:
        idf = work.with_name(f"{work.name}.id")
        name = _free_name(self.sent, work.name, jti)
        side = self._companion(work)
        if side is not None:  # first: once the file and its .id are in sent/, the pair is settled
            os.replace(side, self.sent / (sidecar_name(name) or side.name))
        os.replace(work, self.sent / name)
        os.replace(idf, self.sent / f"{name}.id")
        _fsync_dir(self.sent)
        _fsync_dir(self.submitting)

    def _reject(self, work: Path, code: str, reason: str, field: str | None, trace: str | None = None) -> None:
        """Move ``work`` to rejected/ with ``<name>.error.txt`` beside it; audit and log the refusal (with
        ``trace``, the traceback of an unexpected fault, as a field of the log line)."""
        now = self.node.clock()
        name = _free_name(self.rejected, work.name, str(int(now * 1000)))
        lines = [f"file: {work.name}", f"rejected at: {rfc3339(now)}", f"code: {code}"]
        if field:
            lines.append(f"field: {field}")
        lines += [f"reason: {reason}", "",
                  "The file was not sent. Correct it and place it in outbox/ again."]
        side = self._companion(work) if work.parent == self.submitting else None
        if side is not None:
            lines[1:1] = [f"sidecar: {side.name} (moved to rejected/ with the file)"]
        _write_file(self.rejected / f"{name}.error.txt", ("\n".join(lines) + "\n").encode("utf-8"))
        if side is not None:
            os.replace(side, self.rejected / (sidecar_name(name) or side.name))
        os.replace(work, self.rejected / name)
        _fsync_dir(self.rejected)
        _fsync_dir(self.submitting)
        # the file's values stay in rejected/<name>.error.txt: the audit log and the node's log name the field
        # and the reason, not the content (SPEC §7.1)
        self.node.audit_event_bg(LocalRejected(file=work.name, code=code,
                                               detail=redact_values(f"{field}: {reason}" if field else reason)[:2000]))
        extra = {"traceback": trace} if trace else {}
        log.error("drop.rejected", node=self.node.id, file=work.name, code=code, field=field,
                  reason=redact_values(reason)[:500], moved_to=str(self.rejected / name), **extra)


def _field_of(exc: TrazaError) -> str | None:
    path = getattr(exc, "path", None)
    return path if isinstance(path, str) else None


@dataclass(frozen=True)
class Refusal:
    """Why a national file of the drop folder is refused: its ``code`` (SPEC §9), the ``reason``, the
    national ``field`` when known, and ``trace``, the traceback of an unexpected fault (logged, not written)."""

    code: str
    reason: str
    field: str | None = None
    trace: str | None = None


def refusal_of(exc: Exception, adapter: str) -> Refusal:
    """The refusal of a file whose reading or translation raised ``exc`` before anything was submitted:
    a refusal whatever the exception (never "interrupted": nothing may have been sent). An adapter's
    ``AdapterError`` names the national field; a ``TrazaError`` its code; an ``OSError`` is the node
    failing to read the file (``internal``); anything else is the adapter failing on this file
    (``malformed``, e.g. RecursionError on deeply nested XML), with its traceback."""
    if isinstance(exc, AdapterError):
        return Refusal(Code.SCHEMA_INVALID.value, exc.reason, exc.field)
    if isinstance(exc, TrazaError):
        return Refusal(exc.code.value, exc.detail, _field_of(exc))
    trace = "".join(traceback.format_exception(exc))[-4000:]
    what = f"{type(exc).__name__}: {exc}"[:300]
    if isinstance(exc, OSError):
        return Refusal(Code.INTERNAL.value, f"the node could not read the file ({what})", None, trace)
    return Refusal(Code.MALFORMED.value, f"adapter {adapter} failed on this file ({what})", None, trace)


X3P_CT = "application/x-x3p"


def is_sidecar(name: str) -> bool:
    """A ``.json`` that is not the standard form (``.traza.json``): in a drop folder of an adapter that
    reads X3P files, the sidecar of ``<stem>.x3p``."""
    low = name.lower()
    return low.endswith(".json") and not low.endswith(".traza.json")


def sidecar_name(name: str) -> str | None:
    """``case7.x3p`` -> ``case7.json``; None for a name that is not an X3P file."""
    return name[:-4] + ".json" if name.lower().endswith(".x3p") else None


def _x3p_names(sidecar: str) -> tuple[str, str]:
    stem = sidecar[:-5]
    return f"{stem}.x3p", f"{stem}.X3P"
