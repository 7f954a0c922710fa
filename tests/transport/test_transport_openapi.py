"""docs/openapi.yaml: every route the node serves is described (and nothing described is missing), the
document is valid OpenAPI with a schema for every body and problem+json for every error, and a live node's
answers are the ones it describes (schemathesis)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import schemathesis
from core.message_examples import example
from fedproc import inbox, submit
from hypothesis import HealthCheck, settings
from kit.livenode import SPECS, Live
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.core.b64 import b64url_encode
from gateway.localfed import NodeSpec
from gateway.ops.dashboard import Dashboard
from gateway.transport.local import local_app, ops_app
from gateway.transport.peer import peer_app

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"


def described() -> set[tuple[str, str]]:
    out, path = set(), None
    for line in DOC.read_text().splitlines():
        m = re.match(r"^  (/\S*):\s*$", line)
        if m:
            path = m.group(1)
            continue
        m = re.match(r"^    (get|post|put|head|delete):", line)
        if m and path:
            out.add((m.group(1).upper(), path))
    return _without_implied_head(out)


def _without_implied_head(routes: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """aiohttp answers HEAD wherever it serves GET: only a HEAD without a GET is a route of its own."""
    return {(m, p) for m, p in routes if m != "HEAD" or ("GET", p) not in routes}


def served() -> set[tuple[str, str]]:
    backend = SimpleNamespace(max_request=1024)  # routes are registered statically; nothing is called
    dashboard = Dashboard(backend)  # type: ignore[arg-type]  # what `traza run` adds to the local listener
    out = set()
    for app in (peer_app(backend), local_app(backend, max_request=1024, extra_routes=dashboard.add_routes),
                ops_app(backend)):
        for route in app.router.routes():
            info = route.resource.get_info() if route.resource else {}
            out.add((route.method, info.get("path") or info.get("formatter")))
    return _without_implied_head(out)


def test_every_served_route_is_described():
    missing = served() - described()
    assert not missing, f"routes served but not in docs/openapi.yaml: {sorted(missing)}"


def test_every_described_route_is_served():
    extra = described() - served()
    assert not extra, f"routes in docs/openapi.yaml that no listener serves: {sorted(extra)}"


def test_openapi_document_is_valid_openapi():
    # flow mappings with an unquoted comma once made bogus keys ("typ traza-envelope+jwt": null)
    import yaml
    from openapi_spec_validator import validate

    validate(yaml.safe_load(DOC.read_text()))


def test_every_operation_documents_its_bodies_and_problems():
    """Schemas for every request and response body, and application/problem+json for every error."""
    import yaml

    doc = yaml.safe_load(DOC.read_text())
    gaps = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "head", "delete"):
                continue
            where = f"{method.upper()} {path}"
            for ctype, media in (op.get("requestBody", {}).get("content") or {}).items():
                if "schema" not in media:
                    gaps.append(f"{where}: request body {ctype} has no schema")
            for status, resp in op["responses"].items():
                resp = _deref(doc, resp)
                content = resp.get("content") or {}
                if method == "head" or status in ("204", "302", "304"):
                    if content:
                        gaps.append(f"{where} {status}: an answer without a body describes content")
                    continue
                if not content:
                    gaps.append(f"{where} {status}: no content described")
                for ctype, media in content.items():
                    if "schema" not in media:
                        gaps.append(f"{where} {status}: {ctype} has no schema")
                if int(status) >= 400 and set(content) != {"application/problem+json"} and not resp.get("x-not-problem"):
                    gaps.append(f"{where} {status}: an error must be application/problem+json, not {sorted(content)} "
                                "(or say why in x-not-problem)")
            if "500" not in op["responses"]:
                gaps.append(f"{where}: 500 internal is not described")
    assert not gaps, "docs/openapi.yaml:\n" + "\n".join(gaps)


def test_the_submission_schema_lists_every_message_type():
    import yaml

    from gateway.core.messages import MESSAGE_TYPES

    doc = yaml.safe_load(DOC.read_text())
    assert doc["components"]["schemas"]["Submission"]["properties"]["type"]["enum"] == list(MESSAGE_TYPES)


def _deref(doc: dict, obj: dict) -> dict:
    while "$ref" in obj:
        node = doc
        for part in obj["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        obj = node
    return obj


# --- the document against a live node ---------------------------------------------------------------------
# schemathesis generates requests from docs/openapi.yaml for every operation of the peer, local and
# operations listeners of a real node process behind real mutual TLS (peer requests with eu-hub's
# certificate, local ones with the client certificate of the role the route admits) and checks that each
# answer is one the document describes: its status, its content type, its headers and its body's schema.
# Bounded: a few examples per operation (the whole module runs in well under a minute).

schema = schemathesis.openapi.from_path(DOC)
# an X3P file is binary, like application/octet-stream (which schemathesis knows)
schemathesis.serializer.alias("application/x-x3p", "application/octet-stream")
CONFORMANCE = settings(max_examples=4, deadline=None, derandomize=True, database=None,
                       suppress_health_check=list(HealthCheck))
CHECKS = [status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    # es (the node under test), its hub eu-hub, and it, which sends es a message (see traffic below)
    node = Live(tmp_path_factory.mktemp("openapi"), specs=[*SPECS, NodeSpec("it", "national", "IT", hub="eu-hub")],
                limits={"checkpoint_interval": 1.0}).start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def traffic(live):
    """A message from it to es, read and acknowledged at es, and one from es to it, both delivered; an
    attachment uploaded at es; then a checkpoint that covers it all. Returns the ids and the blob's name."""
    fed = live.fed
    received = submit(fed, "it", "es", "notice", example("notice"))
    sent = submit(fed, "es", "it", "notice", example("notice"))
    fed.wait_for(lambda: any(m["id"] == received for m in inbox(fed, "es")))
    fed.wait_for(lambda: any(m["id"] == sent for m in inbox(fed, "it")))
    data = b"an attachment for the openapi test"
    sha = b64url_encode(hashlib.sha256(data).digest())
    r = live.request("local", "PUT", f"/local/v1/blobs/{sha}", data, content_type="application/octet-stream")
    assert r.status == 201, r.body
    fed.wait_for(lambda: live.request("peer", "GET", "/v1/audit/checkpoint").status == 200)  # signed every 1 s
    return {"received": received, "sent": sent, "sha": sha}


@pytest.fixture(scope="module")
def sessions(live):
    out = live.sessions()
    yield out
    for s in out.values():
        s.close()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@schema.parametrize()
@CONFORMANCE
def test_every_answer_of_a_live_node_is_described(case, live, sessions):
    base, who = live.caller(case.operation.path)
    response = case.call(base_url=base, session=sessions[who], timeout=15, verify=False)
    case.validate_response(response, checks=CHECKS)
    assert response.status_code < 500 or response.status_code == 503, response.text[:300]


WITH_DATA = [
    # (path, method, role or listener, path parameters, query, body, expected status)
    ("/local/v1/inbox", "GET", "system", {}, {"after": 0}, None, 200),
    ("/local/v1/messages/{id}", "GET", "system", {"id": "received"}, {}, None, 200),
    ("/local/v1/messages/{id}", "GET", "system", {"id": "sent"}, {}, None, 200),
    ("/local/v1/inbox/{id}/ack", "POST", "system", {"id": "received"}, {}, {"status": "DELIVERED"}, 200),
    ("/local/v1/blobs/{sha}", "GET", "system", {"sha": "sha"}, {}, None, 200),
    ("/local/v1/blobs/{sha}", "HEAD", "system", {"sha": "sha"}, {}, None, 200),
    ("/ui/api/messages/{id}", "GET", "auditor", {"id": "received"}, {}, None, 200),
    ("/audit/v1/bundle", "GET", "auditor", {}, {"jti": "sent"}, None, 200),
    ("/audit/v1/entries", "GET", "auditor", {}, {"limit": 2}, None, 200),
    ("/audit/v1/proof/inclusion", "GET", "auditor", {}, {"index": 1}, None, 200),
    ("/v1/audit/checkpoint", "GET", "peer", {}, {}, None, 200),
    ("/v1/audit/proof/consistency", "GET", "peer", {}, {"old": 1, "new": 2}, None, 200),
    ("/v1/manifest", "GET", "peer", {}, {}, None, 200),
    ("/ops/v1/status", "GET", "operator", {}, {}, None, 200),
    ("/ops/v1/peers", "GET", "operator", {}, {}, None, 200),
    ("/ops/v1/dead-letters/{id}/retry", "POST", "operator", {"id": 987654}, {}, None, 404),
    ("/ui/api/peers", "GET", "operator", {}, {}, None, 200),
    ("/ui/api/throughput", "GET", "operator", {}, {}, None, 200),
    ("/ui/api/whoami", "GET", "auditor", {}, {}, None, 200),
    ("/ui/api/federation-keys", "GET", "auditor", {}, {}, None, 200),
    ("/readyz", "GET", "ops", {}, {}, None, 200),
]


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize(("path", "method", "who", "params", "query", "body", "expected"), WITH_DATA,
                         ids=[f"{m} {p} {q or ''}".strip() for p, m, *_, q, _b, _e in
                              [(w[0], w[1], w[2], w[3], w[4], w[5], w[6]) for w in WITH_DATA]])
def test_answers_about_real_messages_are_described(live, sessions, traffic, path, method, who, params, query,
                                                    body, expected):
    """The answers a generated request rarely reaches (a message that exists, an evidence bundle, a
    blob) against their schemas, after real traffic."""
    params = {k: traffic.get(v, v) if isinstance(v, str) else v for k, v in params.items()}
    query = {k: traffic.get(v, v) if isinstance(v, str) else v for k, v in query.items()}
    if path == "/audit/v1/bundle":  # until a checkpoint covers the message's entries: 409 not_checkpointed
        live.fed.wait_for(lambda: live.request("local", "GET", f"/audit/v1/bundle?jti={query['jti']}",
                                               role="auditor").status == 200)
    kw = {} if body is None else {"body": body, "media_type": "application/json"}
    case = schema[path][method].Case(path_parameters=params, query=query, **kw)
    base = live.base("ops" if who == "ops" else "peer" if who == "peer" else "local")
    headers = {"X-Traza-Request": "test"} if path.startswith("/ops/") and method == "POST" else None
    response = case.call(base_url=base, session=sessions[who], headers=headers, timeout=15, verify=False)
    assert response.status_code == expected, response.text[:300]
    case.validate_response(response, checks=CHECKS)


@pytest.mark.parametrize("listener", ["peer", "local", "ops"])
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "HEAD"])
def test_an_unknown_route_answers_problem_json_404(live, listener, method):
    roles = ["system", "operator", "auditor"] if listener == "local" else [None]
    for role in roles:
        for path in ("/nope", "/v1/nope", "/local/v1/nope", "/ops/v1/nope", "/ui/api/nope", "/"):
            r = live.request(listener, method, path, b"{}" if method in ("POST", "PUT") else None, role=role)
            what = f"{method} {path} on {listener} as {role}"
            assert r.status == 404, f"{what}: HTTP {r.status} {r.body[:200]!r}"
            if method != "HEAD":
                assert r.content_type == "application/problem+json", f"{what}: {r.content_type}"
                assert r.json()["code"] == "not_found", f"{what}: {r.json()}"
