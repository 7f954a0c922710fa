"""Who may answer (SPEC §5, 1.1, normative): the pure rule a node applies before a ``receipt`` or an
``error`` changes the state of one of its messages, and that ``traza audit verify-bundle`` applies offline.

A receipt for message M is applied only if M originated at this node, the receipt is signed by M's
recipient (``aud``), is addressed to M's origin, its ``for`` and ``irt`` are M's ``jti`` and its ``dig``
is the SHA-256 of M's token. An error for M is applied only if M originated here and the error's signer
is the node it names in ``by`` and a node on M's route. Anything else is ``policy_denied``: a hub cannot
sign a delivery it did not see, and a node off the route cannot fail a message it never carried.

No I/O: the caller looks M up and passes what it knows of it (:class:`Sent`) and M's route.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from gateway.core.envelope import NO_REPLY_TYPES
from gateway.core.errors import Code, TrazaError

# the answers: receipts and errors, which are never answered themselves (SPEC §5)
ANSWER_TYPES = NO_REPLY_TYPES


class Sent(msgspec.Struct, frozen=True):
    """What the answering rule needs of message M: its id, origin, recipient and token digest."""

    jti: str
    iss: str
    aud: str
    dig: str


class Answer(msgspec.Struct, frozen=True):
    """The signed facts of a ``receipt`` or ``error`` envelope: token claims and, when readable, its body."""

    mt: str
    jti: str
    iss: str  # the signer of the answer's token
    aud: str
    irt: str | None
    for_: str  # the body's ``for``
    dig: str | None = None  # a receipt's body ``dig``
    by: str | None = None  # an error's body ``by``


def _denied(detail: str) -> TrazaError:
    return TrazaError(Code.POLICY_DENIED, detail)


def check_answer_signer(answer: Answer, sent: Sent | None, *, here: str, route: Sequence[str] = ()) -> None:
    """The part of the rule that the answer's signed token decides: who signed it, to whom, for what.

    ``sent`` is message M as this node knows it (None when it does not know ``answer.for_``), ``here``
    the node applying the answer (offline: M's origin), ``route`` M's route (for errors)."""
    if answer.mt not in ANSWER_TYPES:
        raise _denied(f"a {answer.mt!r} is not an answer (receipt or error)")
    what = f"{answer.mt} {answer.jti} for message {answer.for_}"
    if sent is None or sent.jti != answer.for_:
        raise _denied(f"{what}: no such message originated at {here}")
    if sent.iss != here:
        raise _denied(f"{what}: the message originated at {sent.iss}, not at {here}")
    if answer.aud != sent.iss:
        raise _denied(f"{what}: addressed to {answer.aud}, not to the message's origin {sent.iss}")
    if answer.irt != sent.jti:
        raise _denied(f"{what}: it replies to {answer.irt!r}, not to {sent.jti}")
    if answer.mt == "receipt":
        if answer.iss != sent.aud:
            raise _denied(f"{what}: signed by {answer.iss}, but only the recipient {sent.aud} may give a receipt")
    elif answer.iss not in route:
        raise _denied(f"{what}: {answer.iss} is not on the message's route {' → '.join(route) or '(none)'}")


def check_answer_body(answer: Answer, sent: Sent) -> None:
    """The part of the rule that the answer's body decides: a receipt names M's exact token (``dig``);
    an error names its signer in ``by``."""
    what = f"{answer.mt} {answer.jti} for message {answer.for_}"
    if answer.mt == "receipt":
        if answer.dig != sent.dig:
            raise _denied(f"{what}: dig {answer.dig!r} is not the digest of the message's token {sent.dig}")
    elif answer.by != answer.iss:
        raise _denied(f"{what}: says it was given up by {answer.by!r} but is signed by {answer.iss}")


def check_answer(answer: Answer, sent: Sent | None, *, here: str, route: Sequence[str] = ()) -> None:
    """The whole rule (SPEC §5 "Who may answer"); raises ``TrazaError(policy_denied)`` naming the fault."""
    check_answer_signer(answer, sent, here=here, route=route)
    assert sent is not None  # checked above
    check_answer_body(answer, sent)
