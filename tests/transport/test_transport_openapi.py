"""Every route the node serves is described in docs/openapi.yaml (and nothing described is missing)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

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
