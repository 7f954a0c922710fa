"""Node configuration: TOML → frozen msgspec Structs with defaults and limits.

Every error names the file, the key and the reason, e.g.
``config/mx.toml: limits.max_batch: expected an int >= 1 and <= 256, got 0``.
Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from adapters import ADAPTERS
from gateway.core.codes import NODE_ID
from gateway.core.csrf import parse_origin


class ConfigError(ValueError):
    pass


_Addr = Annotated[str, msgspec.Meta(pattern=r"^(\[[0-9a-fA-F:]+\]|[0-9.]+|localhost):[0-9]{1,5}$")]


class _C(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class NodeSection(_C, frozen=True):
    id: str
    data_dir: str


MANIFEST_POLL_MIN, MANIFEST_POLL_MAX = 1, 86400  # seconds between manifest polls ([trust])


class TrustSection(_C, frozen=True):
    anchor: str
    manifest: str
    manifest_poll_seconds: Annotated[float, msgspec.Meta(ge=MANIFEST_POLL_MIN, le=MANIFEST_POLL_MAX)] = 30.0
    # seconds a key of a manifest must have been known here before this node signs or seals with it (the
    # other nodes poll their manifests too); unset: 3 polls and the clock skew (docs/trust.md)
    key_settle_seconds: Annotated[float, msgspec.Meta(ge=0, le=7 * 86400)] | None = None


class KeysSection(_C, frozen=True):
    sig: str
    enc: str
    audit: str
    tls_cert: str
    tls_key: str
    local_ca: str


class ListenSection(_C, frozen=True):
    peer: _Addr
    local: _Addr
    ops: _Addr
    # other origins (https://host[:port]) by which browsers reach the local listener: a DNS name, a port
    # mapped by a container; listen.local itself (and its loopback names) is always one
    local_origins: list[str] = []


class DeliverySection(_C, frozen=True):
    """How received messages reach the national system (SPEC §6; docs/delivery.md)."""

    mode: Literal["inbox", "webhook", "drop"] = "inbox"
    webhook_url: str | None = None  # https:// URL the node POSTs each message to (mode webhook)
    webhook_ca: str | None = None  # PEM file of CA(s) the webhook server must chain to; None: system trust
    webhook_timeout: Annotated[float, msgspec.Meta(gt=0, le=600)] = 30.0  # seconds per POST
    drop_dir: str | None = None  # folder with inbox/ outbox/ sent/ rejected/ (mode drop)
    poll_seconds: Annotated[float, msgspec.Meta(ge=0.05, le=60)] = 0.5  # outbox/ poll and inbox sweep


class AdapterSection(_C, frozen=True):
    name: str = "standard"


class LimitsSection(_C, frozen=True):
    max_batch: Annotated[int, msgspec.Meta(ge=1, le=256)] = 256
    max_request: Annotated[int, msgspec.Meta(ge=1024, le=16 * 1024 * 1024)] = 16 * 1024 * 1024
    max_envelope: Annotated[int, msgspec.Meta(ge=1024, le=1024 * 1024)] = 1024 * 1024
    max_blob: Annotated[int, msgspec.Meta(ge=1, le=4 * 1024**3)] = 4 * 1024**3
    max_queue: Annotated[int, msgspec.Meta(ge=1)] = 100_000
    min_free_disk: Annotated[int, msgspec.Meta(ge=0)] = 64 * 1024 * 1024
    clock_skew: Annotated[int, msgspec.Meta(ge=0, le=3600)] = 120
    default_ttl: Annotated[int, msgspec.Meta(ge=60, le=30 * 86400)] = 7 * 86400
    max_ttl: Annotated[int, msgspec.Meta(ge=60, le=30 * 86400)] = 30 * 86400
    checkpoint_interval: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 5.0
    # every witness is asked to cosign the latest checkpoint this often, even when the log is quiet;
    # stale after 3 x (SPEC §7.2, 1.1)
    witness_refresh: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 60.0
    retry_min: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 1.0
    retry_max: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 300.0
    # a message forwarded this many seconds ago without a receipt or error is marked overdue
    receipt_overdue: Annotated[float, msgspec.Meta(gt=0, le=30 * 86400)] = 3600.0
    # every listener (peer, local, ops): seconds a client may take, and connections open at once
    handshake_timeout: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0  # TCP accept to TLS handshake done
    header_timeout: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0  # first byte to complete request headers
    body_timeout: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0  # longest silence within a request body
    keepalive_timeout: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 60.0  # idle kept-alive connection
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=65536)] = 512  # per listener


class ClientSection(_C, frozen=True):
    """Local-API client certificates used by `traza send/status/peers/queue` on the node's host."""

    system_cert: str | None = None
    system_key: str | None = None
    operator_cert: str | None = None
    operator_key: str | None = None
    auditor_cert: str | None = None
    auditor_key: str | None = None


class StoreSection(_C, frozen=True):
    """Where the relay tables and the audit log live (docs/ha.md): by default the SQLite file
    ``node.db`` in ``node.data_dir``; ``url = "postgresql://user@host:port/db"`` puts them in PostgreSQL.

    With a URL, several ``traza run`` processes of one node may share the database (active-active
    replicas): ``blob_dir`` is then a folder every replica reaches (blobs are files; default the
    data_dir), ``lease`` how long a replica holds the outbox rows it claimed before another may send them,
    ``leader_poll`` how often a replica checks the leader lock (checkpoints, witnessing), ``startup_wait``
    how long a starting node waits for its database to accept writes (the server restarting, or a failover
    in progress: the old primary gone, the standby not yet promoted) before it exits."""

    url: str | None = None
    blob_dir: str | None = None
    lease: Annotated[float, msgspec.Meta(ge=0.2, le=3600)] = 60.0
    leader_poll: Annotated[float, msgspec.Meta(ge=0.05, le=60)] = 2.0
    startup_wait: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0


class LogSection(_C, frozen=True):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


_Days = Annotated[float, msgspec.Meta(ge=0, le=36500)]


class RetentionSection(_C, frozen=True):
    """How long this node keeps the content of the messages it holds (issue #15, docs/operations.md):
    ``days`` for every type, ``types`` per message type (whole or fractional days, counted from the
    message's arrival); the manifest policy's ``retention_days`` and a message's
    ``retention.delete_by`` may shorten it. ``interval``: seconds between two retention passes."""

    days: _Days | None = None
    types: dict[str, _Days] = {}
    interval: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 3600.0


class Config(_C, frozen=True):
    node: NodeSection
    trust: TrustSection
    keys: KeysSection
    listen: ListenSection
    delivery: DeliverySection = DeliverySection()
    adapter: AdapterSection = AdapterSection()
    limits: LimitsSection = LimitsSection()
    log: LogSection = LogSection()
    client: ClientSection = ClientSection()
    store: StoreSection = StoreSection()
    retention: RetentionSection = RetentionSection()
    path: str = ""  # the file it was read from (set by load_config)

    @property
    def key_settle(self) -> float:
        """Seconds a new key must have been known here before this node signs or seals with it:
        ``[trust] key_settle_seconds``, else three manifest polls and the clock skew (time for the nodes of
        a route, polling their hubs and the hubs each other, to have the manifest that lists it)."""
        if self.trust.key_settle_seconds is not None:
            return self.trust.key_settle_seconds
        return 3 * self.trust.manifest_poll_seconds + self.limits.clock_skew

    def resolve(self, p: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        q = Path(p).expanduser()
        return q if q.is_absolute() else Path(self.path).parent / q


def _check_delivery(path: Path, cfg: Config) -> None:
    d = cfg.delivery
    if d.mode == "webhook":
        if not d.webhook_url:
            raise ConfigError(f"{path}: delivery.webhook_url: required when delivery.mode is 'webhook'")
        url = urlsplit(d.webhook_url)
        if url.scheme != "https" or not url.hostname:
            raise ConfigError(f"{path}: delivery.webhook_url: {d.webhook_url!r} is not an https:// URL with a host "
                              "(the node presents its client certificate over TLS)")
        try:
            url.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise ConfigError(f"{path}: delivery.webhook_url: {exc}") from None
    if d.webhook_ca is not None:
        _check_file(path, "delivery.webhook_ca", cfg.resolve(d.webhook_ca))
    if d.mode == "drop":
        if not d.drop_dir:
            raise ConfigError(f"{path}: delivery.drop_dir: required when delivery.mode is 'drop'")
        f = cfg.resolve(d.drop_dir)
        if f.exists() and not f.is_dir():
            raise ConfigError(f"{path}: delivery.drop_dir: {f} exists and is not a folder")


def _check_retention(path: Path, cfg: Config) -> None:
    from gateway.core.messages import MESSAGE_TYPES

    for mt in cfg.retention.types:
        if mt not in MESSAGE_TYPES:
            raise ConfigError(f"{path}: retention.types: {mt!r} is not a message type (one of "
                              f"{', '.join(sorted(MESSAGE_TYPES))})")


def _check_store(path: Path, cfg: Config) -> None:
    url = cfg.store.url
    if url is None:
        return
    shown = re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)  # never print a password
    if urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"{path}: store.url: {shown!r} is not a postgresql:// URL (leave store.url out for "
                          "the SQLite file in node.data_dir)")
    import psycopg

    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"{path}: store.url: {shown!r}: {str(exc).strip().splitlines()[0]}") from None


_PATH_RE = re.compile(r"at `\$\.?(.*)`")


def load_config(path: Path | str) -> Config:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); TOML is "
                          "UTF-8") from None
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if "path" in data:
        raise ConfigError(f"{path}: path: unknown key")
    try:
        cfg = msgspec.convert({**data, "path": str(path)}, Config, strict=True)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        m = _PATH_RE.search(msg)
        key = m.group(1) if m else "(top level)"
        reason = _PATH_RE.sub("", msg).strip().rstrip("-").strip()
        raise ConfigError(f"{path}: {key or '(top level)'}: {reason}") from None
    if cfg.adapter.name not in ADAPTERS:
        raise ConfigError(f"{path}: adapter.name: unknown adapter {cfg.adapter.name!r}; set it to one of "
                          f"{', '.join(sorted(ADAPTERS))} (docs/adapters.md)")
    if not NODE_ID.match(cfg.node.id):
        raise ConfigError(f"{path}: node.id: {cfg.node.id!r} does not match {NODE_ID.pattern}")
    _check_delivery(path, cfg)
    _check_store(path, cfg)
    _check_retention(path, cfg)
    for name in ("peer", "local", "ops"):
        port = int(getattr(cfg.listen, name).rsplit(":", 1)[1])
        if not 1 <= port <= 65535:  # 0 too: peers and the CLI dial this very address
            raise ConfigError(f"{path}: listen.{name}: port {port} is outside 1..65535")
    for i, origin in enumerate(cfg.listen.local_origins):
        if parse_origin(origin) is None:
            raise ConfigError(f"{path}: listen.local_origins[{i}]: {origin!r} is not an origin https://host[:port]")
    if cfg.limits.default_ttl > cfg.limits.max_ttl:
        raise ConfigError(f"{path}: limits.default_ttl: {cfg.limits.default_ttl} exceeds limits.max_ttl")
    if cfg.limits.retry_min > cfg.limits.retry_max:
        raise ConfigError(f"{path}: limits.retry_min: exceeds limits.retry_max")
    for key in ("anchor", "manifest"):
        _check_file(path, f"trust.{key}", cfg.resolve(getattr(cfg.trust, key)))
    for key in KeysSection.__struct_fields__:
        _check_file(path, f"keys.{key}", cfg.resolve(getattr(cfg.keys, key)))
    return cfg


def _check_file(path: Path, key: str, f: Path) -> None:
    """ConfigError naming the file and key unless ``f`` is a file."""
    if f.is_dir():
        raise ConfigError(f"{path}: {key}: {f} is a directory, not a file")
    if not f.is_file():
        raise ConfigError(f"{path}: {key}: file {f} does not exist")


def set_client_certificate(path: Path | str, role: str, cert: Path, key: Path) -> tuple[str, str]:
    """Point ``[client] <role>_cert`` / ``<role>_key`` of the node config at ``path`` to a renewed local
    client certificate (``traza pki renew-tls --local ... --config``), editing only those two values so
    that comments and layout stay; a relative value stays relative to the config's folder. Returns the
    previous values. ConfigError naming the file and key if the config does not set them."""
    path = Path(path)
    cfg = load_config(path)
    old_cert, old_key = getattr(cfg.client, f"{role}_cert", None), getattr(cfg.client, f"{role}_key", None)
    if old_cert is None or old_key is None:
        raise ConfigError(f"{path}: client.{role}_cert and client.{role}_key: not set; add them to [client] "
                          f"({cert}, {key})")
    base = path.resolve().parent

    def value(new: Path, old: str) -> str:
        if Path(old).is_absolute():
            return str(new.resolve())
        try:
            return new.resolve().relative_to(base).as_posix()
        except ValueError:
            return os.path.relpath(new.resolve(), base)

    lines = path.read_text().splitlines(keepends=True)
    section, done = None, set()
    for i, line in enumerate(lines):
        head = re.match(r"\s*\[([^\]]+)\]", line)
        if head:
            section = head.group(1).strip()
            continue
        if section != "client":
            continue
        for field, new, old in ((f"{role}_cert", cert, old_cert), (f"{role}_key", key, old_key)):
            m = re.match(rf'(\s*{field}\s*=\s*)"[^"]*"(.*)$', line, re.S)
            if m:
                lines[i] = f'{m.group(1)}"{value(new, old)}"{m.group(2)}'
                done.add(field)
    if len(done) != 2:
        raise ConfigError(f"{path}: [client] {role}_cert / {role}_key: not written as key = \"value\" lines; "
                          f"set them to {cert} and {key} by hand")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(lines))
    os.replace(tmp, path)
    load_config(path)  # still a valid config
    return old_cert, old_key
