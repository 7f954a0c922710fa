"""Message ids: UUIDv7 (RFC 9562) minted from a time and random bytes passed in by the caller."""

from __future__ import annotations

import re
import uuid

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")


def uuid7(now: float, rand: bytes) -> str:
    """A UUIDv7 string for ``now`` (epoch seconds) from 10 random bytes."""
    if len(rand) < 10:
        raise ValueError("uuid7 needs 10 random bytes")
    ms = int(now * 1000) & ((1 << 48) - 1)
    r = int.from_bytes(rand[:10], "big")
    rand_a = (r >> 64) & 0xFFF
    rand_b = r & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))


def is_message_id(text: str) -> bool:
    return bool(UUID_RE.match(text))
