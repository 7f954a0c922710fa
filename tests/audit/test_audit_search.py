"""Audit search (issue #16): an auditor finds entries by time range, event, message type, peer, outcome,
requesting unit or officer and case reference, on the local API (JSON and CSV) and with `traza audit
search`; the origin records who asked from the submitted body; what the auditor types is never SQL and
never a spreadsheet formula. Real nodes in-process (mx -> hub -> es), the local API over real mTLS."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import urllib.parse
from pathlib import Path
from typing import Any

import msgspec
import pytest
from core.message_examples import example
from kit.nodes import started, state
from kit.waiting import eventually

from gateway.cli.main import main as traza
from gateway.config import load_config
from gateway.core.timeutil import rfc3339
from gateway.localfed import NodeSpec, build
from gateway.national.client import local_request

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]
LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 60.0}


def trace(unit: str, officer: str, case: str) -> bytes:
    body = dict(example("trace.request"))
    body["requester"] = {"agency": "FGR", "unit": unit, "officer": officer}
    body["case_refs"] = [{"issuer": "FGR", "number": case}]
    return msgspec.json.encode(body)


async def search(cfg: Any, **query: str) -> tuple[int, Any]:
    return await asyncio.to_thread(local_request, cfg, "auditor", "GET",
                                   "/audit/v1/search?" + urllib.parse.urlencode(query))


@pytest.fixture
def fed(tmp_path: Path) -> dict[str, Any]:
    return build(tmp_path / "fed", SPECS, limits=LIMITS)


async def test_an_auditor_finds_what_a_unit_asked_and_under_which_case(fed, tmp_path, capsys):
    cfg = load_config(fed["mx"].config)
    async with started(fed["hub"].config), started(fed["mx"].config) as mx, started(fed["es"].config) as es:
        t0 = rfc3339(mx.clock())
        armas = await mx.submit(mt="trace.request", to="es", body=trace("Unidad de Armas", "Lic. Ana Pérez",
                                                                        "FGR/2026/77"), system="sit")
        other = await mx.submit(mt="trace.request", to="es", body=trace("=HYPERLINK(\"http://x\")", "B. Ruiz",
                                                                        "FGR/2026/80"), system="sit")
        notice = await mx.submit(mt="notice", to="es", body=msgspec.json.encode(example("notice")), system="sit")
        for jti in (armas, other, notice):
            await eventually(lambda jti=jti: _at(es, jti), timeout=20.0)

        async def jtis(**query: str) -> list[tuple[str | None, str]]:
            status, doc = await search(cfg, **query)
            assert status == 200, doc
            return [(e["entry"].get("jti"), e["entry"]["event"]) for e in doc["entries"]]

        accepted = {"event": "envelope.accepted"}
        assert await jtis(unit="armas", **accepted) == [(armas, "envelope.accepted")]
        assert await jtis(officer="pérez", **accepted) == [(armas, "envelope.accepted")]  # any case, a part
        assert await jtis(case="2026/80") == [(other, "envelope.accepted")]
        assert [j for j, _ in await jtis(type="notice")] == [notice] * len(await jtis(type="notice"))
        assert {j for j, _ in await jtis(peer="hub", type="trace.request")} == {armas, other}
        assert await jtis(since="2000-01-01T00:00:00Z", until=t0, type="trace.request") == []
        assert {j for j, _ in await jtis(since=t0, **accepted)} == {armas, other, notice}
        # what an auditor types is a value, never SQL
        assert await jtis(unit="x' OR '1'='1") == [] and await jtis(unit="%") == []
        # bad parameters are named
        status, doc = await search(cfg, since="yesterday")
        assert status == 400 and "since: 'yesterday'" in doc["detail"], doc
        status, doc = await search(cfg, colour="red")
        assert status == 400 and "unknown parameter 'colour'" in doc["detail"], doc
        # CSV for a spreadsheet: a formula-looking unit is neutralised
        status, text = await search(cfg, format="csv", event="envelope.accepted", type="trace.request")
        assert status == 200 and isinstance(text, str), text
        rows = list(csv.DictReader(io.StringIO(text)))
        assert {r["jti"] for r in rows} == {armas, other}
        units = {r["jti"]: r["unit"] for r in rows}
        assert units[armas] == "Unidad de Armas" and units[other] == "'=HYPERLINK(\"http://x\")", units
        assert {r["jti"]: r["case"] for r in rows}[armas] == "FGR:FGR/2026/77"
        # the CLI, on the database file
        rc = await asyncio.to_thread(traza, ["audit", "search", "--db", str(mx.data_dir / "node.db"), "--unit",
                                             "armas", "--event", "envelope.accepted"])
        out = capsys.readouterr().out
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]  # the nodes log here too
        assert rc == 0 and [e["jti"] for e in lines] == [armas], out


async def _at(node: Any, jti: str) -> bool:
    return await state(node, jti) is not None
