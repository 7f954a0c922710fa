"""The web dashboard (`/ui/`) in a real headless Chromium against real node processes (hub, mx, es).

An operator logs in with the PKCS#12 bundle the demo would print, sees the peers and a queue, retries a
dead letter the hub rejected (audited as `operator.action`) and finds the Retry of an expired one disabled
(a signed expiry cannot be extended); an auditor finds a message by id, sees its timeline and the
inclusion proofs and checkpoint signature verified by the page's own JavaScript. Screenshots go to
$TRAZA_ARTIFACTS (default tests/ui/artifacts/).

Without Debian's `chromium` the browser test is skipped, except under CI (`CI` set), where it fails.

The tests share one scene and change it (a dead letter retried, the hub started again, a message
resent): each passes alone, and after any of those before it in this file, not after those below it.
`make test`'s workers (pytest-xdist, `--dist load`) each run their share of the file in this order.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fedproc import Federation, submit  # tests/e2e helper
from kit.browser import ARTIFACTS, launched_chromium

from gateway.crypto.tls import client_context
from gateway.localfed import NodeSpec
from gateway.ops.login import node_login_bundles, one_time_password
from gateway.transport.peer import PeerClient
from gateway.trust.pki import FederationDir

sys.path.insert(0, "tests")
from core.message_examples import example

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub", max_classification="BASIC_PROTECTION_LEVEL")]
VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "merkle" / "inclusion"


# --- the federation, with a delivered message, a queue and two dead letters at mx ---------------------


class Scene:
    def __init__(self, fed: Federation, first: str, waiting: str, dead_jti: str, rejected_jti: str, password: str,
                 bundles: dict[str, Path], es_bundles: dict[str, Path], unanswered: str) -> None:
        self.fed, self.first, self.waiting, self.dead_jti = fed, first, waiting, dead_jti
        self.unanswered = unanswered
        self.rejected_jti = rejected_jti
        self.password, self.bundles, self.es_bundles = password, bundles, es_bundles
        self.url = f"https://127.0.0.1:{fed.nodes['mx'].local_port}"
        self.es_url = f"https://127.0.0.1:{fed.nodes['es'].local_port}"


def _state(fed: Federation, node: str, jti: str) -> str | None:
    status, doc = fed.call(node, "system", "GET", f"/local/v1/messages/{jti}")
    return doc["state"] if status == 200 else None


def _dead_letters(fed: Federation, node: str) -> list[dict[str, Any]]:
    status, doc = fed.call(node, "operator", "GET", "/ops/v1/dead-letters")
    assert status == 200, doc
    return list(doc["dead_letters"])


def forged() -> dict[str, Any]:
    """An envelope whose token names a message id but carries no valid signature."""
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    token = ".".join([b64({"alg": "EdDSA", "typ": "traza+jwt", "kid": "es/sig/1"}),
                      b64({"jti": "01a21b13-0000-7000-8000-00000000f0f0", "iss": "es", "aud": "mx"}), "AAAA"])
    return {"token": token, "hops": []}


def _post_as(fed: Federation, as_node: str, to_node: str, body: bytes) -> tuple[int, Any]:
    """POST /v1/envelopes on ``to_node``'s peer API with ``as_node``'s TLS certificate."""
    f = FederationDir(fed.root / "pki").node_files(as_node)
    ctx = client_context(f.tls_cert, f.tls_key, [(fed.root / "pki" / "ca" / "ca.pem").read_text()])

    async def go() -> tuple[int, Any]:
        cl = PeerClient(to_node, f"https://127.0.0.1:{fed.nodes[to_node].peer_port}", ctx, timeout=10)
        try:
            status, data, _ = await cl.request("POST", "/v1/envelopes", body=body, content_type="application/json")
            return status, json.loads(data) if data.startswith(b"{") else data
        finally:
            await cl.close()

    return asyncio.run(go())


def delivered_with_receipt(fed: Federation) -> str:
    """One trace request mx → es, taken by es's national system, its receipt back at mx: its id."""
    first = submit(fed, "mx", "es", "trace.request", example("trace.request"))
    fed.wait_for(lambda: any(m["id"] == first for m in fed.call("es", "system", "GET",
                                                                  "/local/v1/inbox?after=0")[1]["messages"]))
    status, doc = fed.call("es", "system", "POST", f"/local/v1/inbox/{first}/ack", b"")
    assert status == 200, doc
    fed.wait_for(lambda: _state(fed, "mx", first) == "delivered")
    return first


def _cosigned(fed: Federation, node: str, jti: str) -> bool:
    """``node``'s evidence of ``jti`` is proven against a checkpoint that carries a witness cosignature
    (a signature line besides the node's own)."""
    status, doc = fed.call(node, "auditor", "GET", f"/audit/v1/bundle?jti={jti}")
    if status != 200:
        return False
    lines = doc["checkpoint"].split("\n\n", 1)[1].splitlines()
    return sum(line.startswith("\u2014 ") for line in lines) >= 2


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    fed = Federation(tmp_path_factory.mktemp("ui"), SPECS,
                     limits={"checkpoint_interval": 1.0, "retry_min": 0.2, "retry_max": 1.0, "receipt_overdue": 4.0})
    fed.start_all()
    try:
        first = delivered_with_receipt(fed)
        # es's national system answers the trace (a pistol made in Austria): mx's insights count it
        traced = submit(fed, "es", "mx", "trace.response", {**example("trace.response"), "time_to_crime_days": 412},
                        reply_to=first)
        fed.wait_for(lambda: any(m["id"] == traced for m in fed.call("mx", "system", "GET",
                                                                       "/local/v1/inbox?after=0")[1]["messages"]))
        # a request es's national system never takes: no receipt comes back, mx marks it overdue
        unanswered = submit(fed, "mx", "es", "trace.request", example("trace.request"))
        fed.wait_for(lambda: any(o["jti"] == unanswered for o in fed.call("mx", "operator", "GET",
                                                                          "/ops/v1/overdue")[1]["overdue"]), timeout=30)
        # the hub rejects a RESTREINT_UE message above es's ceiling: a dead letter at mx that has not expired
        rejected = submit(fed, "mx", "es", "notice", example("notice"), classification="RESTREINT_UE")
        fed.wait_for(lambda: any(d["jti"] == rejected for d in _dead_letters(fed, "mx")), timeout=20)
        # peers prove evidence against a checkpoint a witness cosigned (SPEC §4.4), and the hub is mx's and
        # es's only witness: the first message's must be cosigned at both before the hub goes down
        for node in ("mx", "es"):
            fed.wait_for(lambda node=node: _cosigned(fed, node, first), timeout=30)
        # the hub goes down: one message waits in mx's queue, a short-lived one expires into a dead letter
        fed.stop("hub")
        waiting = submit(fed, "mx", "es", "notice", example("notice"))
        short = submit(fed, "mx", "es", "trace.request", example("trace.request"), ttl_seconds=2)
        fed.wait_for(lambda: any(d["jti"] == short for d in _dead_letters(fed, "mx")), timeout=20)
        # and mx rejects a forged envelope from the hub's address (audited as envelope.rejected with a code)
        status, doc = _post_as(fed, "hub", "mx", json.dumps({"envelopes": [forged()]}).encode())
        assert status == 200 and doc["results"][0]["status"] == "rejected", doc
        password = one_time_password()
        bundles = node_login_bundles(fed.config("mx"), password)
        es_bundles = node_login_bundles(fed.config("es"), password, roles=("auditor",))
        yield Scene(fed, first, waiting, short, rejected, password, bundles, es_bundles, unanswered)
    finally:
        fed.stop_all()


# --- without a browser: roles, static files, headers --------------------------------------------------


def test_ui_routes_admit_their_roles_only_and_refusals_are_audited(scene: Scene) -> None:
    fed = scene.fed
    assert fed.call("mx", "system", "GET", "/ui/")[0] == 403
    assert fed.call("mx", "auditor", "GET", "/ui/api/peers")[0] == 403  # operator views
    assert fed.call("mx", "auditor", "GET", "/ui/api/rejections")[0] == 403
    status, who = fed.call("mx", "auditor", "GET", "/ui/api/whoami")
    assert status == 200 and who["role"] == "auditor" and who["log"]["origin"] == "traza/traza-demo/mx"
    assert [k["kid"] for k in who["log"]["keys"]] == ["mx/audit/1"]
    status, peers = fed.call("mx", "operator", "GET", "/ui/api/peers")
    assert status == 200 and [p["id"] for p in peers["peers"]] == ["hub"]
    hub = peers["peers"][0]
    assert hub["batches"] >= 1 and hub["mean_ms"] > 0 and hub["up"] is False  # it answered, then went down
    status, exp = fed.call("mx", "operator", "GET", "/ui/api/expiry")
    assert status == 200 and {i["level"] for i in exp["items"]} == {"ok"}
    assert any("revocation list" in i["what"] for i in exp["items"])
    assert any(i["what"].startswith("TLS certificate of mx") for i in exp["items"])
    status, msg = fed.call("mx", "auditor", "GET", f"/ui/api/messages/{scene.first}")
    assert status == 200 and msg["state"] == "delivered" and msg["timeline"][0]["at"].endswith("Z")
    # the marking from the signed token (issue #15): submitted H1, BASIC_PROTECTION_LEVEL, INVESTIGATION
    assert (msg["handling"], msg["classification"], msg["purpose"]) == ("H1", "BASIC_PROTECTION_LEVEL", "INVESTIGATION")
    assert msg["handling_notice"] == "H1: not for judicial proceedings without the provider's permission"
    assert fed.call("mx", "operator", "GET", "/ui/static/..%2fdashboard.py")[0] == 404
    assert fed.call("mx", "operator", "GET", "/ui/static/nothing.js")[0] == 404

    def denied() -> list[dict[str, Any]]:
        status, doc = fed.call("mx", "auditor", "GET", "/audit/v1/entries?event=auth.denied&limit=1000")
        assert status == 200, doc
        return [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]

    fed.wait_for(lambda: {"/ui/", "/ui/api/peers"} <= {e.get("path") for e in denied()})


# --- in Chromium -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(scene: Scene) -> Iterator[Any]:
    yield from launched_chromium()


def _page(browser: Any, scene: Scene, role: str, node: str = "mx", locale: str = "en-US") -> tuple[Any, Any, list[str]]:
    url, bundles = (scene.url, scene.bundles) if node == "mx" else (scene.es_url, scene.es_bundles)
    ctx = browser.new_context(
        client_certificates=[{"origin": url, "pfxPath": str(bundles[role]), "passphrase": scene.password}],
        ignore_https_errors=True, viewport={"width": 1280, "height": 1100}, locale=locale)
    page = ctx.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    # a fetch still in flight when the page reloads is aborted by the browser (net::ERR_ABORTED): not a fault
    page.on("requestfailed", lambda r: None if "ERR_ABORTED" in (r.failure or "")
            else problems.append(f"request failed: {r.url} ({r.failure})"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    return ctx, page, problems


def _route_rows(page: Any) -> list[list[str]]:
    """The cells of each row of the "Route across hops" table: time, node, what, evidence, check."""
    rows = page.locator("#route tbody tr.hop")
    return [[c.strip() for c in rows.nth(i).locator("td").all_inner_texts()] for i in range(rows.count())]


def _times_in_order(page: Any) -> None:
    rows = page.locator("#route tbody tr.hop")
    times = [float(rows.nth(i).get_attribute("data-t")) for i in range(rows.count())]
    shown = rows.locator("td:nth-child(1)").all_inner_texts()
    assert times == sorted(times) and shown == sorted(shown), (times, shown)
    assert all(t.endswith("Z") and len(t) == 20 for t in shown), shown


def _receipt_id(fed: Federation) -> str:
    """The id of es's receipt, from mx's audit log (receipt.received)."""
    status, doc = fed.call("mx", "auditor", "GET", "/audit/v1/entries?event=receipt.received&limit=1000")
    assert status == 200 and doc["entries"], doc
    return str(json.loads(base64.b64decode(doc["entries"][0]["entry"]))["receipt"])


def test_operator_sees_peers_and_queue_and_retries_a_dead_letter(scene: Scene, browser: Any) -> None:
    from playwright.sync_api import expect

    fed = scene.fed
    ctx, page, problems = _page(browser, scene, "operator")
    try:
        resp = page.goto(f"{scene.url}/ui/")
        assert resp is not None and resp.status == 200
        csp = resp.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        expect(page.locator("#whoami")).to_have_text("signed in as operator default")
        expect(page.locator("#peers tbody tr.peer")).to_have_count(1)
        expect(page.locator("#peers tbody tr.peer td").first).to_have_text("hub")
        queue = page.locator("#queues tbody tr.queue")
        expect(queue).to_have_count(1)
        expect(queue.locator("td").nth(0)).to_have_text("hub")
        assert int(queue.locator("td").nth(1).inner_text()) >= 1  # the waiting notice (and maybe more)
        expect(page.locator("#warnings li.ok")).to_have_count(1)
        expect(page.locator("#status")).to_contain_text("manifest version")
        # since mx started: 5 messages submitted, 2 forwarded (1 rejected, then the hub went down), 1 receipt
        expect(page.locator("#throughput-note")).to_contain_text("submitted 5")
        expect(page.locator("#throughput-note")).to_contain_text("forwarded 2")
        expect(page.locator("#chart .s-submitted").first).to_be_attached()
        # the expired dead letter: its Retry is disabled, and says why
        gone = next(d for d in _dead_letters(fed, "mx") if d["jti"] == scene.dead_jti)
        assert gone["expired"] is True and gone["code"] == "expired", gone
        expired_row = page.locator(f'#dead-letters tr.dead-letter[data-id="{gone["id"]}"]')
        expect(expired_row).to_have_count(1)
        expect(expired_row).to_contain_text("expired")
        expect(expired_row.get_by_role("button", name="Retry")).to_be_disabled()
        expect(expired_row.get_by_role("button", name="Retry")).to_have_attribute(
            "title", f"Message {scene.dead_jti} expired at {gone['exp']}; a signed expiry cannot be extended: "
                     "discard it, and have the origin send a new message.")
        # the one the hub rejected has not expired: it can be retried
        dl = next(d for d in _dead_letters(fed, "mx") if d["jti"] == scene.rejected_jti)
        assert dl["expired"] is False and dl["code"] == "classification_exceeded", dl
        row = page.locator(f'#dead-letters tr.dead-letter[data-id="{dl["id"]}"]')
        expect(row).to_have_count(1)
        expect(row).to_contain_text("classification_exceeded")
        expect(row.get_by_role("button", name="Retry")).to_be_enabled()
        rejection = page.locator("#rejections tr.rejection")
        expect(rejection).to_have_count(1)
        # the envelope did not verify: its id is only a claim, shown as one (issue #10, evidence pollution)
        expect(rejection.locator("td").nth(4)).to_have_text("01a21b13-0000-7000-8000-00000000f0f0 (claimed, not verified)")
        assert rejection.locator("td").nth(2).inner_text() not in ("", "—")  # the code
        expect(rejection.locator("td").nth(3)).to_have_text("hub")
        page.screenshot(path=str(ARTIFACTS / "operator-before-retry.png"), full_page=True)

        row.get_by_role("button", name="Retry").click()
        expect(page.locator("#notice")).to_contain_text(f"dead letter {dl['id']} (message {scene.rejected_jti}): "
                                                        "queued again")
        expect(row).to_have_count(0)
        expect(expired_row).to_have_count(1)
        page.screenshot(path=str(ARTIFACTS / "operator-after-retry.png"), full_page=True)
        assert not problems, problems

        # a page that still offers Retry on the expired one (e.g. loaded before it expired): the node refuses
        # (409 expired), the page shows the node's own words, and the dead letter stays
        expired_retry = expired_row.get_by_role("button", name="Retry")
        expired_retry.evaluate("b => { b.disabled = false; }")
        expired_retry.click()
        expect(page.locator("#error")).to_have_text(
            f"dead letter {gone['id']}: retry refused: message {scene.dead_jti} expired at {gone['exp']}; a signed "
            "expiry cannot be extended: discard it, and have the origin send a new message")
        expect(page.locator("#notice")).to_be_hidden()
        expect(expired_row).to_have_count(1)
        expect(expired_row.get_by_role("button", name="Retry")).to_be_disabled()
        page.screenshot(path=str(ARTIFACTS / "operator-retry-refused.png"), full_page=True)
        assert [p for p in problems if "409" not in p] == [], problems
        assert len([p for p in problems if p.startswith("HTTP 409: ") and p.endswith(f"/{gone['id']}/retry")]) == 1
    finally:
        ctx.close()

    def actions() -> list[dict[str, Any]]:
        status, doc = fed.call("mx", "auditor", "GET", "/audit/v1/entries?event=operator.action&limit=1000")
        assert status == 200, doc
        return [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]

    done = fed.wait_for(lambda: [a for a in actions() if a["jti"] == scene.rejected_jti])
    assert [(a["action"], a["operator"], a.get("outcome")) for a in done] == [("dead_letter.retry", "default", None)]
    assert dl["id"] not in [d["id"] for d in _dead_letters(fed, "mx")]
    assert _state(fed, "mx", scene.rejected_jti) == "queued"  # for the hub, which is down
    # the refused retry changed nothing and is audited, with the reason
    assert gone["id"] in [d["id"] for d in _dead_letters(fed, "mx")]
    refused = fed.wait_for(lambda: [a for a in actions() if a["jti"] == scene.dead_jti])
    assert [(a["action"], a["operator"], a["outcome"]) for a in refused] == [
        ("dead_letter.retry", "default", "refused")], refused
    assert refused[0]["reason"].startswith(f"message {scene.dead_jti} expired at {gone['exp']}; ")


def test_auditor_finds_a_message_and_the_browser_verifies_its_proofs(scene: Scene, browser: Any) -> None:
    from playwright.sync_api import expect

    fed = scene.fed
    status, doc = fed.call("mx", "auditor", "GET", f"/audit/v1/entries?jti={scene.first}&limit=1000")
    assert status == 200 and doc["entries"], doc
    n_entries = len(doc["entries"])
    ctx, page, problems = _page(browser, scene, "auditor")
    try:
        page.goto(f"{scene.url}/ui/")
        expect(page.locator("#whoami")).to_have_text("signed in as auditor default")
        expect(page.locator("#operator-view")).to_be_hidden()
        page.fill("#jti", scene.first)
        page.get_by_role("button", name="Search", exact=True).click()
        expect(page.locator("#msg-id")).to_have_text(scene.first)
        expect(page.locator("#msg-summary")).to_contain_text("delivered")
        expect(page.locator("#msg-summary")).to_contain_text("INVESTIGATION")
        expect(page.locator("#msg-notice")).to_have_text("H1: not for judicial proceedings without the provider's permission")
        steps = page.locator("#timeline tbody tr.step")
        expect(steps.first).to_be_visible()
        assert [s.strip() for s in steps.locator("td:nth-child(2)").all_inner_texts()][:1] == ["queued"]
        assert "delivered" in steps.locator("td:nth-child(2)").all_inner_texts()
        verified = page.locator("#entries .proof.verified")
        expect(verified).to_have_count(n_entries, timeout=30_000)
        expect(verified.first).to_contain_text("proof verified")
        expect(page.locator("#entries .proof.failed")).to_have_count(0)
        expect(page.locator("#checkpoint")).to_contain_text("signature verified with mx/audit/1")
        events = page.locator("#entries tbody tr.entry td:nth-child(3)").all_inner_texts()
        assert "envelope.accepted" in events and "envelope.forwarded" in events
        # the route across hops, from mx's evidence bundle: its token, the hub's ack, es's receipt
        expect(page.locator("#route .sig.verified")).to_have_count(3, timeout=30_000)
        route = _route_rows(page)
        assert [(r[1], r[3].split(" (")[0].split(":")[0]) for r in route] == [
            ("mx", "origin token"), ("hub", "ack"), ("es", f"receipt {_receipt_id(fed)}")], route
        assert route[0][2] == "signed and sent by mx to es (trace.request)"
        assert route[1][2].startswith("accepted from mx (ack idx ") and "of hub's log" in route[1][3]
        # receipts travel unencrypted (their policy), so the page reads the status and time from the body
        assert route[2][2].startswith("receipt DELIVERED at ") and route[2][2].endswith("sent to mx"), route[2]
        assert [r[4] for r in route] == ["signature verified (mx/sig/1)",
                                         "signature verified (hub/sig/1), acknowledges this token",
                                         "signature verified (es/sig/1), payload digest matches"]
        _times_in_order(page)
        expect(page.locator("#route-notes")).to_contain_text("Later hops: ask the auditor of hub, the next node, "
                                                             "then onwards to es.")
        page.locator("#panel-message h3").nth(1).scroll_into_view_if_needed()
        link = page.locator("#bundle")
        assert link.get_attribute("href") == f"/audit/v1/bundle?jti={scene.first}"
        page.screenshot(path=str(ARTIFACTS / "auditor-proof-verified.png"), full_page=True)

        with page.expect_download() as dl:
            link.click()
        saved = ARTIFACTS / f"evidence-{scene.first}.json"
        dl.value.save_as(str(saved))
        bundle = json.loads(saved.read_text())
        assert bundle["jti"] == scene.first and bundle["node"] == "mx"

        # a proof altered on the way, then a checkpoint whose root was changed: the page says so
        def flip_proof(route: Any) -> None:
            resp = route.fetch()
            doc = resp.json()
            h = bytearray(base64.b64decode(doc["hashes"][0]))
            h[0] ^= 1
            doc["hashes"][0] = base64.b64encode(bytes(h)).decode()
            route.fulfill(response=resp, json=doc)

        page.route("**/audit/v1/proof/inclusion*", flip_proof)
        page.get_by_role("button", name="Search", exact=True).click()
        expect(page.locator("#entries .proof.failed")).to_have_count(n_entries)
        expect(page.locator("#entries .proof.failed").first).to_contain_text("does not lead to the root")
        expect(page.locator("#entries .proof.verified")).to_have_count(0)
        page.screenshot(path=str(ARTIFACTS / "auditor-proof-tampered.png"), full_page=True)
        page.unroute("**/audit/v1/proof/inclusion*")

        def other_root(route: Any) -> None:
            resp = route.fetch()
            lines = resp.text().split("\n")
            lines[2] = base64.b64encode(bytes(32)).decode()
            route.fulfill(response=resp, body="\n".join(lines))

        page.route("**/v1/audit/checkpoint", other_root)
        page.get_by_role("button", name="Search", exact=True).click()
        expect(page.locator("#checkpoint")).to_contain_text("SIGNATURE NOT VERIFIED")
        expect(page.locator("#entries .proof.failed")).to_have_count(n_entries)
        page.unroute("**/v1/audit/checkpoint")
        problems.clear()  # the tampered answers are not the page's fault

        # the page's verifier is strict: every public RFC 9162 inclusion vector, valid and broken
        cases = [json.loads(f.read_text()) for f in sorted(VECTORS.rglob("*.json"))]
        assert len(cases) > 50
        args = [{"index": str(c["leafIdx"]), "size": str(c["treeSize"]), "leaf": c["leafHash"],
                 "proof": c["proof"] or [], "root": c["root"], "want_err": c["wantErr"]} for c in cases]
        outcome = page.evaluate("""async (cases) => {
            const P = window.TrazaProofs, out = [];
            for (const c of cases) {
              let err = null;
              try {
                await P.verifyInclusion(BigInt(c.index), BigInt(c.size), P.b64decode(c.leaf),
                                        c.proof.map(P.b64decode), P.b64decode(c.root));
              } catch (e) { err = String(e.message); }
              out.push(err);
            }
            return out;
        }""", args)
        wrong = [(c["desc"], got) for c, got in zip(cases, outcome, strict=True) if (got is not None) != c["wantErr"]]
        assert not wrong, wrong
        assert not problems, problems
    finally:
        ctx.close()


def _hop_sender_altered(page: Any, failure: str) -> None:
    """Search again while the bundle the page fetches has the hub's (first) hop record altered on the way to
    claim another sender (its claims, or a batched element's leaf: the second dot-separated part): that
    row says ``failure``, the other two still verify."""
    from playwright.sync_api import expect

    def other_sender(route: Any) -> None:
        resp = route.fetch()
        doc = resp.json()
        parts = doc["envelope"]["hops"][0].split(".")
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        claims["from"] = "es"
        parts[1] = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        doc["envelope"]["hops"][0] = ".".join(parts)
        route.fulfill(response=resp, json=doc)

    page.route("**/audit/v1/bundle*", other_sender)
    try:
        page.get_by_role("button", name="Search", exact=True).click()
        failed = page.locator("#route .sig.failed")
        expect(failed).to_have_count(1, timeout=30_000)
        expect(failed).to_have_text(failure)
        expect(page.locator("#route tbody tr.hop").nth(1)).to_contain_text("received from es and relayed to es")
        expect(page.locator("#route .sig.verified")).to_have_count(2)
    finally:
        page.unroute("**/audit/v1/bundle*")


def test_auditor_at_the_recipient_sees_the_route_across_hops(scene: Scene, browser: Any) -> None:
    """At es the bundle holds the hop chain: mx's token, the hub's hop record and es's own ack; a hop
    record altered on the way shows as not verified."""
    from playwright.sync_api import expect

    ctx, page, problems = _page(browser, scene, "auditor", node="es")
    try:
        page.goto(f"{scene.es_url}/ui/?jti={scene.first}")
        expect(page.locator("#whoami")).to_have_text("signed in as auditor default")
        expect(page.locator("#node-name")).to_contain_text("es")
        expect(page.locator("#route .sig.verified")).to_have_count(3, timeout=30_000)
        route = _route_rows(page)
        assert [(r[1], r[2]) for r in route] == [
            ("mx", "signed and sent by mx to es (trace.request)"),
            ("hub", "received from mx and relayed to es"),
            ("es", route[2][2]),
            ("es", "delivered to es's national system"),
        ], route
        assert route[1][3] == "hop record 1 (time: received)"
        assert route[1][4] == "signature verified (hub/sig/1), chains to the origin token"
        assert route[2][2].startswith("accepted from hub (ack idx ") and "this node's log" in route[2][3]
        assert route[2][4] == "signature verified (es/sig/1), acknowledges this token"
        assert route[3][4].startswith("in this node's log")
        _times_in_order(page)
        notes = page.locator("#route-notes li").all_inner_texts()
        assert any("ask the auditor of mx or hub" in n for n in notes), notes
        assert any(n == "The receipt's arrival at mx: ask the auditor of mx." for n in notes), notes
        expect(page.locator("#entries .proof.verified").first).to_be_visible(timeout=30_000)
        page.locator("#panel-message h3").nth(1).scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "auditor-es-route-across-hops.png"), full_page=True)

        # the hub's hop record altered on the way (it now claims another sender): not verified
        _hop_sender_altered(page, "NOT verified: the signature by hub/sig/1 does not verify")
        page.screenshot(path=str(ARTIFACTS / "auditor-es-route-tampered.png"), full_page=True)
        assert not problems, problems
    finally:
        ctx.close()


# --- in Spanish (issue #14: Mexico's operators and auditors are among the first users) -------------------

CATALOGUES = {lang: json.loads((Path(__file__).resolve().parents[2] / "gateway" / "ops" / "static" / "i18n"
                                / f"{lang}.json").read_text(encoding="utf-8")) for lang in ("en", "es")}


def _english_left(text: str) -> list[str]:
    """English texts of the catalogue (phrases without placeholders that Spanish words differently) that
    appear in ``text``: none may, on a page in Spanish."""
    en, es = CATALOGUES["en"], CATALOGUES["es"]
    return [v for k, v in en.items() if " " in v and "{" not in v and v != es[k] and v in text]


def test_the_dashboard_is_in_spanish_for_a_spanish_browser_and_switches(scene: Scene, browser: Any) -> None:
    from playwright.sync_api import expect

    ctx, page, problems = _page(browser, scene, "operator", locale="es-MX")
    try:
        resp = page.goto(f"{scene.url}/ui/")
        assert resp is not None and resp.headers.get("content-language") == "es"
        expect(page.locator("html")).to_have_attribute("lang", "es")
        expect(page.locator("#whoami")).to_have_text("sesión iniciada como operator default")
        expect(page.locator("#panel-peers h2")).to_have_text("Pares")
        expect(page.locator("#panel-dead-letters h2")).to_have_text("Mensajes no entregables")
        expect(page.locator("#peers thead th").nth(3)).to_have_text("último intercambio")
        expect(page.locator("#status")).to_contain_text("versión del manifiesto")
        expect(page.locator("#throughput-note")).to_contain_text("enviados 5")
        expect(page.locator("#panel-overdue h2")).to_have_text("Acuses de recibo atrasados")
        expect(page.locator("#dead-letters tr.dead-letter").first.get_by_role("button", name="Reintentar")).to_be_attached()
        expect(page.get_by_role("button", name="Español")).to_have_attribute("aria-pressed", "true")
        page.wait_for_timeout(300)  # the operator view is filled in
        left = _english_left(page.locator("body").inner_text())
        assert not left, left
        assert page.title() == "Traza mx: operator"
        page.screenshot(path=str(ARTIFACTS / "operator-es.png"), full_page=True)

        # the switch: English at once, and kept for the next visit
        page.get_by_role("button", name="English").click()
        expect(page.locator("#whoami")).to_have_text("signed in as operator default")
        expect(page.locator("#panel-peers h2")).to_have_text("Peers")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        page.reload()
        expect(page.locator("#panel-peers h2")).to_have_text("Peers")
        expect(page.locator("#dead-letters tr.dead-letter").first.get_by_role("button", name="Retry")).to_be_attached()
        page.get_by_role("button", name="Español").click()
        expect(page.locator("#panel-peers h2")).to_have_text("Pares")
        assert not problems, problems
    finally:
        ctx.close()

    # an auditor with a Spanish browser: the search, the timeline and the proofs checked in the page
    ctx, page, problems = _page(browser, scene, "auditor", locale="es")
    try:
        page.goto(f"{scene.url}/ui/?jti={scene.first}")
        expect(page.locator("#whoami")).to_have_text("sesión iniciada como auditor default")
        expect(page.get_by_role("button", name="Buscar", exact=True)).to_be_visible()
        expect(page.locator("#entries .proof.verified").first).to_contain_text("prueba verificada", timeout=30_000)
        expect(page.locator("#checkpoint")).to_contain_text("firma verificada con mx/audit/1")
        expect(page.locator("#route .sig.verified").first).to_contain_text("firma verificada", timeout=30_000)
        page.wait_for_timeout(300)
        left = _english_left(page.locator("body").inner_text())
        assert not left, left
        page.screenshot(path=str(ARTIFACTS / "auditor-es.png"), full_page=True)
        assert not problems, problems
    finally:
        ctx.close()


def test_operator_sees_a_receipt_overdue_and_resends_the_message(scene: Scene, browser: Any) -> None:
    from playwright.sync_api import expect

    fed = scene.fed
    ctx, page, problems = _page(browser, scene, "operator")
    try:
        page.goto(f"{scene.url}/ui/")
        row = page.locator(f'#overdue tr.overdue[data-jti="{scene.unanswered}"]')
        expect(row).to_have_count(1)
        cells = row.locator("td")
        expect(cells.nth(1)).to_have_text("trace.request")
        expect(cells.nth(2)).to_have_text("es")
        expect(cells.nth(3)).to_have_text("hub")
        assert cells.nth(6).inner_text().endswith("Z")  # overdue since, RFC 3339
        button = row.get_by_role("button", name="Resend")
        expect(button).to_be_enabled()
        page.screenshot(path=str(ARTIFACTS / "operator-overdue.png"), full_page=True)
        button.click()
        expect(page.locator("#notice")).to_have_text(f"message {scene.unanswered}: offered again to hub; audited as "
                                                     "operator.action")

        def resends() -> list[dict[str, Any]]:
            status, doc = fed.call("mx", "auditor", "GET", "/audit/v1/entries?event=operator.action&limit=1000")
            assert status == 200, doc
            entries = [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]
            return [e for e in entries if e.get("action") == "message.resend" and e.get("jti") == scene.unanswered]

        fed.wait_for(lambda: len(resends()) == 1)
        assert resends()[0]["operator"] == "default"
        assert not problems, problems
    finally:
        ctx.close()


def test_operator_sees_the_insights_with_small_cells_suppressed(scene: Scene, browser: Any) -> None:
    from playwright.sync_api import expect

    ctx, page, problems = _page(browser, scene, "operator")
    try:
        page.goto(f"{scene.url}/ui/")
        origin = page.locator('#insights-origins tr.origin[data-country="AT"]')
        expect(origin).to_have_count(1)
        # one trace response: a count under 5 is never shown, nor a share of it
        expect(origin.locator("td")).to_have_text(["AT", "<5", "—"])
        # the bar chart, drawn by the page: one pale bar (a suppressed count) for Austria, labelled <5
        bar = page.locator('#origins-chart rect.bar[data-country="AT"]')
        expect(bar).to_have_count(1)
        expect(bar).to_have_class("bar suppressed")
        expect(page.locator("#origins-chart text.bar-value")).to_have_text(["<5"])
        expect(page.locator("#insights-note")).to_have_text(
            "aggregates of what this node holds; counts under 5 shown as <5")
        times = page.locator("#insights-times tr.response-time")
        expect(times).to_have_count(1)
        expect(times.locator("td")).to_have_text(["ES", "<5", "—", "—"])  # one answer: no median of one case
        # the other tables and charts come from the same stats the API serves
        status, stats = scene.fed.call("mx", "operator", "GET", "/ops/v1/stats")
        assert status == 200, stats
        weeks = sorted({r["week"] for r in stats["volume"]})
        expect(page.locator("#volume-chart rect.bar")).to_have_count(len(weeks))
        expect(page.locator("#volume-chart text.bar-label")).to_have_text(weeks)
        volume = page.locator("#insights-volume tr.volume")
        expect(volume).to_have_count(len(stats["volume"]))
        for i, r in enumerate(stats["volume"]):
            expect(volume.nth(i).locator("td")).to_have_text(
                [r["week"], r["type"], f"{r['from_country']} → {r['to_country']}", str(r["messages"])])
        assert all(r["messages"] == "<5" for r in stats["volume"]), stats["volume"]  # every cell is small here
        statuses = sorted({r["status"] for r in stats["trace_outcomes"]})
        assert statuses, stats
        expect(page.locator("#status-chart text.bar-label")).to_have_text(statuses)
        expect(page.locator(f'#status-chart rect.bar[data-status="{statuses[0]}"]')).to_have_class("bar suppressed")
        expect(page.locator("#insights-ballistic tr.empty")).to_have_text("nothing yet")
        # time to crime: every band drawn once one response states it (412 days: 365-1094), that one <5
        assert [r["responses"] for r in stats["time_to_crime"]] == [0, "<5", 0, 0, 0], stats["time_to_crime"]
        expect(page.locator("#ttc-chart text.bar-label")).to_have_text(
            ["0–364 days", "365–1094 days", "1095–1825 days", "1826–3652 days", "3653+ days"])
        expect(page.locator("#ttc-chart text.bar-value")).to_have_text(["0", "<5", "0", "0", "0"])
        expect(page.locator('#ttc-chart rect.bar[data-band="365–1094 days"]')).to_have_class("bar suppressed")
        expect(page.locator("#ttc-note")).to_have_text("median time to crime: not shown (fewer than 5 responses)")
        csv = page.locator("#insights-csv")
        expect(csv).to_have_attribute("href", "/ops/v1/stats?format=csv")
        got = page.request.get(f"{scene.url}/ops/v1/stats?format=csv")
        assert got.status == 200 and got.text().startswith("table,"), (got.status, got.text()[:200])
        page.screenshot(path=str(ARTIFACTS / "operator-insights.png"), full_page=True)
        assert not problems, problems
    finally:
        ctx.close()


def test_auditor_searches_the_log_by_requesting_unit_and_downloads_csv(scene: Scene, browser: Any) -> None:
    from playwright.sync_api import expect

    ctx, page, problems = _page(browser, scene, "auditor")
    try:
        page.goto(f"{scene.url}/ui/")
        form = page.locator("#log-search")
        form.locator('input[name="unit"]').fill("rastreo")  # part of "Unidad de Rastreo de Armas", any case
        form.locator('input[name="event"]').fill("envelope.accepted")
        form.get_by_role("button", name="Search the log").click()
        rows = page.locator("#log-results tr.log-entry")
        # the three trace requests mx's system submitted (answered, unanswered, expired), nothing else
        expect(rows).to_have_count(3)
        expect(rows.first).to_contain_text("Unidad de Rastreo de Armas · Lic. María Hernández Ruiz · "
                                           "FGR:FED/SIN/CLN/0004512/2026")
        assert {rows.nth(i).locator("td").nth(3).inner_text() for i in range(3)} == {
            scene.first, scene.unanswered, scene.dead_jti}
        with page.expect_download() as dl:
            page.locator("#log-search-csv").click()
        text = Path(dl.value.path()).read_text()
        assert text.splitlines()[0].startswith("index,ts,event,jti") and scene.first in text, text
        # a bad filter: the node's words, no rows
        form.locator('input[name="since"]').fill("yesterday")
        form.get_by_role("button", name="Search the log").click()
        expect(page.locator("#error")).to_contain_text("since: 'yesterday'")
        page.screenshot(path=str(ARTIFACTS / "auditor-log-search.png"), full_page=True)
        assert [p for p in problems if "HTTP 400" not in p and "status of 400" not in p] == [], problems
    finally:
        ctx.close()


# --- evidence from every hop (issue #16): a route file verified hop by hop in the browser ------------------


def _route_file(fed: Federation, jti: str) -> dict[str, Any]:
    status, doc = fed.call("mx", "auditor", "GET", f"/audit/v1/route-bundle?jti={jti}")
    assert status == 200, doc
    return dict(doc)


def _hop_checks(page: Any) -> list[tuple[str, str]]:
    rows = page.locator("#route-hops tbody tr.route-hop")
    return [(rows.nth(i).locator("td").nth(1).inner_text(), rows.nth(i).locator("td").nth(2).inner_text())
            for i in range(rows.count())]


def _gather_until_verified(page: Any, fed: Federation, hops: int) -> None:
    """Click *Gather and verify* until ``hops`` hops verify. Each gathering is itself audited at every hop
    (evidence.requested): a hop answers not_checkpointed until its next checkpoint covers those entries,
    and the auditor asks again; a hop that fails verification fails the test at once."""
    from playwright.sync_api import expect

    gather = page.get_by_role("button", name="Gather and verify every hop's evidence of the message above")

    def all_verified() -> bool:
        gather.click()
        expect(page.locator("#route-hops .hopcheck.pending")).to_have_count(0, timeout=30_000)
        if page.locator("#route-hops .hopcheck.verified").count() == hops:
            return True
        assert page.locator("#route-hops .hopcheck.failed").count() == 0, _hop_checks(page)
        time.sleep(1.0)
        return False

    fed.wait_for(all_verified, timeout=60)


def _upload(page: Any, doc: dict[str, Any], name: str) -> None:
    page.set_input_files("#route-file", files=[{"name": name, "mimeType": "application/json",
                                                "buffer": json.dumps(doc).encode()}])


def _resigned_by_a_stranger(doc: dict[str, Any], hop: int) -> dict[str, Any]:
    """Hop ``hop``'s checkpoint signed again by a key of the attacker's under the same log name, with that key
    in the bundle and no witnesses: self-consistent (the CLI, trusting the file's keys, would pass it), but
    the key is not the node's in the manifest."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from gateway.core.note import sign_ed25519

    bad = json.loads(json.dumps(doc))
    b = bad["hops"][hop - 1]["bundle"]
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    text = b["checkpoint"].split("\n\n")[0] + "\n"
    b["checkpoint"] = text + "\n" + sign_ed25519(text, b["keys"]["log"]["name"], pub, key.sign).line()
    b["keys"]["log"]["public_key"] = base64.b64encode(pub).decode()
    b["keys"]["witnesses"] = []
    return bad


def test_auditor_verifies_every_hops_evidence_in_the_browser_and_sees_the_hop_at_fault(scene: Scene,
                                                                                        browser: Any) -> None:
    """At mx, the auditor gathers the route file of a message to es (hub down: its hop is missing, the
    others verify), then with the hub back every hop verifies; a file with one changed character in a hop's
    checkpoint, or a hop re-signed by a key that is not the node's in the manifest, fails at that hop only."""
    from playwright.sync_api import expect

    fed = scene.fed
    ctx, page, problems = _page(browser, scene, "auditor")
    try:
        page.goto(f"{scene.url}/ui/")
        page.fill("#jti", scene.first)
        gather = page.get_by_role("button", name="Gather and verify every hop's evidence of the message above")
        gather.click()  # the hub is down (the scene stopped it)
        expect(page.locator("#route-hops .hopcheck.verified")).to_have_count(2, timeout=30_000)
        checks = _hop_checks(page)
        assert [n for n, _ in checks] == ["mx", "hub", "es"], checks
        assert checks[1][1].startswith("no evidence in the file: "), checks
        expect(page.locator("#route-file-summary")).to_have_text(
            f"message {scene.first} along mx → hub → es: 2 of 3 hops verified, all about the same signed token")

        fed.start("hub")
        _gather_until_verified(page, fed, 3)
        for node, text in _hop_checks(page):
            assert text.startswith("verified: checkpoint of size "), (node, text)
        assert "envelope.forwarded" in _hop_checks(page)[1][1], _hop_checks(page)
        expect(page.locator("#route-download")).to_have_attribute("download", f"route-evidence-{scene.first}.json")
        page.screenshot(path=str(ARTIFACTS / "auditor-route-file-verified.png"), full_page=True)

        time.sleep(1.5)  # past the next checkpoint of the entries the page's gathering added
        def complete() -> dict[str, Any] | None:
            d = _route_file(fed, scene.first)
            return d if all(h.get("bundle") for h in d["hops"]) else None

        doc = fed.wait_for(complete, timeout=60, interval=1.5)
        for hop, node in enumerate(("mx", "hub", "es"), 1):
            bad = json.loads(json.dumps(doc))
            cp = bad["hops"][hop - 1]["bundle"]["checkpoint"]
            at = cp.rindex(" ") + 5  # inside the base64 of the last signature line
            bad["hops"][hop - 1]["bundle"]["checkpoint"] = cp[:at] + ("A" if cp[at] != "A" else "B") + cp[at + 1:]
            _upload(page, bad, f"tampered-{hop}.json")
            failed = page.locator("#route-hops .hopcheck.failed")
            expect(failed).to_have_count(1, timeout=30_000)
            expect(failed).to_contain_text(f"NOT verified: hop {hop} ({node}): ")
            expect(page.locator("#route-hops .hopcheck.verified")).to_have_count(2, timeout=30_000)
            expect(page.locator("#route-file-summary")).to_contain_text("1 hop(s) NOT verified, 2 of 3 verified")

        _upload(page, _resigned_by_a_stranger(doc, 2), "stranger.json")
        failed = page.locator("#route-hops .hopcheck.failed")
        expect(failed).to_have_count(1, timeout=30_000)
        expect(failed).to_have_text("NOT verified: hop 2 (hub): the audit key of hub is not in the federation "
                                    f"manifest (version {fed.call('mx', 'auditor', 'GET', '/ui/api/whoami')[1]['manifest_version']})")
        page.screenshot(path=str(ARTIFACTS / "auditor-route-file-stranger.png"), full_page=True)
        assert not problems, problems
    finally:
        ctx.close()
