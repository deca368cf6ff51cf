"""Deflated data sets (Deflated Explicit VR Little Endian) inflated in a stream, with limits.

pydicom inflates a deflated data set whole in memory: a few hundred kilobytes can
inflate to gigabytes (a deflate bomb). The receiver instead inflates the stream in
chunks into a sibling file that carries the same file meta information with Explicit
VR Little Endian, so the copy parses like any other received file, and stops once the
output passes ``MAX_INFLATED_BYTES``, or ``MAX_INFLATE_RATIO`` times the input read so
far beyond ``RATIO_CHECKED_FROM`` bytes: a mammogram inflates a few times, a bomb a
thousand. Memory stays at one chunk whatever the stream holds.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

CHUNK = 1 << 20
MAX_INFLATED_BYTES = 4 << 30
MAX_INFLATE_RATIO = 200
RATIO_CHECKED_FROM = 64 << 20
_PREAMBLE = 128 + 4  # preamble and "DICM"
_META_LENGTH_ELEMENT = 12  # (0002,0000) UL: tag, VR, length, value


class InflateRefused(ValueError):
    """The deflated stream is corrupt, or inflates beyond the limits."""


def inflated_copy(path: Path) -> Path:
    """Inflate the data set of the deflated Part 10 file at ``path`` into a sibling file
    (``<name>.inflated``) with the same file meta, transfer syntax Explicit VR Little
    Endian; the caller removes it. Raises ``InflateRefused``; nothing is left then."""
    copy = path.with_name(path.name + ".inflated")
    try:
        with path.open("rb") as source, copy.open("wb") as target:
            target.write(_meta_as_explicit(source))
            _inflate(source, target)
    except BaseException:
        copy.unlink(missing_ok=True)
        raise
    return copy


def _meta_as_explicit(source) -> bytes:  # type: ignore[no-untyped-def]
    """The preamble and file meta group of ``source`` with the transfer syntax changed to
    Explicit VR Little Endian (the group length adjusted); ``source`` is left at the
    deflated data set."""
    head = source.read(_PREAMBLE + _META_LENGTH_ELEMENT)
    if len(head) < _PREAMBLE + _META_LENGTH_ELEMENT or head[128:132] != b"DICM" or \
            head[132:136] != b"\x02\x00\x00\x00":
        raise InflateRefused("no file meta group length (0002,0000)")
    (length,) = struct.unpack_from("<L", head, _PREAMBLE + 8)
    meta = source.read(length)
    if len(meta) < length:
        raise InflateRefused("file meta information truncated")
    element = _uid_element(DeflatedExplicitVRLittleEndian)
    if element not in meta:
        raise InflateRefused("file meta does not name the deflated transfer syntax")
    meta = meta.replace(element, _uid_element(ExplicitVRLittleEndian))
    return head[:_PREAMBLE + 8] + struct.pack("<L", len(meta)) + meta


def _uid_element(uid: str) -> bytes:
    """Transfer Syntax UID (0002,0010) as written in explicit VR little endian."""
    value = uid.encode("ascii")
    value += b"\x00" * (len(value) % 2)
    return b"\x02\x00\x10\x00UI" + struct.pack("<H", len(value)) + value


def _inflate(source, target) -> None:  # type: ignore[no-untyped-def]
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate (PS3.5 A.5)
    read = written = 0
    pending = b""
    while True:
        if not pending:
            if inflater.eof:
                return
            pending = source.read(CHUNK)
            read += len(pending)
            if not pending:
                target.write(inflater.flush())
                return
        try:
            out = inflater.decompress(pending, CHUNK)
        except zlib.error as exc:
            raise InflateRefused(f"deflated data set is corrupt: {exc}") from exc
        pending = inflater.unconsumed_tail
        written += len(out)
        if written > MAX_INFLATED_BYTES or (
                written > RATIO_CHECKED_FROM and written > MAX_INFLATE_RATIO * read):
            raise InflateRefused(
                f"deflated data set inflates beyond {written} bytes from {read} "
                f"(limits: {MAX_INFLATED_BYTES} bytes, ratio {MAX_INFLATE_RATIO})")
        target.write(out)
