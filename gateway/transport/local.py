"""Local API (SPEC §6) for national systems, operators and auditors, and the operations listener.

Callers present a client certificate from the node's local CA whose SAN URI is
``urn:traza:local:<role>:<name>``; each route admits one role (the dashboard admits operator and
auditor). Every refused call is reported to the backend, which audits it (``auth.denied``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
from aiohttp import web

from adapters.standard import MEDIA_TYPE as STANDARD_CT
from gateway.core import strictjson
from gateway.core.auditquery import CSV_COLUMNS, csv_row
from gateway.core.csrf import REQUEST_HEADER, Origin, csrf_refusal
from gateway.core.errors import Code, TrazaError, http_status
from gateway.core.insights import csv_rows as insight_csv_rows
from gateway.core.params import INT64_MIN, int_param
from gateway.crypto.tls import CertRefusal, peer_local_identity
from gateway.store.blobs import BadBlobName, BlobStore
from gateway.store.db import StorageUnavailable
from gateway.transport.peer import _peer_cert, blob_handlers, guard, problem, read_body, storage_response

_json = msgspec.json.Encoder()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LocalBackend(Protocol):
    """What the node offers the local API. Methods raise TrazaError for refusals."""

    async def local_submit_request(self, content_type: str, data: bytes, system: str) -> dict[str, Any]:
        """``POST /local/v1/messages``: ``{"id", "status_url"}``, or ``{"conversation", "ids"}`` (fan-out)."""

    async def message_status(self, jti: str) -> dict[str, Any] | None: ...

    async def local_inbox(self, after: int, limit: int) -> dict[str, Any]: ...

    async def local_inbox_message(self, jti: str) -> dict[str, Any] | None:
        """One message delivered to this node, acknowledged or not; None if none."""

    async def conversation(self, cid: str) -> dict[str, Any] | None:
        """The messages of conversation ``cid`` this node sent and received; None if none."""

    async def inbox_ack(self, jti: str, who: str, status: str = "DELIVERED", detail: str | None = None) -> bool: ...

    async def ops_view(self, what: str) -> Any: ...

    async def ops_dead_letter(self, dl_id: int, action: str, operator: str) -> dict[str, Any]: ...

    async def resend(self, jti: str, operator: str) -> dict[str, Any]:
        """Offer an overdue message again to its first hop (same jti); TrazaError when refused."""

    async def audit_entries(self, query: dict[str, str]) -> dict[str, Any]: ...

    async def audit_inclusion(self, index: int, size: int | None) -> dict[str, Any]: ...

    async def audit_bundle(self, jti: str) -> bytes | None: ...

    async def insights(self) -> dict[str, Any]:
        """Aggregates for policy makers (gateway/core/insights.py), small cells suppressed."""

    async def retention_report(self) -> dict[str, Any]:
        """What this node holds of its messages' content and until when (issue #15)."""

    async def audit_search(self, query: dict[str, str]) -> list[tuple[int, bytes]]:
        """Entries matching an auditor's filters (gateway/core/auditquery.py): (index, entry JSON)."""

    async def audit_route_bundle(self, jti: str) -> bytes:
        """Every route node's evidence of ``jti`` in one file (traza-route-evidence/v1)."""

    def local_denied(self, path: str, remote: str, reason: str) -> None: ...

    def local_client_refusal(self, cert_der: bytes | None) -> CertRefusal | None:
        """Why this local client certificate is not acceptable now (CA retired, serial revoked), or None."""

    def local_origins(self) -> frozenset[Origin]:
        """The origins browsers use to reach the local listener (the same-origin check of gateway.core.csrf)."""

    def checkpoint_text(self) -> str: ...

    def local_blobs(self) -> BlobStore:
        """Plaintext blobs: uploaded by the national system, or delivered to it (decrypted)."""

    def blob_stored(self, sha: str, length: int, source: str) -> None: ...

    def shed_load(self) -> float | None:
        """Seconds to put in Retry-After when the node refuses new work (queue or disk), else None."""


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_json.encode(obj), content_type="application/json")




# the caller's role and name from its local client certificate, set by the authorisation middleware
ROLE = web.RequestKey("role", str)
WHO = web.RequestKey("who", str)

ROUTE_ROLES: dict[str, tuple[str, ...]] = {
    "/local/": ("system",),
    "/ops/": ("operator",),
    "/audit/": ("auditor",),
    "/v1/audit/": ("auditor",),
    "/ui": ("operator", "auditor"),
}


def local_app(backend: LocalBackend, *, max_request: int, extra_routes: Callable[[web.Application], None] | None = None) -> web.Application:
    @web.middleware
    async def authorise(request: web.Request, handler: Handler) -> web.StreamResponse:
        der = _peer_cert(request)
        ident = peer_local_identity(der) if der else None
        if ident is not None and request.match_info.http_exception is not None:
            # no such route (404) or method (405), whatever the caller's role: the guard answers it as
            # application/problem+json, as on the other listeners
            raise request.match_info.http_exception
        allowed = next((roles for prefix, roles in ROUTE_ROLES.items() if request.path.startswith(prefix)), ())
        if ident is None or ident[0] not in allowed:
            reason = "no local client certificate" if ident is None else f"role {ident[0]!r} may not call this route"
            backend.local_denied(request.path, request.remote or "", reason)
            return problem(403, "forbidden", reason)
        # on every request, also on a connection opened before: its CA still trusted, not revoked since
        refusal = backend.local_client_refusal(der)
        if refusal is not None:
            backend.local_denied(request.path, request.remote or "", refusal.detail)
            return problem(403, "forbidden", refusal.detail)
        # cross-site request forgery (gateway.core.csrf): the same-origin check and, for operator and
        # auditor actions, the X-Traza-Request header a browser form cannot send
        origin = request.headers.getall("Origin", None)
        why = csrf_refusal(request.method, request.path, ", ".join(origin) if origin else None,
                           request.headers.get("Sec-Fetch-Site"), request.headers.get(REQUEST_HEADER),
                           backend.local_origins())
        if why is not None:
            backend.local_denied(request.path, request.remote or "", why)
            return problem(403, "forbidden", why)
        request[ROLE], request[WHO] = ident
        try:
            return await handler(request)
        except TrazaError as err:
            return problem(http_status(err, "local"), err.code, err.detail)
        except StorageUnavailable as exc:
            return storage_response(exc)

    async def submit(request: web.Request) -> web.StreamResponse:
        # the same limits as the peer API: queue and free disk (SPEC §4.1, issue #11 F3)
        if (retry := backend.shed_load()) is not None:
            return problem(503, Code.OVERLOADED, "node is shedding load (queue or disk limit); retry later",
                           {"Retry-After": str(max(1, round(retry)))})
        data = await read_body(request, max_request)
        return json_response(await backend.local_submit_request(request.content_type or STANDARD_CT, data,
                                                                request[WHO]), status=201)

    async def status(request: web.Request) -> web.StreamResponse:
        st = await backend.message_status(request.match_info["id"])
        if st is None:
            return problem(404, "not_found", f"no message {request.match_info['id']} on this node")
        return json_response(st)

    async def inbox(request: web.Request) -> web.StreamResponse:
        after = int_param(request.query.get("after"), "after", default=0)
        limit = min(max(int_param(request.query.get("limit"), "limit", default=100, lo=INT64_MIN), 1), 1000)
        return json_response(await backend.local_inbox(after, limit))

    async def inbox_message(request: web.Request) -> web.StreamResponse:
        doc = await backend.local_inbox_message(request.match_info["id"])
        if doc is None:
            return problem(404, "not_found", f"no inbox message {request.match_info['id']} on this node")
        return json_response(doc)

    async def conversation(request: web.Request) -> web.StreamResponse:
        doc = await backend.conversation(request.match_info["cid"])
        if doc is None:
            return problem(404, "not_found", f"no conversation {request.match_info['cid']} on this node")
        return json_response(doc)

    async def inbox_ack(request: web.Request) -> web.StreamResponse:
        status, detail = "DELIVERED", None
        if request.can_read_body:
            raw = await read_body(request, 64 * 1024)
            if raw.strip():
                doc = strictjson.object_of(raw, "ack body {status?, detail?}")
                status = doc.get("status", status)
                detail = doc.get("detail")
                if status not in ("DELIVERED", "REFUSED_BY_SYSTEM"):
                    return problem(422, "schema_invalid", "status must be DELIVERED or REFUSED_BY_SYSTEM - at `$.status`")
                if detail is not None and not isinstance(detail, str):
                    return problem(422, "schema_invalid", "detail must be a string - at `$.detail`")
        try:
            first = await backend.inbox_ack(request.match_info["id"], f"local:system:{request[WHO]}", status, detail)
        except KeyError:
            return problem(404, "not_found", f"no inbox message {request.match_info['id']}")
        return json_response({"id": request.match_info["id"], "acknowledged": True, "first": first})

    def ops(what: str) -> Handler:
        async def view(request: web.Request) -> web.StreamResponse:
            return json_response(await backend.ops_view(what))

        return view

    def dl_action(action: str) -> Handler:
        async def act(request: web.Request) -> web.StreamResponse:
            dl_id = int_param(request.match_info["id"], "dead letter id")
            try:
                return json_response(await backend.ops_dead_letter(dl_id, action, request[WHO]))
            except KeyError:
                return problem(404, "not_found", f"no dead letter {dl_id}")
            # a TrazaError goes to guard(): a retry refused after the signed expiry is 409 there
            # (gateway.core.errors.http_status), and the dead letter stays as it was

        return act

    async def resend(request: web.Request) -> web.StreamResponse:
        jti = request.match_info["id"]
        try:  # refused (audited, nothing changed): 409 from guard()
            return json_response(await backend.resend(jti, request[WHO]))
        except KeyError:
            return problem(404, "not_found", f"no message {jti} sent from this node")

    async def entries(request: web.Request) -> web.StreamResponse:
        return json_response(await backend.audit_entries(dict(request.query)))

    async def inclusion(request: web.Request) -> web.StreamResponse:
        index = int_param(request.query.get("index"), "index")
        size = int_param(request.query["size"], "size", lo=1) if "size" in request.query else None
        try:
            return json_response(await backend.audit_inclusion(index, size))
        except ValueError as exc:
            return problem(400, "malformed", str(exc))

    async def checkpoint(request: web.Request) -> web.StreamResponse:
        return web.Response(text=backend.checkpoint_text(), content_type="text/plain")

    async def bundle(request: web.Request) -> web.StreamResponse:
        jti = request.query.get("jti", "")
        data = await backend.audit_bundle(jti)
        if data is None:
            return problem(404, "not_found", f"no audit entries for message {jti!r}")
        return web.Response(body=data, content_type="application/json",
                            headers={"Content-Disposition": f'attachment; filename="evidence-{jti}.json"'})

    async def stats(request: web.Request) -> web.StreamResponse:
        # GET /ops/v1/stats (issue #16): JSON, or CSV with format=csv
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "csv"):
            return problem(400, "malformed", f"format: {fmt!r} is not json or csv")
        doc = await backend.insights()
        if fmt == "json":
            return json_response(doc)
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerows(insight_csv_rows(doc))
        return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": 'attachment; filename="traza-stats.csv"'})

    async def retention(request: web.Request) -> web.StreamResponse:
        # GET /ops/v1/retention (issue #15): what is held and until when
        return json_response(await backend.retention_report())

    async def search(request: web.Request) -> web.StreamResponse:
        # GET /audit/v1/search (issue #16): JSON, or CSV with format=csv (a spreadsheet's export)
        query = dict(request.query)
        fmt = query.get("format", "json")
        if fmt not in ("json", "csv"):
            return problem(400, "malformed", f"format: {fmt!r} is not json or csv")
        rows = await backend.audit_search(query)
        limit = int(query.get("limit") or 100)
        nxt = rows[-1][0] + 1 if len(rows) == limit else None
        if fmt == "json":
            return json_response({"entries": [{"index": i, "entry": msgspec.json.decode(e)} for i, e in rows], "next": nxt})
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\r\n")
        w.writerow(CSV_COLUMNS)
        for i, e in rows:
            w.writerow(csv_row(i, msgspec.json.decode(e)))
        headers = {"Content-Disposition": 'attachment; filename="audit-search.csv"'}
        if nxt is not None:
            headers["Traza-Next"] = str(nxt)
        return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8", headers=headers)

    async def route_bundle(request: web.Request) -> web.StreamResponse:
        jti = request.query.get("jti", "")
        data = await backend.audit_route_bundle(jti)
        return web.Response(body=data, content_type="application/json",
                            headers={"Content-Disposition": f'attachment; filename="route-evidence-{jti}.json"'})

    blob_put, blob_head = blob_handlers(
        lambda: backend.local_blobs(),
        on_stored=lambda request, sha, n: backend.blob_stored(sha, n, f"local:system:{request[WHO]}"),
        shed_load=lambda: backend.shed_load())

    async def blob_get(request: web.Request) -> web.StreamResponse:
        sha = request.match_info["sha"]
        store = backend.local_blobs()
        try:
            path = store.path(sha)
            n = store.size(sha)
        except BadBlobName as exc:
            return problem(400, "malformed", str(exc))
        if n is None:
            return problem(404, "not_found", f"no complete blob {sha} on this node")
        return web.FileResponse(path, chunk_size=256 * 1024,
                                headers={"Content-Type": "application/octet-stream"})

    app = web.Application(middlewares=[guard("local"), authorise], client_max_size=max_request + 1)
    r = app.router
    r.add_put("/local/v1/blobs/{sha}", blob_put)
    r.add_route("HEAD", "/local/v1/blobs/{sha}", blob_head)
    r.add_get("/local/v1/blobs/{sha}", blob_get, allow_head=False)
    r.add_post("/local/v1/messages", submit)
    r.add_get("/local/v1/messages/{id}", status)
    r.add_get("/local/v1/inbox", inbox)
    r.add_get("/local/v1/inbox/{id}", inbox_message)
    r.add_get("/local/v1/conversations/{cid}", conversation)
    r.add_post("/local/v1/inbox/{id}/ack", inbox_ack)
    for what in ("status", "peers", "queues", "dead-letters", "overdue"):
        r.add_get(f"/ops/v1/{what}", ops(what))
    r.add_post("/ops/v1/dead-letters/{id}/retry", dl_action("retry"))
    r.add_post("/ops/v1/dead-letters/{id}/discard", dl_action("discard"))
    r.add_post("/ops/v1/messages/{id}/resend", resend)
    r.add_get("/audit/v1/entries", entries)
    r.add_get("/audit/v1/proof/inclusion", inclusion)
    r.add_get("/audit/v1/bundle", bundle)
    r.add_get("/audit/v1/route-bundle", route_bundle)
    r.add_get("/audit/v1/search", search)
    r.add_get("/ops/v1/stats", stats)
    r.add_get("/ops/v1/retention", retention)
    r.add_get("/v1/audit/checkpoint", checkpoint)  # the same signed note the peer API serves, for auditors
    if extra_routes:
        extra_routes(app)
    return app


class OpsBackend(Protocol):
    def healthy(self) -> bool: ...

    def is_ready(self) -> tuple[bool, str]: ...

    def metrics_text(self) -> tuple[bytes, str]: ...


def ops_app(backend: OpsBackend) -> web.Application:
    """Operations listener without authentication: bind it to an operations address only."""

    async def healthz(request: web.Request) -> web.StreamResponse:
        if backend.healthy():
            return json_response({"status": "ok"})
        return problem(503, "stopping", "the node is stopping")

    async def readyz(request: web.Request) -> web.StreamResponse:
        ok, why = backend.is_ready()
        if ok:
            return json_response({"ready": True, "detail": why})
        return problem(503, "not_ready", why)

    async def metrics(request: web.Request) -> web.StreamResponse:
        body, ctype = backend.metrics_text()
        return web.Response(body=body, headers={"Content-Type": ctype})

    app = web.Application(middlewares=[guard("ops")])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
