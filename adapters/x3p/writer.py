"""A small writer of standard-conformant X3P files (areal surfaces, one layer), stdlib only.

Used to build the adapter's sample file and test files; real files come from instruments.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from adapters.x3p.reader import DATA_TYPES, STANDARD_REVISION, X3P_NAMESPACE


@dataclass(frozen=True)
class X3pMeta:
    """Record2 of the file written."""

    date: str = "2026-10-20T11:02:00+02:00"
    creator: str = "Traza adapter test"
    manufacturer: str = "Traza"
    model: str = "synthetic"
    serial: str = "0"
    version: str = "1"
    calibration_date: str = "2026-01-15T08:00:00+01:00"
    probing_type: str = "Software"
    probing_identification: str = "adapters.x3p.writer"
    comment: str | None = None


def _fmt_float(value: float) -> str:
    return repr(float(value))


def write_x3p(
    z: Sequence[float],
    size_x: int,
    size_y: int,
    *,
    increment_x: float,
    increment_y: float,
    data_type: str = "D",
    meta: X3pMeta | None = None,
) -> bytes:
    """The bytes of an X3P file holding the ``size_x * size_y`` heights ``z`` (row by row, metres;
    NaN for invalid points in float data) with the standard namespace, revision and checksums."""
    if data_type not in DATA_TYPES:
        raise ValueError(f"data_type {data_type!r} is not one of I, L, F, D")
    if len(z) != size_x * size_y:
        raise ValueError(f"{len(z)} heights for a {size_x} x {size_y} matrix")
    code = DATA_TYPES[data_type][0]
    values: Sequence[float | int] = z if DATA_TYPES[data_type][3] else [int(v) for v in z]
    data = struct.pack(f"<{len(values)}{code}", *values)
    m = meta or X3pMeta()

    def el(tag: str, text: str) -> str:
        return f"<{tag}>{escape(text)}</{tag}>"

    def axis(name: str, atype: str, dtype: str, inc: float) -> str:
        return f"<{name}>{el('AxisType', atype)}{el('DataType', dtype)}{el('Increment', _fmt_float(inc))}{el('Offset', '0')}</{name}>"

    z_inc = 1.0 if DATA_TYPES[data_type][3] else 1e-9
    comment = el("Comment", m.comment) if m.comment else ""
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<p:ISO5436_2 xmlns:p="{X3P_NAMESPACE}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{X3P_NAMESPACE} {X3P_NAMESPACE}/ISO5436_2.xsd">'
        f"<Record1>{el('Revision', STANDARD_REVISION)}{el('FeatureType', 'SUR')}<Axes>"
        f"{axis('CX', 'I', 'D', increment_x)}{axis('CY', 'I', 'D', increment_y)}{axis('CZ', 'A', data_type, z_inc)}"
        "</Axes></Record1>"
        f"<Record2>{el('Date', m.date)}{el('Creator', m.creator)}<Instrument>{el('Manufacturer', m.manufacturer)}"
        f"{el('Model', m.model)}{el('Serial', m.serial)}{el('Version', m.version)}</Instrument>"
        f"{el('CalibrationDate', m.calibration_date)}<ProbingSystem>{el('Type', m.probing_type)}"
        f"{el('Identification', m.probing_identification)}</ProbingSystem>{comment}</Record2>"
        f"<Record3><MatrixDimension>{el('SizeX', str(size_x))}{el('SizeY', str(size_y))}{el('SizeZ', '1')}</MatrixDimension>"
        f"<DataLink>{el('PointDataLink', 'bindata/data.bin')}"
        f"{el('MD5ChecksumPointData', hashlib.md5(data, usedforsecurity=False).hexdigest())}</DataLink></Record3>"
        f"<Record4>{el('ChecksumFile', 'md5checksum.hex')}</Record4>"
        "</p:ISO5436_2>\n"
    ).encode()
    buf = io.BytesIO()
    fixed = (2026, 1, 1, 0, 0, 0)  # a fixed timestamp: the same input gives the same bytes
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in (
            ("main.xml", xml),
            (
                "md5checksum.hex",
                (hashlib.md5(xml, usedforsecurity=False).hexdigest() + " *main.xml\n").encode(),
            ),
            ("bindata/data.bin", data),
        ):
            zi = zipfile.ZipInfo(name, date_time=fixed)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, content)
    return buf.getvalue()


def breech_face(size: int = 64) -> list[float]:
    """Synthetic breech-face heights (metres): a disc with parallel tool marks and a firing-pin
    crater; points outside the disc are NaN (not measured)."""
    out: list[float] = []
    c = (size - 1) / 2
    for j in range(size):
        for i in range(size):
            r = math.hypot(i - c, j - c)
            if r > c:
                out.append(math.nan)
                continue
            marks = 0.4e-6 * math.sin(2 * math.pi * (i + 0.3 * j) / 5.0)
            crater = -8e-6 * math.exp(-((r / (0.18 * size)) ** 2))
            out.append(round(marks + crater + 1e-7 * ((i * 7 + j * 13) % 5), 12))
    return out
