"""Attacks on an operator's terminal: text a peer controls (a problem detail, a peer's answer, an audit
entry, a message body shown by the demo) printed by the CLI must not carry control sequences that clear
the screen, retitle the window, hide lines or reorder text."""

from __future__ import annotations

import argparse
import io
from types import SimpleNamespace

from rich.console import Console

from gateway.cli import audit as cli_audit
from gateway.cli import main as cli_main
from gateway.demo.run import Demo
from gateway.national import client as cli_client

HOSTILE = "es\x1b[2J\x1b]0;owned\x07\x00\r\u2028\u2029\u0085\u009b31m\u202efdp.exe"
RAW = ("\x1b", "\x00", "\x07", "\r", "\u2028", "\u2029", "\u0085", "\u009b", "\u202e")


def clean(out: str) -> None:
    assert not any(c in out for c in RAW), repr(out)


def test_hostile_problem_detail_from_the_node_does_not_reach_the_terminal(monkeypatch, capsys):
    def fake(cfg, role, method, path, body=None, content_type="application/json"):
        return 403, {"code": "forbidden", "detail": HOSTILE}

    monkeypatch.setattr(cli_client, "local_request", fake)
    monkeypatch.setattr(cli_client, "node_config", lambda args: None)
    rc = cli_main.main(["peers", "--config", "x.toml"])
    out = capsys.readouterr()
    assert rc == 1 and "forbidden" in out.err
    clean(out.err + out.out)


def test_hostile_cells_of_a_status_table_do_not_reach_the_terminal(monkeypatch, capsys):
    def fake(cfg, role, method, path, body=None, content_type="application/json"):
        return 200, {"peers": [{"id": HOSTILE, "kind": HOSTILE, "endpoint": HOSTILE, "failures": HOSTILE,
                                "status": "[link=https://evil.example]click[/link]" + HOSTILE}]}

    monkeypatch.setattr(cli_client, "local_request", fake)
    monkeypatch.setattr(cli_client, "node_config", lambda args: None)
    assert cli_main.main(["peers", "--config", "x.toml"]) == 0
    out = capsys.readouterr().out
    clean(out)
    assert "[link=https://evil.example]" in out  # shown as text, not taken as markup


def test_hostile_inbox_message_and_timeline_do_not_reach_the_terminal(monkeypatch, capsys):
    """`traza inbox list|show`, `message show`, `conversation show`: every field and the message content
    (a peer's words) shown as plain text, never as control sequences or rich markup."""
    item = {"id": HOSTILE, "type": "notice", "from": HOSTILE, "conversation": HOSTILE, "reply_to": HOSTILE,
            "delivered_at": HOSTILE, "content_type": HOSTILE, "content": "[bold]x[/bold]" + HOSTILE,
            "acknowledged_at": None, "attachments": [{"name": HOSTILE, "len": 1, "ct": HOSTILE, "url": HOSTILE}]}
    docs = {"/local/v1/inbox?": {"messages": [item], "next": HOSTILE},
            "/local/v1/inbox/": item,
            "/local/v1/messages/": {"id": HOSTILE, "type": "notice", "from": "mx", "to": HOSTILE, "state": HOSTILE,
                                    "timeline": [{"at": HOSTILE, "state": HOSTILE, "node": HOSTILE, "detail": HOSTILE}]},
            "/local/v1/conversations/": {"conversation": HOSTILE, "summary": {"recipients": HOSTILE},
                                         "messages": [{"id": HOSTILE, "to": HOSTILE, "type": HOSTILE,
                                                       "state": HOSTILE, "answers": [item]}],
                                         "received": [item]}}

    def fake(cfg, role, method, path, body=None, content_type="application/json"):
        return 200, next(doc for prefix, doc in docs.items() if path.startswith(prefix))

    monkeypatch.setattr(cli_client, "local_request", fake)
    monkeypatch.setattr(cli_client, "node_config", lambda args: SimpleNamespace(node=SimpleNamespace(id="es")))
    for argv in (["inbox", "list"], ["inbox", "show", "x"], ["message", "show", "x"], ["conversation", "show", "x"]):
        assert cli_main.main([*argv, "--config", "x.toml"]) == 0, argv
        out = capsys.readouterr().out
        clean(out)
        assert "fdp.exe" in out, (argv, out)
    cli_main.main(["inbox", "show", "x", "--config", "x.toml"])
    assert "[bold]x[/bold]" in capsys.readouterr().out  # shown as text, not taken as markup


def test_audit_show_escapes_what_json_leaves_raw(monkeypatch, capsys):
    entry = ('{"detail":"' + HOSTILE.replace("\x1b", "\\u001b").replace("\x00", "\\u0000").replace("\x07", "\\u0007")
             .replace("\r", "\\r") + '","event":"envelope.rejected"}').encode()

    class FakeHttp:
        def __init__(self, args):
            pass

        def entries(self, **filters):
            yield 0, entry

    monkeypatch.setattr(cli_audit, "_Http", FakeHttp)
    rc = cli_audit._show(argparse.Namespace(db=None, jti="x"))
    out = capsys.readouterr().out
    assert rc == 0
    clean(out)
    import json

    assert json.loads(out)["detail"] == HOSTILE  # escaped, not altered


def test_demo_lines_with_a_peers_text_do_not_reach_the_terminal():
    buf = io.StringIO()
    demo = SimpleNamespace(out=Console(file=buf, force_terminal=False, width=300), t0=0.0)
    Demo.say(demo, "es", f"notice from eu-hub: {HOSTILE}")  # type: ignore[arg-type]
    clean(buf.getvalue())
