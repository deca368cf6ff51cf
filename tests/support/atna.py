"""DICOM audit messages (PS3.15 A.5) checked against the standard's schema, with lxml.

``valid_audit_message`` validates one message against tests/atna/dicom-audit-message.rng
(the DICOM Audit Message Schema of PS3.15 A.5.1.1 in RELAX NG XML syntax) and fails
naming every line and problem lxml reports.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lxml import etree

SCHEMA = Path(__file__).resolve().parents[1] / "atna" / "dicom-audit-message.rng"


@cache
def audit_schema() -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(SCHEMA)))


def schema_errors(message: bytes) -> list[str]:
    """What the DICOM audit schema finds wrong with ``message`` (empty when it is valid)."""
    schema = audit_schema()
    if schema.validate(etree.fromstring(message)):
        return []
    return [f"line {error.line}: {error.message}" for error in schema.error_log]


def valid_audit_message(message: bytes) -> bytes:
    """``message``, after asserting that it validates against the DICOM audit schema."""
    errors = schema_errors(message)
    assert errors == [], "\n".join([*errors, message.decode("utf-8", "replace")])
    return message
