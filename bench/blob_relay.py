"""Relay one large blob mx -> latam-hub -> eu-hub -> es with real node processes and measure it.

    .venv/bin/python bench/blob_relay.py --size 1GiB

What it does (SPEC §4.3):
1. writes a file of ``--size`` bytes of pseudo-random data in 1 MiB pieces (never whole in memory);
2. starts four real `traza run` processes (gateway.demo.procs.Federation, mTLS on 127.0.0.1);
3. uploads the file to mx's local API, dropping the connection halfway, then resumes: the resumed PUT
   must send only the remainder;
4. submits a `notice` naming the blob (mx encrypts it in chunks for es: the hubs see ciphertext only),
   waits until es's inbox lists it, fetches the decrypted file from es (streamed) and checks its digest;
5. reads every node's peak resident memory (VmHWM of /proc/<pid>/status) and prints one JSON object:
   seconds, MiB/s, peak RSS per node, the resume figures, each hop's upload time and MiB/s
   (``hops``, ``hop_mib_s``), the stages of the relay read from the nodes' logs (``stages``: encrypt at
   the origin, each hop from the start of its upload to the envelope accepted, decrypt at es) and the
   CPU seconds each node spent from submit to inbox (``relay_cpu_seconds``, from /proc/<pid>/stat:
   steadier than wall time when other work shares the machine).

``relay_mib_s`` is the end-to-end figure: the plaintext size over the time from submit (at mx) until es's
inbox lists the message (polled every 0.2 s), decrypted. A hop's MiB/s is the ciphertext it uploaded over
the upload's time (``blob.uploaded`` in the sender's log: HEAD, PUT, the receiver's fsync and rename).

Exit status 0 when the file arrived intact, the resume sent only the remainder and every node stayed
under ``--rss-target`` MiB; 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from adapters.standard import MEDIA_TYPE as STANDARD
from gateway.config import Config
from gateway.core.b64 import b64url_encode
from gateway.demo.procs import Federation
from gateway.failures import CheckFailed
from gateway.national.client import local_connection, local_request, upload_attachment

MIB = 1024 * 1024
_UNITS = {"": 1, "b": 1, "k": 1024, "kib": 1024, "m": MIB, "mib": MIB, "g": 1024**3, "gib": 1024**3}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 8MiB, 1GiB, 123456)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def write_file(path: Path, size: int, seed: int = 7) -> str:
    """``size`` bytes of pseudo-random data written in 1 MiB pieces; returns the b64url SHA-256."""
    rng = random.Random(seed)
    h = hashlib.sha256()
    left = size
    with path.open("wb") as f:
        while left:
            piece = rng.randbytes(min(MIB, left))
            h.update(piece)
            f.write(piece)
            left -= len(piece)
    return b64url_encode(h.digest())


def _conn(cfg: Config) -> http.client.HTTPSConnection:
    return local_connection(cfg)


def head(cfg: Config, sha: str) -> int:
    c = _conn(cfg)
    c.request("HEAD", f"/local/v1/blobs/{sha}")
    r = c.getresponse()
    r.read()
    c.close()
    return int(r.getheader("Traza-Received-Bytes", "0") or 0)


def interrupted_upload(cfg: Config, path: Path, sha: str, size: int, stop_at: int) -> None:
    """Start a PUT of the whole file, send ``stop_at`` bytes, then drop the connection."""
    c = _conn(cfg)
    c.putrequest("PUT", f"/local/v1/blobs/{sha}")
    c.putheader("Content-Type", "application/octet-stream")
    c.putheader("Content-Length", str(size))
    c.endheaders()
    sent = 0
    with path.open("rb") as f:
        while sent < stop_at:
            piece = f.read(min(MIB, stop_at - sent))
            c.send(piece)
            sent += len(piece)
    time.sleep(0.2)
    assert c.sock is not None
    c.sock.close()  # the cable is pulled


def fetch_digest(cfg: Config, path: str) -> tuple[int, str, int]:
    """GET ``path`` from the local API, hashing the body as it streams: (status, b64url sha256, length)."""
    c = _conn(cfg)
    c.request("GET", path)
    r = c.getresponse()
    h = hashlib.sha256()
    n = 0
    while piece := r.read(MIB):
        h.update(piece)
        n += len(piece)
    c.close()
    return r.status, b64url_encode(h.digest()), n


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` so far (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ts(event: dict[str, Any]) -> float:
    return datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def log_events(log: Path, event: str) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("event") == event:
            out.append(doc)
    return out


def run(size: int, root: Path, timeout: float, rss_target: float) -> dict[str, Any]:
    src = root / "blob.bin"
    t = time.monotonic()
    sha = write_file(src, size)
    gen_s = time.monotonic() - t
    fed = Federation(root / "fed", limits={"retry_min": 0.5, "retry_max": 5.0})
    summary: dict[str, Any] = {"size": size, "size_mib": round(size / MIB, 1), "sha256": sha,
                               "generate_seconds": round(gen_s, 2)}
    try:
        fed.start_all()
        mx, es = fed.config("mx"), fed.config("es")
        # 1. upload to mx, interrupted halfway, then resumed
        stop_at = size // 2
        t0 = time.monotonic()
        interrupted_upload(mx, src, sha, size, stop_at)
        deadline = time.monotonic() + 30
        while head(mx, sha) != stop_at and time.monotonic() < deadline:
            time.sleep(0.05)
        received = head(mx, sha)
        sent = None
        for _ in range(50):  # the node may still be closing the dropped request (409 busy)
            try:
                _sha, _n, sent = upload_attachment(mx, src, sha=sha, length=size)
                break
            except CheckFailed as exc:
                if "409" not in str(exc):
                    raise
                time.sleep(0.1)
        upload_s = time.monotonic() - t0
        summary["resume"] = {"interrupted_at": stop_at, "received_after_drop": received, "resumed_bytes_sent": sent,
                             "only_remainder_sent": sent == size - received and received > 0}
        summary["upload_seconds"] = round(upload_s, 2)
        # 2. submit, 3. wait for es
        msg = {"type": "notice", "to": "es", "handling": "H1", "classification": "BASIC_PROTECTION_LEVEL",
               "purpose": "INVESTIGATION", "body": {"title": "blob relay bench", "text": f"{size} bytes"},
               "attachments": [{"sha256": sha, "len": size, "ct": "application/octet-stream", "name": "blob.bin"}]}
        cpu0 = {nid: cpu_seconds(p.pid) for nid, p in fed.procs.items()}
        t1 = time.monotonic()
        status, doc = local_request(mx, "system", "POST", "/local/v1/messages", json.dumps(msg).encode(), STANDARD)
        if status != 201:
            raise RuntimeError(f"submit refused: HTTP {status}: {doc}")
        submit_s = time.monotonic() - t1
        jti = doc["id"]
        att = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and att is None:
            st, box = local_request(es, "system", "GET", "/local/v1/inbox?after=0&limit=100")
            for m in box.get("messages", []) if st == 200 else []:
                if m["id"] == jti and m.get("attachments"):
                    att = m["attachments"][0]
            if att is None:
                time.sleep(0.2)
        relay_s = time.monotonic() - t1
        summary["relay_cpu_seconds"] = {nid: round(cpu_seconds(p.pid) - cpu0[nid], 2) for nid, p in fed.procs.items()}
        if att is None:
            raise RuntimeError(f"es did not receive {jti} within {timeout} s (logs in {fed.root})")
        summary.update({"submit_seconds": round(submit_s, 2), "relay_seconds": round(relay_s, 2),
                        "relay_mib_s": round(size / MIB / relay_s, 1),
                        "end_to_end_seconds": round(upload_s + relay_s, 2)})
        # 4. the decrypted file, streamed from es
        st, got_sha, got_len = fetch_digest(es, att["url"])
        summary["intact"] = st == 200 and got_sha == sha and got_len == size
        # 5. memory, and what each hop did
        rss = {nid: peak_rss_mib(p.pid) for nid, p in fed.procs.items()}
        summary["peak_rss_mib"] = rss
        summary["max_peak_rss_mib"] = max(rss.values())
        summary["rss_target_mib"] = rss_target
        summary["rss_ok"] = max(rss.values()) < rss_target
        summary["hops"] = hops = hop_figures(fed)
        summary["hop_mib_s"] = {f"{h['from']}→{h['to']}": h["mib_s"] for h in hops}
        summary["stages"] = stages(fed, hops)
    finally:
        fed.stop_all()
    return summary


def hop_figures(fed: Federation) -> list[dict[str, Any]]:
    """Each hop's upload as its sender logged it (``blob.uploaded``), with its MiB/s."""
    hops = []
    for nid in ("mx", "latam-hub", "eu-hub"):
        for e in log_events(fed.log_path(nid), "blob.uploaded"):
            seconds = e.get("seconds") or 0.0
            hops.append({"from": nid, "to": e.get("peer"), "len": e.get("len"), "sent": e.get("sent"),
                         "seconds": seconds, "mib_s": round(e["sent"] / MIB / seconds, 1) if seconds else None})
    return hops


def stages(fed: Federation, hops: list[dict[str, Any]]) -> dict[str, float]:
    """Where the relay's time went, from the nodes' logs (seconds): each hop from the previous node having
    the envelope (mx: submitted, after encrypting) to the next node accepting it (upload, then the
    envelope), except that the last hop ends when es has stored the blob; then ``decrypt_at_es``, from
    es storing the blob to es accepting the envelope (verify, decrypt into its plaintext store)."""
    def last(node: str, event: str, status: str | None = None) -> float | None:
        found = [e for e in log_events(fed.log_path(node), event) if status is None or e.get("status") == status]
        return _ts(found[-1]) if found else None

    out: dict[str, float] = {}
    prev = last("mx", "envelope", "submitted")
    for h in hops:
        end = last(h["to"], "blob.stored") if h["to"] == "es" else last(h["to"], "envelope", "accepted")
        if prev is None or end is None:
            return out
        out[f"{h['from']}→{h['to']}"] = round(end - prev, 2)
        prev = end
    accepted = last("es", "envelope", "accepted")
    if prev is not None and accepted is not None:
        out["decrypt_at_es"] = round(accepted - prev, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--size", type=parse_size, default=parse_size("1GiB"), help="blob size (default 1GiB)")
    ap.add_argument("--dir", type=Path, help="work in DIR and keep it (default: a temporary folder)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for es to receive it")
    ap.add_argument("--rss-target", type=float, default=200.0, help="peak RSS per node, MiB (default 200)")
    args = ap.parse_args(argv)
    if args.dir:
        args.dir.mkdir(parents=True, exist_ok=True)
        summary = run(args.size, args.dir, args.timeout, args.rss_target)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="traza-blob-bench-"))
        try:
            summary = run(args.size, tmp, args.timeout, args.rss_target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(summary, indent=2))
    ok = summary.get("intact") and summary["resume"]["only_remainder_sent"] and summary.get("rss_ok")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
