"""Strict base64 helpers: base64url without padding (JOSE) and standard base64 (notes, proofs)."""

from __future__ import annotations

import base64
import binascii
import re

_B64URL = re.compile(r"^[A-Za-z0-9_-]*\Z")
_B64STD = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\Z")
# 6-bit value of each base64 character (both alphabets), for the canonical-encoding check below
_VALUE = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
_VALUE.update({"-": 62, "_": 63})
# in a final group of 2 (3) characters, the last one carries 4 (2) bits that are not data: canonical
# encoders set them to zero
_UNUSED_BITS = {2: 0x0F, 3: 0x03}


def _unused_bits_set(last: str, group: int) -> bool:
    """True if ``last``, the final character of a final group of ``group`` characters (0 when the
    groups are complete), has non-data bits set, i.e. the encoding is not the canonical one."""
    mask = _UNUSED_BITS.get(group)
    return mask is not None and _VALUE[last] & mask != 0


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_URL_TO_STD = bytes.maketrans(b"-_", b"+/")
_PAD = (b"", b"", b"==", b"=")


def b64url_decode(text: str | bytes) -> bytes:
    """Decode unpadded base64url; refuse padding, other alphabets and non-canonical trailing bits.

    Every token, hop record, ack and inclusion path goes through here (about 30 times per envelope and
    node): a text of base64url characters only, the usual case, is decoded by ``binascii`` directly;
    anything else takes the general path below, which gives the same errors as before."""
    try:
        b = text.encode("ascii") if isinstance(text, str) else text
    except UnicodeEncodeError:
        b = None
    if b is not None and not b.translate(None, _URL_ALPHABET):  # base64url characters only
        group = len(b) % 4
        if group == 1:
            raise ValueError("not unpadded base64url")
        if group and _unused_bits_set(chr(b[-1]), group):
            raise ValueError("non-canonical base64url")
        return binascii.a2b_base64(b.translate(_URL_TO_STD) + _PAD[group])
    return _b64url_decode_general(text)


def _b64url_decode_general(text: str | bytes) -> bytes:
    s = text.decode("ascii") if isinstance(text, bytes) else text
    if not _B64URL.match(s) or len(s) % 4 == 1:
        raise ValueError("not unpadded base64url")
    raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    # canonical iff re-encoding gives ``s`` back; checked without re-encoding: ``s`` is in the alphabet,
    # so only the unused bits of its last character can differ (a final "\n" passes the pattern's "$";
    # decoding refuses it already, and the encoder would never give it back)
    if s.endswith("\n") or _unused_bits_set(s[-1:], len(s) % 4):
        raise ValueError("non-canonical base64url")
    return raw


def b64_encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64_decode(text: str | bytes) -> bytes:
    """Decode padded standard base64 strictly (no whitespace, no missing padding)."""
    s = text.decode("ascii") if isinstance(text, bytes) else text
    if not _B64STD.match(s):
        raise ValueError("not standard base64")
    try:
        raw = base64.b64decode(s, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not standard base64: {exc}") from None
    # canonical iff re-encoding gives ``s`` back: with the pattern and validate=True above, only the
    # unused bits of the last data character before the padding can differ
    data = s.rstrip("=")
    if _unused_bits_set(data[-1:], len(data) % 4):
        raise ValueError("non-canonical base64")
    return raw
