"""The recipients of a submission (SPEC §6, 1.1): ``to`` is one node id, a list of node ids, or
``group:NAME`` naming a list of the manifest's ``groups``. A list or a group is a fan-out: one envelope per
recipient, all in one conversation. Pure: the groups and this node's id are arguments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.core.codes import NODE_ID
from gateway.core.errors import Code, TrazaError

GROUP_PREFIX = "group:"


def _bad(path: str, reason: str) -> TrazaError:
    return TrazaError(Code.SCHEMA_INVALID, f"{reason} - at `{path}`")


def recipients(to: Any, groups: Mapping[str, Sequence[str]], *, here: str) -> list[str] | None:
    """None when ``to`` is one node id (not a fan-out; the caller checks it as before); else the
    recipients in the order given. A group leaves out the sender itself. TrazaError ``schema_invalid``
    naming the path (``$.to``, ``$.to[i]``) and the fault otherwise."""
    if isinstance(to, str) and not to.startswith(GROUP_PREFIX):
        return None
    if isinstance(to, str):
        name = to[len(GROUP_PREFIX):]
        if name not in groups:
            known = ", ".join(sorted(groups)) or "none"
            raise _bad("$.to", f"no group {name!r} in the manifest (groups: {known})")
        out = [n for n in groups[name] if n != here]
        if not out:
            raise _bad("$.to", f"group {name!r} names no node but this one")
        return out
    if not isinstance(to, list):
        raise _bad("$.to", "expected a node id, a list of node ids or group:NAME")
    if not to:
        raise _bad("$.to", "an empty list: name at least one recipient")
    seen: list[str] = []
    for i, n in enumerate(to):
        path = f"$.to[{i}]"
        if not isinstance(n, str):
            raise _bad(path, f"expected a node id, got {n!r}")
        if not NODE_ID.match(n):
            raise _bad(path, f"{n!r} is not a node id (lower case, e.g. `es`)")
        if n == here:
            raise _bad(path, "a node does not send to itself")
        if n in seen:
            raise _bad(path, f"{n!r} is listed twice")
        seen.append(n)
    return seen
