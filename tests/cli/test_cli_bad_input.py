"""Bad input to the node verbs (`traza send`, `traza run`) through the real command: a body file that is
not strict JSON (SPEC §3.4), a config that is not UTF-8, a folder, a port out of range, a certificate path
that is a folder. Each exits 2 (bad usage, SPEC §10) naming the file, the key and the reason, never with
a traceback. No node is started: every fault is found before one would listen or be called."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.localfed import NodeSpec, build, write_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("badinput")
    nodes = build(root, [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub")])
    return nodes["mx"].config


def traza(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli.main", *map(str, args)], capture_output=True,
                          text=True, check=False, cwd=ROOT, timeout=120)


def refused(r: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    for part in parts:
        assert part in r.stderr, f"{part!r} not in {r.stderr!r}"


def send(config: Path, body: Path) -> subprocess.CompletedProcess[str]:
    return traza("send", "--config", config, "--to", "es", "--type", "notice", body)


# --- traza send BODY.json: strict JSON ----------------------------------------------------------------


def test_send_refuses_a_body_that_repeats_a_member_name(config, tmp_path):
    """json.loads kept the last `title` silently and the message went out."""
    body = tmp_path / "dupkey.json"
    body.write_bytes(b'{"title": "first", "title": "second", "text": "x"}')
    refused(send(config, body), f"{body}: ", "repeats the member name", "title")


def test_send_refuses_a_body_that_is_not_utf8(config, tmp_path):
    """json.loads read a UTF-16 file (with its BOM) and sent it re-encoded."""
    body = tmp_path / "utf16.json"
    body.write_bytes('{"title": "t", "text": "x"}'.encode("utf-16"))
    refused(send(config, body), f"{body}: ", "not UTF-8")


def test_send_refuses_a_body_with_an_integer_beyond_2_53(config, tmp_path):
    body = tmp_path / "big.json"
    body.write_bytes(b'{"title": "t", "text": "x", "information_accuracy": 9007199254740993}')
    refused(send(config, body), f"{body}: ", "outside ±2^53")


# --- configs -----------------------------------------------------------------------------------------


def _copy(config: Path, tmp_path: Path, section: str, key: str, value: object) -> Path:
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    data[section][key] = value
    path = tmp_path / f"{section}-{key}.toml"
    write_config(path, data)
    return path


@pytest.mark.parametrize("verb", ["run", "send", "status"])
def test_a_config_that_is_not_utf8_is_bad_usage_not_a_unicode_traceback(config, tmp_path, verb):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe" + config.read_bytes())
    args = ["--to", "es", "--type", "notice", str(tmp_path / "body.json")] if verb == "send" else []
    refused(traza(verb, "--config", path, *args), f"{path}: not UTF-8")


@pytest.mark.parametrize("verb", ["run", "status"])
def test_a_config_that_is_a_folder_is_bad_usage_not_is_a_directory_traceback(tmp_path, verb):
    refused(traza(verb, "--config", tmp_path), f"{tmp_path}: is a directory, not a config file")


@pytest.mark.parametrize(("listener", "addr", "port"), [("peer", "127.0.0.1:99999", "99999"),
                                                         ("ops", "[::1]:65536", "65536"),
                                                         ("local", "127.0.0.1:0", "0")])
def test_a_listen_port_outside_1_65535_is_refused_by_the_config_check_not_an_overflow_crash(
        config, tmp_path, listener, addr, port):
    """`listen.peer = "127.0.0.1:99999"` passed the config check; the node then died of OverflowError."""
    path = _copy(config, tmp_path, "listen", listener, addr)
    refused(traza("run", "--config", path), f"{path}: listen.{listener}: port {port} is outside 1..65535")


def test_a_certificate_path_that_is_a_folder_is_named_a_folder_not_missing(config, tmp_path):
    path = _copy(config, tmp_path, "keys", "tls_cert", str(tmp_path))
    refused(traza("run", "--config", path), f"{path}: keys.tls_cert: {tmp_path} is a directory, not a file")
