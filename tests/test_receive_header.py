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
