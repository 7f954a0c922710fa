"""A tolerant reader of ISO 25178-72 (X3P) surface files (stdlib, and defusedxml for main.xml).

Real X3P files break the standard in predictable ways: ``main.xml`` inside a wrapping folder, a root
element without the ISO namespace (or named ``ISO5436``), extra elements, stale or upper-case checksums,
invalid dates, a non-standard revision string. :func:`read_x3p` accepts all of them and reports each
deviation as a warning. It fails (:class:`X3pError`) only when the file is genuinely unreadable: not a
zip archive, no ``main.xml``, XML that does not parse, a data file that is missing or whose size does
not match the matrix dimension and data types.

The point data is streamed (fixed-size chunks, one pass) to check its MD5 and count invalid points:
NaN for floating-point data, zero bits of the valid-points file for integer data.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import struct
import sys
import xml.etree.ElementTree as ET
import zipfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from adapters._xml import XmlRefused, parse_xml
from gateway.core.forms import b64url_encode

X3P_NAMESPACE = "http://www.opengps.eu/2008/ISO5436_2"
STANDARD_REVISION = "ISO5436 - 2000"
FEATURE_TYPES = ("SUR", "PRF", "PCL")
PROBING_TYPES = ("Contacting", "NonContacting", "Software")
# ISO 5436-2 data types: letter -> (struct code, size in bytes, array typecode, float?)
DATA_TYPES: dict[str, tuple[str, int, str, bool]] = {
    "I": ("h", 2, "h", False),
    "L": ("i", 4, "i", False),
    "F": ("f", 4, "f", True),
    "D": ("d", 8, "d", True),
}
DATA_TYPE_NAMES = {"I": "int16", "L": "int32", "F": "float32", "D": "float64"}
MAX_MAIN_XML = 16 * 1024 * 1024
CHUNK_POINTS = 1 << 16
_PLACEHOLDERS = {"", "n/a", "na", "none", "unknown", "not available", "-"}
_XSD_DATETIME = re.compile(r"^-?\d{4,}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})?$")
_MD5 = re.compile(r"^([0-9a-fA-F]{32})(?:\s+\*?(\S.*))?$")

# Elements of the ISO 5436-2 schema the reader knows; anything else is reported and ignored.
_KNOWN: dict[str, tuple[str, ...]] = {
    "": ("Record1", "Record2", "Record3", "Record4", "VendorSpecificID"),
    "Record1": ("Revision", "FeatureType", "Axes", "VendorSpecificID"),
    "Record1/Axes": ("CX", "CY", "CZ", "Rotation"),
    "Record1/Axes/C": ("AxisType", "DataType", "Increment", "Offset"),
    "Record1/Axes/Rotation": ("r11", "r12", "r13", "r21", "r22", "r23", "r31", "r32", "r33"),
    "Record2": ("Date", "Creator", "Instrument", "CalibrationDate", "ProbingSystem", "Comment"),
    "Record2/Instrument": ("Manufacturer", "Model", "Serial", "Version"),
    "Record2/ProbingSystem": ("Type", "Identification"),
    "Record3": ("MatrixDimension", "ListDimension", "DataLink", "DataList"),
    "Record3/MatrixDimension": ("SizeX", "SizeY", "SizeZ"),
    "Record3/DataLink": (
        "PointDataLink",
        "MD5ChecksumPointData",
        "ValidPointsLink",
        "MD5ChecksumValidPoints",
    ),
    "Record3/DataList": ("Datum",),
    "Record4": ("ChecksumFile",),
}
_RECORD2_ORDER = _KNOWN["Record2"]

Source = bytes | str | os.PathLike[str] | IO[bytes]


class X3pError(Exception):
    """The file cannot be read at all. ``part`` names the archive member or XML element at fault."""

    def __init__(self, part: str, reason: str) -> None:
        super().__init__(f"{part}: {reason}")
        self.part = part
        self.reason = reason


@dataclass(frozen=True)
class Axis:
    """One axis of Record1: ``axis_type`` I (incremental) or A (absolute), ``data_type`` I/L/F/D."""

    name: str
    axis_type: str | None
    data_type: str | None
    increment: float | None
    offset: float | None


@dataclass
class X3pInfo:
    """What an X3P file says about itself, checked. ``warnings`` lists every deviation found."""

    file_name: str | None
    file_size: int
    sha256: str  # base64url (no padding) of SHA-256 over the whole file
    folder: str  # the folder of main.xml inside the archive ("" at the root, as the standard wants)
    revision: str | None
    feature_type: str | None
    axes: dict[str, Axis]
    size_x: int | None
    size_y: int | None
    size_z: int | None
    points: int
    invalid_points: int
    data_link: str | None
    data_md5: str | None  # MD5 (hex) of the point data file as read
    date: str | None = None
    creator: str | None = None
    instrument_manufacturer: str | None = None
    instrument_model: str | None = None
    instrument_serial: str | None = None
    instrument_version: str | None = None
    calibration_date: str | None = None
    probing_type: str | None = None
    probing_identification: str | None = None
    comment: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def data_type(self) -> str | None:
        return self.axes["CZ"].data_type if "CZ" in self.axes else None

    @property
    def invalid_fraction(self) -> float:
        return self.invalid_points / self.points if self.points else 0.0

    @property
    def instrument(self) -> str | None:
        """``"<manufacturer> <model> s/n <serial>"`` without placeholder parts such as ``N/A``."""
        parts = [p for p in (self.instrument_manufacturer, self.instrument_model) if not _placeholder(p)]
        if not _placeholder(self.instrument_serial):
            parts.append(f"s/n {self.instrument_serial}")
        text = " ".join(p for p in parts if p)
        return text[:256] if text else None

    def topography(self, region: str) -> dict[str, Any]:
        """The ``ballistic.submission.topography[]`` entry (SPEC §5) for this file."""
        out: dict[str, Any] = {"sha256": self.sha256, "region": region}
        if self.size_x is not None and self.size_y is not None:
            out["size_x"] = self.size_x
            out["size_y"] = self.size_y
        for key, axis in (("increment_x_m", "CX"), ("increment_y_m", "CY")):
            inc = self.axes[axis].increment if axis in self.axes else None
            if inc is not None and 0 < inc <= 1:
                out[key] = inc
        if self.instrument is not None:
            out["instrument"] = self.instrument
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for `traza adapter check` and logs)."""
        return {
            "file_name": self.file_name,
            "file_size": self.file_size,
            "sha256": self.sha256,
            "folder": self.folder,
            "revision": self.revision,
            "feature_type": self.feature_type,
            "axes": {
                k: {
                    "axis_type": a.axis_type,
                    "data_type": a.data_type,
                    "increment": a.increment,
                    "offset": a.offset,
                }
                for k, a in self.axes.items()
            },
            "size": [self.size_x, self.size_y, self.size_z],
            "points": self.points,
            "invalid_points": self.invalid_points,
            "data_link": self.data_link,
            "data_md5": self.data_md5,
            "date": self.date,
            "creator": self.creator,
            "instrument": {
                "manufacturer": self.instrument_manufacturer,
                "model": self.instrument_model,
                "serial": self.instrument_serial,
                "version": self.instrument_version,
            },
            "calibration_date": self.calibration_date,
            "probing_system": {"type": self.probing_type, "identification": self.probing_identification},
            "comment": self.comment,
            "warnings": list(self.warnings),
        }


def _placeholder(value: str | None) -> bool:
    return value is None or value.strip().lower() in _PLACEHOLDERS


def _local(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return None, tag


class _Xml:
    """Namespace-blind access to main.xml that records unknown and repeated elements."""

    def __init__(self, warnings: list[str]) -> None:
        self.warnings = warnings
        self.extra: list[str] = []

    def children(self, el: ET.Element, where: str, known_key: str) -> dict[str, ET.Element]:
        known = _KNOWN[known_key]
        out: dict[str, ET.Element] = {}
        for child in el:
            if not isinstance(child.tag, str):  # comments, processing instructions
                continue
            _, name = _local(child.tag)
            path = f"{where}/{name}" if where else name
            if name not in known:
                self.extra.append(path)
                continue
            if name in out and not (known_key == "Record3/DataList" and name == "Datum"):
                self.warnings.append(f"{path} appears more than once; the first one is read")
                continue
            out[name] = child
        return out

    @staticmethod
    def text(el: ET.Element | None) -> str | None:
        if el is None:
            return None
        return (el.text or "").strip()


def _float(text: str | None, where: str, warnings: list[str]) -> float | None:
    if text is None:
        return None
    if text == "":
        warnings.append(f"{where} is empty (read as 0)")
        return 0.0
    try:
        value = float(text)
    except ValueError:
        warnings.append(f"{where} {text!r} is not a number (ignored)")
        return None
    if not math.isfinite(value):
        warnings.append(f"{where} {text!r} is not a finite number (ignored)")
        return None
    return value


def _size(text: str | None, where: str) -> int:
    if text is None:
        raise X3pError(where, "missing")
    try:
        value = int(text)
    except ValueError:
        raise X3pError(where, f"{text!r} is not an integer") from None
    if value < 1:
        raise X3pError(where, f"{value} is not a positive size")
    return value


def _check_datetime(text: str | None, where: str, warnings: list[str]) -> None:
    if text is None:
        return
    ok = bool(_XSD_DATETIME.match(text))
    if ok:
        try:
            from datetime import datetime

            datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            ok = False
    if not ok:
        warnings.append(f"{where} {text!r} is not an xsd:dateTime")


def _check_md5(stored: str | None, actual: str, where: str, what: str, warnings: list[str]) -> None:
    if stored is None:
        warnings.append(f"{where} is missing: the MD5 of {what} was not checked")
        return
    m = _MD5.match(stored.strip())
    if m is None:
        warnings.append(f"{where} {stored!r} is not an MD5 checksum (32 hex digits)")
        return
    digest = m.group(1)
    if digest != digest.lower():
        warnings.append(f"{where} is upper-case hex (the standard writes lower case)")
    if digest.lower() != actual:
        warnings.append(
            f"{where} {digest.lower()} does not match the MD5 of {what} ({actual}): the checksum is stale or the file was changed"
        )


class _Archive:
    """The zip archive plus a whole-file SHA-256 computed without holding a path's bytes in memory."""

    def __init__(self, source: Source) -> None:
        self.name: str | None = None
        self._close: IO[bytes] | None = None
        if isinstance(source, bytes | bytearray | memoryview):
            raw = bytes(source)
            self.size = len(raw)
            self.sha256 = b64url_encode(hashlib.sha256(raw).digest())
            fh: IO[bytes] = io.BytesIO(raw)
        elif isinstance(source, str | os.PathLike):
            path = os.fspath(source)
            self.name = os.path.basename(path)
            fh = open(path, "rb")  # closed in close()
            self._close = fh
            self.size, self.sha256 = _hash_stream(fh)
            fh.seek(0)
        else:
            fh = source
            self.name = os.path.basename(str(getattr(source, "name", ""))) or None
            start = fh.tell()
            self.size, self.sha256 = _hash_stream(fh)
            fh.seek(start)
        try:
            self.zip = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            self.close()
            raise X3pError("(archive)", f"not a zip archive ({exc})") from None

    def close(self) -> None:
        if self._close is not None:
            self._close.close()
            self._close = None


def _hash_stream(fh: IO[bytes]) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    while chunk := fh.read(1 << 20):
        h.update(chunk)
        n += len(chunk)
    return n, b64url_encode(h.digest())


def _find_main(zf: zipfile.ZipFile, warnings: list[str]) -> zipfile.ZipInfo:
    candidates = [
        i
        for i in zf.infolist()
        if not i.is_dir()
        and i.filename.rsplit("/", 1)[-1].lower() == "main.xml"
        and not i.filename.startswith("__MACOSX/")
    ]
    if not candidates:
        raise X3pError("main.xml", "not in the archive: this is not an X3P file")
    candidates.sort(key=lambda i: (i.filename.count("/"), i.filename))
    main = candidates[0]
    if len(candidates) > 1:
        others = ", ".join(i.filename for i in candidates[1:])
        warnings.append(f"archive holds several main.xml files; {main.filename} is read ({others} ignored)")
    if main.filename.rsplit("/", 1)[-1] != "main.xml":
        warnings.append(f"{main.filename}: the description file should be named main.xml")
    if "/" in main.filename:
        folder = main.filename.rsplit("/", 1)[0] + "/"
        warnings.append(f"main.xml is inside the folder {folder!r}; the standard puts it at the archive root")
    return main


def _member(
    zf: zipfile.ZipFile, folder: str, link: str, where: str, warnings: list[str]
) -> zipfile.ZipInfo | None:
    """Find an archive member named by ``link`` (relative to main.xml), tolerating backslashes and case."""
    rel = link.strip()
    if "\\" in rel:
        warnings.append(f"{where} {link!r} uses backslashes; read as {rel.replace(chr(92), '/')!r}")
        rel = rel.replace("\\", "/")
    rel = rel.lstrip("/")
    names = {i.filename: i for i in zf.infolist() if not i.is_dir()}
    for cand in (folder + rel, rel):
        if cand in names:
            if cand != folder + rel:
                warnings.append(f"{where} {link!r} was found at the archive root, not beside main.xml")
            return names[cand]
    lowered = {n.lower(): i for n, i in names.items()}
    for cand in (folder + rel, rel):
        if cand.lower() in lowered:
            info = lowered[cand.lower()]
            warnings.append(f"{where} {link!r} matches {info.filename!r} only when case is ignored")
            return info
    return None


def _chunks(fh: IO[bytes], chunk_size: int) -> Iterator[bytes]:
    while True:
        chunk = fh.read(chunk_size)
        if not chunk:
            return
        yield chunk


def read_x3p(source: Source) -> X3pInfo:
    """Read and check an X3P file given as bytes, a path or a seekable binary file object.

    Raises :class:`X3pError` only if the file is unreadable; every other deviation becomes a warning in
    ``X3pInfo.warnings``.
    """
    archive = _Archive(source)
    try:
        return _read(archive)
    finally:
        archive.zip.close()
        archive.close()


def _read(archive: _Archive) -> X3pInfo:
    zf = archive.zip
    warnings: list[str] = []
    main = _find_main(zf, warnings)
    folder = main.filename.rsplit("/", 1)[0] + "/" if "/" in main.filename else ""
    if main.file_size > MAX_MAIN_XML:
        raise X3pError("main.xml", f"{main.file_size} bytes: larger than {MAX_MAIN_XML} bytes")
    try:
        xml_bytes = zf.read(main)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise X3pError("main.xml", f"cannot be extracted ({exc})") from None
    try:
        root = parse_xml(xml_bytes)
    except XmlRefused as exc:
        raise X3pError("main.xml", exc.reason) from None

    ns, root_name = _local(root.tag)
    if root_name not in ("ISO5436_2", "ISO5436"):
        raise X3pError(
            "main.xml", f"root element <{root_name}> is not <ISO5436_2>: this is not an X3P description"
        )
    if root_name != "ISO5436_2":
        warnings.append(f"main.xml root element is <{root_name}>, the standard names it <ISO5436_2>")
    if ns is None:
        warnings.append(f"main.xml root element has no namespace (the standard uses {X3P_NAMESPACE})")
    elif ns != X3P_NAMESPACE:
        warnings.append(f"main.xml root element is in the namespace {ns!r}, not {X3P_NAMESPACE}")

    x = _Xml(warnings)
    recs = x.children(root, "", "")

    # Record1: revision, feature type, axes.
    r1 = recs.get("Record1")
    if r1 is None:
        raise X3pError("main.xml Record1", "missing: the axes and data types are unknown")
    r1c = x.children(r1, "Record1", "Record1")
    revision = x.text(r1c.get("Revision"))
    if revision is None:
        warnings.append("Record1/Revision is missing")
    elif revision != STANDARD_REVISION:
        warnings.append(f"Record1/Revision {revision!r} is not the standard {STANDARD_REVISION!r}")
    feature = x.text(r1c.get("FeatureType"))
    if feature is None:
        warnings.append("Record1/FeatureType is missing (read as SUR)")
    elif feature not in FEATURE_TYPES:
        warnings.append(f"Record1/FeatureType {feature!r} is not one of {', '.join(FEATURE_TYPES)}")
    elif feature != "SUR":
        warnings.append(f"Record1/FeatureType is {feature}, not SUR (an areal surface)")
    axes_el = r1c.get("Axes")
    if axes_el is None:
        raise X3pError("main.xml Record1/Axes", "missing: the data types are unknown")
    axc = x.children(axes_el, "Record1/Axes", "Record1/Axes")
    axes: dict[str, Axis] = {}
    for name in ("CX", "CY", "CZ"):
        ael = axc.get(name)
        where = f"Record1/Axes/{name}"
        if ael is None:
            raise X3pError(f"main.xml {where}", "missing")
        ac = x.children(ael, where, "Record1/Axes/C")
        atype = x.text(ac.get("AxisType"))
        if atype is None:
            atype = "A" if name == "CZ" else "I"
            warnings.append(f"{where}/AxisType is missing (read as {atype})")
        elif atype not in ("I", "A"):
            raise X3pError(
                f"main.xml {where}/AxisType", f"{atype!r} is neither I (incremental) nor A (absolute)"
            )
        dtype = x.text(ac.get("DataType"))
        if dtype is not None and dtype.upper() in DATA_TYPES and dtype not in DATA_TYPES:
            warnings.append(f"{where}/DataType {dtype!r} is lower case")
            dtype = dtype.upper()
        if atype == "A":
            if dtype is None:
                raise X3pError(
                    f"main.xml {where}/DataType", "missing for an absolute axis: the data size is unknown"
                )
            if dtype not in DATA_TYPES:
                raise X3pError(f"main.xml {where}/DataType", f"{dtype!r} is not one of I, L, F, D")
        elif dtype is not None and dtype not in DATA_TYPES:
            warnings.append(
                f"{where}/DataType {dtype!r} is not one of I, L, F, D (ignored: incremental axis)"
            )
        inc_el = ac.get("Increment")
        increment = _float(x.text(inc_el), f"{where}/Increment", warnings)
        if atype == "I":
            if inc_el is None:
                warnings.append(f"{where}/Increment is missing for an incremental axis")
            elif increment is not None and increment <= 0:
                warnings.append(f"{where}/Increment {increment!r} is not positive")
            elif increment is not None and increment > 1 and name != "CZ":
                warnings.append(
                    f"{where}/Increment {increment!r} m is over 1 m: left out of the topography summary"
                )
        offset = _float(x.text(ac.get("Offset")), f"{where}/Offset", warnings)
        axes[name] = Axis(name, atype, dtype, increment, offset)
    if "Rotation" in axc:
        x.children(axc["Rotation"], "Record1/Axes/Rotation", "Record1/Axes/Rotation")

    info = X3pInfo(
        file_name=archive.name,
        file_size=archive.size,
        sha256=archive.sha256,
        folder=folder,
        revision=revision,
        feature_type=feature,
        axes=axes,
        size_x=None,
        size_y=None,
        size_z=None,
        points=0,
        invalid_points=0,
        data_link=None,
        data_md5=None,
        warnings=warnings,
    )

    # Record2 (optional in the standard): who measured what, with which instrument.
    r2 = recs.get("Record2")
    if r2 is not None:
        r2c = x.children(r2, "Record2", "Record2")
        order = [
            _local(c.tag)[1] for c in r2 if isinstance(c.tag, str) and _local(c.tag)[1] in _RECORD2_ORDER
        ]
        if order != sorted(order, key=_RECORD2_ORDER.index):
            warnings.append("Record2 elements are not in the order of the standard")
        info.date = x.text(r2c.get("Date"))
        _check_datetime(info.date, "Record2/Date", warnings)
        info.creator = x.text(r2c.get("Creator"))
        if "Instrument" in r2c:
            ic = x.children(r2c["Instrument"], "Record2/Instrument", "Record2/Instrument")
            info.instrument_manufacturer = x.text(ic.get("Manufacturer"))
            info.instrument_model = x.text(ic.get("Model"))
            info.instrument_serial = x.text(ic.get("Serial"))
            info.instrument_version = x.text(ic.get("Version"))
        else:
            warnings.append("Record2/Instrument is missing")
        info.calibration_date = x.text(r2c.get("CalibrationDate"))
        _check_datetime(info.calibration_date, "Record2/CalibrationDate", warnings)
        if "ProbingSystem" in r2c:
            pc = x.children(r2c["ProbingSystem"], "Record2/ProbingSystem", "Record2/ProbingSystem")
            info.probing_type = x.text(pc.get("Type"))
            info.probing_identification = x.text(pc.get("Identification"))
            if info.probing_type is not None and info.probing_type not in PROBING_TYPES:
                warnings.append(
                    f"Record2/ProbingSystem/Type {info.probing_type!r} is not one of {', '.join(PROBING_TYPES)}"
                )
        info.comment = x.text(r2c.get("Comment"))

    # Record3: dimensions and point data.
    r3 = recs.get("Record3")
    if r3 is None:
        raise X3pError("main.xml Record3", "missing: there is no point data")
    r3c = x.children(r3, "Record3", "Record3")
    used = {main.filename}
    absolute = [axes[a] for a in ("CX", "CY", "CZ") if axes[a].axis_type == "A"]
    if "MatrixDimension" in r3c:
        mc = x.children(r3c["MatrixDimension"], "Record3/MatrixDimension", "Record3/MatrixDimension")
        info.size_x = _size(x.text(mc.get("SizeX")), "main.xml Record3/MatrixDimension/SizeX")
        info.size_y = _size(x.text(mc.get("SizeY")), "main.xml Record3/MatrixDimension/SizeY")
        info.size_z = _size(x.text(mc.get("SizeZ")), "main.xml Record3/MatrixDimension/SizeZ")
        n_points = info.size_x * info.size_y * info.size_z
        for a in ("CX", "CY"):
            if axes[a].axis_type != "I":
                warnings.append(
                    f"Record1/Axes/{a} is absolute in a matrix file: its coordinates are read from the data"
                )
    elif "ListDimension" in r3c:
        n_points = _size(x.text(r3c["ListDimension"]), "main.xml Record3/ListDimension")
        warnings.append(
            "Record3 holds a point list (ListDimension), not a matrix: size_x and size_y are unknown"
        )
    else:
        raise X3pError(
            "main.xml Record3/MatrixDimension",
            "missing (and no ListDimension): the number of points is unknown",
        )
    if "DataLink" in r3c:
        _read_linked(zf, x, r3c["DataLink"], folder, absolute, n_points, info, used)
    elif "DataList" in r3c:
        _read_inline(x, r3c["DataList"], absolute, n_points, info)
    else:
        raise X3pError("main.xml Record3/DataLink", "missing (and no DataList): there is no point data")

    # Record4: the MD5 of main.xml.
    r4 = recs.get("Record4")
    checksum_name = None
    if r4 is None:
        warnings.append("Record4 is missing: the MD5 of main.xml was not checked")
    else:
        r4c = x.children(r4, "Record4", "Record4")
        checksum_name = x.text(r4c.get("ChecksumFile"))
        if not checksum_name:
            warnings.append("Record4/ChecksumFile is missing: the MD5 of main.xml was not checked")
    if checksum_name:
        cinfo = _member(zf, folder, checksum_name, "Record4/ChecksumFile", warnings)
        if cinfo is None:
            warnings.append(f"{checksum_name} is not in the archive: the MD5 of main.xml was not checked")
        else:
            used.add(cinfo.filename)
            content = zf.read(cinfo)[:4096].decode("ascii", "replace").strip()
            _check_md5(
                content,
                hashlib.md5(xml_bytes, usedforsecurity=False).hexdigest(),
                checksum_name,
                "main.xml",
                warnings,
            )

    if x.extra:
        warnings.append("extra elements ignored: " + ", ".join(x.extra))
    unused = [i.filename for i in zf.infolist() if not i.is_dir() and i.filename not in used]
    if unused:
        warnings.append("archive members not named by main.xml (ignored): " + ", ".join(unused))
    return info


def _read_linked(
    zf: zipfile.ZipFile,
    x: _Xml,
    link_el: ET.Element,
    folder: str,
    absolute: list[Axis],
    n_points: int,
    info: X3pInfo,
    used: set[str],
) -> None:
    warnings = info.warnings
    lc = x.children(link_el, "Record3/DataLink", "Record3/DataLink")
    link = x.text(lc.get("PointDataLink"))
    if not link:
        raise X3pError("main.xml Record3/DataLink/PointDataLink", "missing: the point data file is not named")
    member = _member(zf, folder, link, "Record3/DataLink/PointDataLink", warnings)
    if member is None:
        raise X3pError(link, "not in the archive (named by Record3/DataLink/PointDataLink)")
    used.add(member.filename)
    info.data_link = link
    fmt = "<" + "".join(DATA_TYPES[a.data_type][0] for a in absolute if a.data_type)
    point_size = struct.calcsize(fmt)
    expected = n_points * point_size
    types = "+".join(DATA_TYPE_NAMES[a.data_type] for a in absolute if a.data_type)
    if member.file_size != expected:
        raise X3pError(
            link,
            f"{member.file_size} bytes, expected {expected} ({n_points} points of {types}, {point_size} bytes each)",
        )
    md5 = hashlib.md5(usedforsecurity=False)
    z = absolute[-1] if absolute else None
    is_float = bool(z and z.data_type and DATA_TYPES[z.data_type][3])
    invalid = 0
    total = 0
    chunk_size = point_size * CHUNK_POINTS
    try:
        with zf.open(member) as fh:
            for chunk in _chunks(fh, chunk_size):
                md5.update(chunk)
                total += len(chunk)
                if total > expected:
                    raise X3pError(link, f"holds more than the {expected} bytes its zip entry declares")
                if is_float:
                    invalid += _count_nan(chunk, fmt, point_size)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise X3pError(link, f"cannot be extracted ({exc})") from None
    if total != expected:
        raise X3pError(link, f"{total} bytes read, expected {expected}")
    info.points = n_points
    info.data_md5 = md5.hexdigest()
    _check_md5(
        x.text(lc.get("MD5ChecksumPointData")),
        info.data_md5,
        "Record3/DataLink/MD5ChecksumPointData",
        link,
        warnings,
    )

    valid_link = x.text(lc.get("ValidPointsLink"))
    if valid_link:
        vmember = _member(zf, folder, valid_link, "Record3/DataLink/ValidPointsLink", warnings)
        if vmember is None:
            warnings.append(
                f"{valid_link} is not in the archive (named by Record3/DataLink/ValidPointsLink): all points read as valid"
            )
        elif is_float:
            used.add(vmember.filename)
            warnings.append(f"{valid_link} ignored: NaN marks the invalid points of floating-point data")
        else:
            used.add(vmember.filename)
            need = (n_points + 7) // 8
            if vmember.file_size < need:
                warnings.append(
                    f"{valid_link} holds {vmember.file_size} bytes, {need} needed: all points read as valid"
                )
            else:
                vmd5 = hashlib.md5(usedforsecurity=False)
                valid = 0
                seen = 0
                with zf.open(vmember) as fh:
                    for chunk in _chunks(fh, 1 << 20):
                        vmd5.update(chunk)
                        valid += _count_valid_bits(chunk, seen, n_points)
                        seen += len(chunk)
                zeros = n_points - valid
                invalid = zeros
                _check_md5(
                    x.text(lc.get("MD5ChecksumValidPoints")),
                    vmd5.hexdigest(),
                    "Record3/DataLink/MD5ChecksumValidPoints",
                    valid_link,
                    warnings,
                )
    info.invalid_points = invalid


def _count_nan(chunk: bytes, fmt: str, point_size: int) -> int:
    if len(fmt) == 2:  # one value per point: count NaN with the C loop of math.isnan over an array
        arr = array(fmt[1])
        arr.frombytes(chunk)
        if sys.byteorder == "big":
            arr.byteswap()
        return sum(map(math.isnan, arr))
    return sum(1 for rec in struct.iter_unpack(fmt, chunk) if math.isnan(rec[-1]))


def _count_valid_bits(chunk: bytes, offset: int, n_points: int) -> int:
    """Set bits of a valid-points bit array (point i is bit i % 8, least significant first, of byte
    i // 8), counting only the first ``n_points`` bits; ``offset`` is the byte index of ``chunk``."""
    full_bytes = max(0, min(len(chunk), n_points // 8 - offset))
    count = sum(bin(b).count("1") for b in chunk[:full_bytes])
    rest = n_points % 8
    if rest and offset + full_bytes == n_points // 8 and full_bytes < len(chunk):
        count += bin(chunk[full_bytes] & ((1 << rest) - 1)).count("1")
    return count


def _read_inline(x: _Xml, list_el: ET.Element, absolute: list[Axis], n_points: int, info: X3pInfo) -> None:
    data = [c for c in list_el if isinstance(c.tag, str) and _local(c.tag)[1] == "Datum"]
    x.children(list_el, "Record3/DataList", "Record3/DataList")
    if len(data) != n_points:
        raise X3pError("main.xml Record3/DataList", f"{len(data)} Datum elements, expected {n_points}")
    invalid = 0
    for d in data:
        text = (d.text or "").strip()
        last = text.split(";")[-1].strip() if text else ""
        if not last:
            invalid += 1
            continue
        try:
            if math.isnan(float(last)):
                invalid += 1
        except ValueError:
            raise X3pError("main.xml Record3/DataList/Datum", f"{text!r} is not a number") from None
    info.points = n_points
    info.invalid_points = invalid
    info.data_link = None
    info.warnings.append("Record3 holds the points inline (DataList), not in a binary file")
    del absolute
