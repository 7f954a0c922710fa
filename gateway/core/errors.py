"""Traza error codes (SPEC §9) and the one exception type the core raises."""

from __future__ import annotations

from enum import StrEnum


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


# HTTP status that fits each code when it refuses a whole request (h11-style: whose fault, which status).
HTTP_STATUS: dict[Code, int] = {
    Code.MALFORMED: 400,
    Code.TOO_LARGE: 413,
    Code.OVERLOADED: 503,
    Code.INTERNAL: 500,
}


class TrazaError(Exception):
    """A failed check, carrying one SPEC §9 code.

    ``detail`` is for the local operator and the audit log. ``public_detail`` is what a peer may see:
    every signature failure looks the same to a peer (SPEC §4.2).
    """

    def __init__(self, code: Code, detail: str, *, jti: str | None = None) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail
        # the message id the refused envelope *verifiably* names (its token and hop signatures and chain
        # checked out), else None: only such an id may index the refusal in the audit log (issue #10 item 9)
        self.jti = jti

    @property
    def public_detail(self) -> str:
        if self.code is Code.BAD_SIGNATURE:
            return "signature verification failed"
        return self.detail

    def diagnostics(self) -> str:
        """Operator-facing explanation (sigstore-style)."""
        return f"[{self.code.value}] {self.detail}"
