"""Limits on a received data set's structure, checked before pydicom builds it.

pydicom reads every element before the pixel data into memory and recurses into each
sequence: a data set of millions of tiny elements, sequences nested thousands deep,
or hundreds of megabytes of values before the pixel data would cost the node memory
and time out of all proportion to a mammogram (a few hundred elements, a few levels
of nesting, tens of kilobytes). ``check_structure`` walks the element headers (tag,
VR, length) of the file, seeking over the values, and refuses the object with
``UnreadableDataset`` (0xC000) as soon as it goes past one of:

- ``MAX_ELEMENTS`` elements and sequence items in all;
- ``MAX_DEPTH`` levels of nested sequences;
- ``MAX_HEADER_BYTES`` of values before the pixel data;

and where an explicit VR is not one of PS3.5's.

The walk follows PS3.5 7.1 (element encodings), 7.5 (sequences and items, of defined
or undefined length) and 6.2.2 (an undefined-length UN holds a sequence in implicit
VR little endian). It reads explicit and implicit VR little endian; the file meta
group is always explicit. Big endian is refused at negotiation.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from pydicom.datadict import dictionary_VR
from pydicom.uid import ImplicitVRLittleEndian
from pydicom.valuerep import VR

from mmbcd_node.receive.errors import UnreadableDataset

MAX_ELEMENTS = 50_000
MAX_DEPTH = 32
MAX_HEADER_BYTES = 32 << 20

_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_TRANSFER_SYNTAX = 0x00020010
# Explicit VRs with a reserved field and a 4-byte length (PS3.5 table 7.1-1).
_VRS = frozenset(vr.value.encode() for vr in VR if len(vr.value) == 2)
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})


def check_structure(fp: BinaryIO) -> None:
    """Walk the file open in ``fp`` (from its start) up to its top-level pixel element;
    raise ``UnreadableDataset`` past a limit or where the structure breaks off. The
    position of ``fp`` afterwards is undefined."""
    _Walk(fp).file()


class _Walk:
    def __init__(self, fp: BinaryIO) -> None:
        self.fp = fp
        self.elements = 0
        self.value_bytes = 0

    def file(self) -> None:
        self.fp.seek(128)
        if self.fp.read(4) != b"DICM":
            self.fp.seek(0)  # no preamble: the data set (or meta group) starts at once
        implicit = self._meta() == ImplicitVRLittleEndian
        self._data_set(end=None, depth=0, implicit=implicit)

    def _meta(self) -> str:
        """Walk the file meta group (explicit VR); return its Transfer Syntax UID."""
        transfer_syntax = ""
        while True:
            start = self.fp.tell()
            tag = self._tag()
            if tag is None or tag >> 16 != 0x0002:
                self.fp.seek(start)
                return transfer_syntax
            _, length = self._explicit_header()
            self._count()
            if tag == _TRANSFER_SYNTAX and length < 256:
                transfer_syntax = self.fp.read(length).decode("ascii", "replace").strip("\0 ")
            else:
                self._skip(length)

    def _data_set(self, end: int | None, depth: int, implicit: bool) -> None:
        """Walk elements until ``end``, an item delimiter (an item of undefined length),
        the end of the file or, at the top level, the pixel element."""
        while end is None or self.fp.tell() < end:
            tag = self._tag()
            if tag is None:
                if depth == 0:
                    return
                raise UnreadableDataset("data set ends inside a sequence item")
            if depth == 0 and tag in _PIXEL_TAGS:
                return
            if tag == _ITEM_END:
                self._uint32()
                return
            self._count()
            if implicit:
                length = self._uint32()
                vr = _implicit_vr(tag, length)
            else:
                vr, length = self._explicit_header()
                if vr not in _VRS:
                    raise UnreadableDataset(f"element ({_tag_text(tag)}) has an unknown VR "
                                            f"{vr!r}")
            if vr == b"SQ" or (vr == b"UN" and length == _UNDEFINED):
                # An undefined-length UN is a sequence in implicit VR (PS3.5 6.2.2).
                self._sequence(tag, length, depth + 1, implicit or vr == b"UN")
            elif length == _UNDEFINED:
                self._fragments(tag)  # encapsulated values: items up to a delimiter
            else:
                self._value(length)

    def _sequence(self, tag: int, length: int, depth: int, implicit: bool) -> None:
        if depth > MAX_DEPTH:
            raise UnreadableDataset(f"sequences nested deeper than {MAX_DEPTH} levels at "
                                    f"({_tag_text(tag)})")
        end = None if length == _UNDEFINED else self.fp.tell() + length
        while end is None or self.fp.tell() < end:
            item = self._tag()
            if item is None:
                raise UnreadableDataset(f"sequence ({_tag_text(tag)}) is truncated")
            item_length = self._uint32()
            if item == _SEQUENCE_END:
                return
            if item != _ITEM:
                raise UnreadableDataset(f"sequence ({_tag_text(tag)}) holds "
                                        f"({_tag_text(item)}) where an item belongs")
            self._count()
            item_end = None if item_length == _UNDEFINED else self.fp.tell() + item_length
            self._data_set(item_end, depth, implicit)
            if item_end is not None:
                self.fp.seek(item_end)

    def _fragments(self, tag: int) -> None:
        """An undefined-length value that is not a sequence: items read into memory by
        pydicom, up to the sequence delimiter."""
        while True:
            item = self._tag()
            if item is None:
                raise UnreadableDataset(f"element ({_tag_text(tag)}) is truncated")
            length = self._uint32()
            if item == _SEQUENCE_END:
                return
            if item != _ITEM or length == _UNDEFINED:
                raise UnreadableDataset(f"element ({_tag_text(tag)}) of undefined length "
                                        f"holds ({_tag_text(item)})")
            self._count()
            self._value(length)

    def _value(self, length: int) -> None:
        self.value_bytes += length
        if self.value_bytes > MAX_HEADER_BYTES:
            raise UnreadableDataset(f"more than {MAX_HEADER_BYTES >> 20} MiB of values before "
                                    "the pixel data")
        self._skip(length)

    def _count(self) -> None:
        self.elements += 1
        if self.elements > MAX_ELEMENTS:
            raise UnreadableDataset(f"more than {MAX_ELEMENTS} elements and items")

    def _tag(self) -> int | None:
        raw = self.fp.read(4)
        if not raw:
            return None
        if len(raw) < 4:
            raise UnreadableDataset("data set ends inside an element tag")
        group, element = struct.unpack("<HH", raw)
        return int(group << 16 | element)

    def _explicit_header(self) -> tuple[bytes, int]:
        vr = self.fp.read(2)
        if vr in _LONG_VRS:
            self.fp.read(2)
            return vr, self._uint32()
        raw = self.fp.read(2)
        if len(raw) < 2:
            raise UnreadableDataset("data set ends inside an element header")
        return vr, int(struct.unpack("<H", raw)[0])

    def _uint32(self) -> int:
        raw = self.fp.read(4)
        if len(raw) < 4:
            raise UnreadableDataset("data set ends inside an element header")
        return int(struct.unpack("<L", raw)[0])

    def _skip(self, length: int) -> None:
        self.fp.seek(length, 1)


def _implicit_vr(tag: int, length: int) -> bytes:
    """The VR of an implicit-VR element: the dictionary's, or for an element it does not
    know (private ones), SQ when its length is undefined (PS3.5 7.5.1)."""
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return b"SQ" if length == _UNDEFINED else b"UN"
    return b"SQ" if vr == "SQ" or (length == _UNDEFINED and "OB" not in vr) else \
        vr[:2].encode()


def _tag_text(tag: int) -> str:
    return f"{tag >> 16:04X},{tag & 0xFFFF:04X}"
