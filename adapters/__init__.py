"""Per-node adapters between national formats and standard Traza messages (SPEC §8).

``get_adapter(name)`` returns the adapter a node's config names; ``ADAPTERS`` holds them all. The
protocol and data types are in :mod:`adapters.base`; docs/adapters.md documents every format.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.base import Adapter, AdapterError, Attachment, Translation, UnknownAdapter
from adapters.de import DeAdapter
from adapters.es import EsAdapter
from adapters.it import ItAdapter
from adapters.mx import MxAdapter
from adapters.standard import StandardAdapter
from adapters.x3p import X3pAdapter

ADAPTERS: dict[str, Adapter] = {
    a.name: a for a in (MxAdapter(), EsAdapter(), DeAdapter(), ItAdapter(), StandardAdapter(), X3pAdapter())
}


def get_adapter(name: str) -> Adapter:
    """The adapter called ``name``; raises :class:`UnknownAdapter` (a ``LookupError``) listing the known ones."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise UnknownAdapter(name, sorted(ADAPTERS)) from None


def make_adapter(name: str, options: Mapping[str, Any] | None = None) -> Adapter:
    """A new adapter ``name`` configured from the node config. Only ``x3p`` takes options:
    ``{"defaults": {...}}``, the sidecar members every file of the lab shares (see docs/adapters.md)."""
    get_adapter(name)  # UnknownAdapter for an unknown name
    opts = dict(options or {})
    if name == "x3p":
        defaults = opts.pop("defaults", None)
        if opts:
            raise AdapterError(
                "options", f"unknown option(s) for adapter x3p: {', '.join(sorted(opts))} (known: defaults)"
            )
        return X3pAdapter(defaults=defaults)
    if opts:
        raise AdapterError("options", f"adapter {name} takes no options ({', '.join(sorted(opts))} given)")
    return type(ADAPTERS[name])()


__all__ = [
    "ADAPTERS",
    "Adapter",
    "AdapterError",
    "Attachment",
    "Translation",
    "UnknownAdapter",
    "get_adapter",
    "make_adapter",
]
