"""The tolerant X3P reader: the four real files of ../shared/vectors/x3p and files built to break it."""

from __future__ import annotations

import hashlib
import io
import math
import struct
import zipfile
from pathlib import Path

import pytest
from core.message_examples import SAMPLE_LAND_SHA256

from adapters.x3p.reader import X3pError, read_x3p
from adapters.x3p.writer import X3pMeta, breech_face, write_x3p

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "x3p"


def _has(warnings: list[str], *parts: str) -> bool:
    return any(all(p in w for p in parts) for w in warnings)


def _rezip(data: bytes, changes: dict[str, bytes | None], add: dict[str, bytes] | None = None) -> bytes:
    """Copy an archive, replacing (bytes) or dropping (None) members, then adding ``add``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename in changes:
                if changes[info.filename] is not None:
                    dst.writestr(info.filename, changes[info.filename])
            else:
                dst.writestr(info.filename, src.read(info))
        for name, content in (add or {}).items():
            dst.writestr(name, content)
    return out.getvalue()


def _member(data: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return z.read(name)


def _with_main(data: bytes, main: bytes, fix_md5: bool = True) -> bytes:
    changes: dict[str, bytes | None] = {"main.xml": main}
    if fix_md5:
        changes["md5checksum.hex"] = (hashlib.md5(main).hexdigest() + " *main.xml\n").encode()
    return _rezip(data, changes)


@pytest.fixture(scope="module")
def clean() -> bytes:
    return write_x3p(breech_face(32), 32, 32, increment_x=3.125e-06, increment_y=3.125e-06, data_type="F")


# --- the four real files ------------------------------------------------------------------------------


def test_sample_land_reads_with_every_deviation_reported():
    info = read_x3p(VECTORS / "sample-land.x3p")
    assert (info.size_x, info.size_y, info.size_z) == (918, 256, 1)
    assert info.data_type == "D" and info.points == 918 * 256
    assert 0.10 < info.invalid_fraction < 0.12  # ~11% NaN
    assert info.sha256 == SAMPLE_LAND_SHA256
    assert info.axes["CX"].increment == 2.58e-06 and info.axes["CY"].increment == 2.58e-06
    assert info.instrument == "Sensofar Sneox1 s/n 350262016"
    w = info.warnings
    assert _has(w, "inside the folder", "sample-land/")
    assert _has(w, "root element is <ISO5436>")
    assert _has(w, "no namespace")
    assert _has(w, "CZ/Offset is empty")
    assert _has(w, "extra elements ignored", "Record1/Axes/Origin", "Record3/Mask")
    assert _has(w, "not named by main.xml", "__MACOSX/", "mask.png")
    assert not _has(w, "md5")  # both checksums of this file are right


def test_sample_land_nan_count_matches_an_independent_count():
    with zipfile.ZipFile(VECTORS / "sample-land.x3p") as z:
        raw = z.read("sample-land/bindata/data.bin")
    values = struct.unpack(f"<{len(raw) // 8}d", raw)
    expected = sum(1 for v in values if math.isnan(v))
    assert read_x3p(VECTORS / "sample-land.x3p").invalid_points == expected


def test_csafe_logo_stale_checksum_is_a_warning():
    info = read_x3p(VECTORS / "csafe-logo.x3p")
    assert (info.size_x, info.size_y) == (741, 419) and info.data_type == "D"
    assert info.invalid_points == 0
    assert _has(info.warnings, "md5checksum.hex", "does not match the MD5 of main.xml", "stale")
    assert _has(info.warnings, "no namespace")
    assert info.instrument is None  # all N/A


def test_pyramid_nonstandard_revision_and_calibration_date():
    info = read_x3p(VECTORS / "pyramid.x3p")
    assert (info.size_x, info.size_y) == (5, 5) and info.data_type == "F"
    assert info.points == 25 and info.invalid_points == 0
    assert _has(info.warnings, "Record1/Revision", "ISO5436 – 2000", "not the standard")
    assert _has(info.warnings, "Record2/CalibrationDate", "Date of Calibration", "not an xsd:dateTime")
    assert not _has(info.warnings, "namespace")


def test_testing_file():
    info = read_x3p(VECTORS / "testing.x3p")
    assert (info.size_x, info.size_y) == (30, 20) and info.data_type == "D" and info.points == 600
    assert _has(info.warnings, "Record2/Date", "'N/A'", "not an xsd:dateTime")


@pytest.mark.parametrize("name", ["sample-land.x3p", "csafe-logo.x3p", "pyramid.x3p", "testing.x3p"])
def test_bytes_path_and_file_object_give_the_same_result(name):
    path = VECTORS / name
    a = read_x3p(path)
    b = read_x3p(path.read_bytes())
    with path.open("rb") as fh:
        c = read_x3p(fh)
    assert a.sha256 == b.sha256 == c.sha256 == hashlib_b64(path.read_bytes())
    assert a.warnings == b.warnings == c.warnings
    assert a.file_size == path.stat().st_size
    assert a.topography("LEA") == b.topography("LEA")


def hashlib_b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


# --- files written by the writer, then broken ---------------------------------------------------------


def test_a_standard_file_reads_without_warnings(clean):
    info = read_x3p(clean)
    assert info.warnings == []
    assert (info.size_x, info.size_y, info.data_type) == (32, 32, "F")
    assert info.invalid_points == sum(1 for v in breech_face(32) if math.isnan(v))
    assert info.topography("BreechFace") == {
        "sha256": info.sha256,
        "region": "BreechFace",
        "size_x": 32,
        "size_y": 32,
        "increment_x_m": 3.125e-06,
        "increment_y_m": 3.125e-06,
        "instrument": "Traza synthetic s/n 0",
    }


def test_upper_case_checksum_is_a_warning(clean):
    md5 = hashlib.md5(_member(clean, "main.xml")).hexdigest().upper()
    info = read_x3p(_rezip(clean, {"md5checksum.hex": md5.encode()}))
    assert _has(info.warnings, "upper-case hex")
    assert not _has(info.warnings, "does not match")


def test_stale_data_checksum_is_a_warning(clean):
    main = _member(clean, "main.xml")
    old = hashlib.md5(_member(clean, "bindata/data.bin")).hexdigest().encode()
    info = read_x3p(_with_main(clean, main.replace(old, b"0" * 32)))
    assert _has(info.warnings, "MD5ChecksumPointData", "does not match", "bindata/data.bin")


def test_missing_checksum_file_is_a_warning(clean):
    info = read_x3p(_rezip(clean, {"md5checksum.hex": None}))
    assert _has(info.warnings, "md5checksum.hex is not in the archive")


def test_extra_elements_and_invalid_dates_are_warnings(clean):
    main = _member(clean, "main.xml")
    main = main.replace(
        b"<Record2><Date>2026-10-20T11:02:00+02:00</Date>", b"<Record2><Date>20/10/2026</Date><Lab>X</Lab>"
    )
    info = read_x3p(_with_main(clean, main))
    assert _has(info.warnings, "Record2/Date", "20/10/2026")
    assert _has(info.warnings, "extra elements ignored: Record2/Lab")


def test_backslash_data_link_is_a_warning(clean):
    main = _member(clean, "main.xml").replace(
        b"bindata/data.bin</PointDataLink>", b"bindata\\data.bin</PointDataLink>"
    )
    info = read_x3p(_with_main(clean, main))
    assert _has(info.warnings, "backslashes")
    assert info.points == 32 * 32


def test_bin_size_mismatch_is_fatal(clean):
    data = _member(clean, "bindata/data.bin")
    with pytest.raises(
        X3pError, match=r"bindata/data.bin: 4092 bytes, expected 4096 \(1024 points of float32"
    ):
        read_x3p(_rezip(clean, {"bindata/data.bin": data[:-4]}))


def test_not_a_zip_is_fatal():
    with pytest.raises(X3pError, match=r"\(archive\): not a zip archive"):
        read_x3p(b"ISO5436 surely not a zip file")


def test_no_main_xml_is_fatal(clean):
    with pytest.raises(X3pError, match=r"main\.xml: not in the archive"):
        read_x3p(_rezip(clean, {"main.xml": None}))


def test_missing_data_file_is_fatal(clean):
    with pytest.raises(X3pError, match=r"bindata/data\.bin: not in the archive"):
        read_x3p(_rezip(clean, {"bindata/data.bin": None}))


def test_doctype_is_refused(clean):
    main = _member(clean, "main.xml").replace(
        b"<p:ISO5436_2", b'<!DOCTYPE x [<!ENTITY a "b">]><p:ISO5436_2', 1
    )
    with pytest.raises(X3pError, match="DOCTYPE"):
        read_x3p(_with_main(clean, main))


def test_broken_xml_is_fatal(clean):
    with pytest.raises(X3pError, match=r"main\.xml: not well-formed XML"):
        read_x3p(_with_main(clean, b"<p:ISO5436_2><Record1>"))


def test_integer_data_uses_the_valid_points_file():
    z = [float(i % 7) for i in range(6 * 5)]
    data = write_x3p(
        z, 6, 5, increment_x=1e-6, increment_y=1e-6, data_type="I", meta=X3pMeta(comment="int16")
    )
    # 30 points: mark points 3 and 29 invalid (bit i of byte i // 8, least significant first)
    bits = bytearray(b"\xff" * 4)
    bits[0] &= ~(1 << 3) & 0xFF
    bits[3] &= ~(1 << 5) & 0xFF
    bits[3] &= 0x3F  # padding bits beyond point 29 are not points
    main = _member(data, "main.xml").replace(
        b"</DataLink>",
        b"<ValidPointsLink>bindata/valid.bin</ValidPointsLink><MD5ChecksumValidPoints>"
        + hashlib.md5(bytes(bits)).hexdigest().encode()
        + b"</MD5ChecksumValidPoints></DataLink>",
    )
    broken = _rezip(
        data,
        {"main.xml": main, "md5checksum.hex": hashlib.md5(main).hexdigest().encode()},
        add={"bindata/valid.bin": bytes(bits)},
    )
    info = read_x3p(broken)
    assert info.data_type == "I" and info.points == 30
    assert info.invalid_points == 2
    assert info.warnings == []


def test_file_in_a_wrapping_folder_with_extra_members(clean):
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(clean)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr("case7/" + info.filename, src.read(info))
        dst.writestr("__MACOSX/case7/._main.xml", b"\0")
    info = read_x3p(out.getvalue())
    assert info.folder == "case7/"
    assert _has(info.warnings, "inside the folder 'case7/'")
    assert _has(info.warnings, "__MACOSX/case7/._main.xml")
    assert info.points == 32 * 32
