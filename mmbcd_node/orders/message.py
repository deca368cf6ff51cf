"""Reading one HL7 v2 order message: header, character set, structure, field values.

``peek_header`` reads what it can of MSH from any bytes (so even a rejected message
gets an acknowledgement that names it); ``parse_order_message`` checks the message
the way an order interface must and parses it with hl7apy at its tolerant level
(the strict level rejects valid ORM^O01 messages that lack an RQD group).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

from mmbcd_node.db.order_models import Hl7Message
from mmbcd_node.orders.errors import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE_ERROR,
    TABLE_VALUE_NOT_FOUND,
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    UNSUPPORTED_PROCESSING_ID,
    UNSUPPORTED_VERSION_ID,
    ErrorLocation,
    content_error,
    not_supported,
)
from mmbcd_node.orders.field_limits import check_fits
from mmbcd_node.orders.text import codec_for, reencode, unescape

# Message type -> (trigger event, versions accepted).
SUPPORTED_MESSAGES: dict[str, tuple[str, frozenset[str]]] = {
    "ORM": ("O01", frozenset({"2.3", "2.3.1", "2.4", "2.5", "2.5.1"})),
    "OMI": ("O23", frozenset({"2.5", "2.5.1"})),
}
CODED_TYPES = frozenset({"CE", "CWE", "CNE"})
_SEGMENT = re.compile(r"[A-Z][A-Z0-9]{2}(\|.*)?", re.DOTALL)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FIELD_PATH = re.compile(r"([A-Z][A-Z0-9]{2})-(\d+)(?:\.(\d+))?(?:\.(\d+))?")


@dataclass(frozen=True)
class MessageHeader:
    """The MSH fields the node needs, as raw (still escaped) text."""

    fields: tuple[str, ...]  # fields[n] is MSH-n; fields[0] is "MSH"

    def get(self, number: int, component: int = 1) -> str:
        if number >= len(self.fields):
            return ""
        if number <= 2:
            return self.fields[number]
        value = self.fields[number].split("~")[0]
        parts = value.split("^")
        return parts[component - 1] if component <= len(parts) else ""

    @property
    def separators(self) -> str:
        return self.fields[1] + self.fields[2][:4]

    @property
    def sending_application(self) -> str:
        return self.fields[3] if len(self.fields) > 3 else ""

    @property
    def sending_facility(self) -> str:
        return self.fields[4] if len(self.fields) > 4 else ""

    @property
    def control_id(self) -> str:
        return self.get(10)

    @property
    def message_type(self) -> str:
        return self.get(9, 1)

    @property
    def trigger(self) -> str:
        return self.get(9, 2)

    @property
    def version(self) -> str:
        return self.get(12, 1)

    @property
    def charset(self) -> str:
        return self.get(18, 1)

    @property
    def key(self) -> str:
        """MSH-3 + MSH-4 + MSH-10, the key resent messages are recognised by."""
        return "|".join((self.sending_application, self.sending_facility, self.control_id))


def peek_header(raw: bytes) -> MessageHeader | None:
    """The MSH segment of ``raw`` as well as it can be read; None if there is none."""
    raw = raw.lstrip(b"\r\n")  # some senders put a line break before MSH
    if len(raw) < 8 or not raw.startswith(b"MSH"):
        return None
    first = re.split(rb"[\r\n]", raw, maxsplit=1)[0].decode("latin-1")
    separator = first[3]
    parts = first[4:].split(separator)
    return MessageHeader(("MSH", separator, *parts))


@dataclass(frozen=True)
class FieldPath:
    """``SEG-F[.C[.S]]``: a field, optionally one component and subcomponent of it."""

    segment: str
    field: int
    component: int | None = None
    subcomponent: int | None = None

    @classmethod
    def parse(cls, text: str) -> FieldPath:
        """Read ``"OBR-18"``, ``"PID-3.4.1"``; ``ValueError`` naming the text if malformed."""
        match = _FIELD_PATH.fullmatch(text.strip().upper())
        if not match:
            raise ValueError(f"{text!r} is not an HL7 field path like 'OBR-18' or 'PID-3.4.1'")
        seg, fld, comp, sub = match.groups()
        return cls(seg, int(fld), int(comp) if comp else None, int(sub) if sub else None)

    def __str__(self) -> str:
        text = f"{self.segment}-{self.field}"
        for part in (self.component, self.subcomponent):
            if part is not None:
                text += f".{part}"
        return text


@dataclass(frozen=True)
class Segment:
    """One segment: its raw text (still escaped) and hl7apy's element for datatypes.

    Values are read from the raw text because hl7apy's ``to_er7`` re-escapes escape
    sequences it does not know, which would hide a broken one from the check.
    """

    name: str
    raw: str
    element: Any

    def field(self, number: int) -> str | None:
        """The first repetition of field ``number`` (raw), or None if absent."""
        fields = self.raw.split("|")
        index = number - 1 if self.name == "MSH" else number
        if self.name == "MSH" and number == 1:
            return "|"
        if index >= len(fields):
            return None
        return fields[index]

    def datatype(self, number: int) -> str | None:
        name = f"{self.name}_{number}"
        for child in getattr(self.element, "children", []):
            if child.name == name:
                return getattr(child, "datatype", None)
        return None


@dataclass
class OrderGroup:
    """The segments of one order: ORC, then OBR, NTE, TQ1, IPC, Z-segments ..."""

    index: int
    segments: list[Segment] = field(default_factory=list)


@dataclass
class ParsedMessage:
    """A checked, parsed order message."""

    header: MessageHeader
    text: str
    codec: str
    segments: list[Segment]   # in message order
    groups: list[OrderGroup]  # one per ORC

    def segments_named(self, name: str, group: OrderGroup | None = None) -> list[Segment]:
        """Segments called ``name`` in ``group``; if it has none, the message-level ones.

        Message-level means outside every order group (MSH, PID, PV1, patient notes).
        """
        own = [s for s in (group.segments if group else []) if s.name == name]
        if own:
            return own
        grouped = {id(s) for g in self.groups for s in g.segments}
        return [s for s in self.segments if s.name == name and id(s) not in grouped]

    def value(self, path: FieldPath, group: OrderGroup | None = None) -> str | None:
        """The unescaped text at ``path`` (first segment that has it), or None if empty."""
        for text in self.values(path, group):
            return text
        return None

    def values(self, path: FieldPath, group: OrderGroup | None = None) -> Iterable[str]:
        """Every non-empty value at ``path``, one per matching segment (NTE-3 x n)."""
        for segment in self.segments_named(path.segment, group):
            text = self._field_text(segment, path)
            if text:
                yield text

    def echo(self, segment: Segment, number: int | None = None) -> str | None:
        """``segment`` (or its field ``number``, all repetitions and components) in the
        standard delimiters ``|^~\\&``, to be echoed in a message of ours; None if empty."""
        raw = segment.raw if number is None else segment.field(number)
        if not raw:
            return None
        return reencode(raw, separators=self.header.separators, codec=self.codec,
                        location=ErrorLocation(segment.name, number))

    def _field_text(self, segment: Segment, path: FieldPath) -> str | None:
        raw = segment.field(path.field)
        if not raw:
            return None
        seps = self.header.separators
        components = raw.split(seps[2])[0].split(seps[1])
        if path.component is None:
            if segment.datatype(path.field) in CODED_TYPES and len(components) > 1 \
                    and components[1]:
                chosen = components[1]  # a coded value gives its text, else its code
            else:
                chosen = components[0]
            chosen = chosen.split(seps[4])[0]
        else:
            if path.component > len(components):
                return None
            chosen = components[path.component - 1]
            subs = chosen.split(seps[4])
            index = (path.subcomponent or 1) - 1
            if index >= len(subs):
                return None
            chosen = subs[index]
        if chosen == '""':  # HL7 explicit null
            return None
        location = ErrorLocation(path.segment, path.field, path.component)
        return unescape(chosen, separators=seps, codec=self.codec, location=location).strip() \
            or None


def parse_order_message(raw: bytes, processing_ids: Sequence[str]) -> ParsedMessage:
    """Check and parse ``raw`` (one message, MLLP framing removed).

    Returns the parsed message. Raises ``Hl7Rejection``: AE 100 for no MSH, a bad
    segment or missing PID/ORC/OBR; AE 101 for a missing MSH-9/MSH-10; AE 102 for a
    wrong field separator, bytes outside the declared character set, control characters;
    AE 103 for an unknown MSH-18 character set; AR 200/201/203/202 for a message type,
    trigger, version or processing id this node does not take.
    """
    header = peek_header(raw)
    if header is None:
        raise content_error(SEGMENT_SEQUENCE_ERROR, "message does not begin with an MSH segment",
                            ErrorLocation("MSH"))
    if header.fields[1] != "|":
        raise content_error(DATA_TYPE_ERROR, f"MSH-1 field separator is {header.fields[1]!r}, "
                            "expected '|'", ErrorLocation("MSH", 1))
    encoding = header.fields[2] if len(header.fields) > 2 else ""
    if len(encoding) < 4 or len(set(encoding[:4])) != 4 or "|" in encoding \
            or any(c.isalnum() for c in encoding[:4]):
        raise content_error(DATA_TYPE_ERROR, f"MSH-2 encoding characters {encoding!r} are not "
                            "four distinct delimiters like '^~\\&'", ErrorLocation("MSH", 2))
    _check_header(header, processing_ids)
    for value, column, name, number in (
            (header.sending_application, "sending_application", "MSH-3 sending application", 3),
            (header.sending_facility, "sending_facility", "MSH-4 sending facility", 4),
            (header.control_id, "control_id", "MSH-10 message control id", 10)):
        check_fits(value, Hl7Message, column, name, ErrorLocation("MSH", number))
    codec = codec_for(header.charset)
    if codec is None:
        raise content_error(TABLE_VALUE_NOT_FOUND, f"MSH-18 character set {header.charset!r} "
                            "is not supported (empty, ASCII, 8859/1, 8859/15, UNICODE UTF-8)",
                            ErrorLocation("MSH", 18))
    try:
        text = raw.lstrip(b"\r\n").decode(codec)
    except UnicodeDecodeError as exc:
        raise content_error(DATA_TYPE_ERROR, f"byte 0x{raw[exc.start]:02x} at offset "
                            f"{exc.start} is not {codec} text as MSH-18 "
                            f"({header.charset or 'empty = ASCII'}) declares",
                            ErrorLocation("MSH", 18)) from None
    lines = [line for line in re.split(r"\r\n|\r|\n", text) if line.strip()]
    for number, line in enumerate(lines, start=1):
        if not _SEGMENT.fullmatch(line):
            raise content_error(SEGMENT_SEQUENCE_ERROR, f"segment {number} ({line[:12]!r}) does "
                                "not start with a segment id and the field separator '|'")
        bad = _CONTROL_CHARS.search(line)
        if bad:
            raise content_error(DATA_TYPE_ERROR, f"segment {number} ({line[:3]}) contains the "
                                f"control character 0x{ord(bad.group()):02x}",
                                ErrorLocation(line[:3]))
    try:
        message = parse_message("\r".join(lines), validation_level=VALIDATION_LEVEL.TOLERANT,
                                find_groups=False)
    except HL7apyException as exc:
        raise content_error(SEGMENT_SEQUENCE_ERROR, f"not a readable HL7 message: {exc}") from None
    segments = [Segment(element.name, line, element)
                 for element, line in zip(message.children, lines, strict=True)]
    return ParsedMessage(header=header, text=text, codec=codec, segments=segments,
                        groups=_order_groups(segments))


def _check_header(header: MessageHeader, processing_ids: Sequence[str]) -> None:
    if not header.message_type:
        raise content_error(REQUIRED_FIELD_MISSING, "MSH-9 message type is empty",
                            ErrorLocation("MSH", 9))
    if not header.control_id:
        raise content_error(REQUIRED_FIELD_MISSING, "MSH-10 message control id is empty",
                            ErrorLocation("MSH", 10))
    supported = SUPPORTED_MESSAGES.get(header.message_type)
    if supported is None:
        known = ", ".join(f"{t}^{e}" for t, (e, _) in SUPPORTED_MESSAGES.items())
        raise not_supported(UNSUPPORTED_MESSAGE_TYPE, f"message type {header.message_type} is "
                            f"not supported (only {known})", ErrorLocation("MSH", 9, 1))
    trigger, versions = supported
    if header.trigger != trigger:
        raise not_supported(UNSUPPORTED_EVENT_CODE, f"trigger event {header.message_type}^"
                            f"{header.trigger} is not supported (only {header.message_type}^"
                            f"{trigger})", ErrorLocation("MSH", 9, 2))
    if header.version not in versions:
        raise not_supported(UNSUPPORTED_VERSION_ID, f"version {header.version or '(empty)'} is "
                            f"not supported for {header.message_type}^{trigger} (only "
                            f"{', '.join(sorted(versions))})", ErrorLocation("MSH", 12))
    processing = header.get(11, 1)
    if processing not in processing_ids:
        raise not_supported(UNSUPPORTED_PROCESSING_ID, f"processing id {processing or '(empty)'} "
                            f"is not accepted here (hl7.processing_ids = "
                            f"{list(processing_ids)})", ErrorLocation("MSH", 11))


def _order_groups(segments: list[Segment]) -> list[OrderGroup]:
    names = [s.name for s in segments]
    if "PID" not in names:
        raise content_error(SEGMENT_SEQUENCE_ERROR, "the message has no PID segment",
                            ErrorLocation("PID"))
    groups: list[OrderGroup] = []
    for segment in segments:
        if segment.name == "ORC":
            groups.append(OrderGroup(index=len(groups) + 1))
        if groups and segment.name not in ("MSH", "PID", "PD1", "PV1", "PV2", "IN1", "GT1",
                                           "AL1", "EVN"):
            groups[-1].segments.append(segment)
        elif segment.name == "OBR":
            raise content_error(SEGMENT_SEQUENCE_ERROR, "OBR before any ORC segment",
                                ErrorLocation("OBR"))
    if not groups:
        raise content_error(SEGMENT_SEQUENCE_ERROR, "the message has no ORC segment",
                            ErrorLocation("ORC"))
    for group in groups:
        if not any(s.name == "OBR" for s in group.segments):
            raise content_error(SEGMENT_SEQUENCE_ERROR, f"order {group.index} (ORC) has no OBR "
                                "segment", ErrorLocation("OBR", sequence=group.index))
    return groups
