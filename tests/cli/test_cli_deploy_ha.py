"""deploy/ for a replicated hub (issue #13, docs/ha.md): `make_federation.py --ha` and the compose overlay
deploy/compose-ha.yaml with a PostgreSQL primary, a synchronous standby and two replicas of latam-hub."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deploy-ha") / "federation"
    r = subprocess.run([sys.executable, str(DEPLOY / "make_federation.py"), "--ha", str(out)],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.fixture(scope="module")
def overlay() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose-ha.yaml").read_text(encoding="utf-8"))
    return doc


def test_ha_generator_gives_latam_hub_two_endpoints_and_a_store_on_the_primary_and_standby(generated):
    manifest = json.loads((generated / "mx" / "manifest.json").read_text())
    hub = next(n for n in manifest["nodes"] if n["id"] == "latam-hub")
    assert [hub["endpoint"], *hub["endpoints"]] == ["https://latam-hub:8443", "https://latam-hub-b:8443"]
    cfg = load_config(generated / "latam-hub" / "node.toml")
    assert cfg.store.url == ("postgresql://traza@pg-primary:5432,pg-standby:5432/traza_latam"
                             "?target_session_attrs=read-write")
    assert cfg.store.blob_dir == "/var/lib/traza-shared"
    assert load_config(generated / "eu-hub" / "node.toml").store.url is None  # only latam-hub is replicated


def test_compose_overlay_runs_two_replicas_of_latam_hub_on_a_primary_with_a_synchronous_standby(overlay, generated):
    base = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    services = overlay["services"]
    assert {"pg-primary", "pg-standby", "latam-hub", "latam-hub-b"} <= set(services)
    a, b = services["latam-hub"], services["latam-hub-b"]
    assert b["hostname"] == "latam-hub-b" and b["image"] == base["services"]["latam-hub"]["image"]
    # one config (same id and keys), each its own data volume, one shared blob volume
    assert "./federation/latam-hub:/etc/traza:ro" in b["volumes"]
    assert "latam-hub-b-data:/var/lib/traza" in b["volumes"]
    assert "latam-shared:/var/lib/traza-shared" in a["volumes"] and "latam-shared:/var/lib/traza-shared" in b["volumes"]
    for replica in (a, b):
        assert replica["depends_on"]["pg-primary"]["condition"] == "service_healthy"
        assert replica["environment"]["PGPASSWORD"].startswith("${TRAZA_DB_PASSWORD")
    primary = " ".join(services["pg-primary"]["command"])
    assert "synchronous_commit=on" in primary and "synchronous_standby_names=pg-standby" in primary
    standby = services["pg-standby"]
    assert standby["depends_on"]["pg-primary"]["condition"] == "service_healthy"
    assert (DEPLOY / "ha" / "standby.sh").is_file() and (DEPLOY / "ha" / "primary-init.sh").is_file()
    assert "pg_basebackup" in (DEPLOY / "ha" / "standby.sh").read_text()
    for s in services.values():
        for p in s.get("ports", []):
            assert str(p).startswith("127.0.0.1:"), p
    for vol in ("latam-hub-b-data", "latam-shared", "pg-primary-data", "pg-standby-data"):
        assert vol in overlay["volumes"]
    # the image pinned to a release
    assert services["pg-primary"]["image"] == services["pg-standby"]["image"]
    assert services["pg-primary"]["image"].split(":")[1].startswith("15.")
