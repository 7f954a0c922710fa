"""`x3p`: a ballistics lab's X3P topography files (ISO 25178-72) -> `ballistic.submission`.

An X3P file says how a surface was measured, not which exhibit it is: the submission fields come from
a **sidecar**, a standard-form message (SPEC §6) without ``body.topography`` and with one extra member
``region`` (the OpenFMC region of interest the file shows)::

    {"to": "es", "handling": "H2", "classification": "BASIC_PROTECTION_LEVEL", "purpose": "INVESTIGATION",
     "region": "BreechFace",
     "body": {"exhibit_id": "...", "exhibit_kind": "CARTRIDGE_CASE", "origin": "TEST_FIRE", ...}}

``translate_file("case7.x3p")`` reads the sidecar ``case7.json`` beside it; ``translate(data, sidecar)``
takes it as an argument; ``X3pAdapter(defaults=...)`` sets fields every file shares (the sidecar wins,
member by member, also inside ``body``). The adapter checks the file (:func:`read_x3p`), fills
``body.topography`` with its summary and attaches the file as a blob. A sidecar may instead carry
``body.topography`` with exactly one entry: it must then describe this very file (same SHA-256 and
summary) - that is the form ``from_standard`` writes, so a delivered submission plus its blob reads back.

For every other message type the lab's form is the standard form itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adapters.base import AdapterError, Attachment, Translation, media_type
from adapters.standard import MEDIA_TYPE, dump, from_form, load_json_object, to_form
from adapters.x3p.reader import X3pError, X3pInfo, read_x3p

X3P_MEDIA_TYPE = "application/x-x3p"
MT = "ballistic.submission"
SIDECAR_EXTRA = ("region",)

__all__ = ["X3P_MEDIA_TYPE", "X3pAdapter", "X3pError", "X3pInfo", "read_x3p", "sidecar_path"]


def sidecar_path(x3p_path: str | os.PathLike[str]) -> Path:
    """``.../case7.x3p`` -> ``.../case7.json``."""
    return Path(x3p_path).with_suffix(".json")


def _merge(defaults: Mapping[str, Any] | None, sidecar: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if defaults is None and sidecar is None:
        return None
    out: dict[str, Any] = dict(defaults or {})
    for key, value in (sidecar or {}).items():
        if key == "body" and isinstance(value, dict) and isinstance(out.get("body"), dict):
            out["body"] = {**out["body"], **value}
        else:
            out[key] = value
    return out


class X3pAdapter:
    name = "x3p"
    content_types: tuple[str, ...] = (X3P_MEDIA_TYPE, MEDIA_TYPE)
    output_content_type = MEDIA_TYPE

    def __init__(self, defaults: Mapping[str, Any] | None = None) -> None:
        self.defaults = dict(defaults) if defaults is not None else None

    def to_standard(self, data: bytes, content_type: str) -> Translation:
        """An X3P file (submission fields from the adapter's defaults) or a standard-form message."""
        ct = media_type(content_type)
        if ct == MEDIA_TYPE:
            return from_form(load_json_object(data))
        if ct != X3P_MEDIA_TYPE:
            raise AdapterError(
                "Content-Type",
                f"{content_type!r} is not read by adapter x3p (it reads {', '.join(self.content_types)})",
            )
        return self.translate(data, None)

    def translate_file(
        self, path: str | os.PathLike[str], sidecar: str | os.PathLike[str] | None = None
    ) -> Translation:
        """Read ``path`` and its sidecar (``sidecar`` or ``<name>.json`` beside it, if present)."""
        sc_path = Path(sidecar) if sidecar is not None else sidecar_path(path)
        sc: dict[str, Any] | None = None
        if sidecar is not None or sc_path.exists():
            try:
                raw = sc_path.read_bytes()
            except OSError as exc:
                raise AdapterError(f"sidecar {sc_path.name}", f"cannot be read ({exc.strerror})") from None
            sc = load_json_object(raw, f"sidecar {sc_path.name}")
        return self.translate(path, sc, sidecar_name=f"sidecar {sc_path.name}")

    def translate(
        self,
        x3p: bytes | str | os.PathLike[str],
        sidecar: Mapping[str, Any] | bytes | None,
        *,
        name: str | None = None,
        sidecar_name: str = "sidecar",
    ) -> Translation:
        """An X3P file (bytes or a path) and its sidecar (parsed, or JSON bytes) -> a ballistic.submission."""
        try:
            info = read_x3p(x3p)
        except X3pError as exc:
            raise AdapterError(exc.part, exc.reason) from None
        file_name = name or info.file_name or "topography.x3p"
        sc = load_json_object(sidecar, sidecar_name) if isinstance(sidecar, bytes) else sidecar
        merged = _merge(self.defaults, sc)
        if merged is None:
            raise AdapterError(
                sidecar_name,
                "missing: a bare X3P file needs the submission fields (exhibit_id, exhibit_kind, origin, calibre, "
                "occurrence_date, region) from a sidecar JSON beside it or from the adapter's defaults",
            )
        p = sidecar_name + " "
        mt = merged.pop("type", MT)
        if mt != MT:
            raise AdapterError(p + "type", f"{mt!r}: an X3P file is sent as {MT}")
        region = merged.pop("region", None)
        body = merged.get("body")
        if not isinstance(body, dict):
            raise AdapterError(
                p + "body", "missing (the submission fields)" if body is None else "expected an object"
            )
        body = dict(body)
        topo = body.get("topography")
        if topo is None:
            if region is None:
                raise AdapterError(
                    p + "region",
                    "missing: the region of interest this file shows (e.g. BreechFace, FiringPinImpression, LEA)",
                )
            if not isinstance(region, str):
                raise AdapterError(p + "region", f"expected a string, got {region!r}")
            body["topography"] = [info.topography(region)]
        else:
            body["topography"] = [self._check_topography(topo, region, info, p)]
        merged["body"] = body
        t = from_form({"type": MT, **merged}, prefix=p)
        t.warnings[:0] = [f"{file_name}: {w}" for w in info.warnings]
        if isinstance(x3p, bytes):
            att = Attachment(file_name, X3P_MEDIA_TYPE, info.sha256, info.file_size, data=x3p)
        else:
            att = Attachment(file_name, X3P_MEDIA_TYPE, info.sha256, info.file_size, path=os.fspath(x3p))
        t.attachments.append(att)
        return t

    @staticmethod
    def _check_topography(topo: Any, region: Any, info: X3pInfo, p: str) -> dict[str, Any]:
        where = p + "body.topography"
        if not isinstance(topo, list) or len(topo) != 1 or not isinstance(topo[0], dict):
            raise AdapterError(
                where, "must hold exactly one entry, the one of this X3P file (or be left out)"
            )
        entry = topo[0]
        if entry.get("sha256") != info.sha256:
            raise AdapterError(
                where + "[0].sha256",
                f"{entry.get('sha256')!r} is not the SHA-256 of this file ({info.sha256})",
            )
        if region is not None and region != entry.get("region"):
            raise AdapterError(
                p + "region", f"{region!r} differs from body.topography[0].region {entry.get('region')!r}"
            )
        r = entry.get("region")
        if not isinstance(r, str):
            raise AdapterError(where + "[0].region", "missing")
        summary = info.topography(r)
        for key in sorted(set(entry) | set(summary)):
            if entry.get(key) != summary.get(key):
                raise AdapterError(
                    where + f"[0].{key}", f"{entry.get(key)!r} does not match the file ({summary.get(key)!r})"
                )
        return summary

    def from_standard(self, mt: str, body: dict[str, Any], meta: dict[str, Any]) -> bytes:
        """The standard form (for ballistic.submission: the sidecar form naming the blobs by SHA-256)."""
        return dump(to_form(mt, body, meta))
