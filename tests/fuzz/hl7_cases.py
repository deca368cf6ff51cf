"""Mutated order messages for the HL7 listener, by class, each with the ACKs that are an
honest answer to it (README, orders: ACKs).

An ACK is written ``<MSA-1>`` or ``<MSA-1> <code>`` (HL7 table 0357); a message that
gets no ACK is ``none``. ``AR 207`` ("database unavailable, send again") is never an
honest answer to content: the RIS would resend it forever.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.hl7_client import order_message

MutateFn = Callable[[random.Random, str], bytes]  # (rng, unique control id) -> payload
CONTENT_ERRORS = frozenset({"AE 100", "AE 101", "AE 102", "AE 103"})
ANY_CONTENT = frozenset({"AA"}) | CONTENT_ERRORS | {"AR 200", "AR 201", "AR 202", "AR 203"}


@dataclass(frozen=True)
class Hl7Case:
    name: str
    allowed: frozenset[str]
    make: MutateFn


def _order(rng: random.Random, control_id: str, **fields: object) -> str:
    number = f"{control_id}-{rng.randrange(10**6)}"
    return order_message(control_id, placer=f"PL{number}", accession=f"A{number}",
                         patient_id=f"P{rng.randrange(1000)}", **fields)  # type: ignore[arg-type]


def _text(**fields: object) -> MutateFn:
    return lambda rng, cid: _order(rng, cid, **fields).encode()


def _byte_flips(rng: random.Random, cid: str) -> bytes:
    data = bytearray(_order(rng, cid).encode())
    for _ in range(rng.randint(1, 16)):
        data[rng.randrange(len(data))] = rng.randrange(1, 256)
    return bytes(data).replace(b"\x1c", b"?").replace(b"\x0b", b"?")


def _cut(rng: random.Random, cid: str) -> bytes:
    data = _order(rng, cid).encode()
    return data[:rng.randrange(1, len(data))]


def _field(rng: random.Random, cid: str, value: Callable[[random.Random], str]) -> bytes:
    """One field of a segment after MSH replaced by ``value``."""
    segments = _order(rng, cid).split("\r")
    index = rng.randrange(1, len([s for s in segments if s]))
    fields = segments[index].split("|")
    fields[rng.randrange(1, len(fields))] = value(rng)
    segments[index] = "|".join(fields)
    return "\r".join(segments).encode()


def _msh_field(number: int, value: Callable[[random.Random], str]) -> MutateFn:
    def make(rng: random.Random, cid: str) -> bytes:
        segments = _order(rng, cid).split("\r")
        fields = segments[0].split("|")
        fields[number - 1] = value(rng)  # MSH-1 is the separator itself
        segments[0] = "|".join(fields)
        return "\r".join(segments).encode()
    return make


def _drop_segment(rng: random.Random, cid: str) -> bytes:
    segments = [s for s in _order(rng, cid).split("\r") if s]
    victim = rng.choice([s for s in segments if s[:3] in ("PID", "ORC", "OBR")])
    return "\r".join(s for s in segments if s != victim).encode() + b"\r"


def _shuffle(rng: random.Random, cid: str) -> bytes:
    segments = [s for s in _order(rng, cid).split("\r") if s]
    rest = segments[1:]
    rng.shuffle(rest)
    return "\r".join([segments[0], *rest]).encode() + b"\r"


def _nul(rng: random.Random, cid: str) -> bytes:
    data = bytearray(_order(rng, cid).encode())
    at = rng.randrange(data.index(b"\rPID") + 1, len(data))
    data[at:at] = b"\x00"
    return bytes(data)


def _invalid_utf8(rng: random.Random, cid: str) -> bytes:
    text = _order(rng, cid, charset="UNICODE UTF-8", clinical="PLACEHOLDER")
    return text.encode().replace(b"PLACEHOLDER", rng.choice([b"\xff\xfe", b"\xc3\x28",
                                                              b"\xed\xa0\x80"]))


def _garbage(rng: random.Random, cid: str) -> bytes:
    return bytes(rng.choice(b"ABCDEFGHIJ|^~\\&\r0123456789") for _ in range(rng.randint(0, 400)))


def _huge(rng: random.Random, cid: str) -> bytes:
    return _order(rng, cid, clinical="X" * rng.randint(1_100_000, 1_500_000)).encode()


def _duplicate_id(rng: random.Random, cid: str) -> bytes:
    return _order(rng, "FUZZ-FIXED-ID", clinical=f"history {rng.random()}").encode()


CASES: list[Hl7Case] = [
    Hl7Case("valid_orm", frozenset({"AA"}), _text()),
    Hl7Case("valid_omi", frozenset({"AA"}), _text(message_type="OMI^O23", version="2.5.1")),
    Hl7Case("byte_flips", ANY_CONTENT, _byte_flips),
    Hl7Case("cut_short", ANY_CONTENT, _cut),
    Hl7Case("field_overlong", ANY_CONTENT,
            lambda rng, cid: _field(rng, cid, lambda r: "Z" * r.choice([65, 250, 5000, 60000]))),
    Hl7Case("field_with_escapes", ANY_CONTENT,
            lambda rng, cid: _field(rng, cid, lambda r: r.choice(
                ["\\X00\\", "\\", "\\F", "\\H\\bold\\N\\", "\\Xzz\\", "\\.br\\"]))),
    Hl7Case("msh10_overlong", frozenset({"AE 102"}),
            _msh_field(10, lambda r: "C" * r.randint(200, 400))),
    Hl7Case("msh3_overlong", frozenset({"AE 102"}),
            _msh_field(3, lambda r: "S" * r.randint(181, 400))),
    Hl7Case("msh10_missing", frozenset({"AE 101", "AE 100"}), _msh_field(10, lambda r: "")),
    Hl7Case("unknown_message_type", frozenset({"AR 200", "AR 201"}),
            _msh_field(9, lambda r: r.choice(["ADT^A01", "ORU^R01", "ORM^O99", "QRY^Q01"]))),
    Hl7Case("unsupported_version", frozenset({"AR 203"}),
            _msh_field(12, lambda r: r.choice(["2.1", "2.9", "3.0", "X"]))),
    Hl7Case("processing_id_not_served", frozenset({"AR 202"}),
            _msh_field(11, lambda r: r.choice(["T", "D"]))),
    Hl7Case("unknown_character_set", frozenset({"AE 103"}),
            _msh_field(18, lambda r: r.choice(["KLINGON", "ISO IR 9999"]))),
    Hl7Case("invalid_utf8", frozenset({"AE 102"}), _invalid_utf8),
    Hl7Case("nul_byte", ANY_CONTENT, _nul),
    Hl7Case("segment_missing", frozenset({"AE 100", "AE 101"}), _drop_segment),
    Hl7Case("segments_shuffled", ANY_CONTENT, _shuffle),
    Hl7Case("unknown_order_control", frozenset({"AE 103"}),
            _text(control=random.Random(0).choice(["ZZ", "Q1"]))),
    Hl7Case("garbage", CONTENT_ERRORS, _garbage),
    Hl7Case("over_max_message_bytes", frozenset({"AE 207"}), _huge),
    Hl7Case("same_control_id_other_content", frozenset({"AA", "AE 205"}), _duplicate_id),
]
