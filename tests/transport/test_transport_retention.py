"""Retention (issue #15) on an injected clock, real nodes in-process over real mTLS on 127.0.0.1: the
recipient purges the plaintext body, the envelope and the blobs (plaintext and ciphertext) of a message
once its retention has passed, a hub purges the copy it could not deliver once the message expired; each
removal is a ``payload.purged`` entry, and the message's evidence bundle still verifies."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
from kit.nodes import attach, bundle_of, entries, started, state
from kit.waiting import eventually

from adapters.standard import MEDIA_TYPE as STANDARD
from gateway.cli.main import main as traza
from gateway.core.errors import Code, TrazaError
from gateway.core.retention import DAY
from gateway.localfed import NodeSpec, build
from gateway.node import Node

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]
LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 3600.0}


def _retention(cfg: Path, text: str) -> None:
    with cfg.open("a") as f:
        f.write(f"\n[retention]\n{text}\ninterval = 0.2\n")


def _verify_bundle(tmp: Path, raw: bytes) -> None:
    path = tmp / "bundle.json"
    path.write_bytes(raw)
    done = subprocess.run([sys.executable, "-m", "gateway.cli.main", "audit", "verify-bundle", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


async def _taken_and_receipted(mx: Node, es: Node, jti: str) -> None:
    """Wait for ``jti`` in es's inbox, take it there, and wait for its receipt back at mx."""

    async def in_inbox() -> bool:
        return any(r.jti == jti for r in await es.inbox_page(0, 10))

    await eventually(in_inbox, timeout=30.0)
    assert await es.inbox_ack(jti, "system:test")

    async def delivered() -> bool:
        return await state(mx, jti) == "delivered"

    await eventually(delivered, timeout=20.0)


def _files(node: Node) -> tuple[list[str], list[str]]:
    """(ciphertext, plaintext) blob files the node holds."""
    return node.blobs.names(), node.plain_blobs.names()


async def test_the_recipient_purges_body_envelope_and_blobs_when_due_and_the_evidence_still_verifies(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    _retention(built["es"].config, "types = { notice = 1 }")
    ahead = [0.0]
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx, \
            started(built["es"].config, clock=lambda: time.time() + ahead[0]) as es:
        scan = await attach(mx, tmp_path, 20_000)
        # a body of several pages (SQLite overflow pages, freed whole when it is purged)
        body = msgspec.json.encode({"title": "t", "text": "serial 4711-XYZ " * 800})
        jti = await mx.submit(mt="notice", to="es", body=body, system="test", attachments=[scan])

        async def in_inbox() -> bool:
            return len(await es.inbox_page(0, 10)) == 1

        await eventually(in_inbox, timeout=30.0)
        assert _files(es)[1] != []  # the plaintext attachment for the national system
        report = (await es.retention_report())["messages"]
        (mine,) = [r for r in report if r["id"] == jti]
        assert mine["rule"] == "[retention] types.notice = 1" and set(mine["held"]) == {"body", "envelope"}
        assert mine["blobs"] == 2 and not mine["due"]
        # traza retention report: a table, and the same as JSON
        capsys.readouterr()
        assert await asyncio.to_thread(traza, ["retention", "report", "--config", str(built["es"].config)]) == 0
        out = capsys.readouterr().out
        assert jti[:8] in out and "types.notice = 1" in out and "kept" in out, out
        assert await asyncio.to_thread(traza, ["retention", "report", "--config", str(built["es"].config),
                                               "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert [r["until"] for r in doc["messages"] if r["id"] == jti] == [mine["until"]]

        ahead[0] = DAY + 60  # past its retention, but the national system has not taken it: kept
        await es.retention.run_once(es.clock())
        (mine,) = [r for r in (await es.retention_report())["messages"] if r["id"] == jti]
        assert mine["waiting"] and not mine["due"]
        assert (await es.inbox_page(0, 10))[0].body == body

        ahead[0] = 0.0  # taken now, receipted to mx (whose clock is the real one)
        assert await es.inbox_ack(jti, "system:test")

        async def delivered() -> bool:
            return await state(mx, jti) == "delivered"

        await eventually(delivered, timeout=20.0)
        ahead[0] = DAY + 60

        async def purged() -> bool:
            return [e["what"] for e in await entries(es, jti=jti, event="payload.purged")] != []

        await eventually(purged, timeout=20.0)
        whats = sorted(e["what"] for e in await entries(es, jti=jti, event="payload.purged"))
        assert whats == ["blob", "body", "envelope", "plaintext blob"], whats
        assert all(e.get("sha256") for e in await entries(es, jti=jti, event="payload.purged")
                   if "blob" in e["what"])
        row = await es.db.read(lambda c: c.execute("SELECT body FROM inbox WHERE jti=?", (jti,)).fetchone())
        assert row == (None,)
        assert _files(es) == ([], [])
        assert es.plain_blobs.read_index(jti) is None
        assert [r for r in (await es.retention_report())["messages"] if r["id"] == jti] == []
        assert await es.audit.publish(es.clock()) is not None
        raw = await bundle_of(es, jti)
        assert raw is not None
        del hub
    _verify_bundle(tmp_path, raw)
    # the purged body is gone from the database files themselves, not only from their tables: SQLite's
    # secure_delete=FAST left it in the pages it freed (found by grepping node.db after a purge)
    for f in built["es"].data_dir.glob("node.db*"):
        assert b"serial 4711-XYZ" not in f.read_bytes(), f


async def test_a_hub_purges_the_copy_it_could_not_deliver_once_the_message_expired(tmp_path: Path) -> None:
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    _retention(built["hub"].config, "")
    ahead = [0.0]
    async with started(built["hub"].config, clock=lambda: time.time() + ahead[0]) as hub, \
            started(built["mx"].config) as mx:  # es is down
        scan = await attach(mx, tmp_path, 20_000)
        jti = await mx.submit(mt="notice", to="es", body=msgspec.json.encode({"title": "t", "text": "x"}),
                              system="test", attachments=[scan], ttl=120)

        async def at_hub() -> bool:
            return await state(hub, jti) == "queued" and _files(hub)[0] != []

        await eventually(at_hub, timeout=20.0)
        (mine,) = [r for r in (await hub.retention_report())["messages"] if r["id"] == jti]
        assert mine["role"] == "transit" and mine["rule"] == "transit copy: the message's expiry"
        await hub.retention.run_once(hub.clock())
        assert _files(hub)[0] != []  # not due yet: still queued for es

        ahead[0] = 200.0  # past its expiry: the hub gives up on es and purges its copy

        async def purged() -> bool:
            return len(await entries(hub, jti=jti, event="payload.purged")) == 2

        await eventually(purged, timeout=20.0)
        whats = sorted(e["what"] for e in await entries(hub, jti=jti, event="payload.purged"))
        assert whats == ["blob", "envelope"], whats
        assert _files(hub) == ([], [])
        assert await hub.audit.publish(hub.clock()) is not None
        raw = await bundle_of(hub, jti)
        assert raw is not None
        del mx
    _verify_bundle(tmp_path, raw)


def _standard(to: str, **env: object) -> bytes:
    return json.dumps({"type": "notice", "to": to, "handling": "H0", "classification": "BASIC_PROTECTION_LEVEL",
                       "purpose": "INVESTIGATION", "body": {"title": "t", "text": "x"}, **env}).encode()


async def test_the_origins_delete_by_and_review_by_travel_signed_and_the_recipient_honours_them(tmp_path: Path) -> None:
    """The reference's ``retention.delete_by`` / ``review_by`` given in a submission travel in the signed
    token (claim ``ret``); the recipient keeps the content until ``delete_by`` although its own rule is
    longer, flags the message for review from ``review_by``, and purges it at ``delete_by``."""
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    _retention(built["es"].config, "days = 365")
    ahead = [0.0]
    now = time.time()
    review = time.strftime("%Y-%m-%d", time.gmtime(now + 2 * DAY))
    delete = time.strftime("%Y-%m-%d", time.gmtime(now + 4 * DAY))
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx, \
            started(built["es"].config, clock=lambda: time.time() + ahead[0]) as es:
        with pytest.raises(TrazaError) as bad:
            await mx.local_submit(STANDARD, _standard("es", retention={"delete_by": "2026-02-30"}), "default")
        assert bad.value.code == Code.SCHEMA_INVALID and "$.retention.delete_by" in bad.value.detail
        jti = await mx.local_submit(STANDARD, _standard("es", retention={"review_by": review, "delete_by": delete}),
                                    "default")

        await _taken_and_receipted(mx, es, jti)
        (mine,) = [r for r in (await es.retention_report())["messages"] if r["id"] == jti]
        assert mine["rule"] == "retention.delete_by" and mine["until"].startswith(delete)
        assert mine["review_by"].startswith(review) and not mine["review_due"]
        ahead[0] = 3 * DAY
        (mine,) = [r for r in (await es.retention_report())["messages"] if r["id"] == jti]
        assert mine["review_due"] and not mine["due"]
        assert await es.retention.run_once(es.clock()) == []
        ahead[0] = 4 * DAY + 1
        whats = sorted(e.what for e in await es.retention.run_once(es.clock()))
        assert whats == ["body", "envelope"], whats
        del hub


async def test_the_origin_purges_the_plaintext_attachment_its_national_system_uploaded(tmp_path: Path) -> None:
    """docs/operations.md: the content a node purges is the body, the envelope "and the blobs it named,
    plaintext and ciphertext"; the retention report lists every message whose content the node holds. The
    origin's own plaintext copy of an attachment (the national system's upload) was found only through an
    index the recipient writes: the origin neither counted it nor purged it, for ever."""
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    _retention(built["mx"].config, "days = 1")
    ahead = [0.0]
    async with started(built["hub"].config), started(built["mx"].config, clock=lambda: time.time() + ahead[0]) as mx, \
            started(built["es"].config) as es:
        scan = await attach(mx, tmp_path, 20_000)
        jti = await mx.submit(mt="notice", to="es", body=msgspec.json.encode({"title": "t", "text": "x"}),
                              system="test", attachments=[scan])

        await _taken_and_receipted(mx, es, jti)
        (mine,) = [r for r in (await mx.retention_report())["messages"] if r["id"] == jti]
        assert mine["role"] == "origin" and mine["blobs"] == 2, mine  # the ciphertext and the upload
        assert scan["sha256"] in mx.plain_blobs.names()
        ahead[0] = DAY + 60
        whats = sorted(e.what for e in await mx.retention.run_once(mx.clock()))
        assert "plaintext blob" in whats, whats
        assert scan["sha256"] not in mx.plain_blobs.names()
