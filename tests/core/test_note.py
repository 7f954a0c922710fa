"""C2SP signed notes, checkpoints, cosignatures and the tlog-witness request body."""

from __future__ import annotations

import base64
import functools

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import note as n
from gateway.core.b64 import b64_encode
from gateway.core.merkle import leaf_hash
from gateway.crypto.keys import Ed25519Key, ed25519_verify

# golang.org/x/mod/sumdb/note note_test.go (BSD-3-Clause): the PeterNeumann key and signed note.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"

# c2sp.org/tlog-cosignature example (its witness key is not published: only the layout is checked).
C2SP_COSIGNED = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)


def _verifier(pub: bytes):
    return functools.partial(ed25519_verify, pub)


def test_go_reference_vector_key_id_signature_and_verification():
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])[1:]
    vkey_raw = base64.b64decode(GO_VKEY.split("+", 2)[2])
    assert vkey_raw[0] == n.SIG_ED25519
    pub = vkey_raw[1:]
    assert n.key_id("PeterNeumann", n.SIG_ED25519, pub).hex() == "c74f20a3"
    priv = Ed25519PrivateKey.from_private_bytes(seed)
    sig = n.sign_ed25519(GO_TEXT, "PeterNeumann", pub, priv.sign)
    assert sig.line() == GO_SIG
    note = n.parse_note(GO_TEXT + "\n" + GO_SIG)
    assert note.text == GO_TEXT and note.encode() == GO_TEXT + "\n" + GO_SIG
    v = n.NoteVerifier.ed25519("PeterNeumann", pub, functools.partial(ed25519_verify, pub))
    assert n.verify_note(note, [v]) == [sig]
    tampered = n.parse_note(GO_TEXT.replace("answer", "Answer") + "\n" + GO_SIG)
    with pytest.raises(n.NoteError, match="does not verify"):
        n.verify_note(tampered, [v])


def test_c2sp_cosignature_layout():
    note = n.parse_note(C2SP_COSIGNED)
    cp = n.parse_checkpoint_text(note.text)
    assert (cp.origin, cp.size) == ("example.com/behind-the-sofa", 20852163)
    w = note.signatures[1]
    assert w.name == "witness.example.com/w1" and len(w.signature) == 72
    assert n.cosignature_timestamp(w) == 1679315147  # the spec's example "time 1679315147"


def test_unknown_keys_are_ignored_but_one_trusted_signature_is_required():
    k1, k2 = Ed25519Key.generate(), Ed25519Key.generate()
    text = n.checkpoint_text("traza/demo/es", 3, leaf_hash(b"x"))
    s1 = n.sign_ed25519(text, "traza/demo/es", k1.public_raw, k1.sign)
    s2 = n.sign_ed25519(text, "other/log", k2.public_raw, k2.sign)
    note = n.parse_note(n.Note(text, (s2, s1)).encode())
    v1 = n.NoteVerifier.ed25519("traza/demo/es", k1.public_raw, _verifier(k1.public_raw))
    assert n.verify_note(note, [v1]) == [s1]
    with pytest.raises(n.NoteError, match="no signature from a trusted key"):
        n.verify_note(n.Note(text, (s2,)), [v1])
    # same name, another key: different key id, so ignored -> no trusted signature
    v_other = n.NoteVerifier.ed25519("traza/demo/es", k2.public_raw, _verifier(k2.public_raw))
    with pytest.raises(n.NoteError, match="no signature from a trusted key"):
        n.verify_note(note, [v_other])


def test_cosignature_roundtrip_and_domain_separation():
    log, wit = Ed25519Key.generate(), Ed25519Key.generate()
    text = n.checkpoint_text("traza/demo/mx", 10, leaf_hash(b"r"))
    logsig = n.sign_ed25519(text, "traza/demo/mx", log.public_raw, log.sign)
    co = n.cosign(text, "traza/demo/es", wit.public_raw, 1_700_000_000, wit.sign)
    assert co.key_id == n.key_id("traza/demo/es", 0x04, wit.public_raw)
    note = n.parse_note(n.Note(text, (logsig, co)).encode())
    wv = n.NoteVerifier.cosignature("traza/demo/es", wit.public_raw, _verifier(wit.public_raw))
    assert n.verify_note(note, [wv]) == [co]
    assert n.cosignature_timestamp(co) == 1_700_000_000
    # the same key as a plain note signer (type 0x01) has another key id: the cosignature is not one
    plain = n.NoteVerifier.ed25519("traza/demo/es", wit.public_raw, _verifier(wit.public_raw))
    with pytest.raises(n.NoteError):
        n.verify_note(note, [plain])
    # changing the timestamp breaks it
    forged = n.NoteSignature(co.name, co.key_id, (1_700_000_001).to_bytes(8, "big") + co.signature[8:])
    assert not wv.check(text, forged)


@pytest.mark.parametrize(
    "bad",
    [
        "no trailing newline",
        "text\n— k AAAAAAA=\n",  # no blank line
        "text\n\n",  # no signatures
        "text\n\n— k AAAA\n",  # too short
        "text\n\nk AAAAAAA=\n",  # no em dash
        "text\n\n— k+x AAAAAAA=\n",  # plus in name
        "text\n\n— k AAAAAAA\n",  # missing padding
        "te\txt\n\n— k AAAAAAA=\n",  # control character
        "text\n\n— k  AAAAAAA=\n",  # two spaces
    ],
)
def test_parse_note_is_strict(bad: str):
    with pytest.raises(n.NoteError):
        n.parse_note(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "origin\n01\n" + b64_encode(b"\0" * 32) + "\n",  # leading zero
        "origin\n1\n" + b64_encode(b"\0" * 31) + "\n",  # short root
        "origin\n1\n",  # missing root
        "origin\n-1\n" + b64_encode(b"\0" * 32) + "\n",
        "origin\n1\n" + b64_encode(b"\0" * 32) + "\n\n",  # empty extension line
        "origin\n18446744073709551616\n" + b64_encode(b"\0" * 32) + "\n",  # > 2^64-1
    ],
)
def test_parse_checkpoint_is_strict(bad: str):
    with pytest.raises(n.NoteError):
        n.parse_checkpoint_text(bad)


def test_origin_for_and_back():
    assert n.origin_for("traza-demo", "latam-hub") == "traza/traza-demo/latam-hub"
    assert n.node_of_origin("traza/traza-demo/latam-hub") == "latam-hub"
    for bad in ["traza/x", "other/demo/es", "traza/demo/ES", "traza/de mo/es"]:
        with pytest.raises(n.NoteError):
            n.node_of_origin(bad)
    with pytest.raises(n.NoteError):
        n.origin_for("de mo", "es")


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**40), st.lists(st.binary(min_size=32, max_size=32), max_size=63))
def test_add_checkpoint_body_roundtrip(old: int, proof: list[bytes]):
    cp = "traza/demo/es\n5\n" + b64_encode(b"\1" * 32) + "\n\n— traza/demo/es AAAAAAA=\n"
    req = n.parse_add_checkpoint(n.encode_add_checkpoint(old, proof, cp))
    assert (req.old_size, list(req.proof), req.checkpoint) == (old, proof, cp)


@pytest.mark.parametrize(
    "body",
    [b"old 01\n\nx", b"new 1\n\nx", b"old 1\nAAAA\n\nx", b"old 1\n" + b"x" * 10, b"old 1\n" + ("A" * 43 + "=\n").encode() * 64 + b"\nx"],
)
def test_add_checkpoint_body_is_strict(body: bytes):
    with pytest.raises(n.NoteError):
        n.parse_add_checkpoint(body)
