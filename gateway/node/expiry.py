"""What expires on a node, computed once for the operator dashboard (``/ui/api/expiry``, gateway.ops) and
the metric ``traza_expiry_seconds{what}`` (issue #12): the node's TLS certificate, its local CA, the
federation TLS CA(s), the manifest in force (which carries the revocation list, so the two expire
together) and this node's manifest keys."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.errors import Code, TrazaError
from gateway.core.timeutil import parse_rfc3339
from gateway.crypto.pki import PkiError, cert_info
from gateway.node.state import _NodeState


@dataclass(frozen=True)
class Expiry:
    id: str  # stable, the metric's ``what`` label: tls_certificate, local_ca, federation_ca_<n>, manifest, key:<kid>
    what: str  # for people: names the file, the manifest version or the key id
    not_after: float  # POSIX seconds


def expiries(node: _NodeState) -> list[Expiry]:
    """Everything that expires on ``node``; TrazaError ``internal`` naming the file if a certificate
    cannot be read."""
    out: list[Expiry] = []

    def cert(id_: str, what: str, pem: bytes) -> None:
        try:
            out.append(Expiry(id_, what, cert_info(pem).not_after.timestamp()))
        except PkiError as exc:
            raise TrazaError(Code.INTERNAL, f"{what}: {exc}") from None

    cert("tls_certificate", f"TLS certificate of {node.id} ({node.tls_cert})", node.tls_cert.read_bytes())
    local_ca = node.cfg.resolve(node.cfg.keys.local_ca)
    marker = b"-----BEGIN CERTIFICATE-----"
    cas = [marker + part for part in local_ca.read_bytes().split(marker)[1:]] or [local_ca.read_bytes()]
    for i, ca_pem in enumerate(cas):  # several during a local CA rollover (traza pki new-local-ca)
        n = "" if i == 0 else f"_{i + 1}"
        cert(f"local_ca{n}", f"local CA{n.replace('_', ' ')} of {node.id} ({local_ca})", ca_pem)
    fed = node.fed
    for i, pem in enumerate(fed.manifest.tls_ca):
        cert(f"federation_ca_{i + 1}", f"federation TLS CA {i + 1} of {len(fed.manifest.tls_ca)}", pem.encode())
    out.append(Expiry("manifest", f"manifest version {fed.version} and its revocation list", fed.expires_at))
    me = fed.node(node.id)
    for k in me.keys if me is not None else ():
        if k.not_after:
            out.append(Expiry(f"key:{k.kid}", f"key {k.kid}", parse_rfc3339(k.not_after)))
    return out
