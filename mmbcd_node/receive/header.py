"""Reading a received object's header, and checking it is whole, without decoding pixels.

The receiver never decodes pixel data: it parses the header up to Pixel Data, then
checks from the element's length (native) or its item structure (encapsulated) that
the value is complete. The file on disk is the object as it was received.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from pydicom import Dataset, dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from ml.views import laterality_of, view_of
from mmbcd_node.receive.errors import (
    InvalidIdentifiers,
    ReceiveError,
    StorageFailure,
    UnreadableDataset,
)
from mmbcd_node.receive.inflate import InflateRefused, inflated_copy
from mmbcd_node.receive.structure import check_structure

__all__ = ["InstanceHeader", "InvalidIdentifiers", "ParsedHeader", "ReceiveError",
           "StorageFailure", "UnreadableDataset", "parse_head", "read_header"]

# Pixel Data, Float Pixel Data, Double Float Pixel Data (where dcmread stops).
_PIXEL_TAGS = {(0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009)}
_ITEM = (0xFFFE, 0xE000)
_SEQUENCE_DELIMITER = (0xFFFE, 0xE0DD)
_UNDEFINED = 0xFFFFFFFF
_IS_MIN, _IS_MAX = -(2**31), 2**31 - 1  # PS3.5 6.2, Integer String
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                       "TM", "UC", "UI", "UR", "UT"})
# What pydicom raises on data it cannot parse (zlib: a deflated stream cut short;
# OverflowError: a number too large, as IS "1e999"; RecursionError: sequences nested
# deeper than the interpreter allows, a few hundred levels).
_PARSE_ERRORS = (InvalidDicomError, EOFError, ValueError, KeyError, OSError, struct.error,
                 OverflowError, RecursionError,
                 AttributeError, NotImplementedError, zlib.error)


@dataclass(frozen=True)
class InstanceHeader:
    """What the node keeps from a received object's header (no patient names)."""

    dataset: Dataset
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    study_uid: str | None
    series_uid: str | None
    has_pixels: bool

    def text(self, keyword: str) -> str | None:
        """The element's value as a stripped string, or None when absent or empty."""
        value = self.dataset.get(keyword)
        if value is None or value == "":
            return None
        return str(value).strip() or None

    @property
    def modality(self) -> str | None:
        return self.text("Modality")

    @property
    def laterality(self) -> str | None:
        return laterality_of(self.dataset)

    @property
    def view(self) -> str | None:
        return view_of(self.dataset)


@dataclass(frozen=True)
class ParsedHeader:
    """A data set parsed up to its pixel element, and where that element starts."""

    dataset: Dataset
    transfer_syntax: UID
    end: int  # file offset of the element after the header (the pixel element, if any)


def parse_head(head: bytes) -> ParsedHeader | None:
    """The header parsed from ``head``, the first bytes of an object still arriving.

    None when the header does not end at a pixel element inside ``head`` (it is
    longer, it cannot be parsed, or the transfer syntax is deflated): the whole file
    decides once it is complete.
    """
    if len(head) < 132:
        return None
    try:
        with BytesIO(head) as fp:
            parsed = _parse(fp)
            tag = _read_tag(fp)
    except (ReceiveError, TypeError, *_PARSE_ERRORS):
        return None
    if tag not in _PIXEL_TAGS or parsed.transfer_syntax == DeflatedExplicitVRLittleEndian:
        return None
    return parsed


def read_header(path: Path, *, sop_class_uid: str, sop_instance_uid: str,
                parsed: ParsedHeader | None = None, head: bytes = b"") -> InstanceHeader:
    """Parse the header of the received file at ``path`` and check the object is whole.

    ``sop_class_uid``/``sop_instance_uid`` are the Affected UIDs of the C-STORE request;
    the data set must carry the same ones. ``parsed`` is the header already parsed
    from ``head``, the file's first bytes, while the object arrived (``parse_head``);
    the file is then only read where the pixel element's own header lies beyond
    ``head``, or its fragments must be walked. Raises ``UnreadableDataset`` when the data
    cannot be parsed or is truncated, ``InvalidIdentifiers`` when SOP Class / SOP
    Instance / Study Instance UIDs are missing, malformed or disagree with the request.
    """
    try:
        size = path.stat().st_size
        if parsed is not None:
            has_pixels = _pixels_complete(path, parsed, head, size)
        elif _transfer_syntax(path) == DeflatedExplicitVRLittleEndian:
            parsed, has_pixels = _read_deflated(path)
        else:
            with path.open("rb") as fp:
                parsed = _parse(fp)
                has_pixels = _check_pixel_element(fp, parsed, size)
    except ReceiveError:
        raise
    except InflateRefused as exc:
        raise UnreadableDataset(str(exc)) from exc
    except _PARSE_ERRORS as exc:
        raise UnreadableDataset(f"data set cannot be parsed: {exc}") from exc
    header = instance_header(parsed, has_pixels=has_pixels)
    if header.sop_instance_uid != str(sop_instance_uid).strip():
        raise InvalidIdentifiers(
            f"SOP Instance UID (0008,0018) {header.sop_instance_uid} differs from the "
            f"request's Affected SOP Instance UID {sop_instance_uid}")
    if header.sop_class_uid != str(sop_class_uid).strip():
        raise InvalidIdentifiers(
            f"SOP Class UID (0008,0016) {header.sop_class_uid} differs from the "
            f"request's Affected SOP Class UID {sop_class_uid}")
    if header.study_uid is None:
        raise InvalidIdentifiers("Study Instance UID (0020,000D) is missing")
    return header


def instance_header(parsed: ParsedHeader, *, has_pixels: bool) -> InstanceHeader:
    """The ``InstanceHeader`` of a parsed header; ``InvalidIdentifiers`` when a SOP UID
    is missing or a UID is malformed, ``UnreadableDataset`` when a number is not one."""
    ds = parsed.dataset
    _check_values(ds)
    return InstanceHeader(
        dataset=ds,
        sop_class_uid=_uid(ds, "SOPClassUID"),
        sop_instance_uid=_uid(ds, "SOPInstanceUID"),
        transfer_syntax_uid=str(parsed.transfer_syntax),
        study_uid=_optional_uid(ds, "StudyInstanceUID"),
        series_uid=_optional_uid(ds, "SeriesInstanceUID"),
        has_pixels=has_pixels,
    )


def _parse(fp: BinaryIO) -> ParsedHeader:
    """Parse up to the pixel element, within the limits of ``structure``; ``fp`` is left
    at the element that follows."""
    check_structure(fp)
    fp.seek(0)
    ds = dcmread(fp, stop_before_pixels=True)
    _check_values_complete(ds)
    return ParsedHeader(dataset=ds, transfer_syntax=UID(ds.file_meta.TransferSyntaxUID),
                        end=fp.tell())


def _pixels_complete(path: Path, parsed: ParsedHeader, head: bytes, size: int) -> bool:
    """``_check_pixel_element`` for a header parsed from ``head``: a native value is
    checked against ``size`` from the element header in ``head``; an encapsulated one
    has its items walked in the file."""
    implicit_vr = bool(parsed.dataset.is_implicit_VR)
    length_at = parsed.end + (4 if implicit_vr else 8)
    if len(head) >= length_at + 4 and head[length_at:length_at + 4] != b"\xff\xff\xff\xff":
        with BytesIO(head) as fp:
            fp.seek(parsed.end)
            return _check_pixel_element(fp, parsed, size)
    with path.open("rb") as fp:
        fp.seek(parsed.end)
        return _check_pixel_element(fp, parsed, size)


def require_series_uid(header: InstanceHeader) -> str:
    """The Series Instance UID of an object to be stored; ``InvalidIdentifiers`` if absent."""
    if header.series_uid is None:
        raise InvalidIdentifiers("Series Instance UID (0020,000E) is missing")
    return header.series_uid


def _uid(ds: Dataset, keyword: str) -> str:
    value = _optional_uid(ds, keyword)
    if value is None:
        raise InvalidIdentifiers(f"{keyword} ({_keyword_tag_text(keyword)}) is missing")
    return value


def _optional_uid(ds: Dataset, keyword: str) -> str | None:
    raw = ds.get(keyword)
    if raw is None or str(raw).strip() == "":
        return None
    value = UID(str(raw).strip())
    if not value.is_valid:
        raise InvalidIdentifiers(f"{keyword} ({_keyword_tag_text(keyword)}) {value!r} is not a "
                                 "valid UID")
    return str(value)


def _keyword_tag_text(keyword: str) -> str:
    from pydicom.datadict import tag_for_keyword

    return _tag_text(tag_for_keyword(keyword) or 0)


def _check_values_complete(ds: Dataset) -> None:
    """pydicom keeps a value cut short by the end of the data; find such a value.

    Runs before any element is accessed, while the elements are still raw and know
    the length their header announced.
    """
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        if isinstance(raw, RawDataElement) and raw.length != _UNDEFINED \
                and raw.value is not None and len(raw.value) < raw.length:
            raise UnreadableDataset(
                f"data set is truncated inside element ({_tag_text(tag)}): "
                f"{len(raw.value)} of {raw.length} bytes")


def _check_values(ds: Dataset) -> None:
    """Every IS value an integer in PS3.5's range (-2^31 .. 2^31-1), every DS value a
    finite number, no text value holding a NUL byte: what no reader of the image (the
    node's database included) could take is refused here, naming the element, rather
    than failing later or differently on each database."""
    for element in _elements(ds):
        if element.VR not in _TEXT_VRS or element.value is None:
            continue
        values = element.value if element.VM > 1 else [element.value]
        if any("\x00" in str(v).rstrip("\x00" if element.VR == "UI" else "")
               for v in values):
            raise UnreadableDataset(f"element {_where(element)} holds a NUL byte")
        if element.VR not in ("IS", "DS"):
            continue
        try:
            numbers = [float(v) for v in values if v is not None and str(v).strip()]
        except (ValueError, OverflowError, TypeError) as exc:
            raise UnreadableDataset(f"element {_where(element)} is not a number: {exc}") \
                from exc
        for number in numbers:
            if not math.isfinite(number) or (
                    element.VR == "IS" and not _IS_MIN <= number <= _IS_MAX):
                raise UnreadableDataset(f"element {_where(element)} value {number!r} is out "
                                        "of range")


def _where(element: DataElement) -> str:
    return f"({_tag_text(element.tag)}) {element.VR}"


def _tag_text(tag: int) -> str:
    return f"{tag >> 16:04X},{tag & 0xFFFF:04X}"


def _elements(ds: Dataset) -> Iterator[DataElement]:
    """Every element of ``ds``, sequence items included, each value converted;
    ``UnreadableDataset`` naming the first one whose value cannot be."""
    for tag in list(ds.keys()):
        try:
            element = ds[tag]
        except (ValueError, OverflowError, TypeError, NotImplementedError) as exc:
            raise UnreadableDataset(f"element ({_tag_text(tag)}) cannot be read: {exc}") \
                from exc
        yield element
        if element.VR == "SQ":
            for item in element.value or []:
                yield from _elements(item)


def _read_tag(fp: BinaryIO) -> tuple[int, int] | None:
    raw = fp.read(4)
    if not raw:
        return None
    if len(raw) < 4:
        raise UnreadableDataset("data set ends inside an element tag")
    group, element = struct.unpack("<HH", raw)
    return group, element


def _check_pixel_element(fp: BinaryIO, parsed: ParsedHeader, size: int) -> bool:
    """Check the pixel element at the file position is complete, and encapsulated
    exactly when the transfer syntax is a compressed one (PS3.5 A.4); False if there is
    none."""
    implicit_vr = bool(parsed.dataset.is_implicit_VR)
    start = fp.tell()
    tag = _read_tag(fp)
    if tag is None:
        return False
    if tag not in _PIXEL_TAGS:
        raise UnreadableDataset(f"unexpected element ({tag[0]:04X},{tag[1]:04X}) after header")
    if implicit_vr:
        length = _unpack("<L", fp.read(4))
    else:
        fp.read(4)  # VR and two reserved bytes: always the 4-byte-length form here
        length = _unpack("<L", fp.read(4))
    compressed = _is_compressed(parsed.transfer_syntax)
    if compressed is not None and (length == _UNDEFINED) != compressed:
        raise UnreadableDataset(
            f"Pixel Data is {'encapsulated' if length == _UNDEFINED else 'native'} under "
            f"transfer syntax {parsed.transfer_syntax}, which "
            f"{'requires' if compressed else 'does not allow'} encapsulation")
    if length != _UNDEFINED:
        end = fp.tell() + length
        if end > size:
            raise UnreadableDataset(
                f"Pixel Data is truncated: {size - fp.tell()} of {length} bytes received")
        return True
    # Encapsulated: items (offset table, fragments) then the sequence delimiter.
    while True:
        item = _read_tag(fp)
        if item is None:
            raise UnreadableDataset("encapsulated Pixel Data is truncated (no delimiter)")
        item_length = _unpack("<L", fp.read(4))
        if item == _SEQUENCE_DELIMITER:
            return True
        if item != _ITEM:
            raise UnreadableDataset(
                f"encapsulated Pixel Data has ({item[0]:04X},{item[1]:04X}) where an item "
                f"was expected at byte {fp.tell() - 8 - start} of the element")
        if fp.tell() + item_length > size:
            raise UnreadableDataset("encapsulated Pixel Data is truncated inside a fragment")
        fp.seek(item_length, 1)


def _is_compressed(transfer_syntax: UID) -> bool | None:
    """Whether pixel data must be encapsulated; None for a transfer syntax pydicom does
    not know (a private one), where the file decides."""
    try:
        return bool(transfer_syntax.is_compressed)
    except ValueError:
        return None


def _unpack(fmt: str, raw: bytes) -> int:
    if len(raw) < struct.calcsize(fmt):
        raise UnreadableDataset("data set ends inside an element header")
    return int(struct.unpack(fmt, raw)[0])


def _transfer_syntax(path: Path) -> str:
    return str(read_file_meta_info(path).get("TransferSyntaxUID", ""))


def _read_deflated(path: Path) -> tuple[ParsedHeader, bool]:
    """Parse a deflated file through its inflated copy (``inflate.inflated_copy``: in a
    stream, with limits), checked like any other file; the header keeps the file's
    own transfer syntax."""
    copy = inflated_copy(path)
    try:
        with copy.open("rb") as fp:
            parsed = _parse(fp)
            has_pixels = _check_pixel_element(fp, parsed, copy.stat().st_size)
    finally:
        copy.unlink(missing_ok=True)
    parsed.dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return replace(parsed, transfer_syntax=UID(DeflatedExplicitVRLittleEndian)), has_pixels
