"""The web dashboard at ``/ui/`` on the local listener (SPEC §6), for operators and auditors.

The page (``gateway/ops/static``: plain HTML, one small script, one style sheet; no build step, nothing
fetched from the internet) calls the existing JSON API of its role (``/ops/v1/*`` for operators,
``/audit/v1/*`` and ``/v1/audit/checkpoint`` for auditors) and the few views below that the API lacks.
The transport's middleware admits roles ``operator`` and ``auditor`` on ``/ui``; each view here admits
the role(s) it names and refuses (and audits, as ``auth.denied``) the other.

| route | roles | what |
|---|---|---|
| ``GET /ui/`` | operator, auditor | the page |
| ``GET /ui/static/{name}`` | operator, auditor | ``app.js``, ``style.css``, ``favicon.svg`` |
| ``GET /ui/static/i18n/{lang}.json`` | operator, auditor | the page's texts in ``en`` or ``es`` |
| ``GET /ui/api/whoami`` | operator, auditor | role, name, node, federation, log origin and audit keys |
| ``GET /ui/api/peers`` | operator | linked peers with breaker state, last exchange, hop latency |
| ``GET /ui/api/throughput`` | operator | envelopes per interval over the last ten minutes |
| ``GET /ui/api/rejections`` | operator | recent ``envelope.rejected`` audit entries with their codes |
| ``GET /ui/api/expiry`` | operator | certificates, manifest (and its revocation list), keys: when they expire |
| ``GET /ui/api/federation-keys`` | auditor, operator | every node's audit and signing keys in the manifest this node holds, and the revoked key ids: the page checks the keys of a route file's hops against them |
| ``GET /ui/api/messages/{id}`` | auditor, operator | the message's state and timeline on this node, and its marking from the signed token (handling code, restrictions, classification, purpose; ``handling_notice`` for H1) |

The page is in English or Spanish (Mexico's operators and auditors are among the first users): every text
comes from one catalogue per language, ``static/i18n/<lang>.json``. The server writes the language the
browser prefers (``Accept-Language``, :func:`choose_language`) into ``<html lang>``; the page keeps a
reader's choice from its switch in ``localStorage``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from gateway.core.manifest import Federation
from gateway.core.timeutil import rfc3339
from gateway.metrics import Metrics
from gateway.node.expiry import Expiry
from gateway.transport.local import ROLE, WHO
from gateway.transport.peer import problem

STATIC = Path(__file__).resolve().parent / "static"
LANGUAGES = ("en", "es")  # the catalogues of static/i18n; the first is the default
STATIC_TYPES = {"app.js": "text/javascript", "style.css": "text/css", "favicon.svg": "image/svg+xml"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class DashboardNode(Protocol):
    """What the dashboard sees of a node (``gateway.node.Node`` is one): its identity and manifest, its
    metrics and clock, the operator and auditor views it already serves, and where routes are added."""

    id: str
    metrics: Metrics
    local_routes: list[Callable[[web.Application], None]]

    @property
    def fed(self) -> Federation: ...

    @property
    def log_origin(self) -> str:
        """The origin line of this node's audit-log checkpoints."""

    def clock(self) -> float: ...

    def expiries(self) -> list[Expiry]:
        """What expires on the node (also ``traza_expiry_seconds``)."""

    async def ops_view(self, what: str) -> dict[str, Any]: ...

    async def message_status(self, jti: str) -> dict[str, Any] | None: ...

    async def recent_audit_entries(self, event: str, limit: int) -> list[tuple[int, bytes]]:
        """The newest ``limit`` audit entries of ``event``, newest first: (index, entry JSON)."""

    def local_denied(self, path: str, remote: str, reason: str) -> None: ...


SAMPLE_INTERVAL = 5.0  # seconds between throughput samples
KEEP_SECONDS = 600.0  # ten minutes of samples
RECENT_SECONDS = 60.0  # the window of "recent" hop latency
WARN_DAYS = 14.0  # expiry warnings this many days ahead
MAX_REJECTIONS = 50

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(obj), content_type="application/json",
                        headers=SECURITY_HEADERS)


def _problem(status: int, code: str, detail: str) -> web.Response:
    resp = problem(status, code, detail)
    resp.headers.update(SECURITY_HEADERS)
    return resp


def _metric_sums(metric: Any, suffix: str, by: str | None = None,
                 keep: Callable[[dict[str, str]], bool] = lambda labels: True) -> dict[str, float]:
    """Sum the samples named ``<metric>{suffix}`` of a prometheus_client metric, grouped by label ``by``."""
    out: dict[str, float] = {}
    for fam in metric.collect():
        for s in fam.samples:
            if s.name.endswith(suffix) and keep(s.labels):
                key = s.labels.get(by, "") if by else ""
                out[key] = out.get(key, 0.0) + float(s.value)
    return out


class Sampler:
    """Every ``interval`` seconds, the node's envelope counters and per-peer hop latency sums; keeps
    ``keep`` seconds of samples for the throughput chart and the recent latency."""

    SERIES = ("received", "forwarded", "submitted", "delivered", "rejected")

    def __init__(self, node: DashboardNode, *, interval: float = SAMPLE_INTERVAL, keep: float = KEEP_SECONDS) -> None:
        self.node = node
        self.interval = interval
        self.keep = keep
        self.samples: deque[tuple[float, dict[str, float], dict[str, tuple[float, float]]]] = deque(
            maxlen=max(2, int(keep / interval) + 1))

    def totals(self) -> dict[str, float]:
        m = self.node.metrics
        received = _metric_sums(m.received, "_total", "outcome")
        forwarded = _metric_sums(m.forwarded, "_total", keep=lambda lb: lb.get("outcome") in ("accepted", "duplicate"))
        return {
            "received": received.get("accepted", 0.0) + received.get("duplicate", 0.0),
            "forwarded": forwarded.get("", 0.0),
            "submitted": _metric_sums(m.submitted, "_total").get("", 0.0),
            "delivered": _metric_sums(m.delivered, "_total").get("", 0.0),
            "rejected": received.get("rejected", 0.0),
        }

    def latency(self) -> dict[str, tuple[float, float]]:
        """Per peer: (sum of seconds, count of batches) of the hop-latency histogram."""
        h = self.node.metrics.hop_latency
        sums = _metric_sums(h, "_sum", "peer")
        counts = _metric_sums(h, "_count", "peer")
        return {p: (sums.get(p, 0.0), counts.get(p, 0.0)) for p in counts}

    def sample(self, now: float | None = None) -> None:
        self.samples.append((time.time() if now is None else now, self.totals(), self.latency()))

    def series(self, now: float | None = None) -> dict[str, Any]:
        """Envelopes per interval: ``{"interval_s", "window_s", "series", "points": [{"t", <series>: n}]}``; the
        last point (``"partial": true``) counts from the latest sample until now."""
        pts: list[dict[str, Any]] = []
        for (_, a, _), (t, b, _) in pairwise(self.samples):
            pts.append({"t": rfc3339(t), **{k: int(b[k] - a[k]) for k in self.SERIES}})
        if self.samples:
            a = self.samples[-1][1]
            b = self.totals()
            pts.append({"t": rfc3339(time.time() if now is None else now), "partial": True,
                        **{k: int(b[k] - a[k]) for k in self.SERIES}})
        return {"interval_s": self.interval, "window_s": self.keep, "series": list(self.SERIES), "points": pts}

    def recent_latency(self, now: float | None = None) -> dict[str, dict[str, float | None]]:
        """Per peer: mean hop latency (ms) over all time and over the last ``RECENT_SECONDS``."""
        now = time.time() if now is None else now
        cur = self.latency()
        base = next((lat for t, _, lat in self.samples if now - t <= RECENT_SECONDS),
                    self.samples[-1][2] if self.samples else None)
        out: dict[str, dict[str, float | None]] = {}
        for peer, (s, n) in cur.items():
            s0, n0 = (base or {}).get(peer, (0.0, 0.0))
            out[peer] = {"mean_ms": round(1000 * s / n, 2) if n else None,
                         "recent_ms": round(1000 * (s - s0) / (n - n0), 2) if n > n0 else None,
                         "batches": int(n)}
        return out

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)


def choose_language(accept_language: str | None) -> str:
    """The dashboard language for an ``Accept-Language`` header (RFC 9110 §12.5.4): the first of
    :data:`LANGUAGES` by the header's weights (``es-MX``, ``es`` and ``es-419`` are ``es``), else English."""
    best: tuple[float, int, str] | None = None
    for pos, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and q > 0 and (best is None or (q, -pos) > (best[0], best[1])):
            best = (q, -pos, primary)
    return best[2] if best else LANGUAGES[0]


def _days_left(ts: float, now: float) -> float:
    return round((ts - now) / 86400, 2)


def expiry_items(items: list[Expiry], now: float, warn_days: float = WARN_DAYS) -> list[dict[str, Any]]:
    """What expires (:func:`gateway.node.expiry.expiries`, which also feeds ``traza_expiry_seconds``), for
    the dashboard. Each item: ``{"id", "what", "not_after", "days_left", "level"}``, level ``ok``,
    ``warning`` or ``expired``."""
    out = []
    for e in items:
        left = _days_left(e.not_after, now)
        level = "expired" if e.not_after <= now else "warning" if left <= warn_days else "ok"
        out.append({"id": e.id, "what": e.what, "not_after": rfc3339(e.not_after), "days_left": left, "level": level})
    return sorted(out, key=lambda x: x["days_left"])


def federation_keys(fed: Federation) -> dict[str, Any]:
    """The keys a route file's evidence must be signed with, from the manifest in force: per node its audit
    (log and witness) public keys and its signing keys (kid, alg, JWK), and the revoked key ids. A bundle
    carries its own keys; the page trusts none of them that is not here."""
    nodes: dict[str, dict[str, Any]] = {}
    for node_id, n in sorted(fed.nodes.items()):
        nodes[node_id] = {
            "audit": [{"kid": k.kid, "public_key": k.public_key} for k in n.keys if k.use == "audit"],
            "signing": [{"kid": k.kid, "alg": k.alg, "jwk": k.jwk} for k in n.keys if k.use == "sig"],
        }
    return {"federation": fed.name, "manifest_version": fed.version, "nodes": nodes,
            "revoked_kids": sorted(fed.revoked_kids)}


class Dashboard:
    """The ``/ui`` routes of one node; :meth:`add_routes` is appended to ``node.local_routes``."""

    def __init__(self, node: DashboardNode, *, interval: float = SAMPLE_INTERVAL, warn_days: float = WARN_DAYS) -> None:
        self.node = node
        self.sampler = Sampler(node, interval=interval)
        self.warn_days = warn_days
        self._task: asyncio.Task[None] | None = None

    # -- wiring ---------------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/ui", self.redirect)
        r.add_get("/ui/", self.page)
        r.add_get("/ui/static/{name}", self.static)
        r.add_get("/ui/static/i18n/{lang}.json", self.catalogue)
        r.add_get("/ui/api/whoami", self.whoami)
        r.add_get("/ui/api/peers", self._only(("operator",), self.peers))
        r.add_get("/ui/api/throughput", self._only(("operator",), self.throughput))
        r.add_get("/ui/api/rejections", self._only(("operator",), self.rejections))
        r.add_get("/ui/api/expiry", self._only(("operator",), self.expiry))
        r.add_get("/ui/api/messages/{id}", self._only(("auditor", "operator"), self.message))
        r.add_get("/ui/api/federation-keys", self._only(("auditor", "operator"), self.federation_keys))
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)

    async def _start(self, app: web.Application) -> None:
        self._task = asyncio.create_task(self.sampler.run(), name="dashboard-sampler")

    async def _stop(self, app: web.Application) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _only(self, roles: Iterable[str], handler: Handler) -> Handler:
        allowed = tuple(roles)

        async def guarded(request: web.Request) -> web.StreamResponse:
            role = request.get(ROLE)
            if role not in allowed:
                reason = f"role {role!r} may not call this route"
                self.node.local_denied(request.path, request.remote or "", reason)
                return _problem(403, "forbidden", reason)
            return await handler(request)

        return guarded

    # -- the page -------------------------------------------------------------------------------------

    async def redirect(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui/", headers=SECURITY_HEADERS)

    async def page(self, request: web.Request) -> web.StreamResponse:
        lang = choose_language(request.headers.get("Accept-Language"))
        html = (STATIC / "index.html").read_bytes().replace(b'<html lang="en">', f'<html lang="{lang}">'.encode(), 1)
        return web.Response(body=html, content_type="text/html", charset="utf-8",
                            headers={**SECURITY_HEADERS, "Content-Language": lang, "Vary": "Accept-Language"})

    async def catalogue(self, request: web.Request) -> web.StreamResponse:
        lang = request.match_info["lang"]
        if lang not in LANGUAGES:
            return _problem(404, "not_found", f"no catalogue {lang!r} (languages: {', '.join(LANGUAGES)})")
        return web.Response(body=(STATIC / "i18n" / f"{lang}.json").read_bytes(), content_type="application/json",
                            charset="utf-8", headers=SECURITY_HEADERS)

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        ctype = STATIC_TYPES.get(name)
        if ctype is None:
            return _problem(404, "not_found", f"no static file {name!r}")
        return web.Response(body=(STATIC / name).read_bytes(), content_type=ctype, charset="utf-8",
                            headers=SECURITY_HEADERS)

    # -- views ----------------------------------------------------------------------------------------

    async def whoami(self, request: web.Request) -> web.StreamResponse:
        node = self.node
        me = node.fed.node(node.id)
        keys = [{"kid": k.kid, "public_key": k.public_key} for k in (me.keys if me else ())
                if k.use == "audit" and k.public_key and k.kid not in node.fed.revoked_kids]
        return _json({"role": request[ROLE], "name": request[WHO], "node": node.id,
                      "federation": node.fed.name, "manifest_version": node.fed.version,
                      "log": {"origin": node.log_origin, "keys": keys}})

    async def peers(self, request: web.Request) -> web.StreamResponse:
        view = await self.node.ops_view("peers")
        lat = self.sampler.recent_latency()
        up = _metric_sums(self.node.metrics.peer_up, "", "peer")
        for p in view["peers"]:
            p.update(lat.get(p["id"], {"mean_ms": None, "recent_ms": None, "batches": 0}))
            p["up"] = None if p["id"] not in up else bool(up[p["id"]])
        return _json(view)

    async def throughput(self, request: web.Request) -> web.StreamResponse:
        return _json(self.sampler.series())

    async def rejections(self, request: web.Request) -> web.StreamResponse:
        """The most recent ``envelope.rejected`` entries of this node's audit log, newest first."""

        out = []
        for idx, raw in await self.node.recent_audit_entries("envelope.rejected", MAX_REJECTIONS):
            e = json.loads(raw)
            # ``claimed_jti``: the id an envelope that did not verify claimed to carry (never evidence)
            out.append({"index": idx, "ts": e.get("ts"), "code": e.get("code"), "jti": e.get("jti"),
                        "claimed_jti": e.get("claimed_jti"), "from": e.get("from"), "detail": e.get("detail")})
        return _json({"rejections": out})

    async def expiry(self, request: web.Request) -> web.StreamResponse:
        return _json({"warn_days": self.warn_days,
                      "items": expiry_items(self.node.expiries(), self.node.clock(), self.warn_days)})

    async def federation_keys(self, request: web.Request) -> web.StreamResponse:
        return _json(federation_keys(self.node.fed))

    async def message(self, request: web.Request) -> web.StreamResponse:
        jti = request.match_info["id"]
        st = await self.node.message_status(jti)
        if st is None:
            return _problem(404, "not_found", f"no message {jti} on this node")
        return _json(st)


def install_dashboard(node: DashboardNode, **kw: Any) -> Dashboard:
    """Create the dashboard of ``node`` and add its routes to the local listener (before ``start``)."""
    d = Dashboard(node, **kw)
    node.local_routes.append(d.add_routes)
    return d
