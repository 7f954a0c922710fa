"""Attacks on the TLS layer of the peer boundary (SPEC §4, issue #10 items 4): weak key exchange groups,
RSA node certificates, and a Mozilla "modern" scan of a running node's peer listener.

Real handshakes on 127.0.0.1 with the project's own contexts; the raw clients force their group lists
with the same mechanism the node uses (``tls.set_groups``)."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
from pathlib import Path

import pytest
from kit.tlskit import CA, make_ca, make_leaf, rsa_key, serve_once, talk, write_pair

from gateway.config import load_config
from gateway.crypto import tls
from gateway.crypto.tls import client_context, server_context
from gateway.demo.procs import Federation
from gateway.localfed import NodeSpec, build
from gateway.node import Node
from gateway.transport.peer import PeerClient, PeerUnavailable
from gateway.trust.pki import FederationDir

WEAK_GROUPS = ["X448", "P-521", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192"]


@pytest.fixture(scope="module")
def ca() -> CA:
    return make_ca("traza-test federation TLS CA")


@pytest.fixture(scope="module")
def pair(ca, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    out = {}
    for name in ("mx", "es"):
        cert, key = make_leaf(ca, [f"urn:traza:node:{name}"])
        out[name] = write_pair(tmp, name, cert, key)
    return out


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> BaseException | None:
    """None when client and server complete a handshake and exchange data; else the client's error."""
    port, res = serve_once(server)
    try:
        version, _server, answer = talk(client, port)
        assert version == "TLSv1.3" and answer == b"hello es"
    except (ssl.SSLError, OSError) as exc:
        res.done.wait(5)
        return exc
    assert res.done.wait(5) and res.error is None, res.error
    return None


@pytest.mark.parametrize("group", WEAK_GROUPS)
def test_weak_key_exchange_group_is_not_negotiated_by_the_server(ca, pair, group):
    """A client offering only X448, P-521 or a finite-field group finds no group in common."""
    client = client_context(*pair["es"], [ca.pem])
    tls.set_groups(client, [group])
    err = handshake(server_context(*pair["mx"], [ca.pem]), client)
    assert isinstance(err, ssl.SSLError), f"{group} was negotiated"


@pytest.mark.parametrize("group", WEAK_GROUPS)
def test_weak_key_exchange_group_is_not_negotiated_by_the_client(ca, pair, group):
    """A server accepting only a weak group finds no group in common with our client."""
    server = server_context(*pair["mx"], [ca.pem])
    tls.set_groups(server, [group])
    err = handshake(server, client_context(*pair["es"], [ca.pem]))
    assert err is not None, f"{group} was negotiated"


@pytest.mark.parametrize("group", tls.TLS_GROUPS)
def test_modern_groups_are_negotiated(ca, pair, group):
    server = server_context(*pair["mx"], [ca.pem])
    client = client_context(*pair["es"], [ca.pem])
    tls.set_groups(client, [group])
    assert handshake(server, client) is None
    server = server_context(*pair["mx"], [ca.pem])
    tls.set_groups(server, [group])
    assert handshake(server, client_context(*pair["es"], [ca.pem])) is None


def test_groups_are_the_modern_list():
    assert tls.TLS_GROUPS[-3:] == ("X25519", "P-256", "P-384")
    assert ("X25519MLKEM768" in tls.TLS_GROUPS) == (ssl.OPENSSL_VERSION_INFO >= (3, 5))


def test_group_list_the_linked_openssl_refuses_fails_loudly(ca, pair):
    ctx = client_context(*pair["es"], [ca.pem])
    with pytest.raises(tls.TLSSetupError, match="refused the TLS groups"):
        tls.set_groups(ctx, ["no-such-group"])


def test_group_setting_refuses_a_context_it_does_not_recognise():
    """set_groups checks that the SSL_CTX it reached is the context's (TLS 1.3 only, same options)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # TLS 1.2 allowed: not one of ours
    with pytest.raises(tls.TLSSetupError, match="does not match"):
        tls.set_groups(ctx)


async def test_client_with_an_rsa_certificate_from_the_federation_ca_is_refused(tmp_path):
    """An RSA certificate signed by the federation CA, naming a real node: the peer listener refuses it
    (SPEC §4: node certificates are ECDSA P-256) and nothing is received."""
    built = build(tmp_path, [NodeSpec("eu-hub", "hub", "NL"), NodeSpec("es", "national", "ES", hub="eu-hub")])
    fd = FederationDir(tmp_path / "pki")
    ca = CA.from_files(fd.ca_cert_path, tmp_path / "pki" / "ca" / "ca.key")
    cert, key = make_leaf(ca, ["urn:traza:node:es"], key=rsa_key())
    c, k = write_pair(tmp_path / "rogue", "es-rsa", cert, key)
    hub = Node(load_config(built["eu-hub"].config))
    await hub.start()
    cl = PeerClient("eu-hub", f"https://127.0.0.1:{built['eu-hub'].peer_port}",
                    client_context(c, k, [ca.pem]), timeout=5)
    try:
        try:
            status, data, _ = await cl.request("POST", "/v1/envelopes", body=b'{"envelopes":[]}')
        except PeerUnavailable:
            status, data = -1, b""  # refused right after the handshake
        assert status in (-1, 403), (status, data)
    finally:
        await cl.close()
        await hub.stop()


# --- sslyze, Mozilla "modern", against a running node -----------------------------------------------------

SSLYZE = Path(__file__).resolve().parents[2] / ".venv-sslyze" / "bin" / "python"


def sslyze(fed: Federation, *extra: str) -> tuple[dict[str, str], dict]:
    """Run sslyze (its own venv, made by `make venv`: it pins a cryptography older than ours) against
    eu-hub's peer listener, presenting es's certificate (the listener answers nobody without one).
    Returns the Mozilla "modern" findings ({check: message}, empty when compliant) and the scan JSON."""
    if not SSLYZE.exists():
        why = f"{SSLYZE} is missing (make venv installs sslyze there)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    f = FederationDir(fed.root / "pki").node_files("es")
    out = fed.root / f"sslyze-{len(extra)}.json"
    target = f"127.0.0.1:{fed.nodes['eu-hub'].peer_port}"
    r = subprocess.run([str(SSLYZE), "-m", "sslyze", "--mozilla_config=modern", "--cert", str(f.tls_cert),
                        "--key", str(f.tls_key), "--json_out", str(out), *extra, target],
                       capture_output=True, text=True, timeout=300, check=False)
    report = r.stdout.split("COMPLIANCE AGAINST TLS CONFIGURATION", 1)
    assert len(report) == 2, r.stdout[-3000:] + r.stderr[-3000:]
    compliance = report[1]
    findings = dict(re.findall(r"^\s+\* (\w+): (.*)$", compliance, re.M))
    if findings:
        assert "FAILED - Not compliant." in compliance and r.returncode != 0, compliance
    else:
        assert f"{target}: OK - Compliant." in compliance and r.returncode == 0, compliance
    return findings, json.loads(out.read_text())


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    fed = Federation(tmp_path_factory.mktemp("sslyze"), [NodeSpec("eu-hub", "hub", "NL"),
                                                          NodeSpec("es", "national", "ES", hub="eu-hub")],
                     limits={"checkpoint_interval": 60.0})
    fed.start("eu-hub")
    try:
        yield fed
    finally:
        fed.stop_all()


def test_sslyze_finds_the_peer_listener_mozilla_modern_but_for_the_private_ca(running):
    """The only finding is certificate_path_validation: the node certificate chains to the federation's
    own CA, which no public trust store (Mozilla, Apple, ...) holds, by design. With that CA given to
    sslyze (--certinfo_ca_file) the listener is fully compliant."""
    findings, scan = sslyze(running)
    assert set(findings) == {"certificate_path_validation"}, findings
    result = scan["server_scan_results"][0]["scan_result"]
    assert [c["name"] for c in result["elliptic_curves"]["result"]["supported_curves"]] == [
        "X25519", "secp256r1", "secp384r1"]
    for old in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1", "tls_1_2"):
        assert result[f"{old}_cipher_suites"]["result"]["accepted_cipher_suites"] == [], old
    ca = running.root / "pki" / "ca" / "ca.pem"
    findings, _ = sslyze(running, "--certinfo_ca_file", str(ca))
    assert findings == {}, findings
