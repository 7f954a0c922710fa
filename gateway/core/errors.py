"""Traza error codes (SPEC §9) and the one exception type the core raises."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal


class Code(StrEnum):
    """Error codes of SPEC §9. The value is what goes on the wire."""

    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    UNKNOWN_NODE = "unknown_node"
    PEER_MISMATCH = "peer_mismatch"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    TTL_TOO_LONG = "ttl_too_long"
    ROUTE_VIOLATION = "route_violation"
    POLICY_DENIED = "policy_denied"
    CLASSIFICATION_EXCEEDED = "classification_exceeded"
    ENCRYPTION_REQUIRED = "encryption_required"
    PAYLOAD_MISMATCH = "payload_mismatch"
    DECRYPT_FAILED = "decrypt_failed"
    SCHEMA_INVALID = "schema_invalid"
    UNKNOWN_TYPE = "unknown_type"
    BLOB_MISSING = "blob_missing"
    OVERLOADED = "overloaded"
    INTERNAL = "internal"


class Fault(StrEnum):
    """Whose fault a refusal is (h11-style: the error says who must act)."""

    PEER = "peer"  # the node that handed us the request: its framing, its identity, its hop
    ORIGIN = "origin"  # whoever made the message: its content, claims, lifetime or encryption
    OPERATOR = "operator"  # this node's configuration or the operator's request
    INTERNAL = "internal"  # this node itself: capacity, storage, a bug


FAULT: dict[Code, Fault] = {
    Code.MALFORMED: Fault.PEER,
    Code.TOO_LARGE: Fault.PEER,
    Code.UNKNOWN_NODE: Fault.PEER,
    Code.PEER_MISMATCH: Fault.PEER,
    Code.BAD_SIGNATURE: Fault.PEER,  # a peer cannot tell a forged token from a broken hop (SPEC §4.2)
    Code.ROUTE_VIOLATION: Fault.PEER,
    Code.BLOB_MISSING: Fault.PEER,
    Code.EXPIRED: Fault.ORIGIN,
    Code.NOT_YET_VALID: Fault.ORIGIN,
    Code.TTL_TOO_LONG: Fault.ORIGIN,
    Code.POLICY_DENIED: Fault.ORIGIN,
    Code.CLASSIFICATION_EXCEEDED: Fault.ORIGIN,
    Code.ENCRYPTION_REQUIRED: Fault.ORIGIN,
    Code.PAYLOAD_MISMATCH: Fault.ORIGIN,
    Code.DECRYPT_FAILED: Fault.ORIGIN,
    Code.SCHEMA_INVALID: Fault.ORIGIN,
    Code.UNKNOWN_TYPE: Fault.ORIGIN,
    Code.OVERLOADED: Fault.INTERNAL,
    Code.INTERNAL: Fault.INTERNAL,
}

# the HTTP status of a code that refuses a whole request. On the peer API most refusals travel per
# envelope inside a 200 (SPEC §4.1) and only framing, size and capacity refuse the request (400 for the
# rest); on the local API a message the national system got wrong is 422.
_STATUS: dict[Code, int] = {Code.MALFORMED: 400, Code.TOO_LARGE: 413, Code.OVERLOADED: 503, Code.INTERNAL: 500}
API = Literal["peer", "local"]


def http_status(err: TrazaError | Code, api: API = "peer") -> int:
    """The one mapping of errors to HTTP statuses. An operator's action refused on the state of things
    (a retry after the signed expiry, a resend of a message not waiting for its receipt) is a conflict
    (409): the refusal is audited and nothing changed."""
    if isinstance(err, TrazaError) and err.fault is Fault.OPERATOR:
        return 409
    code = err.code if isinstance(err, TrazaError) else err
    return _STATUS.get(code, 422 if api == "local" else 400)


class TrazaError(Exception):
    """A failed check, carrying one SPEC §9 code.

    ``detail`` is for the local operator and the audit log. ``public_detail`` is what a peer may see:
    every signature failure looks the same to a peer (SPEC §4.2).
    """

    def __init__(self, code: Code, detail: str, *, jti: str | None = None, fault: Fault | None = None) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail
        self._fault = fault
        # the message id the refused envelope *verifiably* names (its token and hop signatures and chain
        # checked out), else None: only such an id may index the refusal in the audit log (issue #10 item 9)
        self.jti = jti

    @property
    def fault(self) -> Fault:
        """Whose fault it is: as raised, else the code's (:data:`FAULT`)."""
        return self._fault or FAULT[self.code]

    @property
    def public_detail(self) -> str:
        if self.code is Code.BAD_SIGNATURE:
            return "signature verification failed"
        return self.detail

    def diagnostics(self) -> str:
        """Operator-facing explanation (sigstore-style)."""
        return f"[{self.code.value}] {self.detail}"


_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def redact_values(detail: str) -> str:
    """``detail`` with every quoted value replaced by ``'…'``: for the audit log, whose entries hold
    digests and metadata, never payload content (SPEC §7.1). A schema fault's detail quotes the value at
    fault (``Invalid enum value 'X'``); the path and the reason stay. The full detail still goes to the
    caller (the ``422``, the drop folder's ``.error.txt``)."""
    return _QUOTED.sub("'…'", detail)


def audit_detail(code: Code | str, detail: str) -> str:
    """The detail of a refusal as the audit log keeps it: quoted values left out of a fault of the body or
    of a national file (``schema_invalid``), the rest as it is."""
    return redact_values(detail) if code == Code.SCHEMA_INVALID else detail
