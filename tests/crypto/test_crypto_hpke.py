"""HPKE payload encryption (SPEC §3.2): round trips, tampering, info binding, key files, standard keys."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from gateway.crypto.hpke import (
    ENC_SIZE,
    PUBLIC_KEY_SIZE,
    SUITES,
    DecryptError,
    EncKey,
    check_public_key,
    envelope_info,
    kem_for_suite,
    seal,
    sealed_size,
)

KEMS = list(SUITES)
INFO = envelope_info("0190f1a2-0000-7000-8000-000000000001", "mx", "es")


@pytest.fixture(scope="module", params=KEMS)
def key(request: pytest.FixtureRequest) -> EncKey:
    return EncKey.generate("es/enc/1", request.param)


def test_suites_are_the_spec_strings() -> None:
    assert SUITES == {
        "MLKEM768_X25519": "MLKEM768_X25519/HKDF_SHA256/AES_256_GCM",
        "X25519": "X25519/HKDF_SHA256/AES_256_GCM",
    }
    assert EncKey.generate("es/enc/1").kem == "MLKEM768_X25519"  # default is the PQ hybrid
    for kem, suite in SUITES.items():
        assert kem_for_suite(suite) == kem
    with pytest.raises(ValueError, match="unknown HPKE suite"):
        kem_for_suite("P256/HKDF_SHA256/AES_128_GCM")


def test_envelope_info_layout() -> None:
    assert envelope_info("j-1", "mx", "es") == b"traza/v1|j-1|mx|es"


@pytest.mark.parametrize("plaintext", [b"", b"{}", b'{"a":"' + b"x" * 5000 + b'"}'])
def test_round_trip(key: EncKey, plaintext: bytes) -> None:
    ct = seal(key.kem, key.public_b64(), plaintext, INFO)
    assert len(ct) == sealed_size(key.kem, len(plaintext))
    assert key.open(ct, INFO) == plaintext


def test_public_key_sizes(key: EncKey) -> None:
    raw = base64.b64decode(key.public_b64(), validate=True)
    assert len(raw) == PUBLIC_KEY_SIZE[key.kem]
    assert key.manifest_entry() == {
        "kid": "es/enc/1",
        "use": "enc",
        "kem": key.kem,
        "public_key": key.public_b64(),
    }


def test_sealing_is_randomised(key: EncKey) -> None:
    a = seal(key.kem, key.public_b64(), b"same", INFO)
    b = seal(key.kem, key.public_b64(), b"same", INFO)
    assert a != b
    assert a[: ENC_SIZE[key.kem]] != b[: ENC_SIZE[key.kem]]


def test_every_altered_byte_is_refused(key: EncKey) -> None:
    ct = seal(key.kem, key.public_b64(), b'{"serial_number":"ABC123"}', INFO)
    for i in range(len(ct)):
        for mask in (0x01, 0x80):
            bad = bytearray(ct)
            bad[i] ^= mask
            with pytest.raises(DecryptError):
                key.open(bytes(bad), INFO)


def test_truncated_or_extended_ciphertext_is_refused(key: EncKey) -> None:
    ct = seal(key.kem, key.public_b64(), b"payload", INFO)
    for bad in (ct[:-1], ct + b"\x00", ct[: ENC_SIZE[key.kem]], b"", ct[1:]):
        with pytest.raises(DecryptError):
            key.open(bad, INFO)


@pytest.mark.parametrize(
    "other",
    [
        envelope_info("0190f1a2-0000-7000-8000-000000000002", "mx", "es"),  # another message id
        envelope_info("0190f1a2-0000-7000-8000-000000000001", "co", "es"),  # another origin
        envelope_info("0190f1a2-0000-7000-8000-000000000001", "mx", "it"),  # another recipient
        envelope_info("0190f1a2-0000-7000-8000-000000000001", "es", "mx"),  # swapped
        b"",
    ],
)
def test_wrong_info_is_refused(key: EncKey, other: bytes) -> None:
    ct = seal(key.kem, key.public_b64(), b"payload", INFO)
    with pytest.raises(DecryptError):
        key.open(ct, other)


def test_wrong_key_is_refused(key: EncKey) -> None:
    ct = seal(key.kem, key.public_b64(), b"payload", INFO)
    for kem in KEMS:
        with pytest.raises(DecryptError):
            EncKey.generate("es/enc/2", kem).open(ct, INFO)


def test_private_key_file_round_trip(key: EncKey) -> None:
    data = key.private_bytes()
    doc = json.loads(data)
    assert doc["format"] == "traza-hpke-private-key/v1" and doc["kem"] == key.kem
    assert len(base64.b64decode(doc["secret"], validate=True)) == 32
    loaded = EncKey.from_private_bytes(key.kid, key.kem, data)
    assert loaded.public_b64() == key.public_b64()
    assert loaded.open(seal(key.kem, key.public_b64(), b"x", INFO), INFO) == b"x"
    assert doc["secret"] not in repr(key)


def test_private_key_file_errors_name_the_problem() -> None:
    k = EncKey.generate("es/enc/1", "X25519")
    with pytest.raises(ValueError, match="es/enc/1: encryption key file is for KEM 'X25519'"):
        EncKey.from_private_bytes("es/enc/1", "MLKEM768_X25519", k.private_bytes())
    with pytest.raises(ValueError, match="not traza-hpke-private-key/v1 JSON"):
        EncKey.from_private_bytes("es/enc/1", "X25519", b"-----BEGIN PRIVATE KEY-----")
    with pytest.raises(ValueError, match="format is 'other/v9'"):
        EncKey.from_private_bytes("es/enc/1", "X25519", b'{"format":"other/v9"}')
    doc = json.loads(k.private_bytes())
    doc["secret"] = base64.b64encode(b"short").decode()
    with pytest.raises(ValueError, match="must be 32 bytes, got 5"):
        EncKey.from_private_bytes("es/enc/1", "X25519", json.dumps(doc).encode())
    doc["extra"] = 1
    with pytest.raises(ValueError, match="members"):
        EncKey.from_private_bytes("es/enc/1", "X25519", json.dumps(doc).encode())


def test_bad_public_keys_are_refused_by_name() -> None:
    good = EncKey.generate("es/enc/1").public_b64()
    with pytest.raises(ValueError, match="unknown KEM 'P256'"):
        seal("P256", good, b"x", INFO)
    with pytest.raises(ValueError, match="must be 32 bytes, got 1216"):
        seal("X25519", good, b"x", INFO)
    with pytest.raises(ValueError, match="not standard base64"):
        check_public_key("MLKEM768_X25519", good.rstrip("="))
    # An ML-KEM encapsulation key with an out-of-range coefficient (FIPS 203 modulus check).
    bad = base64.b64encode(b"\xff" * 1184 + b"\x09" * 32).decode()
    with pytest.raises(ValueError, match="not a valid key"):
        check_public_key("MLKEM768_X25519", bad)


def test_keys_are_the_standard_ones() -> None:
    # X-Wing (draft-connolly-cfrg-xwing-kem-08, Appendix C, vector 1): seed -> pk_M || pk_X, 1216 bytes.
    # The manifest public key of that seed must be exactly that public key (here its SHA-256).
    seed = bytes.fromhex("7f9c2ba4e88f827d616045507605853ed73b8093f6efbc88eb1a6eacfa66ef26")
    xw = EncKey("x/enc/1", "MLKEM768_X25519", seed)
    assert hashlib.sha256(xw.public_bytes()).hexdigest() == (
        "2e816deebcd76c5c80d0cd2d174478871658e8e2ff42bc9d4a6e486372e856bb"
    )
    # RFC 7748 section 6.1, Alice's key pair.
    alice = EncKey(
        "x/enc/2", "X25519", bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    )
    assert alice.public_bytes().hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
