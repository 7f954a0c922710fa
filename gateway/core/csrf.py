"""Cross-site request forgery on the local listener: the pure decision (SPEC §6, docs/security.md).

A browser that holds an operator's or auditor's client certificate presents it to any request a page
makes, including a form posted from another site. So a state-changing request (any method but GET and
HEAD) on the local listener is refused when:

- it names another site: an ``Origin`` header that is not one of this listener's origins (``null``
  included), or a ``Sec-Fetch-Site`` header other than ``same-origin``; this applies to every route,
  ``/local/`` (national systems) included, since a server-side client sends neither header;
- it is an operator or auditor action (``/ops/``, ``/audit/``, ``/v1/audit/``, ``/ui``) without the
  header :data:`REQUEST_HEADER`: a form cannot send a custom header, and a cross-origin script that adds
  one must pass a CORS preflight, which the node never grants. The dashboard and the ``traza`` CLI send it.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

REQUEST_HEADER = "X-Traza-Request"
SAFE_METHODS = frozenset({"GET", "HEAD"})
ACTION_PREFIXES = ("/ops/", "/audit/", "/v1/audit/", "/ui")
LOOPBACK = ("127.0.0.1", "localhost", "::1")

Origin = tuple[str, str, int]  # scheme, host (lower case, IPv6 without brackets), port


def parse_origin(text: str) -> Origin | None:
    """``https://host[:port]`` (the serialised form browsers send) as a tuple; None for anything else."""
    try:
        u = urlsplit(text.strip())
        port = u.port
    except ValueError:
        return None
    if u.scheme != "https" or not u.hostname or u.path not in ("", "/") or u.query or u.fragment or u.username:
        return None
    return ("https", u.hostname.lower(), port if port is not None else 443)


def listener_origins(listen: str, extra: Iterable[str] = ()) -> frozenset[Origin]:
    """The origins a browser uses to reach the listener bound to ``listen`` (``host:port``): that address,
    every loopback name when it is a loopback address (the node certificate names ``localhost`` and
    ``127.0.0.1``), and the configured ``extra`` ones (a DNS name, a port mapped by a container)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]").lower()
    names = LOOPBACK if host in LOOPBACK else (host,)
    out = {("https", h, int(port)) for h in names if h not in ("0.0.0.0", "::")}  # noqa: S104 - not a bind
    for text in extra:
        o = parse_origin(text)
        if o is None:
            raise ValueError(f"{text!r} is not an origin https://host[:port]")
        out.add(o)
    return frozenset(out)


def _show(value: str) -> str:
    return repr(value[:120])


def csrf_refusal(method: str, path: str, origin: str | None, fetch_site: str | None, marker: str | None,
                 allowed: frozenset[Origin]) -> str | None:
    """Why this request is refused as cross-site or forgeable, or None if it may go on."""
    if method.upper() in SAFE_METHODS:
        return None
    if origin is not None and parse_origin(origin) not in allowed:
        return (f"cross-site request refused: Origin {_show(origin)} is not this local listener "
                "(add it to listen.local_origins if browsers reach the node by that name)")
    if fetch_site is not None and fetch_site.strip().lower() != "same-origin":
        return f"cross-site request refused: Sec-Fetch-Site is {_show(fetch_site)}, not 'same-origin'"
    if path.startswith(ACTION_PREFIXES) and not (marker or "").strip():
        return (f"missing {REQUEST_HEADER} header: operator and auditor actions must come from the dashboard "
                "or a client that sends it (a cross-site form cannot)")
    return None
