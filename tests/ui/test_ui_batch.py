"""The dashboard's own verification of evidence relayed with batch signatures (protocol 1.1,
docs/protocol.md), in a real headless Chromium against real node processes (hub, mx, es) that all
advertise ``batch``: the hub's hop record and every ack travel as batched elements (the leaf's claims, its
inclusion path and the batch JWS), and the page verifies them through the batch signature and the path to
the signed root, as `traza audit verify-bundle` does. Without Debian's `chromium` the test is skipped,
except under CI (`CI` set), where it fails."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from fedproc import Federation  # tests/e2e helper
from kit.browser import ARTIFACTS, launched_chromium

from gateway.ops.login import node_login_bundles, one_time_password

sys.path.insert(0, "tests")
from ui.test_ui_dashboard import (
    SPECS,
    _gather_until_verified,
    _hop_checks,
    _hop_sender_altered,
    _page,
    _route_rows,
    delivered_with_receipt,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One message mx → hub → es, taken by es's national system and receipted back to mx."""
    fed = Federation(tmp_path_factory.mktemp("ui-batch"), [dataclasses.replace(s, batch=True) for s in SPECS],
                     limits={"checkpoint_interval": 1.0, "retry_min": 0.2, "retry_max": 1.0})
    fed.start_all()
    try:
        first = delivered_with_receipt(fed)
        # both ends serve the message's evidence once a checkpoint is signed (every second here)
        fed.wait_for(lambda: all(fed.call(n, "auditor", "GET", f"/audit/v1/bundle?jti={first}")[0] == 200
                                 for n in ("mx", "es")), timeout=30)
        password = one_time_password()
        yield SimpleNamespace(fed=fed, first=first, password=password,
                              url=f"https://127.0.0.1:{fed.nodes['mx'].local_port}",
                              es_url=f"https://127.0.0.1:{fed.nodes['es'].local_port}",
                              bundles=node_login_bundles(fed.config("mx"), password, roles=("auditor",)),
                              es_bundles=node_login_bundles(fed.config("es"), password, roles=("auditor",)))
    finally:
        fed.stop_all()


@pytest.fixture(scope="module")
def browser(site: Any) -> Iterator[Any]:
    yield from launched_chromium()


def _bundle(site: Any, node: str) -> dict[str, Any]:
    """The message's evidence bundle at ``node``. An export is itself audited about the message, so the
    next one within the checkpoint interval answers 409 until a checkpoint covers that entry: retried, as
    the answer says (every 1 s here), whichever test exported last."""
    def fetch() -> tuple[int, Any] | None:
        status, doc = site.fed.call(node, "auditor", "GET", f"/audit/v1/bundle?jti={site.first}")
        return None if status == 409 and doc.get("code") == "not_checkpointed" else (status, doc)

    status, doc = site.fed.wait_for(fetch, timeout=30)
    assert status == 200, doc
    return dict(doc)


def test_auditor_at_the_recipient_verifies_batched_hop_records_and_acks(site: Any, browser: Any) -> None:
    """At es the hub's hop record and es's own ack are batched elements: both verify in the page; a hop
    record whose leaf was altered on the way is not in the batch the hub signed, and says so."""
    from playwright.sync_api import expect

    held = _bundle(site, "es")
    assert held["envelope"]["hops"][0].startswith("tzb1.") and all(a.startswith("tzb1.") for a in held["acks"])
    ctx, page, problems = _page(browser, site, "auditor", node="es")
    try:
        page.goto(f"{site.es_url}/ui/?jti={site.first}")
        expect(page.locator("#route .sig.verified")).to_have_count(3, timeout=30_000)
        route = _route_rows(page)
        assert route[1][1:3] == ["hub", "received from mx and relayed to es"], route
        assert route[1][4] == "signature verified (hub/sig/1), chains to the origin token"
        assert route[2][4] == "signature verified (es/sig/1), acknowledges this token"
        page.screenshot(path=str(ARTIFACTS / "auditor-es-route-batched.png"), full_page=True)

        _hop_sender_altered(page, "NOT verified: not in the batch signed by hub/sig/1")
        assert not problems, problems
    finally:
        ctx.close()


def test_auditor_at_the_origin_verifies_the_hubs_batched_ack_and_the_receipt(site: Any, browser: Any) -> None:
    from playwright.sync_api import expect

    assert all(a.startswith("tzb1.") for a in _bundle(site, "mx")["acks"])
    ctx, page, problems = _page(browser, site, "auditor")
    try:
        page.goto(f"{site.url}/ui/?jti={site.first}")
        expect(page.locator("#route .sig.verified")).to_have_count(3, timeout=30_000)
        texts = [r[4] for r in _route_rows(page)]
        assert "signature verified (hub/sig/1), acknowledges this token" in texts, texts
        assert not page.locator("#route .sig.failed").count()
        assert not problems, problems
    finally:
        ctx.close()


def test_auditor_gathers_the_route_file_and_every_hops_batched_evidence_verifies(site: Any, browser: Any) -> None:
    """The route file (every hop's bundle, `traza audit export --route`) verified hop by hop in the page:
    the hub's and es's bundles hold batched hop records and acks."""
    ctx, page, problems = _page(browser, site, "auditor")
    try:
        page.goto(f"{site.url}/ui/")
        page.fill("#jti", site.first)
        _gather_until_verified(page, site.fed, 3)
        assert [n for n, _ in _hop_checks(page)] == ["mx", "hub", "es"]
        assert all(text.startswith("verified: checkpoint of size ") for _n, text in _hop_checks(page))
        page.screenshot(path=str(ARTIFACTS / "auditor-route-file-batched.png"), full_page=True)
        assert not problems, problems
    finally:
        ctx.close()
