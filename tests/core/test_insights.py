"""Insights for policy makers (issue #16): aggregates with small cells suppressed, on rows, pure."""

from __future__ import annotations

import datetime as dt

from gateway.core.insights import Answer, Sent, count_cell, csv_rows, insights

COUNTRIES = {"mx": "MX", "es": "ES", "it": "IT", "hub": "NL", "reg": "FR"}
T0 = dt.datetime(2026, 11, 30, 9, tzinfo=dt.UTC).timestamp()  # a Monday, ISO week 2026-W49
H = 3600.0


def test_counts_under_five_are_suppressed_zero_is_not():
    assert [count_cell(n) for n in (0, 1, 4, 5, 12)] == [0, "<5", "<5", 5, 12]


def test_volume_by_type_country_pair_and_week():
    msgs = [Sent(f"a{i}", "trace.request", "mx", "es", T0 + i) for i in range(6)]
    msgs += [Sent("b", "trace.request", "mx", "it", T0), Sent("c", "notice", "es", "mx", T0 + 8 * 86400)]
    v = insights(msgs, [], COUNTRIES)["volume"]
    assert v == [
        {"type": "notice", "from_country": "ES", "to_country": "MX", "week": "2026-W50", "messages": "<5"},
        {"type": "trace.request", "from_country": "MX", "to_country": "ES", "week": "2026-W49", "messages": 6},
        {"type": "trace.request", "from_country": "MX", "to_country": "IT", "week": "2026-W49", "messages": "<5"},
    ]


def test_trace_outcomes_and_response_times_per_answering_country():
    sent = [Sent(f"q{i}", "trace.request", "mx", "es", T0) for i in range(6)] + [Sent("q9", "trace.request", "mx", "it", T0)]
    answers = [Answer("trace.response", "es", T0 + (i + 1) * H, f"q{i}",
                      {"status": "COMPLETED", "firearm_as_recorded": {"country_of_manufacture": "AT"}}) for i in range(6)]
    answers.append(Answer("trace.response", "it", T0 + H, "q9", {"status": "NOT_FOUND", "status_reason": "x"}))
    doc = insights(sent, answers, COUNTRIES)
    assert doc["trace_outcomes"] == [{"country_of_manufacture": "AT", "status": "COMPLETED", "responses": 6},
                                     {"country_of_manufacture": "unknown", "status": "NOT_FOUND", "responses": "<5"}]
    es, it = doc["response_times"]
    assert es == {"country": "ES", "answers": 6, "median_hours": 3.5, "p90_hours": 5.5}
    assert it == {"country": "IT", "answers": "<5", "median_hours": None, "p90_hours": None}  # one case: hidden


def test_an_answer_to_something_else_or_before_the_question_is_not_a_response_time():
    sent = [Sent("n", "notice", "mx", "es", T0), Sent("q", "trace.request", "mx", "es", T0)]
    answers = [Answer("trace.response", "es", T0 + H, "n", {"status": "COMPLETED"}),
               Answer("trace.response", "es", T0 - H, "q", {"status": "COMPLETED"})]
    assert insights(sent, answers, COUNTRIES)["response_times"] == []


def test_status_hit_rates_and_ballistic_hits():
    answers = [Answer("firearm.status.answer", "reg", T0, None, {"result": r})
               for r in ["HIT", "NO_HIT", "NO_HIT", "MULTIPLE_HITS", "NO_HIT", "NO_HIT"]]
    answers += [Answer("ballistic.hit", "es", T0, None, {"status": "CONFIRMED_HIT"})]
    answers += [Answer("firearm.status.answer", "it", T0, None, None)]  # purged body: not counted
    doc = insights([], answers, COUNTRIES)
    # 2 hits of 6: the rate with its total would give the suppressed count away, so it is not shown
    assert doc["status_hits"] == [{"country": "FR", "queries": 6, "hit": "<5", "multiple_hits": "<5", "no_hit": "<5",
                                   "hit_rate": None}]
    assert doc["ballistic"] == [{"status": "CONFIRMED_HIT", "hits": "<5"}]


def test_a_hit_rate_is_shown_when_hits_and_misses_are_both_five_or_more():
    answers = [Answer("firearm.status.answer", "reg", T0, None, {"result": r}) for r in ["HIT"] * 5 + ["NO_HIT"] * 7]
    (row,) = insights([], answers, COUNTRIES)["status_hits"]
    assert row == {"country": "FR", "queries": 12, "hit": 5, "multiple_hits": 0, "no_hit": 7, "hit_rate": 0.417}


def test_csv_has_one_block_per_table():
    doc = insights([Sent("a", "notice", "mx", "es", T0)], [], COUNTRIES)
    assert csv_rows(doc) == [["table", "type", "from_country", "to_country", "week", "messages"],
                             ["volume", "notice", "MX", "ES", "2026-W49", "<5"]]


# --- time-to-crime (issue #16): days from the first retail sale to the recovery, from trace responses ------


def _ttc(*days: int) -> list[Answer]:
    return [Answer("trace.response", "it", T0, None, {"status": "COMPLETED", "time_to_crime_days": d}) for d in days]


def test_time_to_crime_distribution_by_band_with_small_cells_suppressed():
    answers = _ttc(10, 200, 300, 364, 365, 400, 1094, 1095, 1500, 5000) + _ttc(*range(30, 35))
    answers.append(Answer("trace.response", "it", T0, None, {"status": "PARTIAL", "status_reason": {"code": "x"}}))
    doc = insights([], answers, COUNTRIES)
    assert doc["time_to_crime"] == [
        {"band": "under 1 year", "from_days": 0, "to_days": 364, "responses": 9},
        {"band": "1 to 3 years", "from_days": 365, "to_days": 1094, "responses": "<5"},
        {"band": "3 to 5 years", "from_days": 1095, "to_days": 1825, "responses": "<5"},
        {"band": "5 to 10 years", "from_days": 1826, "to_days": 3652, "responses": 0},
        {"band": "10 years or more", "from_days": 3653, "to_days": None, "responses": "<5"},
    ]
    assert doc["time_to_crime_median_days"] == 300  # 15 cases
    # fewer than 5 cases: no median; none at all: no table
    few = insights([], _ttc(100, 200), COUNTRIES)
    assert few["time_to_crime_median_days"] is None and few["time_to_crime"][0]["responses"] == "<5"
    assert insights([], [], COUNTRIES)["time_to_crime"] == []
    assert ["table", "band", "from_days", "to_days", "responses"] in csv_rows(doc)


def test_the_messages_are_read_once_as_a_stream_never_held_all_at_once():
    """A hub keeping millions of messages: GET /ops/v1/stats held every one as an object at once
    (hundreds of bytes each, gigabytes in all) to count them. Only the requests some answer here
    answers are kept; what is held does not grow with the messages streamed through."""
    import tracemalloc

    countries = {"mx": "MX", "es": "ES", "it": "IT"}
    asked = Sent("q-1", "trace.request", "mx", "es", 1_000.0)
    answers = [Answer("trace.response", "es", 1_000.0 + 7_200, "q-1", {"status": "TRACED"})]

    def stream(n: int):
        yield asked
        for i in range(n):
            yield Sent(f"m-{i:08d}-{'x' * 28}", "notice", "mx", "it", 1_000.0 + i)

    def peak(n: int) -> tuple[int, dict]:
        tracemalloc.start()
        try:
            doc = insights(stream(n), answers, countries)
            return tracemalloc.get_traced_memory()[1], doc
        finally:
            tracemalloc.stop()

    small, _ = peak(1_000)
    large, doc = peak(100_000)
    assert large < small + 1_000_000, (small, large)  # not ~100 bytes more per message
    assert {r["type"]: r["messages"] for r in doc["volume"]} == {"notice": 100_000, "trace.request": "<5"}
    assert [(r["country"], r["answers"]) for r in doc["response_times"]] == [("ES", "<5")]
