"""The node's own TLS certificate, renewed without a restart, and the federation CAs it trusts (issue #12;
procedure in ``docs/operations.md``).

Files: the certificate and key named in the config (``keys.tls_cert``, ``keys.tls_key``) and, in the
certificate's folder, every ``<stem>-<n>.pem`` with its ``<stem>-<n>.key`` (what ``traza pki renew-tls``
writes beside ``cert.pem``: ``cert-2.pem``, ``cert-3.pem`` ...). A candidate is acceptable when it names
this node (SAN ``urn:traza:node:<id>``), has an ECDSA P-256 key, is issued by a ``tls_ca`` of the manifest
in force, is not revoked, its key file matches it, and its ``not_before`` has come. Among those the node
uses the one valid now with the latest ``not_after``, the later file on a tie (if all have expired, the
latest: the expiry metric and the peers say why). At start-up no acceptable candidate is an error naming the configured file.

Swapping, at each reload: a different certificate is loaded into the very ``ssl.SSLContext`` objects the
listeners (peer, local), the peer clients and the webhook delivery use, so new handshakes present it while open connections,
kept alive, carry on with the one they were made with; a CA the manifest now lists is added to the trust
of the peer listener and the clients (a CA removed from it is refused by every request's check,
``gateway.crypto.tls.node_cert_refusal``). Reloading happens where the keys reload (gateway/node/keys.py):
when a newer manifest is applied, at every manifest poll, and on SIGHUP. A new certificate is audited as
``key.rotated`` with ``use`` ``tls`` (SPEC §1 key use; §7.1), ``kid`` ``<node>/tls/<n>`` (n: 1 for the
configured file, n for ``cert-<n>.pem``), its ``serial`` and the ``previous_serial``.

The local listener's client CAs (``keys.local_ca``, one file that may hold several CAs during a local CA
rollover: ``traza pki new-local-ca`` / ``retire-local-ca``) are re-read at the same moments: a CA the file
now holds is added to the local listener's trust, and every local client certificate is checked after the
handshake and on every request against the CAs of the file as last read and the manifest's revocations
(``gateway.crypto.tls.local_cert_refusal``), so a retired CA or a revoked client certificate is refused at
once, on open connections too. A change is audited as ``key.rotated`` with ``use`` ``local_ca`` (``keys``:
the serials of the CAs now trusted, ``previous``: those before). A file that is unreadable or fails the
start-up check (a CA, not a federation CA) is logged and the CAs in use stay.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.core.events import KeyRotated, as_entry
from gateway.core.manifest import Federation
from gateway.crypto.pki import PkiError, cert_info, check_key_matches, check_local_ca, check_node_certificate
from gateway.crypto.tls import (
    CertRefusal,
    add_trusted_cas,
    cert_serials_of,
    client_context,
    local_cert_refusal,
    reload_cert_chain,
    server_context,
    set_verify_time,
)
from gateway.national.delivery import WebhookDelivery
from gateway.node.state import _NodeState


class TlsFileError(Exception):
    """No acceptable TLS certificate among the files (names the configured file and why)."""


@dataclass(frozen=True)
class TlsChoice:
    cert: Path
    key: Path
    serial: str  # hex
    number: int  # 1 for the configured file, n for <stem>-<n>.pem: the n of its key id <node>/tls/<n>
    not_before: float
    not_after: float


def tls_files(cert: Path, key: Path) -> list[tuple[Path, Path]]:
    """The configured (certificate, key), then every ``<stem>-<n>.pem`` / ``<stem>-<n>.key`` beside it."""
    out = [(cert, key)]
    try:
        siblings = sorted(cert.parent.iterdir())
    except OSError:
        return out
    pattern = re.compile(rf"{re.escape(cert.stem)}-[1-9][0-9]*\.pem")
    out += [(p, p.with_suffix(".key")) for p in siblings if p != cert and pattern.fullmatch(p.name)]
    return out


def _candidate(cert: Path, key: Path, fed: Federation, node: str, now: float, what: str, number: int) -> TlsChoice:
    """The certificate of ``cert`` if acceptable (module docstring); PkiError naming the file and why not.
    ``what`` names the files in the messages (``keys.tls_cert`` / ``keys.tls_key`` for the configured)."""

    def read(path: Path, label: str) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise PkiError(f"{path}: {what}{label}: cannot read it ({exc.strerror})") from None

    pem = read(cert, "tls_cert")
    try:
        serial = check_node_certificate(pem, node, fed.manifest.tls_ca)
        if fed.is_serial_revoked(int(serial, 16)):
            raise PkiError(f"the TLS certificate (serial {serial}) is revoked in manifest version {fed.version}")
        info = cert_info(pem)
        if info.not_before.timestamp() > now:
            raise PkiError(f"the TLS certificate (serial {serial}) is not valid before {info.not_before.isoformat()}")
    except PkiError as exc:
        raise PkiError(f"{cert}: {what}tls_cert: {exc}") from None
    try:
        check_key_matches(pem, read(key, "tls_key"))
    except PkiError as exc:
        hint = (f": set keys.tls_key to the key issued with {cert.name} (keys.tls_cert), e.g. {cert.with_suffix('.key')}"
                if what == "keys." else "")
        raise PkiError(f"{key}: {what}tls_key: {exc}{hint}") from None
    return TlsChoice(cert, key, serial, number, info.not_before.timestamp(), info.not_after.timestamp())


def choose_certificate(cert: Path, key: Path, fed: Federation, node: str, now: float) -> TlsChoice:
    """The certificate to use among :func:`tls_files` (module docstring). Raises TlsFileError naming the
    configured files and why they, and any renewed ones beside them, are not acceptable."""
    ok: list[TlsChoice] = []
    why: list[str] = []
    for c, k in tls_files(cert, key):
        number = 1 if c == cert else int(c.stem.rsplit("-", 1)[1])
        try:
            ok.append(_candidate(c, k, fed, node, now, "keys." if c == cert else "renewed ", number))
        except PkiError as exc:
            why.append(str(exc))
    if not ok:
        raise TlsFileError(why[0] + (f" (and beside it: {'; '.join(why[1:])})" if why[1:] else ""))
    valid = [c for c in ok if c.not_after > now]
    # latest not_after; on a tie the later file (cert-3.pem after cert-2.pem after cert.pem)
    return max(enumerate(valid or ok), key=lambda ic: (ic[1].not_after, ic[1].not_before, ic[0]))[1]


class TlsMixin(_NodeState):
    """The node's TLS contexts and their reloading (module docstring)."""

    tls_serial: str
    tls_kid: str  # <node>/tls/<n> (SPEC §1: key use ``tls``), n the number of its file
    _tls_ca_loaded: tuple[str, ...]
    _tls_server: dict[str, ssl.SSLContext]
    _tls_client: ssl.SSLContext | None
    tls_at_clock: bool  # OpenSSL checks validity at self.clock() (simulations), not the system time
    local_ca_pem: str  # keys.local_ca as last read (checked): the local listener's client CAs

    def _init_tls(self, *, at_clock: bool) -> None:
        """At start-up (raises TlsFileError)."""
        k = self.cfg.keys
        choice = choose_certificate(self.cfg.resolve(k.tls_cert), self.cfg.resolve(k.tls_key), self.fed, self.id,
                                    self.clock())
        self.tls_cert, self.tls_key, self.tls_serial = choice.cert, choice.key, choice.serial
        self.tls_kid = f"{self.id}/tls/{choice.number}"
        self._tls_ca_loaded = tuple(self.fed.manifest.tls_ca)
        self._tls_server = {}
        self._tls_client = None
        self.tls_at_clock = at_clock
        self.local_ca_pem = self.cfg.resolve(self.cfg.keys.local_ca).read_text("ascii")  # checked by _init

    def local_client_refusal(self, cert_der: bytes | None) -> CertRefusal | None:
        """Why a local client certificate is not acceptable now (module docstring), or None."""
        return local_cert_refusal(cert_der, (self.local_ca_pem,), self.fed)

    def _pin(self, ctx: ssl.SSLContext) -> ssl.SSLContext:
        if self.tls_at_clock:
            set_verify_time(ctx, self.clock())
        return ctx

    def server_tls_context(self, listener: str, ca_pems: list[str]) -> ssl.SSLContext:
        """The context of a listener (``peer``: clients chained to the manifest's CAs; ``local``: to the
        local CA), kept so that a renewed certificate goes into it."""
        ctx = self._tls_server[listener] = self._pin(server_context(self.tls_cert, self.tls_key, ca_pems))
        return ctx

    def client_tls_context(self) -> ssl.SSLContext:
        """The one context every peer client of this node uses (renewed certificates go into it)."""
        if self._tls_client is None:
            self._tls_client = self._pin(client_context(self.tls_cert, self.tls_key, self.fed.manifest.tls_ca))
        return self._tls_client

    def _tls_contexts(self) -> list[ssl.SSLContext]:
        out = list(self._tls_server.values())
        if self._tls_client is not None:
            out.append(self._tls_client)
        return out

    def reload_tls(self, reason: str) -> dict[str, Any] | None:
        """Choose the certificate again (new files, a newer manifest, time passing) and swap it into every
        context; add CAs the manifest now lists. Returns the fields of the ``key.rotated`` entry
        (``use`` ``tls``) when the certificate changed. Never raises: a problem is logged and the certificate in use stays."""
        try:
            return self._reload_tls(reason)
        except Exception as exc:  # a reload problem never stops the node
            self.log.error("tls.reload_failed", reason=reason, detail=str(exc)[:300])
            return None

    def _reload_local_ca(self, reason: str) -> None:
        path = self.cfg.resolve(self.cfg.keys.local_ca)
        try:
            pem = path.read_text("ascii")
            if pem == self.local_ca_pem:
                return
            check_local_ca(pem.encode("ascii"), self.fed.manifest.tls_ca)
            serials = cert_serials_of(pem)
        except (OSError, UnicodeError, PkiError, ValueError) as exc:
            self.log.warning("tls.local_ca_not_loaded", reason=reason, file=str(path), detail=str(exc)[:300])
            return
        previous = cert_serials_of(self.local_ca_pem)
        local = self._tls_server.get("local")
        if local is not None:
            add_trusted_cas(local, [pem])
        self.local_ca_pem = pem
        changed = KeyRotated(use="local_ca", kid=f"{self.id}/local_ca/{serials[-1]}", keys=serials,
                             previous=previous, file=str(path), reason=reason)
        self.audit_event_bg(changed)
        self.log.info("key.rotated", use="local_ca", reason=reason, keys=serials, previous=previous)

    def _reload_tls(self, reason: str) -> dict[str, Any] | None:
        k = self.cfg.keys
        self._reload_local_ca(reason)
        cas = tuple(self.fed.manifest.tls_ca)
        if cas != self._tls_ca_loaded:
            added = [pem for pem in cas if pem not in self._tls_ca_loaded]
            if added:
                for name, ctx in self._tls_server.items():
                    if name == "peer":
                        add_trusted_cas(ctx, added)
                if self._tls_client is not None:
                    add_trusted_cas(self._tls_client, added)
            self._tls_ca_loaded = cas
            self.log.info("tls.ca_changed", reason=reason, cas=len(cas), added=len(added))
        for ctx in self._tls_contexts():
            self._pin(ctx)
        try:
            choice = choose_certificate(self.cfg.resolve(k.tls_cert), self.cfg.resolve(k.tls_key), self.fed, self.id,
                                        self.clock())
        except TlsFileError as exc:
            self.log.warning("tls.not_renewed", reason=reason, detail=str(exc)[:500])
            return None
        if choice.serial == self.tls_serial:
            return None
        contexts = self._tls_contexts()
        if isinstance(self.delivery, WebhookDelivery):  # the webhook sees the node's client certificate too
            contexts.append(self.delivery.ssl)
        for ctx in contexts:
            reload_cert_chain(ctx, choice.cert, choice.key)
        rotated = KeyRotated(use="tls", kid=f"{self.id}/tls/{choice.number}", previous=[self.tls_kid],
                             serial=choice.serial, previous_serial=self.tls_serial, file=str(choice.cert),
                             not_after=int(choice.not_after), reason=reason)
        self.tls_cert, self.tls_key, self.tls_serial = choice.cert, choice.key, choice.serial
        self.tls_kid = rotated.kid
        self.audit_event_bg(rotated)
        event = as_entry(rotated)
        del event["event"], event["reason"]
        self.log.info("key.rotated", reason=reason, **event)
        return event
