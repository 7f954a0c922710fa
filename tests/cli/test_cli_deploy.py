"""deploy/: the federation generator, compose file, Prometheus and Grafana provisioning, Dockerfile and
systemd unit agree with each other and with the code (CLI verbs, config validation, documented metrics).

Docker is not run here; the image's entrypoint and HEALTHCHECK command are run against a real node
started from a generated config."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from gateway.cli.main import build_parser, main
from gateway.cli.node import cmd_run
from gateway.config import load_config
from gateway.core.manifest import decode_manifest
from gateway.localfed import free_ports, write_config
from gateway.metrics import DOCUMENTED, Metrics
from gateway.trust.pki import FederationDir
from gateway.trust.trusted import TrustAnchor, TrustedManifest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NODES = ("latam-hub", "eu-hub", "mx", "es")
HUB_OF = {"mx": "latam-hub", "es": "eu-hub"}
TRAZA = Path(sys.executable).parent / "traza"


# ---------------------------------------------------------------------------------------------------
# the generator
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/make_federation.py run as an operator would, into <tmp>/federation (compose's ./federation)."""
    out = tmp_path_factory.mktemp("deploy") / "federation"
    r = subprocess.run([sys.executable, str(DEPLOY / "make_federation.py"), str(out)],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_generator_refuses_to_overwrite(generated):
    r = subprocess.run([sys.executable, str(DEPLOY / "make_federation.py"), str(generated)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1 and "is not empty" in r.stderr


@pytest.mark.parametrize("node", NODES)
def test_generated_config_validates_and_is_self_contained(generated, node):
    d = generated / node
    cfg = load_config(d / "node.toml")
    assert cfg.node.id == node
    assert cfg.node.data_dir == "/var/lib/traza"
    assert (cfg.listen.peer, cfg.listen.local, cfg.listen.ops) == ("0.0.0.0:8443", "0.0.0.0:8444", "0.0.0.0:8080")
    paths = [cfg.trust.anchor, cfg.trust.manifest, *(getattr(cfg.keys, k) for k in cfg.keys.__struct_fields__),
             *(v for k in cfg.client.__struct_fields__ if (v := getattr(cfg.client, k)))]
    assert len(paths) == 2 + 6 + 6
    for p in paths:  # everything the node reads is inside the folder mounted at /etc/traza
        assert not Path(p).is_absolute() and cfg.resolve(p).resolve().is_relative_to(d.resolve()), p
    assert cfg.resolve(cfg.trust.manifest).with_name("manifest.sig").is_file()
    # only this node's secrets: no authority key, no CA key, no local CA key
    names = {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()}
    assert not {n for n in names if n.endswith("ca.key") or n.startswith("authorities")}
    for n in names:
        if n.endswith(".key"):
            assert (d / n).stat().st_mode & 0o077 == 0, f"{n} is readable by others"
    others = [o for o in NODES if o != node]
    text = (d / "node.toml").read_text(encoding="utf-8")
    assert not any(f"/{o}/" in text for o in others)


def test_generated_manifest_is_signed_2_of_3_with_container_endpoints(generated, capsys):
    assert main(["manifest", "verify", str(generated / "pki")]) == 0
    assert "signatures: 2 valid of threshold 2" in capsys.readouterr().out
    fd = FederationDir(generated / "pki")
    published = (fd.published_dir / "manifest.json").read_bytes()
    manifest = decode_manifest(published)
    assert {n.id: n.endpoint for n in manifest.nodes} == {n: f"https://{n}:8443" for n in NODES}
    assert {n.id: n.hub for n in manifest.nodes} == {n: HUB_OF.get(n) for n in NODES}
    for node in NODES:  # each node's own copy verifies against its own anchor
        d = generated / node
        assert (d / "manifest.json").read_bytes() == published
        tm = TrustedManifest(TrustAnchor.from_json((d / "trust-anchor.json").read_bytes()))
        fed = tm.update(published, (d / "manifest.sig").read_bytes(), time.time())
        assert fed.version == manifest.version
        assert tm.last_report["trusted"].valid == 2


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#")))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _healthcheck_argv() -> list[str]:
    hc = [a for i, a in _dockerfile() if i == "HEALTHCHECK"]
    assert len(hc) == 1
    m = re.search(r"CMD (\[.*\])\s*$", hc[0])
    assert m, hc[0]
    argv: list[str] = json.loads(m.group(1))
    return argv


def _entry_argv() -> list[str]:
    ins = dict(_dockerfile())
    return [*json.loads(ins["ENTRYPOINT"]), *json.loads(ins["CMD"])]


def test_node_from_generated_config_runs_answers_the_healthcheck_and_stops_on_sigterm(generated, tmp_path):
    """The image's command (`traza run --config ...`) on a copy of the generated latam-hub config with
    loopback listeners and a temporary data folder; the HEALTHCHECK command, pointed at its ops port,
    succeeds while it runs; SIGTERM ends it with status 0 and `node.stopped` in its log."""
    data = tomllib.loads((generated / "latam-hub" / "node.toml").read_text(encoding="utf-8"))
    peer, local, ops = free_ports(3)
    data["node"]["data_dir"] = str(tmp_path / "data")
    data["listen"] = {"peer": f"127.0.0.1:{peer}", "local": f"127.0.0.1:{local}", "ops": f"127.0.0.1:{ops}"}
    data["log"] = {"format": "json", "level": "info"}
    cfg = generated / "latam-hub" / "test-loopback.toml"
    write_config(cfg, data)
    argv = _entry_argv()
    assert argv[:3] == ["traza", "run", "--config"]
    health = [sys.executable if a == "python" else a.replace("127.0.0.1:8080", f"127.0.0.1:{ops}")
              for a in _healthcheck_argv()]
    assert health != _healthcheck_argv()
    log = (tmp_path / "node.log").open("w+")
    proc = subprocess.Popen([str(TRAZA), *argv[1:3], str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        rc = 1
        while time.monotonic() < deadline and proc.poll() is None:
            rc = subprocess.run(health, capture_output=True, timeout=10, check=False).returncode
            if rc == 0:
                break
            time.sleep(0.3)
        assert rc == 0, f"healthcheck never passed; node exit {proc.poll()}; log:\n{Path(log.name).read_text()}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert subprocess.run(health, capture_output=True, timeout=10, check=False).returncode != 0
    assert "node.started" in Path(log.name).read_text()
    assert (tmp_path / "data" / "node.db").is_file()


# ---------------------------------------------------------------------------------------------------
# compose, Prometheus, Grafana
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    return doc


def _volumes(svc: dict[str, Any]) -> dict[str, str]:
    """target -> source of a service's short-syntax volumes."""
    out = {}
    for v in svc.get("volumes", []):
        parts = v.split(":")
        out[parts[1]] = parts[0]
    return out


def test_compose_runs_the_four_nodes_from_the_image_with_their_generated_configs(compose, generated):
    services = compose["services"]
    assert set(NODES) | {"prometheus", "grafana"} <= set(services)
    for node in NODES:
        svc = services[node]
        assert svc["hostname"] == node  # the manifest endpoint https://<node>:8443
        assert (DEPLOY / svc["build"]["context"]).resolve() == ROOT
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
        assert re.fullmatch(r"traza:\d+\.\d+\.\d+", svc["image"])
        vols = _volumes(svc)
        assert vols["/etc/traza"] == f"./federation/{node}"
        assert f"./federation/{node}:/etc/traza:ro" in svc["volumes"]
        assert (generated.parent / vols["/etc/traza"] / "node.toml").is_file()
        assert vols["/var/lib/traza"] in compose["volumes"]
        assert "traza" in svc["networks"]
        assert svc.get("stop_signal", "SIGTERM") == "SIGTERM"
        for p in svc.get("ports", []):
            assert str(p).startswith("127.0.0.1:"), f"{node}: {p} is published beyond this host"
            assert not str(p).endswith((":8443", ":8080")), f"{node}: peer/ops port published: {p}"
        if node in HUB_OF:
            assert svc["depends_on"][HUB_OF[node]]["condition"] == "service_healthy"
    images = {services[s]["image"] for s in ("prometheus", "grafana")}
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and re.match(r"^v?\d+\.\d+\.\d+$", tag), f"{image} is not pinned to a release"
    for name in ("prometheus", "grafana"):
        for target, source in _volumes(services[name]).items():
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name}: {source} (for {target}) is missing"
            else:
                assert source in compose["volumes"]


def test_prometheus_scrapes_every_node_ops_listener(compose, generated):
    prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    svc = compose["services"]["prometheus"]
    config_arg = next(a for a in svc["command"] if a.startswith("--config.file="))
    assert _volumes(svc)[config_arg.split("=", 1)[1]] == "./prometheus.yml"
    jobs = [j for j in prom["scrape_configs"] if j["job_name"] == "traza"]
    assert len(jobs) == 1 and jobs[0].get("metrics_path", "/metrics") == "/metrics"
    targets = {}
    for group in jobs[0]["static_configs"]:
        for t in group["targets"]:
            targets[t] = group["labels"]["node"]
    want = {}
    for node in NODES:
        port = load_config(generated / node / "node.toml").listen.ops.rsplit(":", 1)[1]
        want[f"{node}:{port}"] = node
    assert targets == want


def _series_types() -> dict[str, str]:
    """Every series name the node's /metrics can carry -> its metric type, from gateway.metrics itself."""
    out = {}
    for fam in Metrics().registry.collect():
        if fam.type == "counter":
            out[f"{fam.name}_total"] = "counter"
        elif fam.type == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                out[fam.name + suffix] = "histogram"
        else:
            out[fam.name] = fam.type
    return out


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset"}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (labels, ranges, groupings and functions removed)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for m in re.finditer(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", e):
        if m.group(2) or m.group(1) in PROMQL_WORDS:
            continue
        names.add(m.group(1))
    return names


def test_metric_name_parser():
    assert metric_names('sum by (node, le) (rate(a_b_bucket{node=~"$node",x="y{z}"}[$__rate_interval]))') == {
        "a_b_bucket"}
    assert metric_names("count(up == 0) or vector(0)") == {"up"}
    assert metric_names("histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))") == {"h_bucket"}


def test_dashboard_uses_only_documented_metrics(compose):
    dash = json.loads((DEPLOY / "grafana" / "traza-dashboard.json").read_text(encoding="utf-8"))
    types = _series_types()
    documented = set(DOCUMENTED)
    for name, kind in types.items():  # the series names derive from DOCUMENTED
        assert (name.rsplit("_", 1)[0] if kind == "histogram" else name) in documented
    used: set[str] = set()
    exprs = []
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "traza-prometheus"
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            exprs.append((panel["title"], t["expr"]))
    for title, expr in exprs:
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        for n in names:
            assert n in types, f"panel {title!r}: {n!r} is not a series gateway/metrics.py exposes"
        for m in re.finditer(r"\b(?:rate|irate|increase)\(\s*([A-Za-z_:][\w:]*)", expr):
            assert types[m.group(1)] in ("counter", "histogram"), f"{title}: rate() of gauge {m.group(1)}"
        if "histogram_quantile" in expr:
            assert re.search(r"by \([^)]*\ble\b", expr), f"{title}: quantile without le"
        used |= names
    for var in dash["templating"]["list"]:
        m = re.fullmatch(r"label_values\((\w+), *(\w+)\)", var["query"]["query"])
        assert m and m.group(1) in types and m.group(2) == "node"
    required = {"traza_envelopes_received_total", "traza_envelopes_forwarded_total", "traza_hop_latency_seconds_bucket",
                "traza_queue_depth", "traza_queue_oldest_age_seconds", "traza_dead_letters",
                "traza_audit_log_entries", "traza_manifest_version", "traza_auth_denied_total"}
    assert required <= used, f"no panel for {required - used}"
    assert {p for _, e in exprs for p in re.findall(r"histogram_quantile\((0\.\d+)", e)} >= {"0.5", "0.99"}
    # provisioning: the datasource the panels name, the folder the dashboard is mounted into
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text(encoding="utf-8"))
    (source,) = ds["datasources"]
    assert source["uid"] == "traza-prometheus" and source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    prov = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/traza.yaml").read_text(encoding="utf-8"))
    (provider,) = prov["providers"]
    graf = _volumes(compose["services"]["grafana"])
    mounted = {t for t, s in graf.items() if s == "./grafana/traza-dashboard.json"}
    assert mounted and all(Path(t).parent == Path(provider["options"]["path"]) for t in mounted)
    assert graf["/etc/grafana/provisioning"] == "./grafana/provisioning"


# ---------------------------------------------------------------------------------------------------
# Dockerfile, constraints, systemd
# ---------------------------------------------------------------------------------------------------


def _parse_run(argv: list[str]) -> Any:
    assert argv[0] == "traza" or argv[0].endswith("/traza"), argv
    return build_parser().parse_args(argv[1:])


def test_dockerfile(generated):
    ins = _dockerfile()
    froms = [a for i, a in ins if i == "FROM"]
    assert froms[-1] == "python:3.11-slim", "the image runs on python:3.11-slim"
    users = [a for i, a in ins if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    args = dict(a.split("=", 1) for i, a in ins if i == "ARG" and "=" in a)
    assert int(args["TRAZA_UID"]) != 0
    exposed = {int(p) for i, a in ins if i == "EXPOSE" for p in a.split()}
    cfg = load_config(generated / "mx" / "node.toml")
    assert exposed == {int(a.rsplit(":", 1)[1]) for a in (cfg.listen.peer, cfg.listen.local, cfg.listen.ops)}
    volumes = {v for i, a in ins if i == "VOLUME" for v in json.loads(a)}
    assert volumes == {"/var/lib/traza", "/etc/traza"}
    parsed = _parse_run(_entry_argv())
    assert parsed.func is cmd_run and parsed.config == "/etc/traza/node.toml"
    assert dict(ins)["STOPSIGNAL"] == "SIGTERM"
    health = _healthcheck_argv()
    assert health[:2] == ["python", "-c"]
    assert f"http://127.0.0.1:{cfg.listen.ops.rsplit(':', 1)[1]}/healthz" in health[2]
    # every COPY source exists and is let through by deploy/Dockerfile.dockerignore
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = {ln[1:].rstrip("/") for ln in ignore if ln.startswith("!")}
    assert "*" in ignore and not {"certs", ".venv", "deploy/federation"} & allowed
    for i, a in ins:
        if i == "COPY" and "--from" not in a:
            for src in a.split()[:-1]:
                assert (ROOT / src).exists() and src.rstrip("/") in allowed, src
    run = " ".join(a for i, a in ins if i == "RUN")
    assert "--constraint /tmp/constraints.txt" in run


def _runtime_closure() -> dict[str, str]:
    """Installed runtime dependencies of traza (no extras), transitively: name -> version."""
    seen: dict[str, str] = {}
    stack = ["traza"]
    while stack:
        for r in md.distribution(stack.pop()).requires or []:
            req = Requirement(r)
            if req.marker and not req.marker.evaluate({"extra": ""}):
                continue
            key = req.name.lower().replace("_", "-")
            if key not in seen:
                seen[key] = md.version(req.name)
                stack.append(req.name)
    return seen


def test_constraints_pin_every_runtime_dependency():
    """The image installs with constraints.txt (the one `make` uses): every package traza pulls in at
    run time is pinned there, at the version the tests run against. (Its direct dependencies' ranges in
    pyproject.toml: tests/cli/test_cli_install.py.)"""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not pinned with =="
            pins[name.lower().replace("_", "-")] = version
    closure = _runtime_closure()
    assert {k: pins.get(k) for k in closure} == closure, "constraints.txt differs from what is installed"


def _unit() -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in (DEPLOY / "traza.service").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        assert current is not None
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit():
    svc = _unit()["Service"]
    want = {
        "Type": "exec", "User": "traza", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/traza", "PrivateTmp": "yes", "ProtectHome": "yes", "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "Restart": "on-failure", "KillSignal": "SIGTERM",
    }
    for key, value in want.items():
        assert svc.get(key, [None])[-1] == value, f"traza.service: {key}={svc.get(key)}"
    assert int(svc["LimitNOFILE"][-1]) >= 4096
    (exec_start,) = svc["ExecStart"]
    argv = shlex.split(exec_start)
    assert Path(argv[0]).is_absolute()
    parsed = _parse_run(argv)
    assert parsed.func is cmd_run and parsed.config == "/etc/traza/node.toml"
    assert _unit()["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies(tmp_path):
    """systemd's own parser accepts every line (it only warns, so any output is a failure)."""
    text = (DEPLOY / "traza.service").read_text(encoding="utf-8")
    exec_start = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))
    unit = tmp_path / "traza.service"
    unit.write_text(text.replace(exec_start.split("=", 1)[1].split()[0], str(TRAZA)), encoding="utf-8")
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                       check=False, env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
