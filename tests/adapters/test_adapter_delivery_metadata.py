"""Every national adapter's output form carries the delivery metadata (SPEC §6 1.1, issue #15): the
handling code and its restrictions, classification, purpose and reply-to, as the node hands them over
(``gateway.core.handling.delivery_meta``), and reads them back unchanged."""

from __future__ import annotations

import pytest
from core.message_examples import example

from adapters import ADAPTERS, get_adapter
from gateway.core.handling import MARKING_FIELDS, delivery_meta

RESTRICTIONS = "no contactar al titular; nicht vor dem 31.01.2027 weitergeben"
CLAIMS = {"hc": "H3", "hr": RESTRICTIONS, "ot": "PROHIBITED", "cls": "CONFIDENTIEL_UE", "pur": "EXECUTION_OF_PENALTIES",
          "irt": "01a21b0e-c275-7b10-b9dd-015123b07770"}
META = delivery_meta(jti="01a21b0e-c275-7b10-b9dd-0151230000aa", iss="mx", cid="01a21b0e-c275-7b10-b9dd-015123b07770",
                     delivered_at="2026-12-05T23:59:00.123456Z", claims=CLAIMS)


def test_delivery_meta_is_the_signed_marking_and_the_delivery_fields():
    assert META == {"id": "01a21b0e-c275-7b10-b9dd-0151230000aa", "from": "mx",
                    "conversation": "01a21b0e-c275-7b10-b9dd-015123b07770",
                    "delivered_at": "2026-12-05T23:59:00.123456Z", "handling": "H3",
                    "handling_restrictions": RESTRICTIONS, "onward_transfer": "PROHIBITED",
                    "classification": "CONFIDENTIEL_UE",
                    "purpose": "EXECUTION_OF_PENALTIES", "reply_to": "01a21b0e-c275-7b10-b9dd-015123b07770"}
    # a token without restrictions or reply-to: those members are absent, never invented
    bare = delivery_meta(jti="j", iss="mx", cid="c", delivered_at="t",
                         claims={"hc": "H0", "cls": "UNCLASSIFIED", "pur": "PREVENTION"})
    assert "handling_restrictions" not in bare and "reply_to" not in bare and "onward_transfer" not in bare


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_each_adapter_output_carries_handling_restrictions_classification_purpose_reply_to(name):
    adapter = get_adapter(name)
    out = adapter.from_standard("notice", example("notice"), META)
    assert RESTRICTIONS.encode() in out and b"EXECUTION_OF_PENALTIES" in out and b"CONFIDENTIEL_UE" in out
    assert b"PROHIBITED" in out  # onward_transfer (issue #15)
    back = adapter.to_standard(out, adapter.output_content_type)
    got = {**back.envelope(), **back.received}
    assert {k: got.get(k) for k in MARKING_FIELDS} == {k: META[k] for k in MARKING_FIELDS}


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_each_adapter_refuses_restrictions_that_are_not_one_line(name):
    from adapters.base import AdapterError

    adapter = get_adapter(name)
    with pytest.raises(AdapterError, match="one line"):
        adapter.from_standard("notice", example("notice"), {**META, "handling_restrictions": "a\nb"})
