"""Mutated data sets for the receiver, by class, each with the C-STORE statuses that
are an honest answer to it (README, receiving: Statuses).

Every case starts from a small valid mammogram with fresh UIDs and changes its data
set, never its file meta: the C-STORE request (SOP Class / Instance UID, transfer
syntax) comes from the meta, as a modality would send it. 0xC211 (a defect in the
node) and 0xA700 (a failing disk or database) are never an honest answer here.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from tests.support.mammo import make_mammogram, write_mammogram

SUCCESS, MISMATCH, UNREADABLE = 0x0000, 0xA900, 0xC000
ANY_HONEST = frozenset({SUCCESS, MISMATCH, UNREADABLE})
PATIENT_ID = b"\x10\x00\x20\x00"  # (0010,0020), where spliced elements go
PIXEL_DATA = b"\xe0\x7f\x10\x00"


@dataclass(frozen=True)
class DicomCase:
    name: str
    allowed: frozenset[int]
    make: Callable[[random.Random, Path], Path]  # writes one mutated file into a folder


def _base(rng: random.Random, folder: Path, transfer_syntax: str = ExplicitVRLittleEndian,
          **overrides: object) -> Path:
    ds = make_mammogram(rows=16, cols=16, seed=rng.randrange(1 << 30), **overrides)
    return write_mammogram(folder / f"{ds.SOPInstanceUID}.dcm", ds, transfer_syntax)


def _data_set_start(data: bytes) -> int:
    """Offset of the data set after the file meta group."""
    (meta_length,) = struct.unpack_from("<L", data, 132 + 8)
    return 132 + 12 + meta_length


def _rewrite(path: Path, change: Callable[[bytes, int], bytes]) -> Path:
    data = path.read_bytes()
    path.write_bytes(change(data, _data_set_start(data)))
    return path


def _splice(extra: Callable[[random.Random], bytes],
            transfer_syntax: str = ExplicitVRLittleEndian) -> Callable[[random.Random, Path], Path]:
    """Insert ``extra(rng)`` before Patient ID."""
    def make(rng: random.Random, folder: Path) -> Path:
        def change(data: bytes, _: int) -> bytes:
            at = data.index(PATIENT_ID)
            return data[:at] + extra(rng) + data[at:]
        return _rewrite(_base(rng, folder, transfer_syntax), change)
    return make


def _replace(old: bytes, new: Callable[[random.Random], bytes], **overrides: object
             ) -> Callable[[random.Random, Path], Path]:
    def make(rng: random.Random, folder: Path) -> Path:
        return _rewrite(_base(rng, folder, **overrides),
                        lambda data, _: data.replace(old, new(rng), 1))
    return make


def _text_element(tag: bytes, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b" "
    return tag + vr + struct.pack("<H", len(value)) + value


def _overrides(**values: object) -> Callable[[random.Random, Path], Path]:
    return lambda rng, folder: _base(rng, folder, **values)


def _flip_header(rng: random.Random, folder: Path, transfer_syntax: str) -> Path:
    def change(data: bytes, start: int) -> bytes:
        end = data.index(PIXEL_DATA, start)
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(start, end)] = rng.randrange(256)
        return bytes(out)
    return _rewrite(_base(rng, folder, transfer_syntax), change)


def _flip_pixels(rng: random.Random, folder: Path) -> Path:
    def change(data: bytes, _: int) -> bytes:
        out = bytearray(data)
        for _ in range(rng.randint(1, 32)):
            out[rng.randrange(len(out) - 256, len(out))] = rng.randrange(256)
        return bytes(out)
    return _rewrite(_base(rng, folder), change)


def _truncate(rng: random.Random, folder: Path, in_pixels: bool) -> Path:
    def change(data: bytes, start: int) -> bytes:
        pixels = data.index(PIXEL_DATA, start)
        cut = rng.randrange(pixels + 12, len(data)) if in_pixels else \
            rng.randrange(start + 1, pixels)
        return data[:cut]
    return _rewrite(_base(rng, folder), change)


# Short-form elements every base mammogram has at the top level: (group, element).
_KNOWN = [(0x0008, 0x0060), (0x0008, 0x0070), (0x0008, 0x0020), (0x0010, 0x0020),
          (0x0010, 0x0040), (0x0018, 0x5101), (0x0020, 0x0013), (0x0020, 0x0062),
          (0x0028, 0x0010), (0x0028, 0x0011), (0x0008, 0x1030), (0x0020, 0x0010)]


def _element_offsets(data: bytes, start: int) -> list[int]:
    """Where the elements of ``_KNOWN`` start (each found with its tag and VR)."""
    end = data.index(PIXEL_DATA, start)
    found = []
    for group, element in _KNOWN:
        at = data.find(struct.pack("<HH", group, element), start, end)
        while at != -1 and (at - start) % 2:
            at = data.find(struct.pack("<HH", group, element), at + 1, end)
        if at != -1 and data[at + 4:at + 6].isalpha():
            found.append(at)
    return found


def _element_lengths(rng: random.Random, folder: Path, length: Callable[[random.Random], int]
                     ) -> Path:
    """One short-form element's 2-byte length replaced, or a long-form one's 4 bytes."""
    def change(data: bytes, start: int) -> bytes:
        at = rng.choice(_element_offsets(data, start)) + 6
        value = length(rng) & 0xFFFF
        return data[:at] + struct.pack("<H", value) + data[at + 2:]
    return _rewrite(_base(rng, folder), change)


def _vr(rng: random.Random, folder: Path, valid: bool) -> Path:
    vrs = [b"AE", b"AS", b"CS", b"DA", b"DS", b"IS", b"LO", b"PN", b"SH", b"TM", b"UI", b"US"]

    def change(data: bytes, start: int) -> bytes:
        at = rng.choice(_element_offsets(data, start)) + 4
        vr = rng.choice(vrs) if valid else bytes(rng.choice(b"QWXZ") for _ in range(2))
        return data[:at] + vr + data[at + 2:]
    return _rewrite(_base(rng, folder), change)


def _nested(depth: int) -> bytes:
    opening = b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff"
    closing = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    return opening * depth + closing * depth


def _deflated(rng: random.Random, folder: Path, corrupt: bool) -> Path:
    if corrupt:
        path = _base(rng, folder, DeflatedExplicitVRLittleEndian)

        def change(data: bytes, start: int) -> bytes:
            out = bytearray(data)
            for _ in range(rng.randint(4, 16)):
                out[rng.randrange(start, len(out))] = rng.randrange(256)
            return bytes(out)
        return _rewrite(path, change)
    side = rng.choice([6144, 7168])  # 72 or 96 MiB of zeros in about 100 KB
    ds = make_mammogram(rows=8, cols=8, Rows=side, Columns=side, PixelData=bytes(2 * side * side))
    return write_mammogram(folder / f"{ds.SOPInstanceUID}.dcm", ds, DeflatedExplicitVRLittleEndian)


def _encapsulated(rng: random.Random, folder: Path, damage: str) -> Path:
    def change(data: bytes, start: int) -> bytes:
        pixels = data.index(PIXEL_DATA, start)
        if damage == "cut":
            return data[:rng.randrange(pixels + 24, len(data) - 8)]
        if damage == "no_delimiter":
            return data[:-8]
        item = data.index(b"\xfe\xff\x00\xe0", pixels + 12)  # the first fragment
        return data[:item] + b"\xfe\xff\x99\xe0" + data[item + 4:]
    return _rewrite(_base(rng, folder, RLELossless), change)


def _claims_compressed(rng: random.Random, folder: Path) -> Path:
    """Native pixels under a meta that names RLE Lossless."""
    path = _base(rng, folder)
    data = path.read_bytes()
    old, new = b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.5\x00"
    path.write_bytes(data.replace(old, new, 1))
    return path


def _garbage(rng: random.Random, folder: Path) -> Path:
    return _rewrite(_base(rng, folder), lambda data, start: data[:start] + rng.randbytes(
        rng.randint(0, 4096)))


def _uid_mismatch(rng: random.Random, folder: Path) -> Path:
    path = _base(rng, folder)
    data = path.read_bytes()
    start = _data_set_start(data)
    uid = data[start:].split(b"\x08\x00\x18\x00UI", 1)[1][2:]
    length = struct.unpack_from("<H", data, data.index(b"\x08\x00\x18\x00UI", start) + 6)[0]
    old = uid[:length]
    changed = old[:-2] + (b"99" if old[-2:] != b"99" else b"98")
    return path.write_bytes(data[:start] + data[start:].replace(old, changed, 1)) and path


def _un_sequence(rng: random.Random) -> bytes:
    """A private sequence sent as UN of undefined length: its items in implicit VR."""
    item = b"\x09\x00\x10\x10" + struct.pack("<L", 4) + b"SITE"
    return (b"\x09\x00\x10\x00LO\x04\x00ACME" + b"\x09\x00\x11\x10UN\x00\x00\xff\xff\xff\xff"
            + b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + item + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
            + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")


CASES: list[DicomCase] = [
    DicomCase("valid", frozenset({SUCCESS}), lambda rng, folder: _base(rng, folder)),
    DicomCase("valid_implicit_vr", frozenset({SUCCESS}),
              lambda rng, folder: _base(rng, folder, ImplicitVRLittleEndian)),
    DicomCase("header_byte_flips", ANY_HONEST,
              lambda rng, folder: _flip_header(rng, folder, ExplicitVRLittleEndian)),
    DicomCase("header_byte_flips_implicit", ANY_HONEST,
              lambda rng, folder: _flip_header(rng, folder, ImplicitVRLittleEndian)),
    DicomCase("pixel_byte_flips", frozenset({SUCCESS}), _flip_pixels),
    DicomCase("truncated_header", frozenset({MISMATCH, UNREADABLE}),
              lambda rng, folder: _truncate(rng, folder, in_pixels=False)),
    DicomCase("truncated_pixels", frozenset({UNREADABLE}),
              lambda rng, folder: _truncate(rng, folder, in_pixels=True)),
    DicomCase("element_length_huge", ANY_HONEST,
              lambda rng, folder: _element_lengths(rng, folder,
                                                   lambda r: r.randint(0x8000, 0xFFFF))),
    DicomCase("element_length_odd", ANY_HONEST,
              lambda rng, folder: _element_lengths(rng, folder, lambda r: r.randrange(1, 64, 2))),
    DicomCase("element_length_zero", ANY_HONEST,
              lambda rng, folder: _element_lengths(rng, folder, lambda r: 0)),
    DicomCase("unknown_vr", frozenset({UNREADABLE}),
              lambda rng, folder: _vr(rng, folder, valid=False)),
    DicomCase("swapped_vr", ANY_HONEST, lambda rng, folder: _vr(rng, folder, valid=True)),
    DicomCase("is_overflow", frozenset({UNREADABLE}),
              _replace(b"IS\x02\x001 ", lambda r: r.choice([b"IS\x06\x001e999 ",
                                                             b"IS\x0c\x00999999999999",
                                                             b"IS\x04\x00-inf"]))),
    DicomCase("ds_not_finite", frozenset({UNREADABLE}),
              _splice(lambda r: _text_element(b"\x18\x00\x50\x00", b"DS",
                                              r.choice([b"nan\\nan", b"inf\\1", b"1e999\\1"])))),
    DicomCase("nul_in_text", frozenset({UNREADABLE}),
              _replace(b"\x10\x00\x20\x00LO\x02\x00P1",
                       lambda r: r.choice([b"\x10\x00\x20\x00LO\x02\x00\x00P",
                                           b"\x10\x00\x20\x00LO\x04\x00P\x00Q "]))),
    DicomCase("overlong_text", frozenset({SUCCESS, UNREADABLE}),
              _replace(b"\x10\x00\x20\x00LO\x02\x00P1",
                       lambda r: _text_element(b"\x10\x00\x20\x00", b"LO",
                                               b"P" * r.choice([65, 200, 4000])))),
    DicomCase("missing_study_uid", frozenset({MISMATCH}), _overrides(StudyInstanceUID=None)),
    DicomCase("missing_series_uid", frozenset({MISMATCH}), _overrides(SeriesInstanceUID=None)),
    DicomCase("malformed_uid", frozenset({MISMATCH}),
              lambda rng, folder: _base(rng, folder, StudyInstanceUID=rng.choice(
                  ["1.2.abc", "01.2.3", "1..2", "1.2.3." + "9" * 70]))),
    DicomCase("sop_uid_differs_from_request", frozenset({MISMATCH}), _uid_mismatch),
    DicomCase("nested_past_limit", frozenset({UNREADABLE}),
              _splice(lambda r: _nested(r.choice([33, 100, 1000])))),
    DicomCase("nested_within_limit", frozenset({SUCCESS}), _splice(lambda r: _nested(8))),
    DicomCase("elements_past_limit", frozenset({UNREADABLE}),
              _splice(lambda r: b"\x09\x00\x10\x10LO\x00\x00" * r.choice([50_001, 120_000]))),
    DicomCase("header_values_past_limit", frozenset({UNREADABLE}),
              _splice(lambda r: b"\x09\x00\x10\x10OB\x00\x00" + struct.pack("<L", 33 << 20)
                      + bytes(33 << 20))),
    DicomCase("un_sequence_of_unknown_vr", frozenset({SUCCESS}), _splice(_un_sequence)),
    DicomCase("deflate_bomb", frozenset({UNREADABLE}),
              lambda rng, folder: _deflated(rng, folder, corrupt=False)),
    DicomCase("deflate_corrupt", ANY_HONEST,
              lambda rng, folder: _deflated(rng, folder, corrupt=True)),
    DicomCase("encapsulated_cut", frozenset({UNREADABLE}),
              lambda rng, folder: _encapsulated(rng, folder, "cut")),
    DicomCase("encapsulated_no_delimiter", frozenset({UNREADABLE}),
              lambda rng, folder: _encapsulated(rng, folder, "no_delimiter")),
    DicomCase("encapsulated_bad_item", frozenset({UNREADABLE}),
              lambda rng, folder: _encapsulated(rng, folder, "bad_item")),
    DicomCase("native_under_compressed_meta", frozenset({UNREADABLE}), _claims_compressed),
    DicomCase("random_data_set", frozenset({MISMATCH, UNREADABLE}), _garbage),
    DicomCase("no_pixel_data", frozenset({SUCCESS, UNREADABLE}), _overrides(PixelData=None)),
    DicomCase("invalid_dates", frozenset({SUCCESS, UNREADABLE}),
              lambda rng, folder: _base(rng, folder, StudyDate=rng.choice(
                  ["20261399", "2026", "ABCDEFGH", ""]), StudyTime="99")),
    DicomCase("wrong_character_set", frozenset({SUCCESS, UNREADABLE}),
              lambda rng, folder: _base(rng, folder, SpecificCharacterSet=rng.choice(
                  ["ISO_IR 999", "GB18030", "\\ISO 2022 IR 87"]),
                  PatientName="Test^\u00e9\u00e8")),
    DicomCase("private_block", frozenset({SUCCESS}),
              _splice(lambda r: b"\x09\x00\x10\x00LO\x04\x00ACME"
                      + b"\x09\x00\x10\x10OB\x00\x00" + struct.pack("<L", 64)
                      + r.randbytes(64))),
]
