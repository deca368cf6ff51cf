"""The errors an incoming HL7 message can raise, each carrying its ACK code.

The listener turns every ``Hl7Rejection`` into one acknowledgement: ``AE`` for content
errors (the sender must fix the message), ``AR`` for what this node does not support
and for temporary failures (the sender may retry later). Codes are HL7 Table 0357.
"""

from __future__ import annotations

from dataclasses import dataclass

# HL7 Table 0357, message error condition codes.
SEGMENT_SEQUENCE_ERROR = 100
REQUIRED_FIELD_MISSING = 101
DATA_TYPE_ERROR = 102
TABLE_VALUE_NOT_FOUND = 103
UNSUPPORTED_MESSAGE_TYPE = 200
UNSUPPORTED_EVENT_CODE = 201
UNSUPPORTED_PROCESSING_ID = 202
UNSUPPORTED_VERSION_ID = 203
UNKNOWN_KEY_IDENTIFIER = 204
DUPLICATE_KEY_IDENTIFIER = 205
APPLICATION_RECORD_LOCKED = 206
APPLICATION_INTERNAL_ERROR = 207

CODE_TEXT = {
    SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    UNSUPPORTED_VERSION_ID: "Unsupported version id",
    UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    DUPLICATE_KEY_IDENTIFIER: "Duplicate key identifier",
    APPLICATION_RECORD_LOCKED: "Application record locked",
    APPLICATION_INTERNAL_ERROR: "Application internal error",
}


@dataclass(frozen=True)
class ErrorLocation:
    """Where in the message the error is: segment id, field and component (1-based)."""

    segment: str
    field: int | None = None
    component: int | None = None
    sequence: int = 1

    def __str__(self) -> str:
        text = self.segment
        if self.field is not None:
            text += f"-{self.field}"
            if self.component is not None:
                text += f".{self.component}"
        return text


class Hl7Rejection(Exception):
    """A message this node does not accept; names the field and the ACK to send."""

    def __init__(self, ack_code: str, error_code: int, text: str,
                 location: ErrorLocation | None = None) -> None:
        super().__init__(text)
        self.ack_code = ack_code
        self.error_code = error_code
        self.text = text
        self.location = location


def content_error(error_code: int, text: str,
                  location: ErrorLocation | None = None) -> Hl7Rejection:
    """An ``AE``: the message content is wrong; resending it unchanged will not help."""
    return Hl7Rejection("AE", error_code, text, location)


def not_supported(error_code: int, text: str,
                  location: ErrorLocation | None = None) -> Hl7Rejection:
    """An ``AR``: a message type, version or processing id this node does not take."""
    return Hl7Rejection("AR", error_code, text, location)
