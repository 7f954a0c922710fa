"""Traza's signed notes, key ids and cosignatures against the vectors of ../shared/vectors/note/, made with
independent Go implementations (golang.org/x/mod/sumdb/note, transparency-dev/formats/note): a checkpoint
or cosignature they accept, Traza accepts, and the other way round (SPEC §7.2, §7.3; issue #19)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.checkpoints import cosignature_verifier, ed25519_note_verifier
from gateway.core.note import (
    Note,
    NoteError,
    cosign,
    cosignature_timestamp,
    key_id,
    parse_note,
    parse_signature_lines,
    sign_ed25519,
    verify_note,
)
from gateway.crypto.keys import Ed25519Key

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "note"
GO = json.loads((VECTORS / "go-signed-note.json").read_text())
COSIG = json.loads((VECTORS / "cosignature-v1.json").read_text())


def vkey(text: str) -> tuple[str, bytes, int, bytes]:
    """A Go verifier key ``<name>+<hex key id>+<base64(type || public key)>``."""
    name, kid, data = text.split("+", 2)  # a key name has no "+"; base64 may
    raw = base64.b64decode(data, validate=True)
    return name, bytes.fromhex(kid), raw[0], raw[1:]


@pytest.mark.parametrize("name", sorted(GO["vkeys"]))
def test_key_id_of_a_go_verifier_key_is_computed_alike(name):
    n, kid, typ, pub = vkey(GO["vkeys"][name])
    assert (n, typ) == (name, 1) and key_id(n, typ, pub) == kid


def test_note_signed_by_go_verifies_and_traza_signs_it_to_the_same_bytes():
    _private, _key, name, kid, data = GO["skey"].split("+", 4)
    raw = base64.b64decode(data)
    assert raw[0] == 1
    key = Ed25519Key(Ed25519PrivateKey.from_private_bytes(raw[1:]))
    n, vkid, _, pub = vkey(GO["vkeys"]["PeterNeumann"])
    assert n == name and pub == key.public_raw and bytes.fromhex(kid) == vkid
    note = parse_note(GO["signed"])
    assert note.text == GO["text"]
    assert verify_note(note, [ed25519_note_verifier(n, pub)])
    sig = sign_ed25519(GO["text"], n, key.public_raw, key.sign)  # Ed25519 is deterministic
    assert sig.line() == GO["signature_lines"]["PeterNeumann"]


def test_second_go_signature_verifies_and_unknown_keys_are_ignored():
    note = parse_note(GO["text"] + "\n" + GO["signature_lines"]["PeterNeumann"] + GO["signature_lines"]["EnochRoot"])
    verifiers = [ed25519_note_verifier(*vkey(GO["vkeys"][n])[::3]) for n in ("PeterNeumann", "EnochRoot")]
    assert [s.name for s in verify_note(note, verifiers)] == ["PeterNeumann", "EnochRoot"]
    assert [s.name for s in verify_note(note, verifiers[1:])] == ["EnochRoot"]


@pytest.mark.parametrize("bad", GO["bad_notes"])
def test_go_bad_notes_are_refused(bad):
    with pytest.raises(NoteError):
        verify_note(parse_note(bad), [ed25519_note_verifier(*vkey(GO["vkeys"]["PeterNeumann"])[::3])])


def test_go_checkpoint_and_its_cosignature_verify():
    log_name, log_kid, log_type, log_pub = vkey(COSIG["log_vkey"])
    w_name, w_kid, w_type, w_pub = vkey(COSIG["witness_vkey"])
    assert (log_type, w_type) == (1, 4)
    assert key_id(log_name, 1, log_pub) == log_kid and key_id(w_name, 4, w_pub) == w_kid
    note = parse_note(COSIG["checkpoint_with_cosignature"])
    assert note.text == COSIG["checkpoint_text"]
    assert verify_note(note, [ed25519_note_verifier(log_name, log_pub)])
    [cosig] = verify_note(note, [cosignature_verifier(w_name, w_pub)])
    assert cosignature_timestamp(cosig) == COSIG["cosignature_timestamp"]


def test_a_traza_cosignature_has_the_go_key_id_and_message():
    """Cosigning the vector checkpoint with a key of ours gives a line of the same form, which the same
    verifier accepts; the key id depends only on name, type 0x04 and key."""
    key = Ed25519Key.generate()
    sig = cosign(COSIG["checkpoint_text"], "example.com/w", key.public_raw, COSIG["cosignature_timestamp"], key.sign)
    assert sig.key_id == key_id("example.com/w", 4, key.public_raw)
    assert verify_note(Note(COSIG["checkpoint_text"], (sig,)), [cosignature_verifier("example.com/w", key.public_raw)])


@pytest.mark.parametrize("case", COSIG["invalid"], ids=lambda c: c["case"])
def test_go_invalid_cosignatures_do_not_verify(case):
    w_name, _, _, w_pub = vkey(COSIG["witness_vkey"])
    assert case["valid"] is False
    sigs = tuple(parse_signature_lines(case["cosignature_line"]))
    verifiers = [cosignature_verifier(w_name, w_pub)]
    if "type 0x01" in case["case"]:
        verifiers = [ed25519_note_verifier(w_name, w_pub)]
    with pytest.raises(NoteError):
        verify_note(Note(COSIG["checkpoint_text"], sigs), verifiers)
