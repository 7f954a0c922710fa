"""The dashboard login that `traza demo` prints works, against the real demo (issue #6, literally).

`python -m gateway.cli.main demo --dir DIR --json` runs as a subprocess in its own process group, without
`--once`. With `--json` the JSON summary goes to stdout only when the demo exits (after Ctrl-C), and the
human story goes to stderr; so the test waits (bounded) for the stderr line "federation running; Ctrl-C
to stop", which the demo prints once the story, the evidence bundle and the dashboard logins are done and
the nodes keep running, and reads the "Dashboard" section above it: mx's URL, the operator and auditor
PKCS#12 bundles and their one-time password. Those printed values, and nothing the test makes itself, are
what Chromium logs in with. At exit the JSON summary's "dashboard" key must name the same values.

In headless Chromium (Debian's `chromium`, via Playwright):
- operator: sees mx's peer latam-hub (its hub), the traced origins of the demo's pistols in the insights
  panel (Spain's 5, every other country <5), a queue to it and a dead letter that can be retried. mx's
  national system submits a `notice` to co classified RESTREINT_UE: mx and its next hop latam-hub may carry
  it, but co is accredited for BASIC_PROTECTION_LEVEL only (gateway/demo/story.py), so latam-hub rejects it
  and it becomes a dead letter at mx (`classification_exceeded`, not expired). Then latam-hub is frozen
  (SIGSTOP) briefly and a `notice` (BASIC_PROTECTION_LEVEL, default TTL) waits in mx's queue to it; the
  page shows the peer, the queue and the dead letter with Retry enabled (screenshot), and latam-hub is
  resumed (SIGCONT, always). The operator clicks Retry: the row with that id leaves the list, the message
  is queued again, latam-hub rejects it again (a new dead letter for the same message, the timeline ends
  failed, queued, failed), mx's audit log holds one `operator.action` `dead_letter.retry` entry, not
  refused, and the waiting notice is delivered to co. (A retry refused because the message expired is the
  subject of tests/ui/test_ui_dashboard.py and tests/transport/test_transport_dead_letters.py.)
- auditor: finds the first trace request (DIR/evidence/<id>.json, printed by the demo) by id and sees every
  audit entry's inclusion proof, the checkpoint signature and the route across hops verified by the page's
  JavaScript.
Screenshots go to $TRAZA_ARTIFACTS (default tests/ui/artifacts/): demo-operator.png,
demo-operator-after-retry.png, demo-auditor.png.
The demo is stopped with SIGINT (its Ctrl-C path) and must stop every node it started: the test kills
any survivor, then fails naming it. Without Debian's chromium the test is skipped, except under CI.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kit.browser import ARTIFACTS, CHROMIUM_ARGS, chromium_path

from gateway.config import Config, load_config
from gateway.national.client import local_request

STANDARD = "application/vnd.traza.message+json"
READY_LINE = "federation running; Ctrl-C to stop"
READY_TIMEOUT = 120.0  # building the PKI, eleven nodes and the whole story
WAIT_TIMEOUT = 30.0  # a rejection by latam-hub, a retry, a delivery: each takes well under a second
STOP_TIMEOUT = 30.0
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# --- the demo process ------------------------------------------------------------------------------------


def node_pids(root: Path) -> dict[int, str]:
    """Live node processes of the demo in ``root``: pid -> node id (their command line names
    ``root/nodes/<id>.toml``)."""
    prefix = str(root / "nodes") + os.sep
    out: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # gone meanwhile
        if state == "Z" or "run" not in args:
            continue
        for a in args:
            if a.startswith(prefix) and a.endswith(".toml"):
                out[int(proc.name)] = Path(a).stem
    return out


def wait_printed(proc: subprocess.Popen[bytes], err: Path, timeout: float) -> str:
    """The demo's stderr once it printed READY_LINE; fails with its tail if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = ANSI.sub("", err.read_text(errors="replace"))
        if READY_LINE in text:
            return text
        if proc.poll() is not None:
            pytest.fail(f"traza demo exited with status {proc.returncode} before {READY_LINE!r}; "
                        f"end of {err}:\n{text[-3000:]}")
        time.sleep(0.25)
    pytest.fail(f"traza demo did not print {READY_LINE!r} within {timeout} s; end of {err}:\n"
                f"{ANSI.sub('', err.read_text(errors='replace'))[-3000:]}")


def printed_login(text: str) -> dict[str, str]:
    """The "Dashboard" section as printed: url, operator_p12, auditor_p12, password; and the evidence file."""
    section = text.rsplit("Dashboard", 1)[-1]
    found = {
        "url": re.search(r"^(https://127\.0\.0\.1:\d+/ui/)\s+\(mx's dashboard\)", section, re.M),
        "operator_p12": re.search(r"^\s*operator login:\s*(\S+\.p12)\s*$", section, re.M),
        "auditor_p12": re.search(r"^\s*auditor login:\s*(\S+\.p12)\s*$", section, re.M),
        "password": re.search(r"one-time password of both bundles:\s*(\S+)\s*$", section, re.M),
        "evidence": re.search(r"evidence bundle of the first trace request \(from es\):\s*(\S+\.json)\s*$", text, re.M),
    }
    missing = [k for k, m in found.items() if m is None]
    assert not missing, f"traza demo did not print {missing}; its Dashboard section:\n{section[-2000:]}"
    return {k: m.group(1) for k, m in found.items() if m is not None}


def stop_demo(proc: subprocess.Popen[bytes]) -> str:
    """SIGINT (the demo's Ctrl-C path), bounded wait; then the group is killed. Returns how it ended."""
    if proc.poll() is not None:
        return f"had exited with {proc.returncode}"
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
        return f"exited with {proc.returncode} after SIGINT"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        return f"did not stop within {STOP_TIMEOUT} s of SIGINT: process group killed"


def kill_survivors(root: Path) -> dict[int, str]:
    """SIGKILL every node process of ``root`` still alive (each runs in its own session, so killing the
    demo's group does not reach them); returns what had survived."""
    survivors = node_pids(root)
    for pid in survivors:
        try:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while node_pids(root) and time.monotonic() < deadline:
        time.sleep(0.1)
    return survivors


# --- helpers against mx's local API (the demo's own client certificates, from DIR/nodes/mx.toml) -------------


def dead_letters(cfg: Config) -> list[dict[str, Any]]:
    status, doc = local_request(cfg, "operator", "GET", "/ops/v1/dead-letters")
    assert status == 200, doc
    return list(doc["dead_letters"])


def audit_entries(cfg: Config, query: str) -> list[dict[str, Any]]:
    status, doc = local_request(cfg, "auditor", "GET", f"/audit/v1/entries?{query}&limit=1000")
    assert status == 200, doc
    return [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]


def submit(cfg: Config, classification: str, text: str) -> str:
    """mx's national system submits a `notice` to co; returns the message id."""
    msg = {"type": "notice", "to": "co", "handling": "H1", "classification": classification,
           "purpose": "INVESTIGATION", "body": {"title": "Dashboard test", "text": text}}
    status, doc = local_request(cfg, "system", "POST", "/local/v1/messages", json.dumps(msg).encode(), STANDARD)
    assert status == 201, doc
    return str(doc["id"])


def message(cfg: Config, jti: str) -> dict[str, Any]:
    status, doc = local_request(cfg, "system", "GET", f"/local/v1/messages/{jti}")
    assert status == 200, doc
    return dict(doc)


def wait_until(what: str, found: Callable[[], Any], timeout: float = WAIT_TIMEOUT) -> Any:
    """Polls ``found()`` until it returns something truthy; fails naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = found()
        if got:
            return got
        time.sleep(0.1)
    pytest.fail(f"{what}: not within {timeout} s")


def new_page(browser: Any, login: dict[str, str], role: str) -> tuple[Any, Any, list[str]]:
    origin = login["url"].removesuffix("/ui/")
    ctx = browser.new_context(
        client_certificates=[{"origin": origin, "pfxPath": login[f"{role}_p12"], "passphrase": login["password"]}],
        ignore_https_errors=True, viewport={"width": 1280, "height": 1100})
    page = ctx.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    return ctx, page, problems


# --- the test ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_printed_demo_login_works_for_operator_and_auditor(tmp_path: Path) -> None:
    exe = chromium_path("demo dashboard browser test")
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    root = tmp_path / "demo"  # --dir: a new folder
    out, err = tmp_path / "demo.stdout", tmp_path / "demo.stderr"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "demo", "--dir", str(root), "--json"],
            stdout=o, stderr=e, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=Path(__file__).resolve().parents[2])
    frozen: int | None = None
    ended = "not stopped"
    try:
        text = wait_printed(proc, err, READY_TIMEOUT)
        login = printed_login(text)
        for k in ("operator_p12", "auditor_p12", "evidence"):
            assert Path(login[k]).is_file() and Path(login[k]).is_relative_to(root), (k, login[k])
        assert [p.name for p in (root / "evidence").iterdir()] == [Path(login["evidence"]).name]
        first_trace = json.loads(Path(login["evidence"]).read_text())["jti"]
        assert Path(login["evidence"]).stem == first_trace
        nodes = node_pids(root)
        assert len(nodes) == 11 and {"mx", "latam-hub", "co"} <= set(nodes.values()), nodes
        mx = load_config(root / "nodes" / "mx.toml")
        assert login["url"] == f"https://{mx.listen.local}/ui/"

        # a dead letter that can be retried: latam-hub will not relay RESTREINT_UE to co (its ceiling is BASIC)
        secret = submit(mx, "RESTREINT_UE", "Above co's accreditation: latam-hub rejects it.")
        first = wait_until(f"a dead letter at mx for message {secret}",
                           lambda: next((d for d in dead_letters(mx) if d["jti"] == secret), None))
        assert first["code"] == "classification_exceeded" and first["expired"] is False, first
        assert first["peer"] == "latam-hub" and "exceeds co's ceiling BASIC_PROTECTION_LEVEL" in first["detail"], first

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            try:
                # freeze mx's hub briefly: a notice from mx's national system waits in mx's queue to it
                frozen = next(pid for pid, n in nodes.items() if n == "latam-hub")
                os.kill(frozen, signal.SIGSTOP)
                waiting = submit(mx, "BASIC_PROTECTION_LEVEL", "Waits while latam-hub is frozen.")

                op_ctx, op, op_problems = new_page(browser, login, "operator")
                resp = op.goto(login["url"])
                assert resp is not None and resp.status == 200
                expect(op.locator("#whoami")).to_have_text("signed in as operator default")
                expect(op.locator("#node-name")).to_contain_text("mx (traza-demo)")
                peer = op.locator("#peers tbody tr.peer")
                expect(peer).to_have_count(1)
                expect(peer.locator("td").nth(0)).to_have_text("latam-hub")
                expect(peer.locator("td").nth(1)).to_have_text("hub")
                queue = op.locator("#queues tbody tr.queue")
                expect(queue).to_have_count(1)
                expect(queue.locator("td").nth(0)).to_have_text("latam-hub")
                assert int(queue.locator("td").nth(1).inner_text()) >= 1  # the notice, waiting
                expect(op.locator("#status")).to_contain_text("manifest version")
                # the insights panel: the demo's traced origins as mx holds them, small cells suppressed
                origins = op.locator("#insights-origins tr.origin")
                expect(origins.and_(op.locator('[data-country="ES"]')).locator("td")).to_have_text(["ES", "5", "—"])
                expect(op.locator('#origins-chart rect.bar[data-country="ES"]')).to_have_class("bar")
                for country in ("AT", "BE", "DE", "IT", "RO"):
                    expect(origins.and_(op.locator(f'[data-country="{country}"]')).locator("td").nth(1)).to_have_text("<5")
                row = op.locator(f'#dead-letters tr.dead-letter[data-id="{first["id"]}"]')
                expect(row).to_have_count(1)
                expect(row).to_contain_text(secret)
                expect(row).to_contain_text("classification_exceeded")
                expect(row.locator("td").nth(3)).to_have_text("latam-hub")
                retry = row.get_by_role("button", name="Retry")
                expect(retry).to_be_enabled()
                op.screenshot(path=str(ARTIFACTS / "demo-operator.png"), full_page=True)
                os.kill(frozen, signal.SIGCONT)
                frozen = None

                # Retry: queued again, the row leaves; latam-hub rejects it again (a new dead letter)
                retry.click()
                expect(op.locator("#notice")).to_contain_text(
                    f"dead letter {first['id']} (message {secret}): queued again")
                expect(row).to_have_count(0)
                again = wait_until(f"a new dead letter at mx for message {secret} after the retry",
                                   lambda: next((d for d in dead_letters(mx)
                                                 if d["jti"] == secret and d["id"] != first["id"]), None))
                assert again["code"] == "classification_exceeded", again
                assert first["id"] not in [d["id"] for d in dead_letters(mx)]
                timeline = [step["state"] for step in message(mx, secret)["timeline"]]
                assert timeline[-3:] == ["failed", "queued", "failed"], timeline
                # the page shows the new dead letter (it reloads after an action, and every 5 s)
                expect(op.locator(f'#dead-letters tr.dead-letter[data-id="{again["id"]}"]')).to_have_count(
                    1, timeout=10_000)
                op.screenshot(path=str(ARTIFACTS / "demo-operator-after-retry.png"), full_page=True)
                assert not op_problems, op_problems
                op_ctx.close()

                # the auditor finds the first trace request of the story
                n_entries = len(audit_entries(mx, f"jti={first_trace}"))
                assert n_entries >= 2
                au_ctx, au, au_problems = new_page(browser, login, "auditor")
                try:
                    au.goto(login["url"])
                    expect(au.locator("#whoami")).to_have_text("signed in as auditor default")
                    expect(au.locator("#operator-view")).to_be_hidden()
                    au.fill("#jti", first_trace)
                    au.get_by_role("button", name="Search", exact=True).click()
                    expect(au.locator("#msg-id")).to_have_text(first_trace)
                    expect(au.locator("#msg-summary")).to_contain_text("delivered")
                    verified = au.locator("#entries .proof.verified")
                    expect(verified).to_have_count(n_entries, timeout=30_000)
                    expect(verified.first).to_contain_text("proof verified")
                    expect(au.locator("#entries .proof.failed")).to_have_count(0)
                    expect(au.locator("#checkpoint")).to_contain_text("signature verified with mx/audit/1")
                    # the route across hops, from mx's bundle: its token, latam-hub's ack, es's receipt
                    expect(au.locator("#route .sig.verified")).to_have_count(3, timeout=30_000)
                    expect(au.locator("#route .sig.failed")).to_have_count(0)
                    hops = au.locator("#route tbody tr.hop td:nth-child(2)").all_inner_texts()
                    assert [h.strip() for h in hops] == ["mx", "latam-hub", "es"], hops
                    au.screenshot(path=str(ARTIFACTS / "demo-auditor.png"), full_page=True)
                    assert not au_problems, au_problems
                finally:
                    au_ctx.close()
            finally:
                if frozen is not None:
                    os.kill(frozen, signal.SIGCONT)
                    frozen = None
                browser.close()

        actions = [a for a in audit_entries(mx, "event=operator.action") if a.get("jti") == secret]
        assert [(a["action"], a["operator"], a.get("outcome")) for a in actions] == [
            ("dead_letter.retry", "default", None)], actions
        # the notice that waited for the frozen hub went on: co's system (the demo) acknowledged it
        wait_until(f"message {waiting} delivered to co", lambda: message(mx, waiting)["state"] == "delivered")
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        ended = stop_demo(proc)
        survivors = kill_survivors(root)
    assert not survivors, f"node processes survived the demo's stop ({ended}): {survivors}"
    assert proc.returncode == 0, f"traza demo {ended}; end of {err}:\n{err.read_text(errors='replace')[-2000:]}"
    summary = json.loads(out.read_text())
    dash = summary["dashboard"]
    assert {k: dash[k] for k in ("url", "operator_p12", "auditor_p12", "password")} == {
        k: login[k] for k in ("url", "operator_p12", "auditor_p12", "password")}
    assert summary["first_trace_request"] == first_trace and summary["evidence"] == login["evidence"]
