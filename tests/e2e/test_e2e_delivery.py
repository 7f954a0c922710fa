"""End to end with real node processes: delivery to national systems by drop folder (es) and webhook (it),
SPEC §6, docs/delivery.md. mx -> latam-hub -> eu-hub -> es | it."""

from __future__ import annotations

import base64
import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fedproc import Federation, inbox, submit  # tests/e2e helper

from gateway.crypto.tls import peer_node_id
from gateway.localfed import NodeSpec, free_ports

sys.path.insert(0, "tests")
from core.message_examples import example
from transport.test_transport_delivery import make_server_cert

ES_NOTICE = Path(__file__).resolve().parents[2] / "adapters" / "es" / "samples" / "notice.xml"


class Webhook:
    """it's national system: HTTPS on 127.0.0.1 requiring a federation client certificate; answers 503
    to the first POST, then 200."""

    def __init__(self, port: int, cert: Path, key: Path, client_ca: Path) -> None:
        self.posts: list[dict[str, Any]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                der = self.connection.getpeercert(binary_form=True)  # type: ignore[attr-defined]
                posts.append({"headers": dict(self.headers), "body": body, "client": peer_node_id(der)})
                status = 503 if len(posts) == 1 else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_cert_chain(str(cert), str(key))
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    root = tmp_path_factory.mktemp("fed")
    ca, cert, key = make_server_cert(root / "webhook")
    (port,) = free_ports(1)
    specs = [
        NodeSpec("latam-hub", "hub", "CO"),
        NodeSpec("eu-hub", "hub", "NL"),
        NodeSpec("mx", "national", "MX", hub="latam-hub"),
        NodeSpec("es", "national", "ES", hub="eu-hub", adapter="es",
                 delivery={"mode": "drop", "drop_dir": str(root / "es-drop"), "poll_seconds": 0.2}),
        NodeSpec("it", "national", "IT", hub="eu-hub", adapter="it",
                 delivery={"mode": "webhook", "webhook_url": f"https://127.0.0.1:{port}/traza",
                           "webhook_ca": str(ca)}),
    ]
    f = Federation(root, specs, limits={"retry_min": 0.2, "retry_max": 2.0})
    hook = Webhook(port, cert, key, root / "pki" / "ca" / "ca.pem")
    f.start_all()
    f.drop = root / "es-drop"  # type: ignore[attr-defined]
    f.hook = hook  # type: ignore[attr-defined]
    yield f
    f.stop_all()
    hook.close()


def state(fed, node, jti):
    status, doc = fed.call(node, "system", "GET", f"/local/v1/messages/{jti}")
    return doc["state"] if status == 200 else None


def events(fed, node, jti):
    status, doc = fed.call(node, "auditor", "GET", f"/audit/v1/entries?jti={jti}&limit=100")
    assert status == 200, doc
    return [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]


def test_drop_folder_gets_the_message_once_and_the_sender_the_receipt(fed):
    drop = fed.drop
    jti = submit(fed, "mx", "es", "notice", {**example("notice"), "title": "al buzón"})
    f = fed.wait_for(lambda: (drop / "inbox" / f"{jti}.xml").is_file() and drop / "inbox" / f"{jti}.xml")
    assert b"al buz" in f.read_bytes() and b"urn:traza:es:mensaje:1" in f.read_bytes()
    fed.wait_for(lambda: state(fed, "mx", jti) == "delivered")
    assert [p.name for p in (drop / "inbox").iterdir() if p.name.startswith(jti)] == [f.name]
    assert list((drop / ".tmp").iterdir()) == []
    delivered = [e for e in events(fed, "es", jti) if e["event"] == "envelope.delivered"]
    assert len(delivered) == 1 and delivered[0]["to"] == "drop"
    # taken: the pull inbox no longer lists it
    assert all(m["id"] != jti for m in inbox(fed, "es"))


def test_malformed_national_file_is_rejected_and_the_next_one_is_sent(fed):
    drop = fed.drop
    good = ES_NOTICE.read_bytes()  # <Destino>mx</Destino>
    bad = good.replace(b"<TipoMensaje>Aviso</TipoMensaje>", b"<TipoMensaje>Chisme</TipoMensaje>")
    (drop / "outbox" / "roto.xml").write_bytes(bad)
    err = drop / "rejected" / "roto.xml.error.txt"
    fed.wait_for(err.is_file)
    text = err.read_text()
    assert "file: roto.xml" in text and "TipoMensaje" in text and "Chisme" in text, text
    assert (drop / "rejected" / "roto.xml").read_bytes() == bad
    assert fed.procs["es"].poll() is None  # the node keeps running
    (drop / "outbox" / "aviso.xml").write_bytes(good)
    idf = drop / "sent" / "aviso.xml.id"
    fed.wait_for(idf.is_file)
    jti = idf.read_text().strip()
    got = fed.wait_for(lambda: [m for m in inbox(fed, "mx") if m["id"] == jti])
    assert got[0]["from"] == "es" and got[0]["type"] == "notice"
    assert not (drop / "outbox" / "aviso.xml").exists() and not (drop / "outbox" / "roto.xml").exists()


def test_webhook_gets_the_message_after_a_retry_with_the_node_certificate(fed):
    hook = fed.hook
    jti = submit(fed, "mx", "it", "notice", {**example("notice"), "title": "per webhook"})
    fed.wait_for(lambda: state(fed, "mx", jti) == "delivered")
    mine = [p for p in hook.posts if p["headers"]["Traza-Message-Id"] == jti]
    assert len(mine) == 2  # a 503, then the 200; never again after the ack
    ok = mine[-1]
    assert ok["client"] == "it"
    assert ok["headers"]["Content-Type"] == "application/vnd.traza.it+csv"
    assert ok["headers"]["Traza-From"] == "mx" and ok["headers"]["Traza-Message-Type"] == "notice"
    assert b"per webhook" in ok["body"]
    delivered = [e for e in events(fed, "it", jti) if e["event"] == "envelope.delivered"]
    assert len(delivered) == 1 and delivered[0]["to"] == "webhook:127.0.0.1"


def test_drop_folder_across_a_restart(fed):
    """es is down: a message for it waits at eu-hub and a national file waits in outbox/; after the
    restart both go, each once."""
    drop = fed.drop
    fed.stop("es")
    jti = submit(fed, "mx", "es", "notice", {**example("notice"), "title": "tras el reinicio"})
    (drop / "outbox" / "despues.xml").write_bytes(ES_NOTICE.read_bytes())
    fed.start("es")
    fed.wait_for(lambda: state(fed, "mx", jti) == "delivered")
    assert (drop / "inbox" / f"{jti}.xml").is_file()
    sent_id = fed.wait_for(lambda: (drop / "sent" / "despues.xml.id").is_file()
                           and (drop / "sent" / "despues.xml.id").read_text().strip())
    fed.wait_for(lambda: [m for m in inbox(fed, "mx") if m["id"] == sent_id])
    assert [e["event"] for e in events(fed, "es", jti)].count("envelope.delivered") == 1
    assert not list((drop / ".submitting").iterdir())
