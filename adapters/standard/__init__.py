"""`standard`: the standard form of SPEC §6 itself (``application/vnd.traza.message+json``).

``{"type", "to", "handling", "classification", "purpose", "reply_to"?, "ttl_seconds"?, "body"}``; a
delivered message also carries ``id``, ``from``, ``conversation`` and ``delivered_at``. Every member
except ``type`` and ``body`` is optional here (the local API says which ones a submission needs).
"""

from __future__ import annotations

import json
from typing import Any

from adapters._engine import parse_json_path, std_display
from adapters.base import (
    META_FIELDS,
    RECEIVED_FIELDS,
    AdapterError,
    Translation,
    check_content_type,
    check_envelope_value,
    check_meta,
    missing_submission_warnings,
    schema_error_path,
    schema_error_reason,
    validated_body,
)
from gateway.core.forms import MESSAGE_TYPES, TrazaError, strictjson

MEDIA_TYPE = "application/vnd.traza.message+json"
# Member order of the written form.
ORDER = (
    "type",
    "id",
    "from",
    "to",
    "conversation",
    "reply_to",
    "delivered_at",
    "handling",
    "handling_restrictions",
    "onward_transfer",
    "classification",
    "purpose",
    "ttl_seconds",
    "body",
)


def load_json_object(data: bytes, what: str = "(file)") -> dict[str, Any]:
    """A JSON object from a national file or a submission, strictly (SPEC §3.4): a repeated member is
    named as the field at fault; deeper than 32, an integer outside ±2^53, not UTF-8 name ``what``."""
    try:
        doc = strictjson.loads(data, what)
    except strictjson.StrictJSONError as exc:
        if exc.member is not None:
            raise AdapterError(exc.member, "appears twice in one object") from None
        raise AdapterError(what, exc.reason) from None
    if not isinstance(doc, dict):
        raise AdapterError(what, "expected a JSON object")
    return doc


def from_form(doc: dict[str, Any], *, extra: tuple[str, ...] = (), prefix: str = "", admit: bool = True) -> Translation:
    """A standard-form object (already parsed) as a Translation. ``extra`` members are allowed and
    ignored (the caller reads them); ``prefix`` is put before field names in errors; ``admit``: with the
    admission rules of a message being submitted (gateway.core.messages.admission_fault)."""
    for key in doc:
        if key not in ORDER and key not in extra:
            raise AdapterError(prefix + key, f"unknown member (the standard form has {', '.join(ORDER)})")
    mt = doc.get("type")
    if mt is None:
        raise AdapterError(prefix + "type", "missing")
    if not isinstance(mt, str) or mt not in MESSAGE_TYPES:
        raise AdapterError(prefix + "type", f"{mt!r} is not a message type ({', '.join(MESSAGE_TYPES)})")
    if "body" not in doc:
        raise AdapterError(prefix + "body", "missing")
    t = Translation(mt=mt, body={})
    for key in META_FIELDS:
        if doc.get(key) is None:
            continue
        value = check_envelope_value(key, doc[key], prefix + key)
        if key in RECEIVED_FIELDS:
            t.received[key] = value
        else:
            setattr(t, key, value)
    try:
        _, t.body = validated_body(mt, doc["body"], admit=admit)
    except TrazaError as exc:
        path = parse_json_path(schema_error_path(exc))
        raise AdapterError(prefix + "body" + std_display(path)[1:], schema_error_reason(exc)) from None
    t.warnings.extend(missing_submission_warnings(t, {k: prefix + k for k in META_FIELDS}))
    return t


def to_form(mt: str, body: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The standard form of a body and its meta (checked and normalised)."""
    if mt not in MESSAGE_TYPES:
        raise AdapterError("type", f"{mt!r} is not a message type ({', '.join(MESSAGE_TYPES)})")
    meta = check_meta(meta)
    try:
        _, norm = validated_body(mt, body)
    except TrazaError as exc:
        raise AdapterError(schema_error_path(exc), schema_error_reason(exc)) from None
    doc = {"type": mt, **meta, "body": norm}
    return {k: doc[k] for k in ORDER if k in doc}


def dump(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


class StandardAdapter:
    name = "standard"
    content_types: tuple[str, ...] = (MEDIA_TYPE,)
    output_content_type = MEDIA_TYPE

    def to_standard(self, data: bytes, content_type: str) -> Translation:
        check_content_type(self, content_type)
        return from_form(load_json_object(data))

    def from_standard(self, mt: str, body: dict[str, Any], meta: dict[str, Any]) -> bytes:
        return dump(to_form(mt, body, meta))
