"""The one way adapters parse XML: :func:`parse_xml`, on ``defusedxml``.

No DOCTYPE is accepted, so no entity (internal, external or parameter), no external DTD and no external
reference can be declared, whatever the encoding: the refusal comes from the parser as it reads the
document (after decoding), not from a search of the raw bytes (which a UTF-16 file passed). Encodings:
those expat reads (UTF-8, UTF-16 with a BOM or a declaration, ISO-8859-1, US-ASCII); UTF-32, which expat
cannot read, is refused by name.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden, NotSupportedError
from defusedxml.ElementTree import fromstring

_UTF32 = (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00", b"\x00\x00\x00<", b"<\x00\x00\x00")
NO_DTD = "DOCTYPE declarations are forbidden: entities, DTDs and external references are not allowed"


class XmlRefused(ValueError):
    """The document is refused; ``reason`` says why (the caller names the file or field)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_xml(data: bytes) -> ET.Element:
    """The root element of ``data``; raises :class:`XmlRefused` for a DOCTYPE (hence any entity or external
    DTD), an entity or external reference, UTF-32, or XML that is not well-formed."""
    if data[:4] in _UTF32:
        raise XmlRefused("UTF-32 is not a supported XML encoding (use UTF-8 or UTF-16)")
    try:
        root: ET.Element = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DTDForbidden as exc:
        where = f" (external DTD {exc.sysid!r})" if exc.sysid else ""
        raise XmlRefused(f"{NO_DTD}{where}") from None
    except EntitiesForbidden as exc:
        raise XmlRefused(f"entities are forbidden (entity {exc.name!r})") from None
    except ExternalReferenceForbidden as exc:
        raise XmlRefused(f"external references are forbidden ({exc.sysid!r})") from None
    except NotSupportedError as exc:
        raise XmlRefused(f"not supported: {exc}") from None
    except ET.ParseError as exc:
        raise XmlRefused(f"not well-formed XML ({exc})") from None
    return root
