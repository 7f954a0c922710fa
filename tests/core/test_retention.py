"""The retention rules (gateway/core/retention.py, issue #15) as a table: until when a node keeps a
message's content, which rule decides, and what is due at a given time."""

from __future__ import annotations

import pytest

from gateway.core.retention import DAY, Held, Rules, day_start, due, judge, keep_until

T0 = 1_000_000_000.0  # the message arrived here
EXP = int(T0 + 7 * DAY)


def held(**kw: object) -> Held:
    base: dict[str, object] = {"jti": "j", "mt": "notice", "role": "recipient", "since": T0, "exp": EXP,
                               "needed": False}
    return Held(**{**base, **kw})  # type: ignore[arg-type]


NAT = Rules(kind="national", days=180, types={"trace.request": 365},
            policy={"notice": {"national": 90, "hub": 0}, "trace.request": {"national": 730}})
HUB = Rules(kind="hub", policy={"notice": {"national": 90, "hub": 0}})

CASES = [
    # (what, rules, message, kept until, rule named)
    ("no rule at all keeps it", Rules(kind="national"), held(), None, "no rule: kept"),
    ("the node's default", Rules(kind="national", days=30), held(mt="trace.response"), T0 + 30 * DAY,
     "[retention] days = 30"),
    ("the node's rule for the type beats its default", NAT, held(mt="trace.request"), T0 + 365 * DAY,
     "[retention] types.trace.request = 365"),
    ("the manifest's shorter limit for the type and this kind", NAT, held(), T0 + 90 * DAY,
     "manifest policy notice.retention_days.national = 90"),
    ("the manifest's longer limit does not lengthen the node's", NAT, held(mt="trace.request"), T0 + 365 * DAY,
     "[retention] types.trace.request = 365"),
    ("delete_by earlier than every rule", NAT, held(delete_by=T0 + 10 * DAY), T0 + 10 * DAY, "retention.delete_by"),
    ("delete_by later than a rule does not lengthen it", NAT, held(delete_by=T0 + 1000 * DAY), T0 + 90 * DAY,
     "manifest policy notice.retention_days.national = 90"),
    ("a hub's transit copy goes at the message's expiry", Rules(kind="hub"), held(role="transit"), float(EXP),
     "transit copy: the message's expiry"),
    ("a hub's kind limit of 0 days: at once", HUB, held(role="transit"), T0,
     "manifest policy notice.retention_days.hub = 0"),
]


@pytest.mark.parametrize(("what", "rules", "h", "until", "rule"), CASES, ids=[c[0] for c in CASES])
def test_keep_until(what: str, rules: Rules, h: Held, until: float | None, rule: str) -> None:
    u = keep_until(h, rules)
    assert (u.at, u.rule) == (until, rule)


def test_due_once_the_date_has_come_and_not_a_second_before() -> None:
    h = held()
    assert due([h], NAT, T0 + 90 * DAY - 1) == []
    assert [v.jti for v in due([h], NAT, T0 + 90 * DAY)] == ["j"]


def test_a_message_still_needed_is_never_purged_it_waits() -> None:
    """Not taken by the national system yet (or still in the outbox): past its date it is reported waiting."""
    (v,) = judge([held(needed=True)], NAT, T0 + 100 * DAY)
    assert (v.due, v.waiting) == (False, True)
    assert due([held(needed=True)], NAT, T0 + 100 * DAY) == []


def test_review_by_flags_the_message_for_review_and_purges_nothing() -> None:
    h = held(review_by=T0 + 5 * DAY)
    (before,) = judge([h], Rules(kind="national"), T0 + 5 * DAY - 1)
    (after,) = judge([h], Rules(kind="national"), T0 + 5 * DAY)
    assert (before.review_due, after.review_due) == (False, True)
    assert (after.due, after.until) == (False, None)


@pytest.mark.parametrize("text", ["2026-13-01", "2026-1-1", "20260101", "", "tomorrow"])
def test_a_date_that_is_not_yyyy_mm_dd_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="is not a date"):
        day_start(text)


def test_day_start_is_midnight_utc() -> None:
    assert day_start("1970-01-02") == DAY
