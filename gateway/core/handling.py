"""Handling codes and purpose limitation as rules (issue #15): the one pure policy module.

The protective marking of a message travels signed in its origin token (SPEC §3.1): the handling code
``hc`` (``H0``-``H3``, the Europol/SIENA handling codes, definitions in
``../shared/reference/domain-standards.md``), ``hr`` (the H3 restrictions, an optional claim added by
Traza 1.1), the classification ``cls`` and the purpose ``pur``. This module decides, with no I/O:

- **H3 needs its restrictions**: an H3 message without ``handling_restrictions`` is refused (at the
  origin's submission and by every node that verifies the token), naming the field.
- **H2 is not disseminated without the provider's permission**: a message that links to an H2 message
  (``notice.links[]``, or ``reply_to``) may go only to that message's provider (its origin), or be sent by
  the provider itself; to any third node it is ``policy_denied``. The caller looks the linked messages
  up in its store (:class:`Linked`); a message this node never held cannot be judged and is not refused.
- **Onward transfer** (``ot``, the envelope's ``onward_transfer``, LED Art 35(1)(e)): ``ALLOWED``,
  ``PROVIDER_CONSENT_REQUIRED`` or ``PROHIBITED``. It is the H2 rule made explicit and available to every
  code: H2 implies ``PROVIDER_CONSENT_REQUIRED`` (so an H2 message marked ``ALLOWED`` is refused as a
  contradiction; absent, :func:`onward` derives it from the handling code), and a message whose onward
  transfer is not ``ALLOWED`` is treated like an H2 one by the link rule above, whatever its code.
- **H1 is marked** on every export and evidence view: :func:`notice` gives the text to print.
- **Purpose limitation**: a manifest policy rule may list ``purposes`` allowed for a message type
  (optional; a rule without it allows every purpose); any other purpose is ``policy_denied``, at the
  origin and at every node that verifies the envelope (receiver included).

Refusals raise :class:`HandlingRefused` (a ``TrazaError`` with the ``rule`` that refused), so the caller
can audit which rule it was. :func:`delivery_meta` is the marking as the national system receives it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

import msgspec

from gateway.core.codes import HANDLING_CODES, ONWARD_TRANSFERS
from gateway.core.errors import Code, TrazaError

# The reference's definitions (Europol handling codes, Council doc 6261/18).
MEANINGS: dict[str, str] = {
    "H0": "may only be used for preventing and combating crime, in line with the applicable law",
    "H1": "not for judicial proceedings without the provider's permission",
    "H2": "not to be disseminated without the provider's permission",
    "H3": "other restrictions apply (see the handling restrictions)",
}
# The mark every export and evidence view of an H1 message carries.
H1_NOTICE = "H1: " + MEANINGS["H1"]

# Longest accepted ``handling_restrictions`` text (characters): a sentence or two, it travels in the token.
MAX_RESTRICTIONS = 500

# The rules, as audited in ``policy.denied`` entries.
RULE_H3 = "h3_restrictions"
RULE_H2 = "h2_onward"
RULE_ONWARD = "onward_transfer"
RULE_PURPOSE = "purpose"
RULES = (RULE_H3, RULE_H2, RULE_ONWARD, RULE_PURPOSE)

# Members of the delivery metadata that come from the signed token, in the order they are shown.
MARKING_FIELDS = ("handling", "handling_restrictions", "onward_transfer", "classification", "purpose", "reply_to")


class HandlingRefused(TrazaError):
    """A message refused by one of this module's rules; ``rule`` is one of :data:`RULES`, ``field`` the
    submission field at fault."""

    def __init__(self, code: Code, detail: str, *, rule: str, field: str) -> None:
        super().__init__(code, detail)
        self.rule = rule
        self.field = field
        self.path = f"$.{field}"


class Linked(msgspec.Struct, frozen=True):
    """What the link rule needs of a message another one links to: its id, provider (origin), handling code
    and onward-transfer marking (None when its token carries none)."""

    jti: str
    iss: str
    hc: str
    ot: str | None = None


def onward(hc: str, ot: str | None) -> str:
    """The onward transfer a message allows: its ``ot`` marking, else what its handling code implies
    (H2: ``PROVIDER_CONSENT_REQUIRED``; any other code: ``ALLOWED``)."""
    if ot is not None:
        return ot
    return "PROVIDER_CONSENT_REQUIRED" if hc == "H2" else "ALLOWED"


def check_onward_marking(hc: str, ot: str | None) -> None:
    """``onward_transfer`` is one of :data:`ONWARD_TRANSFERS` and does not contradict the handling code."""
    if ot is None:
        return
    if ot not in ONWARD_TRANSFERS:
        raise HandlingRefused(Code.SCHEMA_INVALID, f"onward_transfer: {ot!r} is not an onward-transfer marking "
                              f"({', '.join(ONWARD_TRANSFERS)}) - at `$.onward_transfer`", rule=RULE_ONWARD,
                              field="onward_transfer")
    if hc == "H2" and ot == "ALLOWED":
        raise HandlingRefused(Code.SCHEMA_INVALID, "onward_transfer: ALLOWED contradicts H2 (not to be disseminated "
                              "without the provider's permission); leave it out, or mark it PROVIDER_CONSENT_REQUIRED "
                              "or PROHIBITED - at `$.onward_transfer`", rule=RULE_ONWARD, field="onward_transfer")


def check_restrictions(hc: str, hr: str | None) -> None:
    """H3 requires ``handling_restrictions``; any code's restrictions are one bounded line of text."""
    if hc not in HANDLING_CODES:
        raise HandlingRefused(Code.SCHEMA_INVALID, f"handling: {hc!r} is not a handling code "
                              f"({', '.join(HANDLING_CODES)}) - at `$.handling`", rule=RULE_H3, field="handling")
    if hr is not None:
        if not hr.strip():
            raise HandlingRefused(Code.SCHEMA_INVALID, "handling_restrictions: empty; leave it out or say what "
                                  "the restrictions are - at `$.handling_restrictions`", rule=RULE_H3,
                                  field="handling_restrictions")
        if len(hr) > MAX_RESTRICTIONS or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in hr):
            raise HandlingRefused(Code.SCHEMA_INVALID, f"handling_restrictions: must be one line of at most "
                                  f"{MAX_RESTRICTIONS} characters without control characters - at "
                                  "`$.handling_restrictions`", rule=RULE_H3, field="handling_restrictions")
    if hc == "H3" and hr is None:
        raise HandlingRefused(Code.SCHEMA_INVALID, "handling_restrictions: required when handling is H3 (H3 "
                              "means other restrictions apply: say which, e.g. \"do not contact the owner "
                              "before 2027-01-31\") - at `$.handling_restrictions`", rule=RULE_H3,
                              field="handling_restrictions")


def check_purpose(mt: str, pur: str, allowed: Collection[str] | None) -> None:
    """Purpose limitation: ``allowed`` is the manifest policy's ``purposes`` for ``mt`` (None: any)."""
    if allowed is not None and pur not in allowed:
        raise HandlingRefused(Code.POLICY_DENIED, f"purpose: {pur} is not allowed for {mt!r} in this federation "
                              f"(the manifest policy allows: {', '.join(allowed) or 'none'}) - at `$.purpose`",
                              rule=RULE_PURPOSE, field="purpose")


def linked_ids(mt: str, body: Any, irt: str | None) -> list[str]:
    """The messages a message links to: ``notice.links[]`` and its ``reply_to``, each once, in order."""
    out: list[str] = []
    if mt == "notice" and isinstance(body, dict):
        out.extend(x for x in body.get("links") or [] if isinstance(x, str))
    if irt:
        out.append(irt)
    return list(dict.fromkeys(out))


def check_onward(linked: Iterable[Linked], *, here: str, to: str) -> None:
    """A message linking to an H2 message, or to one whose onward transfer is not ALLOWED, may go only to
    that message's provider, unless this node is the provider."""
    for m in linked:
        if m.iss == here or m.iss == to:
            continue
        ot = onward(m.hc, m.ot)
        if ot != "ALLOWED" and m.hc != "H2":
            how = (f"obtain {m.iss}'s permission and have {m.iss} send it" if ot == "PROVIDER_CONSENT_REQUIRED"
                   else f"{m.iss} prohibited any onward transfer")
            raise HandlingRefused(
                Code.POLICY_DENIED,
                f"links: message {m.jti} is marked onward_transfer {ot} by its provider {m.iss}: it cannot be "
                f"linked or forwarded to {to}; send to {m.iss} only ({how}) - at `$.body.links`",
                rule=RULE_ONWARD, field="body.links")
        if m.hc == "H2":
            raise HandlingRefused(
                Code.POLICY_DENIED,
                f"links: message {m.jti} is H2 ({MEANINGS['H2']}, the provider being {m.iss}): it cannot be "
                f"linked or forwarded to {to}; send to {m.iss} only, or obtain {m.iss}'s permission and have "
                f"{m.iss} send it - at `$.body.links`", rule=RULE_H2, field="body.links")


def notice(hc: str | None) -> str | None:
    """The mark an export or evidence view of a message with handling code ``hc`` carries (H1), else None."""
    return H1_NOTICE if hc == "H1" else None


def delivery_meta(*, jti: str, iss: str, cid: str, delivered_at: str, claims: dict[str, Any] | None) -> dict[str, Any]:
    """The metadata the national system receives with a message in every delivery mode (SPEC §6, 1.1):
    who sent it and when it arrived, then the marking from the signed token ``claims`` (None when the
    token is no longer held: the marking is then absent, never guessed)."""
    meta: dict[str, Any] = {"id": jti, "from": iss, "conversation": cid, "delivered_at": delivered_at}
    if claims:
        meta.update(marking(claims))
    return meta


def marking(claims: dict[str, Any]) -> dict[str, Any]:
    """``handling``, ``handling_restrictions``, ``onward_transfer``, ``classification``, ``purpose``,
    ``reply_to`` of a token's claims (members the token does not carry are left out)."""
    pairs: Sequence[tuple[str, str]] = (("handling", "hc"), ("handling_restrictions", "hr"), ("onward_transfer", "ot"),
                                        ("classification", "cls"), ("purpose", "pur"), ("reply_to", "irt"))
    return {name: claims[c] for name, c in pairs if claims.get(c) is not None}
