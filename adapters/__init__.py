"""Per-node adapters between national formats and standard Traza messages (SPEC §8).

``get_adapter(name)`` returns the adapter a node's config names; ``ADAPTERS`` holds them all. The
protocol and data types are in :mod:`adapters.base`; docs/adapters.md documents every format.
"""

from __future__ import annotations

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


__all__ = [
    "ADAPTERS",
    "Adapter",
    "AdapterError",
    "Attachment",
    "Translation",
    "UnknownAdapter",
    "get_adapter",
]
