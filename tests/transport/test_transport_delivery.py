"""Delivery transports (SPEC §6, docs/delivery.md), in-process with real nodes: it -> eu-hub -> es over
real mTLS, es delivering by webhook (a real aiohttp HTTPS receiver on 127.0.0.1 that requires es's
client certificate) or into a drop folder."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web
from core.message_examples import example
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kit.waiting import eventually

from adapters import get_adapter
from gateway.config import ConfigError, load_config
from gateway.crypto.tls import peer_node_id
from gateway.localfed import LocalNode, NodeSpec, build, free_ports
from gateway.national.delivery import (
    REJECTED_EVENT,
    DropDelivery,
    WebhookDelivery,
    content_type_for,
    extension,
)
from gateway.node import Node

ES_SAMPLES = Path(__file__).resolve().parents[2] / "adapters" / "es" / "samples"


# --- a webhook server certificate (its own CA, IP SAN 127.0.0.1) -------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_server_cert(d: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key) for a webhook receiver at 127.0.0.1."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("webhook test CA")).issuer_name(_name("webhook test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder().subject_name(_name("national webhook")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    d.mkdir(parents=True, exist_ok=True)
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    return d / "ca.pem", d / "server.pem", d / "server.key"


class Receiver:
    """A national system's webhook: HTTPS on 127.0.0.1, client certificate required (federation CA).
    ``respond(n, request)`` gives the status of the n-th POST (1-based)."""

    def __init__(self, respond: Callable[[int, web.Request], int]) -> None:
        self.respond = respond
        self.posts: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        # awaited before each POST is answered (the national system's time to take it)
        self.before: Callable[[web.Request], Awaitable[None]] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        ssl_obj = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = ssl_obj.getpeercert(binary_form=True) if ssl_obj else None
        body = await request.read()
        if self.before is not None:
            await self.before(request)
        self.posts.append({"headers": dict(request.headers), "body": body,
                           "client": peer_node_id(der) if der else None})
        status = self.respond(len(self.posts), request)
        return web.Response(status=status, text="accepted" if status < 300 else f"refused: status {status}")

    async def start(self, ctx: ssl.SSLContext, port: int) -> None:
        app = web.Application()
        app.router.add_post("/in", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port, ssl_context=ctx).start()

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()


def server_ctx(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


# --- an in-process federation: it -> eu-hub -> es ----------------------------------------------------

LIMITS = {"retry_min": 0.05, "retry_max": 0.4, "checkpoint_interval": 60.0}


def specs(delivery: dict[str, Any]) -> list[NodeSpec]:
    return [NodeSpec("eu-hub", "hub", "NL"),
            NodeSpec("es", "national", "ES", hub="eu-hub", delivery=delivery, adapter="es"),
            NodeSpec("it", "national", "IT", hub="eu-hub")]


@contextlib.asynccontextmanager
async def running(built: dict[str, LocalNode]) -> AsyncIterator[dict[str, Node]]:
    nodes: dict[str, Node] = {}
    try:
        for nid in ("eu-hub", "es", "it"):
            nodes[nid] = Node(load_config(built[nid].config))
            await nodes[nid].start()
        yield nodes
    finally:
        for n in nodes.values():
            await n.stop()


async def send_notice(nodes: dict[str, Node], title: str = "t") -> str:
    body = {**example("notice"), "title": title}
    return await nodes["it"].submit(mt="notice", to="es", body=msgspec.json.encode(body), system="test")


async def state(node: Node, jti: str) -> str | None:
    st = await node.message_status(jti)
    return st["state"] if st else None


async def has_state(node: Node, jti: str, want: str) -> bool:
    return await state(node, jti) == want


async def audit_events(node: Node, jti: str) -> list[str]:
    doc = await node.audit_entries({"jti": jti, "limit": "100"})
    return [json.loads(base64.b64decode(e["entry"]))["event"] for e in doc["entries"]]


# --- webhook -------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def webhook_federation(tmp_path: Path, respond: Callable[[int, web.Request], int], *,
                             trusted_ca: bool = True) -> AsyncIterator[tuple[dict[str, Node], Receiver]]:
    """The federation with es delivering by webhook to a Receiver on 127.0.0.1 that requires a client
    certificate from the federation CA. With ``trusted_ca=False`` es is configured with a CA that did
    not issue the receiver's certificate."""
    ca, cert, key = make_server_cert(tmp_path / "webhook")
    other_ca, _, _ = make_server_cert(tmp_path / "other")
    (port,) = free_ports(1)
    built = build(tmp_path / "fed", specs({"mode": "webhook", "webhook_url": f"https://127.0.0.1:{port}/in",
                                           "webhook_ca": str(ca if trusted_ca else other_ca)}), limits=LIMITS)
    rec = Receiver(respond)
    await rec.start(server_ctx(cert, key, tmp_path / "fed" / "pki" / "ca" / "ca.pem"), port)
    try:
        async with running(built) as nodes:
            yield nodes, rec
    finally:
        await rec.stop()


async def test_webhook_retried_until_2xx_then_acked_once_with_the_receipt(tmp_path):
    async with webhook_federation(tmp_path, lambda n, _r: 503 if n <= 2 else 204) as (nodes, rec):
        es = nodes["es"]
        jti = await send_notice(nodes, "webhook one")
        # the receipt reaches the origin: es acked it after the 2xx
        await eventually(lambda: has_state(nodes["it"], jti, "delivered"))
        assert [p["headers"]["Traza-Message-Id"] for p in rec.posts] == [jti] * 3
        first = rec.posts[0]
        h = first["headers"]
        assert first["client"] == "es"  # es's client certificate was presented and verified
        assert h["Content-Type"] == "application/vnd.traza.es+xml"
        assert (h["Traza-Message-Type"], h["Traza-From"], h["Traza-Conversation"]) == ("notice", "it", jti)
        back = get_adapter("es").to_standard(first["body"], h["Content-Type"])
        assert back.mt == "notice" and back.body["title"] == "webhook one" and back.received["id"] == jti
        assert await state(es, jti) == "delivered"
        assert (await es.local_inbox(0, 100))["messages"] == []
        # acked exactly once, by the webhook
        events = await audit_events(es, jti)
        assert events.count("envelope.delivered") == 1
        doc = await es.audit_entries({"jti": jti, "event": "envelope.delivered", "limit": "10"})
        entry = json.loads(base64.b64decode(doc["entries"][0]["entry"]))
        assert entry["to"] == "webhook:127.0.0.1"
        # never pushed again
        await asyncio.sleep(0.5)
        assert len(rec.posts) == 3
        dl = es.delivery
        assert isinstance(dl, WebhookDelivery) and dl.session is not None and not dl.session.closed
    assert dl.session.closed  # node.stop() cancelled the task, which closed its client session


async def test_webhook_4xx_for_one_message_does_not_hold_back_the_others(tmp_path):
    from structlog.testing import capture_logs

    def respond(_n: int, req: web.Request) -> int:
        return 422 if refuse and req.headers["Traza-Message-Id"] == bad else 200

    refuse, bad = True, ""
    async with webhook_federation(tmp_path, respond) as (nodes, rec):
        with capture_logs() as logs:
            bad = await send_notice(nodes, "refused by the national system")
            await eventually(lambda: any(p["headers"]["Traza-Message-Id"] == bad for p in rec.posts))
            good = await send_notice(nodes, "accepted")
            await eventually(lambda: has_state(nodes["it"], good, "delivered"))
            assert await state(nodes["es"], bad) != "delivered"
            refused = [e for e in logs if e["event"] == "webhook.refused"]
            assert refused and refused[0]["status"] == 422 and refused[0]["jti"] == bad
            assert refused[0]["log_level"] == "error" and "refused: status 422" in refused[0]["body"]
            # retried, not dropped: once the national system accepts it, it is delivered
            refuse = False
            await eventually(lambda: has_state(nodes["it"], bad, "delivered"))
        assert sum(1 for p in rec.posts if p["headers"]["Traza-Message-Id"] == bad) >= 2


async def test_webhook_server_not_chained_to_webhook_ca_gets_nothing(tmp_path):
    async with webhook_federation(tmp_path, lambda n, _r: 200, trusted_ca=False) as (nodes, rec):
        jti = await send_notice(nodes)
        await eventually(lambda: nodes["es"].local_inbox(0, 10))
        await asyncio.sleep(1.0)
        assert rec.posts == []
        assert await state(nodes["es"], jti) != "delivered"
        dl = nodes["es"].delivery
        assert isinstance(dl, WebhookDelivery) and dl.posts >= 2 and dl.server_failures >= 2


# --- drop folder ---------------------------------------------------------------------------------------


async def drop_ready(es: Node) -> DropDelivery:
    """es's drop-folder delivery, once its folders are ready."""
    dl = es.delivery
    assert isinstance(dl, DropDelivery)
    await asyncio.wait_for(dl.ready.wait(), 10)
    return dl


def drop_federation(tmp_path: Path) -> tuple[dict[str, LocalNode], Path]:
    drop = tmp_path / "es-drop"
    return build(tmp_path / "fed", specs({"mode": "drop", "drop_dir": str(drop), "poll_seconds": 0.1}),
                 limits={**LIMITS, "max_request": 64 * 1024}), drop


def sample(name: str, to: str = "it") -> bytes:
    return (ES_SAMPLES / name).read_bytes().replace(b"<Destino>mx</Destino>", f"<Destino>{to}</Destino>".encode())


async def test_drop_folder_delivers_atomically_once_and_sends_national_files(tmp_path):
    built, drop = drop_federation(tmp_path)
    async with running(built) as nodes:
        es = nodes["es"]
        await drop_ready(es)
        for sub in ("inbox", "outbox", "sent", "rejected", ".tmp", ".submitting"):
            assert (drop / sub).is_dir()
        jti = await send_notice(nodes, "into the drop folder")
        f = drop / "inbox" / f"{jti}.xml"
        await eventually(lambda: has_state(nodes["it"], jti, "delivered"))
        assert f.is_file() and sorted(p.name for p in (drop / "inbox").iterdir()) == [f.name]
        assert list((drop / ".tmp").iterdir()) == []
        back = get_adapter("es").to_standard(f.read_bytes(), "application/vnd.traza.es+xml")
        assert back.body["title"] == "into the drop folder" and back.received["from"] == "it"
        assert (await audit_events(es, jti)).count("envelope.delivered") == 1
        # taken: a later sweep does not write it again
        dl = es.delivery
        assert isinstance(dl, DropDelivery)
        mtime = f.stat().st_mtime_ns
        assert await dl.deliver_pending() == 0
        assert f.stat().st_mtime_ns == mtime

        # a national file dropped into outbox/ is sent and moved to sent/ with its id beside it
        (drop / "outbox" / ".partial.xml").write_bytes(b"<not yet")  # dot files are never read
        (drop / "outbox" / "aviso.xml").write_bytes(sample("notice.xml"))
        idf = drop / "sent" / "aviso.xml.id"
        await eventually(idf.is_file)
        sent_id = idf.read_text().strip()
        assert (drop / "sent" / "aviso.xml").read_bytes() == sample("notice.xml")
        assert not (drop / "outbox" / "aviso.xml").exists()
        assert (drop / "outbox" / ".partial.xml").exists()
        st = await es.message_status(sent_id)
        assert st is not None and st["type"] == "notice" and st["to"] == "it"
        await eventually(lambda: in_inbox(nodes["it"], sent_id))  # and it reaches it


async def in_inbox(node: Node, jti: str) -> bool:
    return any(m["id"] == jti for m in (await node.local_inbox(0, 100))["messages"])


async def test_drop_folder_malformed_file_is_rejected_with_a_readable_reason(tmp_path):
    built, drop = drop_federation(tmp_path)
    async with running(built) as nodes:
        es = nodes["es"]
        await drop_ready(es)
        bad = sample("notice.xml").replace(b"<Clasificacion>BASIC_PROTECTION_LEVEL</Clasificacion>",
                                           b"<Clasificacion>MUY_SECRETO</Clasificacion>")
        (drop / "outbox" / "mal.xml").write_bytes(bad)
        (drop / "outbox" / "nota.txt").write_bytes(b"hola")
        (drop / "outbox" / "grande.xml").write_bytes(b" " * (64 * 1024 + 1))
        err = drop / "rejected" / "mal.xml.error.txt"
        await eventually(lambda: all((drop / "rejected" / f"{n}.error.txt").is_file()
                                     for n in ("mal.xml", "nota.txt", "grande.xml")))
        assert "code: too_large" in (drop / "rejected" / "grande.xml.error.txt").read_text()
        text = err.read_text()
        assert "file: mal.xml" in text and "Clasificacion" in text and "MUY_SECRETO" in text, text
        assert (drop / "rejected" / "mal.xml").read_bytes() == bad
        assert ".xml" in (drop / "rejected" / "nota.txt.error.txt").read_text()
        assert not list((drop / "outbox").iterdir()) and not list((drop / ".submitting").iterdir())
        async def rejected() -> list[Any]:
            doc = await es.audit_entries({"event": REJECTED_EVENT, "limit": "10"})
            return [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]

        got = await eventually(lambda: rejected())
        # the audit entry names the field and the reason, not the file's value (SPEC §7.1: never payload
        # content; the value is in rejected/mal.xml.error.txt, for the national system)
        (mal,) = [e for e in got if e["file"] == "mal.xml"]
        assert "Clasificacion" in mal["detail"] and "MUY_SECRETO" not in mal["detail"], mal
        # the node keeps going: a good file after it is sent
        (drop / "outbox" / "bien.xml").write_bytes(sample("notice.xml"))
        await eventually((drop / "sent" / "bien.xml.id").is_file)
        assert es.ready and not es.stopping.is_set()


async def test_drop_folder_restart_after_a_crash_while_submitting(tmp_path):
    built, drop = drop_federation(tmp_path)
    async with running(built) as nodes:
        es = nodes["es"]
        dl = await drop_ready(es)
        # as a crash would leave them: one file submitted with its id recorded, one in flight
        (drop / ".submitting" / "done.xml").write_bytes(b"x")
        (drop / ".submitting" / "done.xml.id").write_text("0197a6f0-0000-7000-8000-000000000000\n")
        (drop / ".submitting" / "inflight.xml").write_bytes(b"y")
        (drop / ".tmp" / "half.xml").write_bytes(b"z")
        await asyncio.to_thread(dl.prepare)
        assert (drop / "sent" / "done.xml").read_bytes() == b"x"
        assert (drop / "sent" / "done.xml.id").read_text().startswith("0197a6f0")
        assert (drop / "rejected" / "inflight.xml").read_bytes() == b"y"
        assert "may or may not have been sent" in (drop / "rejected" / "inflight.xml.error.txt").read_text()
        assert not list((drop / ".submitting").iterdir()) and not list((drop / ".tmp").iterdir())


def test_extensions_and_content_types_by_file_name():
    assert extension("application/vnd.traza.mx+json") == "json"
    assert extension("text/csv; charset=utf-8") == "csv"
    assert extension("application/x-x3p") == "x3p"
    assert content_type_for(get_adapter("mx"), "a.JSON") == "application/vnd.traza.mx+json"
    assert content_type_for(get_adapter("mx"), "a.traza.json") == "application/vnd.traza.message+json"
    assert content_type_for(get_adapter("de"), "x.csv") == "application/vnd.traza.de+csv"
    assert content_type_for(get_adapter("es"), "x.csv") is None
    assert content_type_for(get_adapter("x3p"), "scan.x3p") == "application/x-x3p"


def test_config_delivery_errors_name_file_key_and_reason(tmp_path):
    built = build(tmp_path / "fed", specs({}), limits=LIMITS)
    path = built["es"].config
    base = path.read_text()

    def with_delivery(lines: str) -> str:
        path.write_text(base.replace('[delivery]\nmode = "inbox"\n', "[delivery]\n" + lines))
        try:
            load_config(path)
        except ConfigError as exc:
            return str(exc)
        return ""

    assert with_delivery('mode = "webhook"\nwebhook_url = "http://x/in"\n') .startswith(
        f"{path}: delivery.webhook_url: 'http://x/in' is not an https:// URL")
    msg = with_delivery('mode = "webhook"\nwebhook_url = "https://x/in"\nwebhook_ca = "nope.pem"\n')
    assert msg.startswith(f"{path}: delivery.webhook_ca: file ") and "does not exist" in msg
    assert with_delivery('mode = "drop"\n') == f"{path}: delivery.drop_dir: required when delivery.mode is 'drop'"
    assert "delivery.poll_seconds" in with_delivery('mode = "drop"\ndrop_dir = "d"\npoll_seconds = 0\n')
    assert with_delivery('mode = "drop"\ndrop_dir = "d"\n') == ""


# --- delivery metadata: the marking arrives in every mode (SPEC §6 1.1, issue #15) --------------------

RESTRICTIONS = "no contactar al titular antes del 31/01/2027 - do not contact the owner"
MARKING = {"handling": "H3", "handling_restrictions": RESTRICTIONS, "onward_transfer": "PROHIBITED",
           "classification": "RESTREINT_UE", "purpose": "PROSECUTION"}


async def send_marked(nodes: dict[str, Node], title: str) -> tuple[str, str]:
    """Two notices it -> es marked H3 (with restrictions), RESTREINT_UE, PROSECUTION, the second a reply
    to the first; returns (first id, second id)."""
    kw: dict[str, Any] = {"hc": "H3", "hr": RESTRICTIONS, "ot": "PROHIBITED", "cls": "RESTREINT_UE",
                          "pur": "PROSECUTION"}
    first = await nodes["it"].origin.submit(mt="notice", to="es", system="test",
                                            body=msgspec.json.encode({**example("notice"), "title": title}), **kw)
    second = await nodes["it"].origin.submit(mt="notice", to="es", system="test", irt=first,
                                             body=msgspec.json.encode({**example("notice"), "title": title}), **kw)
    return first, second


def assert_marked(got: dict[str, Any], reply_to: str | None) -> None:
    assert {k: got.get(k) for k in MARKING} == MARKING, got
    assert got.get("reply_to") == reply_to, got


async def test_inbox_items_carry_handling_restrictions_classification_purpose_and_reply_to(tmp_path):
    built = build(tmp_path / "fed", specs({}), limits=LIMITS)
    async with running(built) as nodes:
        es = nodes["es"]
        first, second = await send_marked(nodes, "marked for the inbox")
        await eventually(lambda: in_inbox(es, second))
        items = {m["id"]: m for m in (await es.local_inbox(0, 100))["messages"]}
        assert_marked(items[first], None)
        assert_marked(items[second], first)
        # the national form (es XML) carries the same marking
        back = get_adapter("es").to_standard(items[second]["content"].encode(), items[second]["content_type"])
        assert_marked({**back.envelope(), **back.received}, first)
        assert RESTRICTIONS in items[second]["content"]
        # GET /local/v1/inbox/<id>, before and after the acknowledgement
        one = await es.local_inbox_message(second)
        assert one is not None
        assert_marked(one, first)
        assert await es.inbox_ack(second, who="local:system:test")
        one = await es.local_inbox_message(second)
        assert one is not None and one["acknowledged_at"] is not None
        assert_marked(one, first)


async def test_webhook_delivery_carries_the_marking_in_headers_and_national_body(tmp_path):
    async with webhook_federation(tmp_path, lambda n, _r: 200) as (nodes, rec):
        first, second = await send_marked(nodes, "marked for the webhook")
        await eventually(lambda: has_state(nodes["it"], second, "delivered"))
        post = next(p for p in rec.posts if p["headers"]["Traza-Message-Id"] == second)
        h = post["headers"]
        assert (h["Traza-Handling"], h["Traza-Classification"], h["Traza-Purpose"], h["Traza-Reply-To"]) == (
            "H3", "RESTREINT_UE", "PROSECUTION", first)
        from urllib.parse import unquote
        assert unquote(h["Traza-Handling-Restrictions"]) == RESTRICTIONS
        assert h["Traza-Onward-Transfer"] == "PROHIBITED"
        back = get_adapter("es").to_standard(post["body"], h["Content-Type"])
        assert_marked({**back.envelope(), **back.received}, first)
        post1 = next(p for p in rec.posts if p["headers"]["Traza-Message-Id"] == first)
        assert "Traza-Reply-To" not in post1["headers"] and post1["headers"]["Traza-Handling"] == "H3"


async def test_drop_folder_file_carries_the_marking(tmp_path):
    built, drop = drop_federation(tmp_path)
    async with running(built) as nodes:
        first, second = await send_marked(nodes, "marked for the drop folder")
        await eventually(lambda: has_state(nodes["it"], second, "delivered"))
        data = (drop / "inbox" / f"{second}.xml").read_bytes()
        assert b"<CodigoManejo>H3</CodigoManejo>" in data and RESTRICTIONS.encode() in data
        back = get_adapter("es").to_standard(data, "application/vnd.traza.es+xml")
        assert_marked({**back.envelope(), **back.received}, first)


# --- a message the national adapter cannot write (docs/delivery.md "Untranslatable messages") ---------

CTL = "ctl\x01char"  # U+0001: accepted by the schema, cannot be written in XML (the es adapter)
STANDARD_CT = "application/vnd.traza.message+json"


def assert_untranslated_item(item: dict[str, Any], jti: str) -> None:
    assert item["id"] == jti and item["content_type"] == STANDARD_CT
    assert "adapter es cannot write" in item["untranslated"] and "U+0001" in item["untranslated"], item
    doc = json.loads(item["content"])
    assert doc["id"] == jti and doc["body"]["title"] == CTL and doc["untranslated"] == item["untranslated"]


async def test_untranslatable_message_does_not_make_the_pull_inbox_500_nor_hide_the_others(tmp_path):
    from gateway.national.client import local_request

    built = build(tmp_path / "fed", specs({}), limits=LIMITS)
    async with running(built) as nodes:
        es = nodes["es"]
        good1 = await send_notice(nodes, "before")
        bad = await send_notice(nodes, CTL)
        good2 = await send_notice(nodes, "after")
        await eventually(lambda: _count_inbox(es, 3))
        cfg = load_config(built["es"].config)
        status, doc = await asyncio.to_thread(local_request, cfg, "system", "GET", "/local/v1/inbox?limit=100")
        assert status == 200, doc
        items = {m["id"]: m for m in doc["messages"]}
        assert list(items) == [good1, bad, good2]
        assert items[good1]["content_type"] == "application/vnd.traza.es+xml" and items[good1]["untranslated"] is None
        assert_untranslated_item(items[bad], bad)
        status, one = await asyncio.to_thread(local_request, cfg, "system", "GET", f"/local/v1/inbox/{bad}")
        assert status == 200, one
        assert_untranslated_item(one, bad)
        status, conv = await asyncio.to_thread(local_request, cfg, "system", "GET", f"/local/v1/conversations/{bad}")
        assert status == 200 and conv["received"][0]["untranslated"], conv
        # taken once through the pull API: the origin gets its receipt; the node logs what it could not write
        from structlog.testing import capture_logs
        with capture_logs() as logs:
            for _ in range(2):
                status, _ = await asyncio.to_thread(local_request, cfg, "system", "POST", f"/local/v1/inbox/{bad}/ack",
                                                    b"")
                assert status == 200
        await eventually(lambda: has_state(nodes["it"], bad, "delivered"))
        assert (await audit_events(es, bad)).count("envelope.delivered") == 1
        noted = [e for e in logs if e["event"] == "delivery.untranslated"]
        assert len(noted) == 1 and noted[0]["jti"] == bad and "U+0001" in noted[0]["reason"], noted
        assert noted[0]["to"].startswith("local:system:") and noted[0]["log_level"] == "warning"


async def _count_inbox(node: Node, n: int) -> bool:
    return len(await node.inbox_page(0, 100)) >= n


async def test_untranslatable_message_is_pushed_once_to_the_webhook_in_the_standard_form(tmp_path):
    async with webhook_federation(tmp_path, lambda n, _r: 200) as (nodes, rec):
        bad = await send_notice(nodes, CTL)
        good = await send_notice(nodes, "after")
        await eventually(lambda: has_state(nodes["it"], good, "delivered"))
        await eventually(lambda: has_state(nodes["it"], bad, "delivered"))
        posts = [p for p in rec.posts if p["headers"]["Traza-Message-Id"] == bad]
        assert len(posts) == 1
        h = posts[0]["headers"]
        assert h["Content-Type"] == STANDARD_CT
        from urllib.parse import unquote
        note = unquote(h["Traza-Untranslated"])
        assert "adapter es cannot write" in note and "U+0001" in note
        doc = json.loads(posts[0]["body"])
        assert doc["body"]["title"] == CTL and doc["untranslated"] == note
        assert (await audit_events(nodes["es"], bad)).count("envelope.delivered") == 1
        await asyncio.sleep(0.5)
        assert sum(p["headers"]["Traza-Message-Id"] == bad for p in rec.posts) == 1


async def test_untranslatable_message_is_written_once_to_the_drop_folder_in_the_standard_form(tmp_path):
    built, drop = drop_federation(tmp_path)
    async with running(built) as nodes:
        bad = await send_notice(nodes, CTL)
        good = await send_notice(nodes, "after")
        await eventually(lambda: has_state(nodes["it"], good, "delivered"))
        await eventually(lambda: has_state(nodes["it"], bad, "delivered"))
        f = drop / "inbox" / f"{bad}.traza.json"
        assert f.is_file() and not (drop / "inbox" / f"{bad}.xml").exists()
        doc = json.loads(f.read_bytes())
        assert doc["body"]["title"] == CTL and "U+0001" in doc["untranslated"]
        assert (drop / "inbox" / f"{good}.xml").is_file()
        assert (await audit_events(nodes["es"], bad)).count("envelope.delivered") == 1


# --- a message taken through the pull API is not pushed (docs/delivery.md) -----------------------------


def hold_sweeps(dl: Any, name: str) -> asyncio.Event:
    """Hold ``dl``'s sweep method ``name`` until the returned event is set (so that the messages sent
    meanwhile are read as one page)."""
    gate, sweep = asyncio.Event(), getattr(dl, name)

    async def held(*args: Any) -> Any:
        await gate.wait()
        return await sweep(*args)

    setattr(dl, name, held)
    return gate


async def test_message_taken_through_the_pull_api_during_a_webhook_sweep_is_not_pushed(tmp_path):
    async with webhook_federation(tmp_path, lambda n, _r: 200) as (nodes, rec):
        es = nodes["es"]
        dl = es.delivery
        assert isinstance(dl, WebhookDelivery)
        gate = hold_sweeps(dl, "deliver_due")
        first, second = await send_notice(nodes, "pushed"), await send_notice(nodes, "pulled")
        await eventually(lambda: _count_inbox(es, 2))

        async def take_second_while_first_is_posted(request: web.Request) -> None:
            if request.headers["Traza-Message-Id"] == first:
                assert await es.inbox_ack(second, who="local:system:test")

        rec.before = take_second_while_first_is_posted
        gate.set()
        es.inbox_event.set()
        await eventually(lambda: has_state(nodes["it"], first, "delivered"))
        await eventually(lambda: has_state(nodes["it"], second, "delivered"))
        await asyncio.sleep(0.5)
        assert [p["headers"]["Traza-Message-Id"] for p in rec.posts] == [first]
        assert (await audit_events(es, second)).count("envelope.delivered") == 1


async def test_message_taken_through_the_pull_api_during_a_drop_sweep_is_not_written(tmp_path):
    built, drop = drop_federation(tmp_path)
    async with running(built) as nodes:
        es = nodes["es"]
        dl = await drop_ready(es)
        gate = hold_sweeps(dl, "deliver_pending")
        first, second = await send_notice(nodes, "written"), await send_notice(nodes, "pulled")
        await eventually(lambda: _count_inbox(es, 2))
        ack = es.inbox_ack

        async def take_second_with_the_first(jti: str, who: str, *a: Any) -> bool:
            if jti == first and who == "drop":  # the national system takes the second meanwhile
                assert await ack(second, who="local:system:test")
            return await ack(jti, who, *a)

        es.inbox_ack = take_second_with_the_first  # type: ignore[method-assign]
        gate.set()
        es.inbox_event.set()
        await eventually(lambda: has_state(nodes["it"], first, "delivered"))
        await eventually(lambda: has_state(nodes["it"], second, "delivered"))
        await asyncio.sleep(0.3)
        assert sorted(p.name for p in (drop / "inbox").iterdir()) == [f"{first}.xml"]


# --- a file the adapter fails on in an unexpected way is refused, never "interrupted" ------------------


async def rejected_entries(node: Node) -> list[dict[str, Any]]:
    doc = await node.audit_entries({"event": REJECTED_EVENT, "limit": "100"})
    return [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]


async def assert_refused_not_interrupted(nodes: dict[str, Node], drop: Path, name: str) -> str:
    """``name`` was moved to rejected/ and audited; a restart's recovery does not call it interrupted.
    Returns its .error.txt."""
    es = nodes["es"]
    err = drop / "rejected" / f"{name}.error.txt"
    await eventually(lambda: err.is_file() and (drop / "rejected" / name).is_file())
    assert not list((drop / ".submitting").iterdir())
    got = await eventually(lambda: rejected_entries(es))
    assert any(e["file"] == name for e in got), got
    dl = es.delivery
    assert isinstance(dl, DropDelivery)
    await asyncio.to_thread(dl.prepare)  # what a restart does
    text = err.read_text()
    assert "interrupted" not in text and "may or may not" not in text, text
    assert sorted(p.name for p in (drop / "rejected").iterdir()) == [name, f"{name}.error.txt"]
    # the node goes on: a good file after it is sent
    (drop / "outbox" / "bien.xml").write_bytes(sample("notice.xml"))
    await eventually((drop / "sent" / "bien.xml.id").is_file)
    return text


async def test_drop_file_the_adapter_fails_on_unexpectedly_is_rejected_with_the_real_reason(tmp_path, monkeypatch):
    from structlog.testing import capture_logs

    built, drop = drop_federation(tmp_path)
    async with running(built) as nodes:
        es = nodes["es"]
        await drop_ready(es)
        real = es.adapter.to_standard

        def failing(data: bytes, ct: str) -> Any:
            if b"FALLA" in data:
                raise RuntimeError("the adapter broke on this file")
            return real(data, ct)

        monkeypatch.setattr(es.adapter, "to_standard", failing)
        with capture_logs() as logs:
            (drop / "outbox" / "falla.xml").write_bytes(sample("notice.xml").replace(b"<Titulo>", b"<Titulo>FALLA "))
            text = await assert_refused_not_interrupted(nodes, drop, "falla.xml")
        assert "code: malformed" in text and "RuntimeError: the adapter broke on this file" in text, text
        assert "adapter es failed on this file" in text
        line = next(e for e in logs if e["event"] == "drop.rejected" and e["file"] == "falla.xml")
        assert "Traceback" in line["traceback"] and "RuntimeError" in line["traceback"], line


async def test_drop_file_of_deeply_nested_xml_is_rejected_not_left_in_submitting(tmp_path):
    built, drop = drop_federation(tmp_path)
    async with running(built) as nodes:
        es = nodes["es"]
        await drop_ready(es)
        deep = sample("notice.xml").replace(b"<Titulo>", b"<Titulo>" + b"<a>" * 5000 + b"</a>" * 5000)
        (drop / "outbox" / "honda.xml").write_bytes(deep)
        text = await assert_refused_not_interrupted(nodes, drop, "honda.xml")
        assert "file: honda.xml" in text and "reason: " in text


def test_refusal_of_a_read_failure_before_submission_is_never_interrupted():
    from adapters.base import AdapterError
    from gateway.core.errors import Code, TrazaError
    from gateway.national.delivery import refusal_of

    r = refusal_of(AdapterError("Cabecera/Clasificacion", "'X' is not a classification"), "es")
    assert (r.code, r.field, r.reason, r.trace) == ("schema_invalid", "Cabecera/Clasificacion",
                                                    "'X' is not a classification", None)
    r = refusal_of(TrazaError(Code.UNKNOWN_NODE, "no node zz"), "es")
    assert (r.code, r.reason) == ("unknown_node", "no node zz")
    try:
        raise RecursionError("maximum recursion depth exceeded")
    except RecursionError as exc:
        r = refusal_of(exc, "es")
    assert r.code == "malformed" and "adapter es failed on this file (RecursionError" in r.reason
    assert r.trace is not None and "Traceback" in r.trace
    r = refusal_of(PermissionError(13, "Permission denied"), "es")
    assert r.code == "internal" and "could not read the file" in r.reason


# --- x3p: the drop folder reads the sidecar JSON beside the X3P file (docs/adapters.md) ----------------

X3P_SAMPLES = Path(__file__).resolve().parents[2] / "adapters" / "x3p" / "samples"
X3P_SAMPLE = "mx-fgr-2026-1180-c3-breechface"


def x3p_drop_federation(tmp_path: Path) -> tuple[dict[str, LocalNode], Path]:
    drop = tmp_path / "lab-drop"
    return build(tmp_path / "fed", [NodeSpec("eu-hub", "hub", "NL"),
                                    NodeSpec("es", "national", "ES", hub="eu-hub", adapter="x3p",
                                             delivery={"mode": "drop", "drop_dir": str(drop), "poll_seconds": 0.1}),
                                    NodeSpec("it", "national", "IT", hub="eu-hub")], limits=LIMITS), drop


def x3p_sidecar(**changes: Any) -> bytes:
    sc = json.loads((X3P_SAMPLES / f"{X3P_SAMPLE}.json").read_text())
    sc.update({"to": "it", **changes})
    return json.dumps(sc).encode()


async def test_x3p_drop_folder_sends_the_file_with_its_sidecar_once_as_one_message(tmp_path):
    built, drop = x3p_drop_federation(tmp_path)
    async with running(built) as nodes:
        es = nodes["es"]
        await drop_ready(es)
        scan = (X3P_SAMPLES / f"{X3P_SAMPLE}.x3p").read_bytes()
        (drop / "outbox" / "case7.json").write_bytes(x3p_sidecar())  # the sidecar first, then the scan
        (drop / "outbox" / "case7.x3p").write_bytes(scan)
        idf = drop / "sent" / "case7.x3p.id"
        await eventually(lambda: idf.is_file() and (drop / "sent" / "case7.json").is_file())
        jti = idf.read_text().strip()
        assert sorted(p.name for p in (drop / "sent").iterdir()) == ["case7.json", "case7.x3p", "case7.x3p.id"]
        assert list((drop / "rejected").iterdir()) == [] and list((drop / "outbox").iterdir()) == []
        st = await es.message_status(jti)
        assert st is not None and st["type"] == "ballistic.submission" and st["to"] == "it"
        await eventually(lambda: in_inbox(nodes["it"], jti))
        got = next(m for m in (await nodes["it"].local_inbox(0, 100))["messages"] if m["id"] == jti)
        assert got["attachments"] and got["attachments"][0]["ct"] == "application/x-x3p"
        await asyncio.sleep(0.3)
        assert await rejected_entries(es) == []


async def test_x3p_drop_folder_rejects_the_file_and_its_bad_sidecar_together(tmp_path):
    built, drop = x3p_drop_federation(tmp_path)
    async with running(built) as nodes:
        es = nodes["es"]
        await drop_ready(es)
        (drop / "outbox" / "case8.json").write_bytes(x3p_sidecar(region="Nowhere"))
        (drop / "outbox" / "case8.x3p").write_bytes((X3P_SAMPLES / f"{X3P_SAMPLE}.x3p").read_bytes())
        err = drop / "rejected" / "case8.x3p.error.txt"
        await eventually(lambda: err.is_file() and (drop / "rejected" / "case8.json").is_file())
        assert sorted(p.name for p in (drop / "rejected").iterdir()) == ["case8.json", "case8.x3p",
                                                                        "case8.x3p.error.txt"]
        text = err.read_text()
        assert "sidecar case8.json" in text and "region" in text and "Nowhere" in text, text
        assert not list((drop / "outbox").iterdir()) and not list((drop / ".submitting").iterdir())
        got = await eventually(lambda: rejected_entries(es))
        assert [e["file"] for e in got] == ["case8.x3p"]
