"""A forged evidence bundle that brings its own keys (audit finding: verify-bundle trusted whatever keys the
file carried). The attacker rewrites es's entry about the message, rebuilds a tree of made-up entries
around it, signs the checkpoint with a key of their own that merely carries es's key NAME
(``traza/traza-test/es``) and adds a "cosignature" under a witness's name. Self-consistent, so
``verify-bundle`` alone can only say the keys are the file's own; pinned with the manifest or
``--log-key`` it is refused, naming the key and the node. A genuine bundle passes when pinned."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from audit.test_audit_bundle import _scenario
from kit.federation import make_federation

from gateway.audit.bundle import build_bundle
from gateway.audit.reader import AuditReader
from gateway.audit.trustkeys import KeyNotTrusted, Pins, parse_log_key, vkey
from gateway.cli.main import main
from gateway.core.canonical import canonical_bytes
from gateway.core.manifest import Federation, decode_manifest
from gateway.core.merkle import leaf_hash, node_hash
from gateway.core.note import Note, checkpoint_text, cosign, key_id, sign_ed25519
from gateway.crypto.keys import Ed25519Key, SigningKey
from gateway.trust.trusted import encode_signatures, sign_manifest


@pytest.fixture
def tf() -> Any:
    return make_federation(now=time.time())


@pytest.fixture
def genuine(make_node, tf, tmp_path) -> tuple[Path, Any]:
    """es's real bundle of the message (its log key and its witnesses it and eu-hub are the manifest's)."""
    es, jti, _ = _scenario(make_node, signers=tf.signers, audit=tf.audit, witnesses=("it", "eu-hub"))
    path = tmp_path / "genuine.json"
    path.write_text(json.dumps(msgspec.to_builtins(build_bundle(AuditReader(es.db), jti))))
    return path, es


def _manifest(tf: Any, where: Path, *authorities: str) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    raw = canonical_bytes(tf.manifest)
    (where / "manifest.json").write_bytes(raw)
    (where / "manifest.sig").write_bytes(
        encode_signatures([sign_manifest(raw, f"auth/{a}/1", tf.authorities[a]) for a in authorities or ("eu", "mx")]))
    return where / "manifest.json"


def _mth(data: list[bytes]) -> bytes:
    if len(data) == 1:
        return leaf_hash(data[0])
    k = 1
    while k * 2 < len(data):
        k *= 2
    return node_hash(_mth(data[:k]), _mth(data[k:]))


def _path(m: int, data: list[bytes]) -> list[bytes]:
    if len(data) == 1:
        return []
    k = 1
    while k * 2 < len(data):
        k *= 2
    return [*_path(m, data[:k]), _mth(data[k:])] if m < k else [*_path(m - k, data[k:]), _mth(data[:k])]


def forge(genuine: Path, out: Path, *, log_key: Ed25519Key | None = None) -> tuple[Path, Ed25519Key, Ed25519Key]:
    """The audit's forgery (/tmp/audit-c/forge_bundle.py): es's delivery entry rewritten as a rejection, the
    tree rebuilt, the checkpoint signed by ``log_key`` (a stranger's by default) under es's key name, and a
    stranger's "cosignature" under witness it's name."""
    b = json.loads(genuine.read_text())
    size = int(b["checkpoint"].split("\n")[1])
    leaves = {}
    for e in b["entries"]:
        v = json.loads(base64.b64decode(e["entry"]))
        if v["event"] == "envelope.delivered":
            v.update(event="envelope.rejected", code="policy_denied")
        e["entry"] = base64.b64encode(canonical_bytes(v)).decode()
        leaves[e["index"]] = canonical_bytes(v)
    data = [leaves.get(i, f"made-up entry {i}".encode()) for i in range(size)]
    for e in b["entries"]:
        e["proof"] = [base64.b64encode(h).decode() for h in _path(e["index"], data)]
    logk, wk = log_key or Ed25519Key.generate(), Ed25519Key.generate()
    origin, wname = "traza/traza-test/es", "traza/traza-test/it"
    text = checkpoint_text(origin, size, _mth(data))
    sigs = (sign_ed25519(text, origin, logk.public_raw, logk.sign), cosign(text, wname, wk.public_raw, int(time.time()), wk.sign))
    b["checkpoint"] = Note(text, sigs).encode()
    b["keys"]["log"] = {"name": origin, "public_key": logk.public_b64}
    b["keys"]["witnesses"] = [{"name": wname, "public_key": wk.public_b64}]
    out.write_text(json.dumps(b))
    return out, logk, wk


def test_a_bundle_re_signed_by_a_strangers_key_shows_that_key_as_from_the_bundle_when_unpinned(genuine, tmp_path, capsys):
    forged, logk, wk = forge(genuine[0], tmp_path / "forged.json")
    assert main(["audit", "verify-bundle", str(forged)]) == 0  # self-consistent: all the file can prove
    out = capsys.readouterr().out
    kid = key_id("traza/traza-test/es", 0x01, logk.public_raw).hex()
    assert f"log key traza/traza-test/es: key id {kid}, {logk.public_b64} (from the bundle, not pinned)" in out, out
    assert f"witness key traza/traza-test/it: key id {key_id('traza/traza-test/it', 0x04, wk.public_raw).hex()}, " \
           f"{wk.public_b64} (from the bundle, not pinned)" in out, out
    assert "every key was taken from the bundle itself, not pinned: this proves the file is internally consistent" in out
    assert main(["audit", "verify-bundle", "--json", str(forged)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["pinned"] is False and doc["manifest"] is None
    assert {"role": "log", "name": "traza/traza-test/es", "key_id": kid, "public_key": logk.public_b64,
            "source": "from the bundle, not pinned"} in doc["keys"], doc["keys"]
    assert {k["role"] for k in doc["keys"]} == {"log", "witness", "signing"}


def test_a_bundle_re_signed_by_a_strangers_key_is_refused_when_pinned_with_the_manifest(genuine, tf, tmp_path, capsys):
    forged, logk, _ = forge(genuine[0], tmp_path / "forged.json")
    manifest = _manifest(tf, tmp_path / "fed")
    assert main(["audit", "verify-bundle", "--manifest", str(manifest), str(forged)]) == 1
    err = capsys.readouterr().err
    assert f"log key traza/traza-test/es (key id {key_id('traza/traza-test/es', 0x01, logk.public_raw).hex()})" in err
    assert "is not an audit key of node es in the manifest traza-test version 1" in err, err
    # also against a trust anchor holding the authorities
    anchor = tmp_path / "trust-anchor.json"
    anchor.write_text(json.dumps({"federation": "traza-test", "threshold": 2, "keys": tf.manifest["authorities"]["keys"]}))
    assert main(["audit", "verify-bundle", "--manifest", str(manifest), "--anchor", str(anchor), str(forged)]) == 1
    assert "is not an audit key of node es" in capsys.readouterr().err


def test_a_bundle_re_signed_by_a_strangers_key_is_refused_when_the_log_key_is_pinned(genuine, tf, tmp_path, capsys):
    forged, _, _ = forge(genuine[0], tmp_path / "forged.json")
    real = tf.audit["es"]
    for pin in (real.public_b64, vkey("traza/traza-test/es", real.public_raw)):
        assert main(["audit", "verify-bundle", "--log-key", pin, str(forged)]) == 1
        err = capsys.readouterr().err
        assert "of node es is not the key pinned with --log-key" in err and pin in err, err


def test_an_insider_with_the_log_key_cannot_pass_off_a_fake_cosignature_when_pinned(genuine, tf, tmp_path, capsys):
    """Whoever holds es's audit key can re-sign history; the witnesses stop that, but only if their keys
    are the manifest's: a "cosignature" by a stranger under witness it's name is refused."""
    forged, _, wk = forge(genuine[0], tmp_path / "forged.json", log_key=tf.audit["es"])
    assert main(["audit", "verify-bundle", "--log-key", tf.audit["es"].public_b64, str(forged)]) == 0
    assert "witness keys were taken from the bundle itself, not pinned" in capsys.readouterr().out
    assert main(["audit", "verify-bundle", "--manifest", str(_manifest(tf, tmp_path / "fed")), str(forged)]) == 1
    err = capsys.readouterr().err
    assert f"witness key traza/traza-test/it (key id {key_id('traza/traza-test/it', 0x04, wk.public_raw).hex()})" in err
    assert "is not an audit key of node it in the manifest" in err, err


def test_a_genuine_bundle_passes_when_pinned(genuine, tf, tmp_path, capsys):
    path, _ = genuine
    manifest = _manifest(tf, tmp_path / "fed")
    real = tf.audit["es"]
    assert main(["audit", "verify-bundle", "--manifest", str(manifest), "--log-key",
                 vkey("traza/traza-test/es", real.public_raw), str(path)]) == 0
    out = capsys.readouterr().out
    assert f"keys pinned with {manifest}: manifest traza-test version 1, signed by 2 of its own authorities" in out
    assert (f"log key traza/traza-test/es: key id {key_id('traza/traza-test/es', 0x01, real.public_raw).hex()}, "
            f"{real.public_b64} (pinned with --log-key; es/audit/1 in the manifest traza-test version 1)") in out, out
    assert "witness key traza/traza-test/eu-hub: " in out and "(eu-hub/audit/1 in the manifest" in out
    assert "signing key mx/sig/1: JWK thumbprint " in out and "not pinned" not in out, out
    assert main(["audit", "verify-bundle", "--json", "--manifest", str(manifest), str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["pinned"] is True and doc["manifest"]["version"] == 1
    assert all("in the manifest traza-test version 1" in k["source"] for k in doc["keys"]), doc["keys"]


@pytest.mark.parametrize(("args", "message"), [
    (["--manifest", "{missing}"], "--manifest {missing}: No such file or directory"),
    (["--manifest", "{garbage}"], "--manifest {garbage}: manifest.json: "),
    (["--manifest", "{one_sig}"], "1 valid signature(s) from the trusted authorities, threshold is 2"),
    (["--anchor", "{anchor}"], "--anchor needs --manifest"),
    (["--log-key", "not base64!"], "--log-key 'not base64!': key is not standard base64"),
    (["--log-key", "AAAA"], "is 3 bytes, an Ed25519 public key is 32"),
    (["--log-key", "traza/traza-test/es+00000000+{b64}"], "key id 00000000 is not the key id of traza/traza-test/es"),
    (["--log-key", "a+b"], "is neither a base64 key nor a vkey NAME+KEYID+BASE64"),
])
def test_bad_pinning_input_is_bad_usage_naming_the_problem(genuine, tf, tmp_path, capsys, args, message):
    garbage = tmp_path / "garbage" / "manifest.json"
    garbage.parent.mkdir()
    garbage.write_text("{not json")
    one_sig = _manifest(tf, tmp_path / "one", "eu")
    anchor = tmp_path / "anchor.json"
    anchor.write_text("{}")
    b64 = base64.b64encode(b"\x01" + tf.audit["es"].public_raw).decode()
    names = {"missing": tmp_path / "nope.json", "garbage": garbage, "one_sig": one_sig, "anchor": anchor, "b64": b64}
    argv = [a.format(**names) for a in args]
    assert main(["audit", "verify-bundle", *argv, str(genuine[0])]) == 2
    err = capsys.readouterr().err
    assert message.format(**names) in err, err


def test_manifest_pins_signing_keys_by_kid_key_and_revocation(tf):
    fed = Federation(decode_manifest(canonical_bytes(tf.manifest)))
    pins = Pins(federation=fed, manifest="manifest traza-test version 1")
    mx = tf.signers["mx"]
    assert pins.signing_key(mx.kid, mx.alg, mx.public_jwk()).source == "in the manifest traza-test version 1"
    stranger = SigningKey.generate("mx/sig/1", mx.alg)
    with pytest.raises(KeyNotTrusted, match=r"signing key mx/sig/1 .* is not the key of node mx named mx/sig/1"):
        pins.signing_key(stranger.kid, stranger.alg, stranger.public_jwk())
    with pytest.raises(KeyNotTrusted, match=r"signing key mx/sig/9 .* is not a signing key of node mx"):
        pins.signing_key("mx/sig/9", mx.alg, mx.public_jwk())
    tf.manifest["revoked"]["kids"] = ["mx/sig/1", "es/audit/1"]
    revoked = Pins(federation=Federation(decode_manifest(canonical_bytes(tf.manifest))), manifest="m")
    with pytest.raises(KeyNotTrusted, match="signing key mx/sig/1 of node mx is revoked in the m"):
        revoked.signing_key(mx.kid, mx.alg, mx.public_jwk())
    with pytest.raises(KeyNotTrusted, match="is es/audit/1 of node es, revoked in the m"):
        revoked.log_key("es", "traza/traza-test/es", tf.audit["es"].public_raw)


def test_log_key_pins_round_trip_as_vkeys():
    k = Ed25519Key.generate()
    pin = parse_log_key(vkey("traza/traza-test/es", k.public_raw))
    assert (pin.name, pin.public_key) == ("traza/traza-test/es", k.public_raw)
    assert parse_log_key(k.public_b64) == type(pin)(k.public_raw)
