"""The client of a node's local API (SPEC §6) that the CLI verbs, `traza demo`, the benchmarks and the
tests share: TLS 1.3 with the node's local client certificate of a role (``system``, ``operator``,
``auditor``) from the node's config, JSON requests, problem+json turned into one line, and streamed,
resumable blob uploads."""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from gateway.config import Config, ConfigError, load_config
from gateway.core.csrf import REQUEST_HEADER
from gateway.failures import CheckFailed, UsageError
from gateway.store.blobs import file_digest


def node_config(path: str | Path) -> Config:
    """The node config at ``path`` (a verb's ``--config``); a bad file is bad usage (exit 2) naming file,
    key, reason."""
    try:
        return load_config(path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def local_tls(cfg: Config, role: str = "system") -> ssl.SSLContext:
    """TLS 1.3 client context for the node's local API with the configured client certificate of ``role``
    (the server is checked against the federation CA of the manifest)."""
    cert = getattr(cfg.client, f"{role}_cert")
    key = getattr(cfg.client, f"{role}_key")
    if not cert or not key:
        raise UsageError(f"{cfg.path}: client.{role}_cert and client.{role}_key are needed for this verb")
    manifest = json.loads(cfg.resolve(cfg.trust.manifest).read_text())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata="\n".join(manifest["tls_ca"]))
    ctx.load_cert_chain(str(cfg.resolve(cert)), str(cfg.resolve(key)))
    return ctx


def local_connection(cfg: Config, role: str = "system", *, timeout: float = 120) -> http.client.HTTPSConnection:
    """A connection to the node's local API as ``role``, for streamed requests (blobs)."""
    host, port = cfg.listen.local.rsplit(":", 1)
    return http.client.HTTPSConnection(host.strip("[]"), int(port), context=local_tls(cfg, role), timeout=timeout)


def local_request(cfg: Config, role: str, method: str, path: str, body: bytes | None = None,
                  content_type: str = "application/json") -> tuple[int, Any]:
    """Call the node's local API with the configured client certificate of ``role``."""
    ctx = local_tls(cfg, role)
    url = f"https://{cfg.listen.local}{path}"
    # X-Traza-Request: operator and auditor actions need it (gateway.core.csrf); harmless elsewhere
    headers = {REQUEST_HEADER: "traza-cli", **({"Content-Type": content_type} if body is not None else {})}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=60) as resp:  # noqa: S310
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    except (urllib.error.URLError, OSError) as exc:
        raise CheckFailed(f"cannot reach the local API at {url}: {exc}") from None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def problem_text(status: int, doc: Any) -> str:
    if isinstance(doc, dict) and "detail" in doc:
        return f"HTTP {status} {doc.get('code', '')}: {doc['detail']}"
    return f"HTTP {status}: {doc}"


def call(cfg: Config, role: str, method: str, path: str, body: bytes | None = None, *,
         ok: tuple[int, ...] = (200,), content_type: str = "application/json") -> Any:
    """:func:`local_request`, the decoded answer when its status is in ``ok``; otherwise CheckFailed
    (exit 1) with the node's problem in one line."""
    status, doc = local_request(cfg, role, method, path, body, content_type)
    if status not in ok:
        raise CheckFailed(problem_text(status, doc))
    return doc


def upload_attachment(cfg: Config, path: Path, *, sha: str | None = None, length: int | None = None,
                      progress: Any = None) -> tuple[str, int, int]:
    """Upload ``path`` to the node's local blob store (``PUT /local/v1/blobs/<sha>``, streamed, resuming
    from what the node already holds). Returns (sha256, length, bytes sent). ``progress(done, total)``
    is called as bytes go out."""
    if sha is None or length is None:
        sha, length = file_digest(path)
    where = f"https://{cfg.listen.local}/local/v1/blobs/{sha}"

    def conn() -> http.client.HTTPSConnection:
        return local_connection(cfg)

    try:
        c = conn()
        c.request("HEAD", f"/local/v1/blobs/{sha}")
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise CheckFailed(f"{path}: HEAD {where}: HTTP {r.status}")
        have = int(r.getheader("Traza-Received-Bytes", "0") or 0)
        if r.getheader("Traza-Blob-Complete") == "true":
            if progress:
                progress(length, length)
            c.close()
            return sha, length, 0
        start = have if 0 < have <= length else 0
        c.putrequest("PUT", f"/local/v1/blobs/{sha}")
        c.putheader("Content-Type", "application/octet-stream")
        c.putheader("Content-Length", str(length - start))
        if start:
            c.putheader("Content-Range", f"bytes {start}-{length - 1}/{length}")
        c.endheaders()
        done = start
        if progress:
            progress(done, length)
        with path.open("rb") as f:
            f.seek(start)
            while done < length and (piece := f.read(min(1024 * 1024, length - done))):
                c.send(piece)
                done += len(piece)
                if progress:
                    progress(done, length)
        r = c.getresponse()
        raw = r.read()
        c.close()
    except (OSError, http.client.HTTPException) as exc:
        raise CheckFailed(f"{path}: upload to {where} failed: {exc} (run the command again to resume)") from None
    if r.status not in (200, 201):
        try:
            doc: Any = json.loads(raw)
        except ValueError:
            doc = raw.decode("utf-8", "replace")
        raise CheckFailed(f"{path}: upload refused: {problem_text(r.status, doc)}")
    return sha, length, length - start


def upload_attachments(cfg: Config, files: list[tuple[Path, str]], *, show: bool = False) -> list[dict[str, Any]]:
    """Upload each (path, media type) to the node's local blob store (:func:`upload_attachment`: streamed,
    resuming), with a progress bar on stderr when ``show``; returns the standard form's ``attachments``
    (``[{"sha256", "len", "ct", "name"}]``). Used by `traza send` and by `traza demo`'s national systems."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    out: list[dict[str, Any]] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), disable=not show, transient=False) as bar:
        for path, ct in files:
            try:
                size = path.stat().st_size
            except OSError as exc:
                raise UsageError(f"{path}: {exc.strerror}") from None
            task = bar.add_task(f"hashing {path.name}", total=size)
            sha, n = file_digest(path)
            bar.update(task, description=f"uploading {path.name}", completed=0)
            sha, n, _sent = upload_attachment(cfg, path, sha=sha, length=n,
                                              progress=lambda done, total, t=task: bar.update(t, completed=done, total=total))
            bar.update(task, description=f"uploaded {path.name}", completed=n)
            out.append({"sha256": sha, "len": n, "ct": ct, "name": path.name})
    return out
