"""What national adapters (``adapters/``) may use of the gateway: the one module they import (a contract
of import-linter checks it), so that an adapter written for a new country reads the whole surface it
depends on here. Pure: the message bodies and their code lists, strict JSON, the envelope fields' value
formats and the handling-code rule a national file must already meet.
"""

from __future__ import annotations

from gateway.core import messages, strictjson
from gateway.core.b64 import b64url_encode
from gateway.core.codes import (
    CLASSIFICATIONS,
    HANDLING_CODES,
    MESSAGE_ID_PATTERN,
    NODE_ID_PATTERN,
    ONWARD_TRANSFERS,
    PURPOSES,
    NcicGunType,
    NcicGunTypeDetail,
)
from gateway.core.errors import TrazaError
from gateway.core.handling import HandlingRefused, check_restrictions
from gateway.core.messages import MESSAGE_TYPES
from gateway.core.timeutil import parse_rfc3339

__all__ = [
    "CLASSIFICATIONS",
    "HANDLING_CODES",
    "MESSAGE_ID_PATTERN",
    "MESSAGE_TYPES",
    "NODE_ID_PATTERN",
    "ONWARD_TRANSFERS",
    "PURPOSES",
    "HandlingRefused",
    "NcicGunType",
    "NcicGunTypeDetail",
    "TrazaError",
    "b64url_encode",
    "check_restrictions",
    "messages",
    "parse_rfc3339",
    "strictjson",
]
