"""Insights for policy makers (issue #16), pure: aggregates of what one node holds, never a message.

From the messages the node holds (sent, relayed, received) and the answers delivered to it:

- ``volume``: messages by type, country pair (origin's country -> recipient's country, from the manifest)
  and ISO week;
- ``trace_outcomes``: trace responses by country of manufacture (``firearm_as_recorded``) and status;
- ``response_times``: per answering country, the median and 90th percentile of the hours between a
  request this node sent and the answer it got (trace, status, licence answers);
- ``status_hits``: per answering country, status queries answered HIT / MULTIPLE_HITS / NO_HIT and the
  hit rate;
- ``ballistic``: ballistic hits by status;
- ``time_to_crime``: trace responses by time-to-crime band (``time_to_crime_days``, ATF: the days from the
  first retail sale to the recovery; under 3 years is ATF's "short time-to-crime", an indicator of
  trafficking), every band shown once any response states it, and ``time_to_crime_median_days``.

Small cells are suppressed: a count under :data:`SMALL` (5) is shown as ``"<5"``, a median or a
percentile of fewer than 5 cases is not shown (``None``), and a rate only when both its part and the rest
are at least 5 (with its total it would otherwise give a suppressed count away), so that no single case
can be recognised in a published table.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

SMALL = 5
# Time-to-crime bands: (label, first day, last day or None); years of 365 days, leap days in the later bands.
TIME_TO_CRIME_BANDS: tuple[tuple[str, int, int | None], ...] = (
    ("under 1 year", 0, 364), ("1 to 3 years", 365, 1094), ("3 to 5 years", 1095, 1825),
    ("5 to 10 years", 1826, 3652), ("10 years or more", 3653, None))
ANSWER_OF = {"trace.response": "trace.request", "firearm.status.answer": "firearm.status.query",
             "licence.verify.answer": "licence.verify.query"}


class Sent(msgspec.Struct, frozen=True):
    """A message the node holds: its id, type, origin, recipient, when it got here, what it answers."""

    jti: str
    mt: str
    iss: str
    aud: str
    at: float
    irt: str | None = None


class Answer(msgspec.Struct, frozen=True):
    """A message delivered to this node with its body (None once purged)."""

    mt: str
    iss: str
    at: float
    irt: str | None
    body: Any


def count_cell(n: int) -> int | str:
    """A published count: ``"<5"`` under :data:`SMALL` (a zero stays 0: nothing to recognise)."""
    return f"<{SMALL}" if 0 < n < SMALL else n


def _week(ts: float) -> str:
    y, w, _ = dt.datetime.fromtimestamp(ts, dt.UTC).isocalendar()
    return f"{y}-W{w:02d}"


def _percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * p
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _rate(part: int, whole: int) -> float | None:
    """``part / whole``, shown only when both the part and the rest are at least :data:`SMALL` (a rate and
    its total would otherwise give away a suppressed count)."""
    if part < SMALL or whole - part < SMALL:
        return None
    return round(part / whole, 3)


def insights(messages: Iterable[Sent], answers: Iterable[Answer], countries: Mapping[str, str]) -> dict[str, Any]:
    """The aggregates of the module docstring, small cells suppressed. ``messages`` is read once, as a
    stream: only the requests that an answer delivered here answers are kept, so what is held grows with
    the answers and the table cells, not with the messages (millions at a hub)."""
    answers = list(answers)
    wanted = {a.irt for a in answers if a.mt in ANSWER_OF and a.irt}
    by_id: dict[str, Sent] = {}
    volume: Counter[tuple[str, str, str, str]] = Counter()
    for m in messages:
        volume[(m.mt, countries.get(m.iss, "?"), countries.get(m.aud, "?"), _week(m.at))] += 1
        if m.jti in wanted:
            by_id[m.jti] = m
    outcomes: Counter[tuple[str, str]] = Counter()
    hours: defaultdict[str, list[float]] = defaultdict(list)
    hits: defaultdict[str, Counter[str]] = defaultdict(Counter)
    ballistic: Counter[str] = Counter()
    ttc: list[int] = []
    for a in answers:
        body = a.body if isinstance(a.body, dict) else {}
        country = countries.get(a.iss, "?")
        if a.mt == "trace.response" and body:
            fa = body.get("firearm_as_recorded") or {}
            outcomes[(str(fa.get("country_of_manufacture") or "unknown"), str(body.get("status")))] += 1
            days = body.get("time_to_crime_days")
            if isinstance(days, int) and not isinstance(days, bool) and days >= 0:
                ttc.append(days)
        if a.mt == "firearm.status.answer" and body:
            hits[country][str(body.get("result"))] += 1
        if a.mt == "ballistic.hit" and body:
            ballistic[str(body.get("status"))] += 1
        asked = by_id.get(a.irt or "")
        if a.mt in ANSWER_OF and asked is not None and asked.mt == ANSWER_OF[a.mt] and a.at >= asked.at:
            hours[country].append((a.at - asked.at) / 3600)
    return {
        "small_cells": f"counts under {SMALL} are shown as <{SMALL}; medians, percentiles and rates of fewer than "
                       f"{SMALL} cases are not shown",
        "volume": [{"type": mt, "from_country": a, "to_country": b, "week": w, "messages": count_cell(n)}
                   for (mt, a, b, w), n in sorted(volume.items())],
        "trace_outcomes": [{"country_of_manufacture": c, "status": s, "responses": count_cell(n)}
                           for (c, s), n in sorted(outcomes.items())],
        "response_times": [{"country": c, "answers": count_cell(len(v)),
                            "median_hours": round(_percentile(v, 0.5), 2) if len(v) >= SMALL else None,
                            "p90_hours": round(_percentile(v, 0.9), 2) if len(v) >= SMALL else None}
                           for c, v in sorted(hours.items())],
        "status_hits": [{"country": c, "queries": count_cell(sum(n.values())),
                         "hit": count_cell(n["HIT"]), "multiple_hits": count_cell(n["MULTIPLE_HITS"]),
                         "no_hit": count_cell(n["NO_HIT"]),
                         "hit_rate": _rate(n["HIT"] + n["MULTIPLE_HITS"], sum(n.values()))}
                        for c, n in sorted(hits.items())],
        "ballistic": [{"status": s, "hits": count_cell(n)} for s, n in sorted(ballistic.items())],
        "time_to_crime": _time_to_crime(ttc),
        "time_to_crime_median_days": round(_percentile([float(d) for d in ttc], 0.5)) if len(ttc) >= SMALL else None,
    }


def _time_to_crime(days: list[int]) -> list[dict[str, Any]]:
    """Responses per :data:`TIME_TO_CRIME_BANDS` band (every band, so a chart has a fixed axis; none at all
    when no response states a time-to-crime)."""
    if not days:
        return []
    return [{"band": label, "from_days": lo, "to_days": hi,
             "responses": count_cell(sum(1 for d in days if d >= lo and (hi is None or d <= hi)))}
            for label, lo, hi in TIME_TO_CRIME_BANDS]


CSV_TABLES = ("volume", "trace_outcomes", "response_times", "status_hits", "ballistic", "time_to_crime")


def csv_rows(doc: Mapping[str, Any]) -> list[list[str]]:
    """Every table of :func:`insights` as CSV rows: ``table`` first, then each table's own columns."""
    out: list[list[str]] = []
    for table in CSV_TABLES:
        rows = doc.get(table) or []
        if not rows:
            continue
        cols = list(rows[0])
        out.append(["table", *cols])
        out += [[table, *("" if r[c] is None else str(r[c]) for c in cols)] for r in rows]
    return out
