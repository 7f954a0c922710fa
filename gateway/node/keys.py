"""The node's own signing, encryption and audit keys: read from files, matched against the manifest, and
reloaded without a restart (issue #12, key rotation; procedure in ``docs/trust.md``).

Files: for each use (``sig``, ``enc``, ``audit``) the file named in the config (``keys.sig`` ...) and,
in the same folder, every file named ``<use>-<n>.key`` (what ``traza pki add-node`` and ``traza pki
rotate-key`` write). A file is matched by its public key against this node's keys of that use in the
manifest in force; a file that matches none is ignored (at start-up the configured file MUST match).

Which keys are used, at ``now``:

- signing (origin tokens, hop records, acks): the newest ``sig`` key that is valid (not revoked, within
  ``not_before``..``not_after``) and whose file is here;
- decryption: every ``enc`` key still listed and not revoked (payloads sealed to the old key during an
  overlap still open);
- checkpoints: every valid ``audit`` key, newest first: during an overlap each checkpoint carries both
  signatures (C2SP signed-note), so verifiers holding either key accept it; the newest also cosigns as
  a witness.

If no file holds a valid key of a use (e.g. the key was revoked and the new one is not installed yet),
the node keeps what it had and says so in its log. Reloading happens when a newer manifest is applied,
at every manifest poll (keys become valid or expire with time), and on SIGHUP. A change is audited as
``key.rotated``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.core.events import KeyRotated
from gateway.core.manifest import Federation, KeyUse, NodeKey, key_number
from gateway.crypto.hpke import EncKey
from gateway.crypto.keys import Ed25519Key, SigningKey
from gateway.node.state import _NodeState

USES: tuple[KeyUse, ...] = ("sig", "enc", "audit")


class KeyFileError(Exception):
    """A configured key file that is missing, unreadable or not a key of this node (names the file)."""


@dataclass(frozen=True)
class Keyring:
    signer: SigningKey
    enc: dict[str, EncKey]  # kid -> key
    audit: tuple[tuple[str, Ed25519Key], ...]  # (kid, key), newest first

    def kids(self) -> dict[str, list[str]]:
        enc = sorted(self.enc, key=key_number, reverse=True)
        return {"sig": [self.signer.kid], "enc": enc, "audit": [k for k, _ in self.audit]}


def key_files(configured: Path, use: str) -> list[Path]:
    """The configured file, then the other ``<use>-<n>.key`` files of its folder."""
    out = [configured]
    try:
        siblings = sorted(configured.parent.iterdir())
    except OSError:
        return out
    pattern = re.compile(rf"{use}-[1-9][0-9]*\.key")
    out += [p for p in siblings if p != configured and pattern.fullmatch(p.name)]
    return out


def _mine(fed: Federation, node: str, use: str) -> list[NodeKey]:
    n = fed.node(node)
    return [] if n is None else [k for k in n.keys if k.use == use]


def _match(data: bytes, use: str, keys: list[NodeKey]) -> tuple[str, Any] | None:
    """(kid, private key object) of the manifest key whose public half ``data`` holds, or None."""
    for k in keys:
        try:
            if use == "sig" and k.alg in ("EdDSA", "ES256") and k.jwk is not None:
                sk = SigningKey.from_pem(k.kid, k.alg, data)  # type: ignore[arg-type]
                if sk.public_jwk() == {f: v for f, v in k.jwk.items() if f in ("kty", "crv", "x", "y")}:
                    return k.kid, sk
            elif use == "enc" and k.kem:
                ek = EncKey.from_private_bytes(k.kid, k.kem, data)
                if ek.public_b64() == k.public_key:
                    return k.kid, ek
            elif use == "audit":
                ak = Ed25519Key.from_pem(data)
                if ak.public_b64 == k.public_key:
                    return k.kid, ak
        except ValueError:
            continue
    return None


_WHAT = {"sig": "signing key", "enc": "encryption key", "audit": "audit key"}


def load_keyring(
    paths: dict[str, Path],
    fed: Federation,
    node: str,
    now: float,
    *,
    previous: Keyring | None = None,
    warn: Callable[[str], None] = lambda _m: None,
    known_since: Mapping[str, float] | None = None,
    settle: float = 0.0,
) -> Keyring:
    """Read the key files of ``paths`` (use -> configured file) and choose as the module docstring says.
    Without ``previous`` (start-up) a configured file that is not a key of ``node`` raises KeyFileError.
    The signing key is the newest valid one known (``known_since``) for ``settle`` seconds, so that the
    nodes of a route have the manifest listing it (Federation.usable_key); until then an older one."""
    found: dict[str, dict[str, Any]] = {}
    for use in USES:
        configured = paths[use]
        mine = _mine(fed, node, use)
        found[use] = {}
        for p in key_files(configured, use):
            try:
                data = p.read_bytes()
            except OSError as exc:
                if p == configured and previous is None:
                    raise KeyFileError(f"{p}: cannot read the {_WHAT[use]}: {exc.strerror or exc}") from None
                continue
            m = _match(data, use, mine)
            if m is None:
                if p == configured and previous is None:
                    raise KeyFileError(f"{p}: this {_WHAT[use]} is not a {use} key of {node!r} in the manifest")
                continue
            found[use][m[0]] = m[1]

    def fallback(use: str) -> str:
        return f"no {use} key of {node!r} valid now among the files beside {paths[use]}; keeping the current one"

    sig = [k.kid for k in fed.valid_keys(node, "sig", now) if k.kid in found["sig"]]
    if sig:
        seen = known_since or {}
        settled = [kid for kid in sig if seen.get(kid, now) <= now - settle]
        signer: SigningKey = found["sig"][settled[0] if settled else sig[-1]]
    elif previous is not None:
        warn(fallback("sig"))
        signer = previous.signer
    else:  # start-up: the configured key, even if not valid now (the verifiers will say why)
        warn(fallback("sig"))
        signer = next(iter(found["sig"].values()))
    listed = {k.kid for k in fed.valid_keys(node, "enc", None)}
    enc = {kid: k for kid, k in found["enc"].items() if kid in listed}
    if not enc:
        warn(fallback("enc"))
        enc = dict(previous.enc) if previous is not None else dict(found["enc"])
    valid_audit = [k.kid for k in fed.valid_keys(node, "audit", now) if k.kid in found["audit"]]
    audit = tuple((kid, found["audit"][kid]) for kid in valid_audit)
    if not audit:
        warn(fallback("audit"))
        audit = previous.audit if previous is not None else tuple(found["audit"].items())[:1]
    return Keyring(signer=signer, enc=enc, audit=audit)


def changes(old: Keyring, new: Keyring) -> list[dict[str, Any]]:
    """``key.rotated`` audit events (without the event name) for what differs between two keyrings."""
    out: list[dict[str, Any]] = []
    a, b = old.kids(), new.kids()
    for use in USES:
        if a[use] != b[use]:
            out.append({"use": use, "kid": b[use][0] if b[use] else "", "keys": b[use], "previous": a[use]})
    return out


class KeysMixin(_NodeState):
    """Loading and reloading the node's keys (module docstring)."""

    keyring: Keyring

    def _key_paths(self) -> dict[str, Path]:
        k = self.cfg.keys
        return {"sig": self.cfg.resolve(k.sig), "enc": self.cfg.resolve(k.enc), "audit": self.cfg.resolve(k.audit)}

    def _warn_keys(self, message: str) -> None:
        self.log.warning("keys.not_rotated", detail=message)

    def _load_keys(self) -> None:
        """At start-up, before the audit log exists. Raises KeyFileError naming the file."""
        self._use_keyring(load_keyring(self._key_paths(), self.fed, self.id, self.clock(), warn=self._warn_keys,
                                       known_since=self.trust.known_since, settle=self.cfg.key_settle))

    def _use_keyring(self, ring: Keyring) -> None:
        self.keyring = ring
        self.signer = ring.signer
        self.enc_keys = ring.enc
        self.audit_key = ring.audit[0][1]
        audit = getattr(self, "audit", None)
        if audit is not None:
            audit.set_keys([k for _, k in ring.audit])

    def reload_keys(self, reason: str) -> list[dict[str, Any]]:
        """Re-read the key files against the manifest in force; audit ``key.rotated`` for each change.
        Never raises: a problem is logged and the keys in use stay."""
        try:
            ring = load_keyring(self._key_paths(), self.fed, self.id, self.clock(), previous=self.keyring,
                                warn=self._warn_keys, known_since=self.trust.known_since, settle=self.cfg.key_settle)
        except Exception as exc:  # a reload problem never stops the node
            self.log.error("keys.reload_failed", reason=reason, detail=str(exc)[:300])
            return []
        diff = changes(self.keyring, ring)
        self._use_keyring(ring)
        for c in diff:
            self.audit_event_bg(KeyRotated(use=c["use"], kid=c["kid"], keys=c["keys"], previous=c["previous"],
                                           reason=reason))
            self.log.info("key.rotated", reason=reason, **c)
        return diff
