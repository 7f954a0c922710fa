"""The example configs in config/: each validates against keys made by the very `traza pki` and
`traza manifest` commands config/README.md lists, points at the files those commands wrote, and a copy
with one key broken is refused with an error that names the file and the key."""

from __future__ import annotations

import re
import shlex
import shutil
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from adapters import ADAPTERS
from gateway.cli.main import main
from gateway.config import ConfigError, load_config
from gateway.core.manifest import decode_manifest
from gateway.localfed import write_config
from gateway.trust.pki import FederationDir

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
EXAMPLES = sorted(p.name for p in CONFIG.glob("*.toml"))
EXPECTED = {  # file -> (kind in the manifest, adapter, delivery mode)
    "latam-hub.toml": ("hub", "standard", "inbox"),
    "eu-hub.toml": ("hub", "standard", "inbox"),
    "mx.toml": ("national", "mx", "inbox"),
    "es.toml": ("national", "es", "drop"),
}


def readme_commands() -> list[list[str]]:
    """The `traza pki ...` / `traza manifest ...` lines of config/README.md's shell blocks."""
    text = (CONFIG / "README.md").read_text(encoding="utf-8")
    lines = [ln.strip() for block in re.findall(r"```sh\n(.*?)```", text, re.S) for ln in block.splitlines()]
    return [shlex.split(ln) for ln in lines if ln.startswith(("traza pki ", "traza manifest "))]


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project-like folder: certs/ made by the README's commands, config/ copied from the repository."""
    root = tmp_path_factory.mktemp("examples")
    cmds = readme_commands()
    assert [c[:3] for c in cmds[:2]] == [["traza", "pki", "init-federation"], ["traza", "pki", "add-node"]]
    for argv in cmds:
        assert argv[0] == "traza"
        rc = main([str(root / "certs") if a == "certs" else a for a in argv[1:]])
        assert rc == 0, f"config/README.md: `{shlex.join(argv)}` exited {rc}"
    shutil.copytree(CONFIG, root / "config", ignore=shutil.ignore_patterns("data", "drop"))
    return root


def test_the_four_examples_are_there():
    assert set(EXPECTED) <= set(EXAMPLES), f"config/ lacks {set(EXPECTED) - set(EXAMPLES)}"


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_setting_is_commented(name):
    for n, line in enumerate((CONFIG / name).read_text(encoding="utf-8").splitlines(), 1):
        if re.match(r"^\s*[A-Za-z_]+\s*=", line):
            assert "#" in line, f"config/{name}:{n}: {line.strip()!r} has no comment"


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_validates_and_points_at_the_pki_files(fed, name):
    cfg = load_config(fed / "config" / name)
    node = Path(name).stem
    assert cfg.node.id == node
    fd = FederationDir(fed / "certs")
    files = fd.node_files(node)
    assert cfg.resolve(cfg.trust.anchor).resolve() == fd.anchor_path.resolve()
    assert cfg.resolve(cfg.trust.manifest).resolve() == (fd.published_dir / "manifest.json").resolve()
    want = {"sig": files.sig_key, "enc": files.enc_key, "audit": files.audit_key, "tls_cert": files.tls_cert,
            "tls_key": files.tls_key, "local_ca": files.local_ca}
    for key, path in want.items():
        assert cfg.resolve(getattr(cfg.keys, key)).resolve() == path.resolve(), f"{name}: keys.{key}"
    for role in ("system", "operator", "auditor"):
        cert, key = files.clients[f"{role}:default"]
        assert cfg.resolve(getattr(cfg.client, f"{role}_cert")).resolve() == cert.resolve()
        assert cfg.resolve(getattr(cfg.client, f"{role}_key")).resolve() == key.resolve()
    # the data folders stay inside config/ (ignored by config/.gitignore)
    assert cfg.resolve(cfg.node.data_dir).resolve().is_relative_to((fed / "config").resolve())
    # the peer listener is the endpoint the manifest publishes
    manifest = decode_manifest((fd.published_dir / "manifest.json").read_bytes())
    entry = next(n for n in manifest.nodes if n.id == node)
    ep = urlsplit(entry.endpoint)
    host, port = cfg.listen.peer.rsplit(":", 1)
    assert (ep.hostname, ep.port) == (host, int(port)), f"{name}: listen.peer vs endpoint {entry.endpoint}"
    ports = [int(a.rsplit(":", 1)[1]) for a in (cfg.listen.peer, cfg.listen.local, cfg.listen.ops)]
    assert len(set(ports)) == 3
    assert cfg.adapter.name in ADAPTERS
    if name in EXPECTED:
        kind, adapter, mode = EXPECTED[name]
        assert (entry.kind, cfg.adapter.name, cfg.delivery.mode) == (kind, adapter, mode)


def test_examples_use_distinct_ports_and_the_manifest_verifies(fed):
    seen: dict[int, str] = {}
    for name in EXAMPLES:
        cfg = load_config(fed / "config" / name)
        for key in ("peer", "local", "ops"):
            port = int(getattr(cfg.listen, key).rsplit(":", 1)[1])
            assert port not in seen, f"{name}: listen.{key} port {port} is also {seen[port]}"
            seen[port] = f"{name} listen.{key}"
    res = FederationDir(fed / "certs").verify(now=time.time())
    assert res.trusted.valid >= res.trusted.threshold == 2
    assert {n.id for n in res.federation.manifest.nodes} == {Path(n).stem for n in EXAMPLES}


def _set(section: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def f(d: dict[str, Any]) -> None:
        d.setdefault(section, {})[key] = value
    return f


def _drop(section: str, key: str) -> Callable[[dict[str, Any]], None]:
    def f(d: dict[str, Any]) -> None:
        del d[section][key]
    return f


def _delivery(values: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def f(d: dict[str, Any]) -> None:
        d["delivery"] = values
    return f


BREAKAGES: dict[str, tuple[Callable[[dict[str, Any]], None], list[str]]] = {
    "unknown key": (_set("limits", "max_bath", 1), ["limits", "max_bath"]),
    "unknown section": (_set("extra", "x", 1), ["extra"]),
    "listen on a host name": (_set("listen", "peer", "mx:8443"), ["listen.peer"]),
    "listen without a port": (_set("listen", "ops", "127.0.0.1"), ["listen.ops"]),
    "required key missing": (_drop("listen", "local"), ["listen", "local"]),
    "webhook without url": (_delivery({"mode": "webhook"}), ["delivery.webhook_url"]),
    "webhook over plain http": (_delivery({"mode": "webhook", "webhook_url": "http://siaf.example.mx/traza"}),
                                ["delivery.webhook_url"]),
    "drop without folder": (_delivery({"mode": "drop"}), ["delivery.drop_dir"]),
    "poll interval out of range": (_set("delivery", "poll_seconds", 0.0), ["delivery.poll_seconds"]),
    "unknown delivery mode": (_delivery({"mode": "email"}), ["delivery.mode"]),
    "batch over the limit": (_set("limits", "max_batch", 257), ["limits.max_batch"]),
    "wrong type": (_set("trust", "manifest_poll_seconds", "30"), ["trust.manifest_poll_seconds"]),
    "default ttl over max": (_set("limits", "default_ttl", 2592001), ["limits.default_ttl"]),
    "key file missing": (_set("keys", "sig", "../certs/nodes/nowhere/keys/sig-1.key"), ["keys.sig"]),
    "bad node id": (_set("node", "id", "MX"), ["node.id"]),
    "no connections allowed": (_set("limits", "max_connections", 0), ["limits.max_connections", ">= 1"]),
    "zero handshake timeout": (_set("limits", "handshake_timeout", 0), ["limits.handshake_timeout", "> 0"]),
    "header timeout too long": (_set("limits", "header_timeout", 301.0), ["limits.header_timeout", "<= 300"]),
    "negative body timeout": (_set("limits", "body_timeout", -1.0), ["limits.body_timeout"]),
    "keep-alive timeout too long": (_set("limits", "keepalive_timeout", 3601.0), ["limits.keepalive_timeout"]),
    "retention for an unknown type": (_set("retention", "types", {"sms": 30}), ["retention.types", "'sms'",
                                                                              "not a message type"]),
    "negative retention": (_set("retention", "days", -1), ["retention.days", ">= 0"]),
    "retention pass never": (_set("retention", "interval", 0), ["retention.interval"]),
}


@pytest.mark.parametrize("name", EXAMPLES)
def test_rewritten_copy_still_validates(fed, name):
    """The control for the broken copies below: the same data written back without a change loads."""
    data = tomllib.loads((CONFIG / name).read_text(encoding="utf-8"))
    path = fed / "config" / f"copy-{name}"
    write_config(path, data)
    assert load_config(path).node.id == Path(name).stem


@pytest.mark.parametrize("what", sorted(BREAKAGES))
@pytest.mark.parametrize("name", EXAMPLES)
def test_broken_copy_is_refused_naming_file_and_key(fed, name, what):
    mutate, expected = BREAKAGES[what]
    data = tomllib.loads((CONFIG / name).read_text(encoding="utf-8"))
    mutate(data)
    path = fed / "config" / f"broken-{re.sub(r'[^a-z]+', '-', what)}-{name}"
    write_config(path, data)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: "), msg
    for part in expected:
        assert part in msg, f"{what}: {part!r} not in {msg!r}"
