"""HL7 v2.5.1 conformance of the messages the node sends, checked with hl7apy.

``strict_message`` parses at hl7apy's strict level (with groups) and validates:
structure, cardinality (a missing required field such as PID-5) and datatypes are
errors, and so is any value hl7apy finds outside its HL7 table (OBR-24 outside table
0074, OBX-11 outside table 0085, ...). Table 0396 (coding systems) is the exception:
its local ``99zzz`` names and UCUM are valid, but hl7apy's copy of the table lists
neither.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.exceptions import ValidationError
from hl7apy.parser import parse_message

LOCAL_CODES_TABLE = "HL70396"


def strict_message(er7: str) -> Message:
    """The message ``er7`` parsed strictly; AssertionError listing every problem found."""
    message = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.txt"
        with contextlib.suppress(ValidationError):  # every error is in the report
            message.validate(report_file=str(report))
        problems = [line for line in report.read_text().splitlines()
                    if line and LOCAL_CODES_TABLE not in line]
    assert problems == [], "\n".join([*problems, er7.replace("\r", "\n")])
    return message


def segments(er7: str, name: str) -> list[str]:
    """The ER7 text of every ``name`` segment of ``er7``."""
    return [line for line in er7.split("\r") if line.startswith(name + "|")]


def field(segment: str, number: int) -> str:
    """Field ``number`` of an ER7 segment other than MSH (raw, every component)."""
    fields = segment.split("|")
    return fields[number] if number < len(fields) else ""
