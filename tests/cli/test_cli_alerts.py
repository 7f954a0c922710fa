"""The alert rules of deploy/prometheus/alerts.yml (issue #19 "Alert rules", issue #12's expiry alert):
``promtool check rules`` and ``promtool check config``, their unit tests (``promtool test rules``
deploy/prometheus/alerts_test.yml), every rule tested and linked to a section of docs/runbooks.md, and every
``traza_*`` name they use exposed by gateway/metrics.py. Under CI a missing promtool fails the test
(.ci/run installs Debian's ``prometheus`` package); elsewhere it skips."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gateway.metrics import DOCUMENTED

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("promtool missing (Debian package prometheus; .ci/run installs it)")
    pytest.skip("promtool missing: apt-get install prometheus")


def _run(*args: str) -> str:
    p = subprocess.run([_promtool(), *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"promtool {' '.join(args)}:\n{p.stdout}\n{p.stderr}"
    return p.stdout


def _rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"]]


def test_promtool_check_rules():
    assert "SUCCESS" in _run("check", "rules", str(RULES))


def test_prometheus_config_loads_the_rules():
    out = _run("check", "config", str(DEPLOY / "prometheus.yml"))
    assert "1 rule files found" in out


def test_promtool_unit_tests_of_the_rules_pass():
    assert "SUCCESS" in _run("test", "rules", str(RULE_TESTS))


def test_every_rule_has_a_unit_test():
    doc = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    fired = {a["alertname"] for t in doc["tests"] for a in t.get("alert_rule_test", []) if a.get("exp_alerts")}
    assert {r["alert"] for r in _rules()} <= fired


def test_every_runbook_url_names_a_section_of_docs_runbooks():
    text = RUNBOOKS.read_text(encoding="utf-8")
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^## (.+)$", text, flags=re.M)}
    for r in _rules():
        url = r["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == "docs/runbooks.md" and anchor in anchors, (r["alert"], url, sorted(anchors))


def test_every_traza_metric_in_the_rules_is_documented():
    names = {n for r in _rules() for n in re.findall(r"\btraza_[a-z0-9_]+", r["expr"])}
    assert names, "no traza_* metric in the rules"
    assert names <= set(DOCUMENTED), sorted(names - set(DOCUMENTED))
    # and the compose file mounts the rules where prometheus.yml looks for them
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["prometheus"]["volumes"]}
    for f in prom["rule_files"]:
        assert mounts["/etc/prometheus/" + f] == "./" + f
