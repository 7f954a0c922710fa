"""The national system's side of the CLI against real nodes (in-process, real mTLS, real SQLite): a message
sent with `traza send` is read at the recipient with `traza inbox list|show`, acknowledged with `traza inbox
ack`, and its receipt seen at the origin with `traza message show`; the answer shows up in `traza
conversation show`. Every reporting verb prints a human table by default and JSON with `--json`; options
are accepted before or after the ids; times are RFC 3339; peers are `up`, not `closed`."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from core.message_examples import example
from kit.nodes import started
from kit.waiting import eventually

from gateway.cli.main import main
from gateway.localfed import NodeSpec, build

LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 60.0}
SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
EPOCH_FLOAT = re.compile(r"\b1[6-9]\d{8}\.\d+\b")  # 2020..2033 as seconds since the epoch


class Cli:
    """Runs `traza` in-process in a thread (the nodes serve on this event loop); returns (rc, out, err)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    async def __call__(self, *argv: str | Path) -> tuple[int, str, str]:
        self.capsys.readouterr()

        def run() -> int:
            try:
                return main([str(a) for a in argv])
            except SystemExit as exc:  # argparse usage errors
                return int(exc.code or 0)

        rc = await asyncio.to_thread(run)
        out, err = self.capsys.readouterr()
        return rc, out, err

    async def json(self, *argv: str | Path) -> Any:
        rc, out, err = await self(*argv, "--json")
        assert rc == 0, err
        return json.loads(out)


@pytest.fixture
def node_logs():
    """The in-process nodes log into a buffer, not onto the stdout the CLI's output is read from."""
    import io
    import logging

    import structlog

    from gateway import logging as tlog

    buf = io.StringIO()
    tlog.configure("json", "info", stream=buf)
    yield buf
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_traza", False):
            root.removeHandler(h)
    structlog.reset_defaults()


def not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


async def test_a_message_read_acknowledged_and_its_receipt_seen_with_the_cli(tmp_path, capsys, node_logs):
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    mx, es = built["mx"].config, built["es"].config
    cli = Cli(capsys)
    body = tmp_path / "notice.json"
    body.write_text(json.dumps(example("notice")))
    async with started(built["hub"].config), started(mx), started(es):
        # `send --quiet` prints the id alone, for `ID=$(traza send ... --quiet)`
        rc, out, err = await cli("send", "--config", mx, "--to", "es", "--type", "notice", "--quiet", "--handling", "H1",
                                 body)
        assert rc == 0, err
        jti = out.strip()
        assert re.fullmatch(r"[0-9a-f-]{36}", jti), out

        async def in_inbox() -> list[dict[str, Any]]:
            return [m for m in (await cli.json("inbox", "list", "--config", es))["messages"] if m["id"] == jti]

        (item,) = await eventually(in_inbox, timeout=20.0)
        assert (item["type"], item["from"], item["conversation"]) == ("notice", "mx", jti)
        rc, out, err = await cli("inbox", "list", "--config", es)
        assert rc == 0 and not_json(out) and jti in out and "notice" in out and "mx" in out, out
        assert item["delivered_at"] in out

        # show: options before or after the id
        for argv in (("inbox", "show", "--config", es, jti), ("inbox", "show", jti, "--config", es)):
            rc, out, err = await cli(*argv)
            assert rc == 0, err
            assert jti in out and example("notice")["title"] in out and "not yet" in out, out
            # the marking (issue #15): H1 with its notice, classification and purpose
            assert "H1: not for judicial proceedings without the provider's permission" in " ".join(out.split()), out
            assert "BASIC_PROTECTION_LEVEL" in out and "INVESTIGATION" in out, out
        shown = await cli.json("inbox", "show", "--config", es, jti)
        assert shown["id"] == jti and shown["acknowledged_at"] is None
        assert json.loads(shown["content"])["body"] == example("notice")

        rc, out, err = await cli("inbox", "ack", "--config", es, jti)
        assert rc == 0 and "acknowledged" in out and "receipt" in out and "mx" in out, out + err
        rc, out, err = await cli("inbox", "ack", jti, "--config", es)
        assert rc == 0 and "already acknowledged" in out, out + err
        assert await in_inbox() == []  # no longer waiting
        shown = await cli.json("inbox", "show", "--config", es, jti)  # still readable once taken
        assert RFC3339.match(shown["acknowledged_at"]), shown

        async def delivered() -> dict[str, Any] | None:
            doc = await cli.json("message", "show", "--config", mx, jti)
            return doc if doc["state"] == "delivered" else None

        status = await eventually(delivered, timeout=20.0)
        assert all(RFC3339.match(step["at"]) for step in status["timeline"]), status["timeline"]
        assert status["timeline"][-1]["node"] == "es" and "receipt DELIVERED" in status["timeline"][-1]["detail"]
        rc, out, err = await cli("message", "show", jti, "--config", mx)
        assert rc == 0 and not_json(out) and "delivered" in out and "receipt DELIVERED" in out, out
        assert not EPOCH_FLOAT.search(out) and re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", out), out

        # es answers in the same conversation; mx sees it with `conversation show`
        rc, out, err = await cli("send", "--config", es, "--to", "mx", "--type", "notice", "--reply-to", jti,
                                 "--quiet", body)
        assert rc == 0, err
        answer = out.strip()

        async def answered() -> dict[str, Any] | None:
            doc = await cli.json("conversation", "show", "--config", mx, jti)
            return doc if doc["summary"]["answered"] else None

        conv = await eventually(answered, timeout=20.0)
        assert conv["conversation"] == jti
        (m,) = conv["messages"]
        assert (m["id"], m["to"], m["type"], m["state"]) == (jti, "es", "notice", "delivered"), m
        assert [a["id"] for a in m["answers"]] == [answer] and m["answers"][0]["from"] == "es"
        assert conv["summary"] == {"recipients": 1, "answered": 1, "pending": 0, "failed": 0}
        rc, out, err = await cli("conversation", "show", "--config", mx, jti)
        assert rc == 0 and not_json(out) and jti in out and answer in out and "es" in out, out
        # at es the conversation holds the message it received and the answer it sent
        there = await cli.json("conversation", "show", jti, "--config", es)
        assert [x["id"] for x in there["messages"]] == [answer]
        assert [x["id"] for x in there["received"]] == [jti]

        # unknown ids: one line, exit 1
        rc, out, err = await cli("message", "show", "--config", mx, "019a7c3e-52d1-7a4b-8c6e-2f9d1b3a4c5e")
        assert rc == 1 and "no message" in err and "Traceback" not in err, err
        rc, out, err = await cli("inbox", "show", "--config", es, "019a7c3e-52d1-7a4b-8c6e-2f9d1b3a4c5e")
        assert rc == 1 and "no inbox message" in err, err
        rc, out, err = await cli("conversation", "show", "--config", es, "019a7c3e-52d1-7a4b-8c6e-2f9d1b3a4c5e")
        assert rc == 1 and "no conversation" in err, err

        # operator views: tables by default, JSON with --json; peers a person understands
        rc, out, err = await cli("peers", "--config", mx)
        assert rc == 0 and not_json(out) and "hub" in out and "up" in out and "closed" not in out, out
        peers = await cli.json("peers", "--config", mx)
        (hub,) = peers["peers"]
        assert (hub["id"], hub["state"], hub["status"]) == ("hub", "closed", "up"), hub
        rc, out, err = await cli("status", "--config", mx)
        assert rc == 0 and not_json(out) and "mx" in out and "delivered" in out, out
        assert (await cli.json("status", "--config", mx))["node"] == "mx"
        for argv in (("queue", "list"), ("queue", "list", "--dead"), ("queue", "list", "--overdue")):
            rc, out, err = await cli(*argv, "--config", mx)
            assert rc == 0 and not_json(out), (argv, out, err)
            assert isinstance(await cli.json(*argv, "--config", mx), dict)


def test_queue_list_refuses_dead_and_overdue_together_as_bad_usage(capsys):
    """One list at a time: ``--dead --overdue`` was accepted and ``--dead`` silently won."""
    from gateway.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["queue", "list", "--dead", "--overdue", "--config", "x.toml"])
    assert e.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("argv, dest, value", [
    (["queue", "retry", "--config", "x.toml", "5"], "id", "5"),
    (["queue", "discard", "5", "--config", "x.toml"], "id", "5"),
    (["queue", "resend", "--config", "x.toml", "--json", "abc"], "id", "abc"),
    (["inbox", "ack", "--config", "x.toml", "abc", "--refuse", "not ours"], "id", "abc"),
    (["message", "show", "--json", "--config", "x.toml", "abc"], "id", "abc"),
    (["conversation", "show", "--config", "x.toml", "abc"], "cid", "abc"),
    (["schema", "check", "--json", "notice", "body.json"], "file", "body.json"),
])
def test_options_are_accepted_before_or_after_the_ids(argv, dest, value):
    from gateway.cli.main import build_parser

    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value


def test_no_verb_has_an_optional_positional_that_swallows_a_later_one():
    """argparse fills an optional positional (nargs ?) before the options that follow it, so a positional
    after those options is refused (`queue retry --config X 5`); every verb's positionals are required."""
    import argparse

    from gateway.cli.main import build_parser

    def walk(p: argparse.ArgumentParser, path: str) -> list[str]:
        bad = []
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sp in a.choices.items():
                    bad += walk(sp, f"{path} {name}")
            elif not a.option_strings and a.nargs in ("?", "*"):
                bad.append(f"{path}: {a.dest}")
        return bad

    assert walk(build_parser(), "traza") == []
