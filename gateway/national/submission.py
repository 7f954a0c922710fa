"""A national system's submission read into what the node sends (SPEC §6): the body the node's adapter
translated, the envelope fields, the recipients (one node, or a fan-out to a list or ``group:NAME``, 1.1),
and the files it names. No I/O: the node checks the named blobs, imports the adapter's files and submits.

Strict JSON (SPEC §3.4) is checked before the adapter for every JSON media type; the standard form may
name blobs uploaded first with ``PUT /local/v1/blobs`` (``attachments``, docs/blobs.md) and, from 1.1,
several recipients."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from adapters.base import Adapter, AdapterError, Attachment, Translation, media_type
from adapters.standard import MEDIA_TYPE as STANDARD_CT
from gateway.core import strictjson
from gateway.core.codes import DEFAULT_CLASSIFICATION, DEFAULT_PURPOSE
from gateway.core.errors import Code, TrazaError
from gateway.core.fanout import recipients
from gateway.core.retention import day_start


@dataclass(frozen=True)
class Submission:
    mt: str
    recipients: list[str]  # one, or the fan-out's in order
    fan_out: bool
    body: bytes  # the standard body, JSON
    hc: str
    hr: str | None
    cls: str
    pur: str
    irt: str | None
    ttl: int | None
    ot: str | None = None  # onward_transfer (issue #15)
    named: Any = None  # the standard form's ``attachments`` as given (the node checks them), or None
    files: list[Attachment] = field(default_factory=list)  # files the adapter read (e.g. an X3P scan)
    ret: dict[str, str] | None = None  # retention.review_by / delete_by (issue #15), YYYY-MM-DD


def read_retention(value: Any) -> dict[str, str]:
    """A submission's ``retention`` (the reference's ``review_by`` / ``delete_by`` dates); TrazaError
    (``schema_invalid``) naming the member at fault."""
    if not isinstance(value, dict):
        raise TrazaError(Code.SCHEMA_INVALID, "expected an object with review_by and/or delete_by - at `$.retention`")
    for k, v in value.items():
        if k not in ("review_by", "delete_by"):
            raise TrazaError(Code.SCHEMA_INVALID, f"unknown member {str(k)[:40]!r} (review_by, delete_by) - at "
                             "`$.retention`")
        try:
            day_start(v)
        except ValueError as exc:
            raise TrazaError(Code.SCHEMA_INVALID, f"{exc} - at `$.retention.{k}`") from None
    return dict(value)


@dataclass(frozen=True)
class Sidecar:
    """The sidecar JSON of a national file (x3p: ``case7.json`` beside ``case7.x3p``, docs/adapters.md)."""

    name: str
    data: bytes


def translate(adapter: Adapter, data: bytes, sidecar: Sidecar) -> Translation:
    """A national file and its sidecar read by an adapter that takes one (x3p); AdapterError otherwise."""
    read = getattr(adapter, "translate", None)
    if read is None:
        raise AdapterError(f"sidecar {sidecar.name}", f"adapter {adapter.name} reads no sidecar")
    tr: Translation = read(data, sidecar.data, sidecar_name=f"sidecar {sidecar.name}")
    return tr


def read_submission(adapter: Adapter, content_type: str, data: bytes, *, groups: Mapping[str, Sequence[str]],
                    here: str, fan_out: bool = True, sidecar: Sidecar | None = None) -> Submission:
    """Read one submission; TrazaError naming the fault (``malformed`` for JSON that is not strict,
    ``schema_invalid`` with the path otherwise). ``fan_out`` False (the drop folder) keeps ``to`` one node.
    ``sidecar``: the JSON beside an X3P file (the drop folder), read with it by the adapter (:func:`translate`)."""
    doc: Any = None
    rcpts: list[str] | None = None
    named: Any = None
    ret: dict[str, str] | None = None
    mtype = media_type(content_type)
    if mtype.endswith(("/json", "+json")):  # strict JSON (SPEC §3.4): malformed (400) before the adapter
        doc = strictjson.loads(data, "submission")
    if mtype == STANDARD_CT and isinstance(doc, dict):
        changed = False
        if fan_out and "to" in doc:
            # "to": ["es", "it"] or "group:eu-registries" (SPEC §6, 1.1); the adapter checks the rest with the
            # first recipient in its place
            rcpts = recipients(doc["to"], groups, here=here)
            if rcpts is not None:
                doc["to"], changed = rcpts[0], True
        if "attachments" in doc:  # blobs uploaded first (docs/blobs.md): checked by the node
            named, changed = doc.pop("attachments"), True
        if "retention" in doc:  # signed as token claim ``ret`` (issue #15)
            ret, changed = read_retention(doc.pop("retention")), True
        if changed:
            data = msgspec.json.encode(doc)
    try:
        tr = adapter.to_standard(data, content_type) if sidecar is None else translate(adapter, data, sidecar)
    except AdapterError as exc:
        raise TrazaError(Code.SCHEMA_INVALID, str(exc)) from None
    env = tr.envelope()
    to = env.get("to")
    if not to:
        raise TrazaError(Code.SCHEMA_INVALID, "no recipient - at `$.to`")
    return Submission(
        mt=tr.mt, recipients=rcpts or [to], fan_out=rcpts is not None, body=msgspec.json.encode(tr.body),
        hc=env.get("handling") or "H0", hr=env.get("handling_restrictions"), ot=env.get("onward_transfer"),
        cls=env.get("classification") or DEFAULT_CLASSIFICATION, pur=env.get("purpose") or DEFAULT_PURPOSE,
        irt=env.get("reply_to"), ttl=env.get("ttl_seconds"), named=named, files=list(tr.attachments), ret=ret)
