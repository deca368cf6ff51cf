"""Reading a received object's header from its first bytes, while the rest still arrives,
and checking it is whole once it has."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless

from mmbcd_node.receive.header import (
    InvalidIdentifiers,
    UnreadableDataset,
    parse_head,
    read_header,
)
from mmbcd_node.receive.structure import MAX_DEPTH, MAX_ELEMENTS, MAX_HEADER_BYTES
from tests.support.mammo import make_mammogram, write_mammogram

HEAD = 64 << 10


def mammogram_file(tmp_path: Path, transfer_syntax: str = "1.2.840.10008.1.2.1",
                   side: int = 400, **overrides: object) -> tuple[Path, bytes]:
    pixels = np.random.default_rng(3).integers(0, 4096, (side, side), dtype=np.uint16)
    ds = make_mammogram(rows=8, cols=8, Rows=side, Columns=side, PixelData=pixels.tobytes(),
                        **overrides)
    path = write_mammogram(tmp_path / "a.dcm", ds, transfer_syntax)
    return path, path.read_bytes()


def read_with_head(path: Path, data: bytes) -> None:
    """``read_header`` of the file at ``path`` with the header parsed from the head of
    ``data`` (the object as sent), as the receiver does while it arrives."""
    parsed = parse_head(data[:HEAD])
    assert parsed is not None
    ds = parsed.dataset
    read_header(path, sop_class_uid=ds.SOPClassUID, sop_instance_uid=ds.SOPInstanceUID,
                parsed=parsed, head=data[:HEAD])


def pixel_tag_offset(data: bytes) -> int:
    return data.index(b"\xe0\x7f\x10\x00")


@pytest.mark.parametrize("transfer_syntax", ["1.2.840.10008.1.2.1", ImplicitVRLittleEndian,
                                             JPEG2000Lossless])
def test_header_parsed_from_the_head_ends_at_the_pixel_element(
        tmp_path: Path, transfer_syntax: str) -> None:
    path, data = mammogram_file(tmp_path, transfer_syntax)
    parsed = parse_head(data[:HEAD])
    assert parsed is not None
    assert parsed.end == pixel_tag_offset(data)
    assert parsed.transfer_syntax == transfer_syntax
    ds = parsed.dataset
    header = read_header(path, sop_class_uid=ds.SOPClassUID, sop_instance_uid=ds.SOPInstanceUID,
                         parsed=parsed, head=data[:HEAD])
    assert header.has_pixels and header.study_uid == ds.StudyInstanceUID


def test_head_that_ends_inside_the_header_gives_no_parse(tmp_path: Path) -> None:
    _, data = mammogram_file(tmp_path)
    cut = pixel_tag_offset(data) - 10  # inside the element before Pixel Data
    assert parse_head(data[:cut]) is None
    assert parse_head(data[:200]) is None
    assert parse_head(b"") is None


def test_header_longer_than_the_head_gives_no_parse(tmp_path: Path) -> None:
    # A private element of 100 KB before Pixel Data: the head holds only part of it.
    path, data = mammogram_file(tmp_path)
    ds = dcmread(path)
    ds.add_new(Tag(0x0029, 0x0010), "LO", "ACME")
    ds.add_new(Tag(0x0029, 0x1010), "OB", b"\x01" * 100_000)
    ds.save_as(path)
    assert parse_head(path.read_bytes()[:HEAD]) is None


def test_deflated_head_is_left_to_the_whole_file(tmp_path: Path) -> None:
    _, data = mammogram_file(tmp_path, DeflatedExplicitVRLittleEndian)
    assert parse_head(data[:HEAD]) is None


def test_native_pixel_data_short_of_its_length_is_truncated(tmp_path: Path) -> None:
    path, data = mammogram_file(tmp_path)
    path.write_bytes(data[:-5000])
    with pytest.raises(UnreadableDataset, match="Pixel Data is truncated"):
        read_with_head(path, data)


def test_encapsulated_fragments_are_walked_in_the_file(tmp_path: Path) -> None:
    path, data = mammogram_file(tmp_path, JPEG2000Lossless)
    assert len(data) > HEAD  # the fragments lie beyond the head
    path.write_bytes(data[:-100])
    with pytest.raises(UnreadableDataset, match="truncated"):
        read_with_head(path, data)


def test_parsed_header_is_still_checked_against_the_request(tmp_path: Path) -> None:
    path, data = mammogram_file(tmp_path)
    parsed = parse_head(data[:HEAD])
    assert parsed is not None
    with pytest.raises(InvalidIdentifiers, match="Affected SOP Instance UID"):
        read_header(path, sop_class_uid=parsed.dataset.SOPClassUID,
                    sop_instance_uid="1.2.3.4", parsed=parsed, head=data[:HEAD])


def test_deflated_data_set_cut_short_is_unreadable(tmp_path: Path) -> None:
    path, data = mammogram_file(tmp_path, DeflatedExplicitVRLittleEndian)
    path.write_bytes(data[:len(data) // 2])  # the inflated stream ends mid-way
    with pytest.raises(UnreadableDataset, match="cannot be parsed|truncated"):
        read_header(path, sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2",
                    sop_instance_uid="1.2.3")


def nested(depth: int, implicit: bool) -> bytes:
    """Referenced Series Sequences nested ``depth`` deep, each level's item of undefined
    length holding the next sequence (its length defined at even levels, undefined at odd)."""
    inner = b""
    for level in range(depth):
        item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + inner + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
        header = b"\x08\x00\x15\x11" + (b"" if implicit else b"SQ\x00\x00")
        if level % 2:
            inner = header + b"\xff\xff\xff\xff" + item + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        else:
            inner = header + len(item).to_bytes(4, "little") + item
    return inner


def with_structure(tmp_path: Path, extra: bytes, transfer_syntax: str) -> Path:
    """A mammogram with ``extra`` encoded elements spliced in before Patient ID."""
    path, data = mammogram_file(tmp_path, transfer_syntax, side=16)
    at = data.index(b"\x10\x00\x20\x00")  # (0010,0020) Patient ID
    path.write_bytes(data[:at] + extra + data[at:])
    return path


def read(path: Path) -> None:
    read_header(path, sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2",
                sop_instance_uid=dcmread(path, stop_before_pixels=True,
                                         specific_tags=["SOPInstanceUID"]).SOPInstanceUID)


@pytest.mark.parametrize("transfer_syntax", ["1.2.840.10008.1.2.1", ImplicitVRLittleEndian])
def test_sequences_nest_to_the_limit_and_no_deeper(tmp_path: Path, transfer_syntax: str) -> None:
    implicit = transfer_syntax == ImplicitVRLittleEndian
    read(with_structure(tmp_path, nested(MAX_DEPTH, implicit), transfer_syntax))
    with pytest.raises(UnreadableDataset, match=f"nested deeper than {MAX_DEPTH} levels"):
        read(with_structure(tmp_path, nested(MAX_DEPTH + 1, implicit), transfer_syntax))


def test_an_undefined_length_un_is_walked_as_an_implicit_sequence(tmp_path: Path) -> None:
    # PS3.5 6.2.2: a sequence whose VR the sender did not know, inside explicit VR.
    sequence = nested(MAX_DEPTH + 1, implicit=True)  # the outermost of defined length
    un = (b"\x08\x00\x15\x11UN\x00\x00\xff\xff\xff\xff" + sequence[8:]
          + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    with pytest.raises(UnreadableDataset, match="nested deeper"):
        read(with_structure(tmp_path, un, "1.2.840.10008.1.2.1"))


def test_more_elements_than_the_limit_are_refused_before_they_are_built(
        tmp_path: Path) -> None:
    empty_private = b"\x09\x00\x10\x10LO\x00\x00"  # (0009,1010) LO, zero length
    with pytest.raises(UnreadableDataset, match=f"more than {MAX_ELEMENTS} elements"):
        read(with_structure(tmp_path, empty_private * (MAX_ELEMENTS + 1),
                            "1.2.840.10008.1.2.1"))


def test_values_before_the_pixel_data_are_bounded(tmp_path: Path) -> None:
    size = MAX_HEADER_BYTES + 2
    private_ob = b"\x09\x00\x10\x10OB\x00\x00" + size.to_bytes(4, "little") + bytes(size)
    with pytest.raises(UnreadableDataset, match="MiB of values before the pixel data"):
        read(with_structure(tmp_path, private_ob, "1.2.840.10008.1.2.1"))
