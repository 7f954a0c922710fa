"""Insights for policy makers (issue #16) from a real exchange: mx asks es six traces and es's national
system answers them; `GET /ops/v1/stats` and `traza stats` at mx show the volume by country pair, the
trace outcomes by country of manufacture and es's response times, computed from what mx holds, small
cells suppressed. Real nodes in-process, the local API over real mTLS."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import msgspec
import pytest
from core.message_examples import example
from kit.nodes import started, state
from kit.waiting import eventually

from gateway.cli.main import main as traza
from gateway.config import load_config
from gateway.localfed import NodeSpec, build
from gateway.national.client import local_request

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]
LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 60.0}


@pytest.fixture
def fed(tmp_path: Path) -> dict[str, Any]:
    return build(tmp_path / "fed", SPECS, limits=LIMITS)


async def test_stats_at_the_origin_show_what_its_traces_found(fed, capsys):
    cfg = load_config(fed["mx"].config)
    async with started(fed["hub"].config), started(fed["mx"].config) as mx, started(fed["es"].config) as es:
        asked = [await mx.submit(mt="trace.request", to="es", body=msgspec.json.encode(example("trace.request")),
                                 system="sit") for _ in range(6)]
        days = [200, 300, 800, 900, 1200, 4000]  # time-to-crime of each traced firearm (issue #16)
        for jti, d in zip(asked, days, strict=True):
            answer = msgspec.json.encode({**example("trace.response"), "time_to_crime_days": d})  # PARTIAL, made in AT
            await eventually(lambda jti=jti: _at(es, jti), timeout=20.0)
            await es.submit(mt="trace.response", to="mx", body=answer, system="sit", irt=jti)
        await eventually(lambda: _inbox(mx, 6), timeout=20.0)
        await es.submit(mt="notice", to="mx", body=msgspec.json.encode(example("notice")), system="sit")
        await eventually(lambda: _inbox(mx, 7), timeout=20.0)
        status, doc = await asyncio.to_thread(local_request, cfg, "operator", "GET", "/ops/v1/stats")
        assert status == 200, doc
        volume = {(r["type"], r["from_country"], r["to_country"]): r["messages"] for r in doc["volume"]}
        assert volume[("trace.request", "MX", "ES")] == 6 and volume[("trace.response", "ES", "MX")] == 6
        assert doc["trace_outcomes"] == [{"country_of_manufacture": "AT", "status": "PARTIAL", "responses": 6}]
        assert [(r["band"], r["responses"]) for r in doc["time_to_crime"]] == [
            ("under 1 year", "<5"), ("1 to 3 years", "<5"), ("3 to 5 years", "<5"), ("5 to 10 years", 0),
            ("10 years or more", "<5")]
        assert doc["time_to_crime_median_days"] == 850
        (es_times,) = doc["response_times"]
        assert es_times["country"] == "ES" and es_times["answers"] == 6 and 0 <= es_times["median_hours"] < 1
        # the single notice is a small cell
        assert all(v == "<5" for (mt, *_), v in volume.items() if mt == "notice") and any(
            mt == "notice" for mt, *_ in volume)
        # the auditor role may not read the operator's views; the CLI prints tables and CSV
        assert (await asyncio.to_thread(local_request, cfg, "auditor", "GET", "/ops/v1/stats"))[0] == 403
        capsys.readouterr()
        assert await asyncio.to_thread(traza, ["stats", "--config", str(fed["mx"].config)]) == 0
        out = capsys.readouterr().out
        assert "Trace outcomes by country of manufacture" in out and "PARTIAL" in out, out
        assert "Time-to-crime" in out and "median time-to-crime: 850 days" in out, out
        assert await asyncio.to_thread(traza, ["stats", "--config", str(fed["mx"].config), "--csv"]) == 0
        rows = list(csv.reader(io.StringIO(capsys.readouterr().out.split("\n", 0)[0])))
        assert ["trace_outcomes", "AT", "PARTIAL", "6"] in rows, rows
        assert ["time_to_crime", "5 to 10 years", "1826", "3652", "0"] in rows, rows


async def _at(node: Any, jti: str) -> bool:
    return await state(node, jti) is not None


async def _inbox(node: Any, n: int) -> bool:
    return len((await node.local_inbox(0, 100))["messages"]) >= n
