"""An X3P scan (ISO 25178-72) and its JSON sidecar read into a submission for the local API, with the x3p
adapter: what `traza send FILE.x3p` and `traza demo` send."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.failures import CheckFailed, UsageError


def x3p_message(path: Path, sidecar: str | Path | None = None, *, to: str | None = None, mt: str | None = None,
                handling: str = "H0", classification: str = "BASIC_PROTECTION_LEVEL",
                purpose: str = "INVESTIGATION") -> tuple[dict[str, Any], list[tuple[Path, str]], list[str]]:
    """An X3P file (and its sidecar: ``sidecar`` or the ``.json`` beside it) read with the x3p adapter:
    the standard form (``body.topography`` filled from the file; ``to`` wins over the sidecar's, the other
    options fill what it leaves out), the files to attach as (path, media type), and the adapter's warnings.
    Raises UsageError / CheckFailed naming the file and the fault."""
    from adapters.base import AdapterError
    from adapters.x3p import MT, X3pAdapter, sidecar_path

    if mt and mt != MT:
        raise UsageError(f"{path}: an X3P file is sent as {MT}, not {mt}")
    defaults: dict[str, Any] = {"handling": handling, "classification": classification, "purpose": purpose}
    if to:
        defaults["to"] = to
    try:
        tr = X3pAdapter(defaults=defaults).translate_file(path, sidecar)
    except AdapterError as exc:
        hint = "" if sidecar or sidecar_path(path).exists() else \
            f" (the submission fields come from --sidecar FILE or {sidecar_path(path).name} beside the file)"
        raise CheckFailed(f"{path}: {exc}{hint}") from None
    msg: dict[str, Any] = {"type": tr.mt, **tr.envelope(), "body": tr.body}
    if to:
        msg["to"] = to
    if not msg.get("to"):
        raise UsageError(f"{path}: --to is required (or `to` in the sidecar)")
    return msg, [(Path(a.path or path), a.media_type) for a in tr.attachments], list(tr.warnings)
