"""The `traza demo` scenario: eleven real node processes, national systems played through the local API."""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from adapters.standard import MEDIA_TYPE as STANDARD
from gateway.audit.bundle import BundleError, verify_bundle
from gateway.config import Config
from gateway.core.b64 import b64url_encode
from gateway.core.messages import validate_body
from gateway.core.printable import printable
from gateway.demo import story
from gateway.demo.procs import Federation
from gateway.failures import CheckFailed, UsageError
from gateway.national.client import local_connection, upload_attachments
from gateway.national.x3p import x3p_message
from gateway.ops.login import node_login_bundles, one_time_password

ANSWERERS = ("mx", "co", "es", "it", "de", "at", "be", "ro", "arms-registry")


class DemoError(Exception):
    """The scenario could not complete; the message names the node, message and reason."""


@dataclass
class Sent:
    jti: str
    mt: str
    frm: str
    to: str
    at: float  # wall clock at submission
    delivered_at: float | None = None
    receipt: bool = False
    failed: str | None = None


@dataclass
class Blob:
    """One attachment a national system uploaded and sent (as ``name``), and what its recipient made of it."""

    name: str
    sha256: str  # of the plaintext file, as uploaded (PUT /local/v1/blobs/<sha256>)
    length: int
    frm: str
    to: str
    jti: str
    received: Path | None = None  # where the recipient's national system stored it, digest verified
    source: Path | None = None  # the file the sender uploaded
    hubs: dict[str, str] | None = None  # hub on the route -> what its blob store holds ("ciphertext")


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _micrometres(metres: Any) -> str:
    return f"{float(metres) * 1e6:g} µm" if isinstance(metres, (int, float)) else "? µm"


def _contains_any(path: Path, needles: list[bytes]) -> bool:
    """Whether the file holds one of ``needles`` (read in 1 MiB windows that overlap by the longest needle)."""
    keep = max(len(n) for n in needles) - 1
    tail = b""
    with path.open("rb") as f:
        while piece := f.read(1024 * 1024):
            window = tail + piece
            if any(n in window for n in needles):
                return True
            tail = window[-keep:] if keep else b""
    return False


def fetch_blob(cfg: Config, url: str, dest: Path) -> tuple[str, int]:
    """GET ``url`` (``/local/v1/blobs/<sha>``) on the node of ``cfg`` as its national system (the
    ``system`` client certificate), streamed into ``dest`` while hashing; returns (b64url SHA-256, bytes)."""
    where = f"https://{cfg.listen.local}{url}"
    h = hashlib.sha256()
    n = 0
    try:
        c = local_connection(cfg, timeout=60)
        c.request("GET", url)
        r = c.getresponse()
        if r.status != 200:
            raise DemoError(f"GET {where} answered {r.status}: {r.read()[:300]!r}")
        declared = int(r.getheader("Content-Length", "-1") or -1)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("wb") as f:
            while piece := r.read(1024 * 1024):
                h.update(piece)
                f.write(piece)
                n += len(piece)
        c.close()
    except (OSError, http.client.HTTPException) as exc:
        raise DemoError(f"GET {where} failed: {exc}") from None
    if declared >= 0 and declared != n:
        raise DemoError(f"GET {where}: Content-Length {declared} but {n} bytes arrived")
    return b64url_encode(h.digest()), n


class Demo:
    def __init__(self, root: Path, console: Console, keep: bool = False) -> None:
        self.root = root
        self.keep = keep  # root survives the run (--dir): the summary may name files in it
        self.out = console
        self.fed = Federation(root, story.NODES, limits={"checkpoint_interval": 1.0}, log_format="json",
                              groups=story.GROUPS)
        self.sent: dict[str, Sent] = {}
        self.rejected = 0
        self.cursor: dict[str, int] = dict.fromkeys(ANSWERERS, 0)
        self.licences: dict[str, str] = {}  # country -> one export licence named in a trace response
        self.traced: dict[str, dict[str, Any]] = {}  # serial -> firearm
        self.first_trace: str | None = None
        self.status_check: dict[str, Any] = {}  # the fan-out of step 2, as mx's conversation view gathers it
        self.blobs: dict[tuple[str, str], Blob] = {}  # (message id, plaintext sha256) -> the file sent
        self.t0 = time.monotonic()

    # -- plumbing --------------------------------------------------------------------------------------

    def say(self, who: str, text: str) -> None:
        """One line of the story; ``text`` quotes peers (bodies, details): control characters removed."""
        text = printable(text)
        self.out.print(f"[dim]{time.monotonic() - self.t0:6.1f}s[/dim] [bold cyan]{who:>13}[/bold cyan]  {text}")

    def hops(self, a: str, b: str) -> int:
        """Relays on the derived route a → hub(a) → hub(b) → b, skipping repeats (SPEC §2; no peers here)."""
        spec = {n.id: n.spec for n in self.fed.nodes.values()}
        route = [a]
        for step in (spec[a].hub, spec[b].hub, b):
            if step and step != route[-1]:
                route.append(step)
        return len(route) - 1

    def submit(self, frm: str, to: str, mt: str, body: dict[str, Any], reply_to: str | None = None, *,
               attachments: list[dict[str, Any]] | None = None, envelope: dict[str, Any] | None = None) -> str | None:
        """Submit the standard form as ``frm``'s national system. ``attachments`` name blobs uploaded first
        (PUT /local/v1/blobs); ``envelope`` overrides handling, classification or purpose."""
        validate_body(mt, body, admit=True)  # raises TrazaError naming the field at fault
        msg: dict[str, Any] = {"type": mt, "to": to, "handling": "H1", "classification": "BASIC_PROTECTION_LEVEL",
                               "purpose": "INVESTIGATION", **(envelope or {}), "body": body}
        if reply_to:
            msg["reply_to"] = reply_to
        if attachments:
            msg["attachments"] = attachments
        now = time.time()
        status, doc = self.fed.call(frm, "system", "POST", "/local/v1/messages", json.dumps(msg).encode(), STANDARD)
        if status != 201:
            self.rejected += 1
            self.say(frm, f"[red]{mt} to {to} refused by the local API ({status}): {doc}[/red]")
            return None
        jti = str(doc["id"])
        self.sent[jti] = Sent(jti, mt, frm, to, now)
        for a in attachments or []:
            self.blobs[(jti, a["sha256"])] = Blob(a["name"], a["sha256"], a["len"], frm, to, jti)
        return jti

    def submit_group(self, frm: str, group: str, mt: str, body: dict[str, Any]) -> str:
        """Submit one message to every member of a manifest group (a fan-out, SPEC §6 1.1): one envelope
        each, one conversation; returns the conversation id."""
        validate_body(mt, body, admit=True)
        msg = {"type": mt, "to": f"group:{group}", "handling": "H1", "classification": "BASIC_PROTECTION_LEVEL",
               "purpose": "INVESTIGATION", "body": body}
        now = time.time()
        status, doc = self.fed.call(frm, "system", "POST", "/local/v1/messages", json.dumps(msg).encode(), STANDARD)
        if status != 201:
            raise DemoError(f"{frm}: {mt} to group:{group} refused by the local API ({status}): {doc}")
        members = [n for n in story.GROUPS[group] if n != frm]
        for jti, to in zip(doc["ids"], members, strict=True):  # the ids come in the group's order
            self.sent[jti] = Sent(jti, mt, frm, to, now)
        return str(doc["conversation"])

    def gathered(self, frm: str, cid: str) -> dict[str, Any]:
        """The conversation ``cid`` as ``frm`` sees it (GET /local/v1/conversations/<cid>)."""
        status, doc = self.fed.call(frm, "system", "GET", f"/local/v1/conversations/{cid}")
        if status != 200:
            raise DemoError(f"{frm}: GET /local/v1/conversations/{cid} answered {status}: {doc}")
        return dict(doc)

    def submit_x3p(self, frm: str, to: str, scan: Path) -> str | None:
        """As a ballistics lab's system would: read the X3P file and its sidecar with the x3p adapter
        (body.topography from the file), upload the file with PUT /local/v1/blobs/<sha256> (streamed,
        resuming; the code of `traza send`), then submit the ballistic.submission naming it."""
        try:
            msg, files, warnings = x3p_message(scan, to=to, handling="H1")
            for w in warnings:
                self.say(frm, f"[yellow]{w}[/yellow]")
            t = time.monotonic()
            attachments = upload_attachments(self.fed.config(frm), files)
        except (CheckFailed, UsageError) as exc:
            raise DemoError(f"{frm}: {exc}") from None
        up = time.monotonic() - t
        body = msg["body"]
        for a in attachments:
            self.say(frm, f"uploads {a['name']} ({a['len']:,} bytes, {a['ct']}) to its node in {up:.2f} s: "
                          f"PUT /local/v1/blobs/{a['sha256']}")
        for topo in body["topography"]:
            self.say(frm, f"ballistic.submission → {to}: cartridge case [b]{body['exhibit_id']}[/b], "
                          f"{topo['region']} scan {topo['size_x']} × {topo['size_y']} points at "
                          f"{_micrometres(topo['increment_x_m'])} ({topo['instrument']}), correlation asked in "
                          f"{', '.join(body.get('correlation', {}).get('countries', []))}")
        envelope = {k: msg[k] for k in ("handling", "classification", "purpose") if msg.get(k)}
        jti = self.submit(frm, msg["to"], msg["type"], body, attachments=attachments, envelope=envelope)
        for (path, _ct), a in zip(files, attachments, strict=True):
            b = self.blobs.get((jti or "", a["sha256"]))
            if b is not None:
                b.source = path
        return jti

    def check_hubs(self) -> None:
        """Look into the blob store (``data/<hub>/blobs/``) of every hub that relayed a file: it holds ``TZB1``
        ciphertext and no slice of the plaintext (first 512 bytes, 256 from the middle, the last 256), or
        nothing at all once the next hop acknowledged the message (its transit copy dropped, SPEC §11)."""
        for b in self.blobs.values():
            if b.source is None or b.hubs is not None:
                continue
            plain = b.source.read_bytes() if b.length <= 64 * 1024 * 1024 else b""
            slices = [x for x in (plain[:512], plain[len(plain) // 2: len(plain) // 2 + 256], plain[-256:]) if x]
            spec = {n.id: n.spec for n in self.fed.nodes.values()}
            b.hubs = {}
            for hub in dict.fromkeys(h for h in (spec[b.frm].hub, spec[b.to].hub) if h and h not in (b.frm, b.to)):
                folder = self.fed.nodes[hub].data_dir / "blobs"
                files = [f for f in folder.iterdir() if f.is_file()] if folder.is_dir() else []
                cipher = 0
                for f in files:
                    with f.open("rb") as fh:
                        cipher += fh.read(4) == b"TZB1"
                    if slices and _contains_any(f, slices):
                        raise DemoError(f"{hub}: {f} holds plaintext of {b.name} (message {b.jti} {b.frm} → {b.to})")
                if cipher < len(files):
                    raise DemoError(f"{hub}: {folder} holds a blob that is not TZB1 ciphertext although it relayed "
                                    f"{b.name} (message {b.jti})")
                local = self.fed.nodes[hub].data_dir / "local-blobs"
                if local.is_dir() and (held := [f.name for f in local.iterdir() if f.is_file()]):
                    raise DemoError(f"{hub}: {local} holds plaintext blobs {held}; a hub decrypts nothing")
                if cipher:
                    b.hubs[hub] = "ciphertext"
                    self.say(hub, f"relayed {b.name} as ciphertext: {cipher} TZB1 blob(s) in {folder.name}/, no slice "
                                  f"of the file in them, nothing in local-blobs/")
                else:
                    b.hubs[hub] = "dropped"
                    self.say(hub, f"relayed {b.name} as ciphertext and dropped it once the next hop had it: nothing "
                                  f"in {folder.name}/ or local-blobs/")


    def take_attachments(self, node: str, m: dict[str, Any]) -> None:
        """The recipient's national system takes each file a delivered message carries, before it
        acknowledges the message: GET /local/v1/blobs/<sha256>, hashed while it streams to
        ``<root>/received/<node>/``, checked against the body's topography entry (ballistic.submission)."""
        atts = m.get("attachments") or []
        body = json.loads(m["content"]).get("body", {})
        topo = {t.get("sha256"): t for t in body.get("topography", [])} if m["type"] == "ballistic.submission" else {}
        named = {a["sha256"] for a in atts}
        for sha in topo:
            if sha not in named:
                raise DemoError(f"{node}: {m['type']} {m['id']} from {m['from']}: body.topography names {sha}, "
                                f"which the message does not carry as an attachment")
        for a in atts:
            dest = self.root / "received" / node / (Path(a["name"]).name or a["sha256"])
            sha, n = fetch_blob(self.fed.config(node), a["url"], dest)
            t = topo.get(a["sha256"])
            want = t["sha256"] if t else a["sha256"]  # the digest the signed body names, else the inbox's
            if sha != want or n != a["len"]:
                raise DemoError(f"{node}: {a['name']} of {m['type']} {m['id']}: fetched {n} bytes with SHA-256 {sha}, "
                                f"expected {a['len']} bytes with {want} (file kept in {dest})")
            b = self.blobs.get((m["id"], a["sha256"]))
            if b is not None:
                b.received = dest
            what = (f", {t['size_x']} × {t['size_y']} points at {_micrometres(t['increment_x_m'])} ({t['region']})"
                    if t else "")
            self.say(node, f"fetches {a['name']}: {n:,} bytes{what}, SHA-256 digest verified")

    def pump(self) -> None:
        """One pass of every national system: read the inbox, acknowledge, answer."""
        for node in ANSWERERS:
            if node not in self.fed.procs:
                continue
            status, doc = self.fed.call(node, "system", "GET", f"/local/v1/inbox?after={self.cursor[node]}&limit=100")
            if status != 200:
                raise DemoError(f"{node}: GET /local/v1/inbox answered {status}: {doc}")
            for m in doc["messages"]:
                self.cursor[node] = max(self.cursor[node], int(m["cursor"]))
                s = self.sent.get(m["id"])
                if s is not None and s.delivered_at is None:
                    s.delivered_at = _ts(m["delivered_at"])
                if m.get("attachments"):
                    self.take_attachments(node, m)  # taken before the ack, which sends the receipt
                st, d = self.fed.call(node, "system", "POST", f"/local/v1/inbox/{m['id']}/ack", b"")
                if st != 200:
                    raise DemoError(f"{node}: ack of {m['id']} answered {st}: {d}")
                self.react(node, m, json.loads(m["content"])["body"])

    def check_receipts(self) -> None:
        for s in self.sent.values():
            if s.receipt or s.failed or s.delivered_at is None:
                continue
            status, doc = self.fed.call(s.frm, "system", "GET", f"/local/v1/messages/{s.jti}")
            if status == 200 and doc["state"] == "delivered":
                s.receipt = True
            elif status == 200 and doc["state"] in ("failed", "dead"):
                s.failed = doc["state"]
                self.rejected += 1

    def settle(self, timeout: float = 60.0) -> None:
        """Pump until every message sent so far is delivered and its receipt is back at the origin."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            self.check_receipts()
            if all(s.receipt or s.failed for s in self.sent.values()):
                done = sum(s.receipt for s in self.sent.values())
                self.say("demo", f"[green]{done} of {len(self.sent)} messages so far delivered, each with its "
                                 f"receipt back at the origin[/green]")
                return
            time.sleep(0.15)
        late = [f"{s.mt} {s.jti} {s.frm}→{s.to}" for s in self.sent.values() if not (s.receipt or s.failed)]
        raise DemoError(f"not delivered with a receipt within {timeout} s: {', '.join(late)} (logs: {self.root}/*.log)")

    # -- the national systems ----------------------------------------------------------------------------

    def react(self, node: str, m: dict[str, Any], body: dict[str, Any]) -> None:
        mt, frm = m["type"], m["from"]
        if mt == "trace.request":
            fa = body["firearm"]
            ans = story.trace_response(body)
            export = ans["custody_chain"][1]
            self.say(node, f"traces {fa['make_name']} {fa['model']} [b]{fa['serial_number']}[/b]: exported "
                           f"{export['date']} under licence [b]{export['document_ref']}[/b] to {export['to_party']}")
            self.submit(node, frm, "trace.response", ans, reply_to=m["id"])
        elif mt == "trace.response":
            chain = body["custody_chain"]
            export = next(e for e in chain if e["event"] == "EXPORTED")
            country = export["country"]
            self.licences.setdefault(country, export["document_ref"])
            self.say(node, f"answer from {frm}: {body['firearm_as_recorded']['serial_number']} made in "
                           f"{story.COUNTRY_NAMES[country]}, {' → '.join(e['event'] for e in chain)} "
                           f"(licence {export['document_ref']}, to {export['to_party']})")
        elif mt == "firearm.status.query" and node == "arms-registry":
            fa = self.traced.get(body["serial_number"], {})
            self.say(node, f"registry lookup {body['serial_number']}: [red]HIT, reported STOLEN in Italy (2024)[/red]")
            self.submit(node, frm, "firearm.status.answer", story.status_answer(body, fa), reply_to=m["id"])
        elif mt == "firearm.status.query":
            self.say(node, f"national register lookup {body['serial_number']}: no record")
            self.submit(node, frm, "firearm.status.answer", story.status_no_hit(), reply_to=m["id"])
        elif mt == "firearm.status.answer" and body.get("hits"):
            hit = body["hits"][0]
            self.say(node, f"status answer from {frm}: {body['result']} {hit['record_status']} "
                           f"({hit['owner']['agency']}, case {hit['owner']['case_no']})")
        elif mt == "firearm.status.answer":
            self.say(node, f"status answer from {frm}: {body['result']}")
        elif mt == "ballistic.submission":
            hit = story.ballistic_hit(body)
            other = hit["exhibits"][0]["exhibit_id"]
            self.say(node, f"correlates exhibit {body['exhibit_id']} against IBIN-EU: [red]confirmed hit[/red] with "
                           f"{other} ({hit['correlation']['algorithm']}, score {hit['correlation']['score']})")
            self.submit(node, frm, "ballistic.hit", hit, reply_to=m["id"])
        elif mt == "ballistic.hit":
            ex = " ↔ ".join(e["exhibit_id"] for e in body["exhibits"])
            self.say(node, f"ballistic hit {body['hit_id']} {body['status']}: {ex}")
        elif mt == "licence.verify.query":
            self.say(node, f"checks export licence {body['licence_number']}")
            self.submit(node, frm, "licence.verify.answer", story.licence_answer(body), reply_to=m["id"])
        elif mt == "licence.verify.answer":
            lic = body["licence"]
            self.say(node, f"licence {body['status']}: {lic['country_of_export']} → {lic['country_of_import']}, "
                           f"consignee {lic['consignee']}, covers the pistol: {body['covers_firearm']}")
        else:
            self.say(node, f"{mt} from {frm}: {body.get('title', '')}")

    # -- the story -------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.say("demo", f"federation built in {self.root} (PKI, manifest signed 2 of 3: eu + ameripol)")
        self.fed.start_all()
        self.say("demo", f"{len(self.fed.procs)} nodes running: {', '.join(sorted(self.fed.procs))}")

    def play(self) -> None:
        pistols = story.seized_pistols()
        dist = story.distribute()
        self.out.rule("1. Mexico traces 20 seized pistols")
        self.say("mx", "FGR seizes 20 pistols in Culiacán; makers: " + ", ".join(
            f"{story.COUNTRY_NAMES[c]} {n}" for c, n in dist.items()))
        for n, p in enumerate(pistols, 1):
            if p["firearm"] is None:
                continue
            fa = p["firearm"]
            self.traced[fa["serial_number"]] = fa
            to = p["country"].lower()
            jti = self.submit("mx", to, "trace.request", story.trace_request(fa, n))
            if jti and self.first_trace is None and to == "es":
                self.first_trace = jti
            self.say("mx", f"trace.request → {to}: {fa['make_name']} {fa['model']} {fa['serial_number']}")
        self.settle()

        self.out.rule("2. Lost and stolen check: every EU register at once")
        it_pistol = next(p["firearm"] for p in pistols if p["country"] == "IT")
        members = [n for n in story.GROUPS["eu-registries"] if n != "mx"]
        self.say("mx", f"firearm.status.query → group:eu-registries ({', '.join(members)}): "
                       f"{it_pistol['serial_number']}, one envelope each, one conversation")
        cid = self.submit_group("mx", "eu-registries", "firearm.status.query", story.status_query(it_pistol))
        self.settle()
        view = self.gathered("mx", cid)
        results = {m["to"]: json.loads(m["answers"][0]["content"])["body"]["result"]
                   for m in view["messages"] if m["answers"]}
        hits = sorted(n for n, r in results.items() if r != "NO_HIT")
        s = view["summary"]
        self.say("mx", f"conversation {cid}: {s['recipients']} asked, {s['answered']} answered, {s['pending']} "
                       f"pending: [red]{', '.join(f'{n} {results[n]}' for n in hits) or 'no hit'}[/red]; "
                       f"NO_HIT at {', '.join(sorted(n for n in results if n not in hits))}")
        self.status_check = {"conversation": cid, **s, "hits": hits}

        self.out.rule("3. Ballistics: cartridge-case scans (X3P) for correlation")
        for scan in story.x3p_scans():
            self.submit_x3p("mx", "es", scan)
        self.settle()
        self.check_hubs()

        self.out.rule("4. Licence check while the EU hub is down")
        self.fed.stop("eu-hub")
        self.say("eu-hub", "[yellow]stopped[/yellow]")
        down = time.monotonic()
        lic = self.licences.get("IT") or story.export_licence("IT", it_pistol["serial_number"], 2019)
        self.say("mx", f"licence.verify.query → it: {lic}")
        self.submit("mx", "it", "licence.verify.query", story.licence_query(lic, it_pistol))
        self.submit("mx", "es", "notice", story.notice_after_outage())
        queued = self.fed.wait_for(lambda: [q for q in self.queues("latam-hub") if q["peer"] == "eu-hub"], timeout=15)
        self.say("latam-hub", f"queue for eu-hub: {queued[0]['depth']} envelope(s), retrying")
        time.sleep(max(0.0, 4.0 - (time.monotonic() - down)))
        self.fed.start("eu-hub")
        self.say("eu-hub", f"[green]restarted[/green] after {time.monotonic() - down:.1f} s; latam-hub drains its queue")
        self.settle(timeout=90)
        left = sum(q["depth"] for q in self.queues("latam-hub") if q["peer"] == "eu-hub")
        self.say("latam-hub", f"queue for eu-hub: {left} envelope(s) left, {time.monotonic() - down:.1f} s after "
                              f"the outage began")

    def queues(self, node: str) -> list[dict[str, Any]]:
        status, doc = self.fed.call(node, "operator", "GET", "/ops/v1/queues")
        return list(doc["queues"]) if status == 200 else []

    # -- results ------------------------------------------------------------------------------------------------

    def evidence(self, timeout: float = 30.0) -> Path:
        """Fetch es's evidence bundle of the first trace request once a checkpoint covers it."""
        if self.first_trace is None:
            raise DemoError("no trace request to es was sent")
        jti = self.first_trace
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            status, doc = self.fed.call("es", "auditor", "GET", f"/audit/v1/bundle?jti={jti}")
            if status == 200:
                data = json.dumps(doc).encode() if not isinstance(doc, (bytes, str)) else (
                    doc.encode() if isinstance(doc, str) else doc)
                try:
                    verify_bundle(data)
                except BundleError as exc:
                    last = str(exc)
                else:
                    path = self.root / "evidence" / f"{jti}.json"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                    return path
            else:
                last = f"{status}: {doc}"
            time.sleep(0.5)
        raise DemoError(f"es: no verifiable evidence bundle for {jti} within {timeout} s (last: {last})")

    def summary(self) -> dict[str, Any]:
        by_type: dict[str, dict[str, int]] = {}
        for s in self.sent.values():
            t = by_type.setdefault(s.mt, {"sent": 0, "delivered": 0, "receipts": 0, "hops": self.hops(s.frm, s.to)})
            t["sent"] += 1
            t["delivered"] += s.delivered_at is not None
            t["receipts"] += s.receipt
        lat = [s.delivered_at - s.at for s in self.sent.values() if s.delivered_at is not None]
        hops = sum(self.hops(s.frm, s.to) for s in self.sent.values())
        nodes = []
        for nid, n in self.fed.nodes.items():
            nodes.append({"id": nid, "kind": n.spec.kind, "country": n.spec.country, "hub": n.spec.hub,
                          "peer": f"https://127.0.0.1:{n.peer_port}", "local": f"https://127.0.0.1:{n.local_port}",
                          "ops": f"http://127.0.0.1:{n.ops_port}", "config": str(n.config),
                          "log": str(self.fed.log_path(nid))})
        return {
            "sent": len(self.sent),
            "delivered": sum(s.delivered_at is not None for s in self.sent.values()),
            "receipts": sum(s.receipt for s in self.sent.values()),
            "rejected": self.rejected,
            "hops": hops,
            "mean_latency_ms": round(1000 * sum(lat) / len(lat), 1) if lat else None,
            "by_type": by_type,
            # from mx's own insights (GET /ops/v1/stats, small cells suppressed), not from the demo's counting
            "origins": {**self.traced_origins(), "other (not traced)": story.distribute()["other"]},
            "status_check": self.status_check,
            "blobs": self.blob_summary(),
            "first_trace_request": self.first_trace,
            "seconds": round(time.monotonic() - self.t0, 1),
            "nodes": nodes,
        }

    def traced_origins(self) -> dict[str, int | str]:
        """Trace responses at mx by country of manufacture, as ``GET /ops/v1/stats`` gives them (a count
        under 5 is "<5")."""
        status, doc = self.fed.call("mx", "operator", "GET", "/ops/v1/stats")
        if status != 200:
            raise DemoError(f"mx: GET /ops/v1/stats answered {status}: {doc}")
        cells: dict[str, tuple[int, int]] = {}  # country -> (sum of the counts shown, cells suppressed)
        for r in doc["trace_outcomes"]:
            c, n = r["country_of_manufacture"], r["responses"]
            total, hidden = cells.get(c, (0, 0))
            cells[c] = (total + n, hidden) if isinstance(n, int) else (total, hidden + 1)
        return {c: total if not hidden else "<5" if (total, hidden) == (0, 1) else f"≥{total + hidden}"
                for c, (total, hidden) in cells.items()}

    def blob_summary(self) -> dict[str, Any]:
        files = []
        for b in self.blobs.values():
            f: dict[str, Any] = {"name": b.name, "sha256": b.sha256, "len": b.length, "from": b.frm, "to": b.to,
                                 "message": b.jti, "verified": b.received is not None, "hubs": b.hubs or {}}
            if self.keep and b.received is not None:
                f["received"] = str(b.received)
            files.append(f)
        return {"count": len(files), "bytes": sum(b.length for b in self.blobs.values()),
                "verified": sum(f["verified"] for f in files), "files": files}

    def print_summary(self, s: dict[str, Any]) -> None:
        self.out.rule("Summary")
        t = Table(title=f"{s['sent']} messages in {s['seconds']} s")
        for col in ("type", "sent", "delivered", "receipts", "hops each"):
            t.add_column(col, justify="left" if col == "type" else "right")
        for mt, row in sorted(s["by_type"].items()):
            t.add_row(Text(printable(mt)), str(row["sent"]), str(row["delivered"]), str(row["receipts"]), str(row["hops"]))
        t.add_row("[b]total[/b]", str(s["sent"]), str(s["delivered"]), str(s["receipts"]), str(s["hops"]))
        self.out.print(t)
        self.out.print(f"rejected: {s['rejected']}   mean latency submit → recipient inbox: {s['mean_latency_ms']} ms")
        b = s["blobs"]
        hubs = sorted({h for f in b["files"] for h in f["hubs"]})
        self.out.print(f"blobs: {b['count']} file(s), {b['bytes']:,} bytes through the local API; ciphertext only "
                       f"(dropped once relayed) at {', '.join(hubs) or '-'}; fetched by the recipient, digest "
                       f"verified: {b['verified']}")
        o = Table(title="Traced origins of the 20 seized pistols (mx's insights: traza stats; counts under 5 as <5)")
        o.add_column("country")
        o.add_column("pistols", justify="right")
        o.add_column("share", justify="right")
        for c, n in s["origins"].items():
            share = f"{100 * n / story.SEIZED:.0f} %" if isinstance(n, int) else "—"
            o.add_row(Text(printable(story.COUNTRY_NAMES.get(c, c))), str(n), share)
        self.out.print(o)
        self.print_where(s)

    def print_where(self, s: dict[str, Any]) -> None:
        self.out.rule("Where to look")
        for n in s["nodes"]:
            self.out.print(f"[b]{n['id']:>13}[/b] {n['kind']:8} local API {n['local']}  ops {n['ops']}/metrics  "
                           f"log {n['log']}")
        pki = self.root / "pki"
        self.out.print(f"PKI and client certificates (system, operator, auditor per node): {pki}\n"
                       f"node configs: {self.root / 'nodes'}   databases: {self.root / 'data'}\n"
                       f"e.g. traza status --config {self.fed.nodes['mx'].config}")


    def dashboard(self, node: str = "mx") -> dict[str, Any]:
        """Browser logins for ``node``'s dashboard: a PKCS#12 bundle per role (operator, auditor) under a
        fresh password, written beside the node's local CA; returns where to go and what to import."""
        cfg = self.fed.config(node)
        password = one_time_password()
        bundles = node_login_bundles(cfg, password)
        return {"node": node, "url": f"https://127.0.0.1:{self.fed.nodes[node].local_port}/ui/",
                "password": password, "operator_p12": str(bundles["operator"]),
                "auditor_p12": str(bundles["auditor"]), "server_ca": str(self.root / "pki" / "ca" / "ca.pem"),
                "operator_cert": str(cfg.resolve(cfg.client.operator_cert or "")),
                "operator_key": str(cfg.resolve(cfg.client.operator_key or ""))}

    def print_dashboard(self, d: dict[str, Any], *, running: bool) -> None:
        self.out.rule("Dashboard")
        note = "" if running else "; the nodes stop now: run without --once to keep them"
        self.out.print(f"[b]{d['url']}[/b]  ({d['node']}'s dashboard{note})", soft_wrap=True)
        self.out.print(f"  operator login: {d['operator_p12']}", soft_wrap=True)
        self.out.print(f"  auditor login:  {d['auditor_p12']}", soft_wrap=True)
        self.out.print(f"  one-time password of both bundles: [b]{d['password']}[/b]")
        self.out.print("  import a bundle into the browser (Settings → Certificates → Your certificates → Import); "
                       f"the page's TLS certificate is issued by the federation CA {d['server_ca']}: import it "
                       "as an authority, or accept the warning", soft_wrap=True)
        self.out.print(f"  without a browser: curl -k --cert {d['operator_cert']} --key {d['operator_key']} "
                       f"{d['url']}api/whoami", soft_wrap=True)


def traza_command() -> str:
    """How the person who started the demo runs `traza`: ``traza`` if that is this one on the PATH, else
    its full path (``.venv/bin/traza`` before ``. .venv/bin/activate``)."""
    here = Path(sys.executable).parent / "traza"
    found = shutil.which("traza")
    if found and Path(found).resolve() == here.resolve():
        return "traza"
    return str(here) if here.exists() else "traza"


def print_next_steps(out: Console, root: Path, fed: Federation, *, kept: bool, story: bool) -> None:
    """What to do with the running federation, and what Ctrl-C will do (stop every node; keep or delete
    the folder)."""
    traza = traza_command()
    cfg = {n: fed.nodes[n].config for n in ("mx", "es")}
    sample = Path(__file__).resolve().parents[2] / "docs" / "examples" / "trace.request.json"
    body = str(sample) if sample.is_file() else "BODY.json"
    out.rule("Your turn")
    if traza != "traza":
        out.print(f"`traza` is not on your PATH: use {traza}, or first run: . {Path(traza).parent}/activate",
                  soft_wrap=True, markup=False)
    if story:
        out.print("the demo keeps playing every national system: what arrives is acknowledged (the receipt goes "
                  "back) and answered; run with --no-story to read and acknowledge messages yourself",
                  soft_wrap=True, markup=False)
    else:
        out.print("no national system is played: what you send waits in the recipient's inbox until you "
                  "acknowledge it", soft_wrap=True, markup=False)
    for line in (f"ID=$({traza} send --config {cfg['mx']} --to es --type trace.request -q {body})",
                 f"{traza} inbox list --config {cfg['es']}",
                 f"{traza} inbox ack --config {cfg['es']} $ID",
                 f"{traza} message show --config {cfg['mx']} $ID"):
        out.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)
    stop = (f"Ctrl-C stops every node and keeps {root} (configs, keys, databases, logs; restart a node with "
            f"{traza} run --config {root / 'nodes'}/<node>.toml)" if kept else
            f"Ctrl-C stops every node and deletes the temporary folder {root}: run with --dir DIR to keep it")
    out.print(stop, soft_wrap=True, markup=False)


def run_demo(*, directory: Path | None, once: bool, as_json: bool, story: bool = True) -> dict[str, Any]:
    """Play the scenario (unless not ``story``: the federation only); returns the summary. Without ``once``
    keeps the nodes running until Ctrl-C, playing every national system after the story if there was one."""
    console = Console(stderr=as_json, highlight=False)
    if not console.is_terminal:
        console.width = 160  # a log file or a pipe: do not wrap at 80 columns
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if directory is None:
        tmp = tempfile.TemporaryDirectory(prefix="traza-demo-")
        root = Path(tmp.name)
    else:
        root = directory.expanduser().resolve()
        if root.exists() and any(root.iterdir()):
            raise DemoError(f"{root}: --dir must be a new or empty folder")
        root.mkdir(parents=True, exist_ok=True)
    prev = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the nodes on SIGTERM as on Ctrl-C
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    demo = Demo(root, console, keep=directory is not None)
    try:
        demo.start()
        if story:
            demo.play()
        result = demo.summary()
        if story:
            demo.print_summary(result)
        else:
            demo.print_where(result)
        if directory is not None and story:
            path = demo.evidence()
            result["evidence"] = str(path)
            console.print(f"evidence bundle of the first trace request (from es): {path}\n"
                          f"  check it offline: traza audit verify-bundle {path}")
        dash = demo.dashboard("mx")
        result["dashboard"] = dash
        demo.print_dashboard(dash, running=not once)
        if not once:
            print_next_steps(console, root, demo.fed, kept=directory is not None, story=story)
            console.print("[bold]federation running; Ctrl-C to stop[/bold]")
            try:
                while True:
                    if story:
                        demo.pump()
                    time.sleep(0.5)
            except KeyboardInterrupt:
                console.print("stopping all nodes" + (f"; {root} is kept" if directory is not None else ""))
        return result
    finally:
        demo.fed.stop_all()
        signal.signal(signal.SIGTERM, prev[0])
        signal.signal(signal.SIGINT, prev[1])
        if tmp is not None:
            tmp.cleanup()
