"""Which HL7 field feeds which part of an order (``[hl7.mapping]``), and reading orders.

Each target is an ordered list of field paths tried in turn; the first non-empty value
wins. ``history`` is different: every listed field that has text contributes, in the
listed order, and each part keeps the name of the field it came from. A site that
puts the accession in OBR-3 or ORC-3 sets ``accession = ["OBR-3"]`` and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mmbcd_node.config import ConfigError
from mmbcd_node.db.order_models import Order, OrderControl, is_stat
from mmbcd_node.orders.errors import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    ErrorLocation,
    content_error,
)
from mmbcd_node.orders.field_limits import column_length
from mmbcd_node.orders.message import FieldPath, OrderGroup, ParsedMessage

DEFAULT_MAPPING: dict[str, list[str]] = {
    "accession": ["IPC-1", "OBR-18"],
    "accession_issuer": ["IPC-1.2"],
    "study_uid": ["IPC-3", "ZDS-1"],
    "requested_procedure_id": ["IPC-2", "OBR-19"],
    "patient_id": ["PID-3"],
    "patient_id_issuer": ["PID-3.4"],
    "placer_number": ["ORC-2", "OBR-2"],
    "filler_number": ["ORC-3", "OBR-3"],
    "order_status": ["ORC-5"],
    "procedure": ["OBR-4"],
    "reason": ["OBR-31"],
    "priority": ["TQ1-9", "ORC-7.6", "OBR-27.6"],
    "order_date": ["TQ1-7", "ORC-7.4", "OBR-7", "ORC-9", "MSH-7"],
    "history": ["OBR-13", "OBR-31", "NTE-3"],
}
# The Order column each target is kept in: its length is the longest value allowed.
_COLUMNS = {"placer_number": "placer_number", "filler_number": "filler_number",
            "order_status": "status", "accession": "accession_number",
            "accession_issuer": "issuer_of_accession", "study_uid": "study_uid",
            "requested_procedure_id": "requested_procedure_id", "patient_id": "patient_id",
            "patient_id_issuer": "issuer_of_patient_id", "procedure": "procedure",
            "priority": "priority"}
MAX_LENGTH = {target: length for target, column in _COLUMNS.items()
              if (length := column_length(Order, column)) is not None}
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


@dataclass(frozen=True)
class FieldMapping:
    """The resolved ``[hl7.mapping]``: target -> field paths, defaults filled in."""

    paths: dict[str, tuple[FieldPath, ...]]

    @classmethod
    def from_config(cls, mapping: Mapping[str, list[str]]) -> FieldMapping:
        """Merge the configured lists over the defaults; ``ConfigError`` names a bad key."""
        unknown = sorted(set(mapping) - set(DEFAULT_MAPPING))
        if unknown:
            raise ConfigError(f"unknown key hl7.mapping.{unknown[0]} (known: "
                              f"{', '.join(DEFAULT_MAPPING)})")
        merged = {**DEFAULT_MAPPING, **mapping}
        paths: dict[str, tuple[FieldPath, ...]] = {}
        for target, texts in merged.items():
            try:
                paths[target] = tuple(FieldPath.parse(t) for t in texts)
            except ValueError as exc:
                raise ConfigError(f"hl7.mapping.{target}: {exc}") from None
        return cls(paths)

    def first(self, message: ParsedMessage, group: OrderGroup, target: str) -> str | None:
        """The first non-empty value among the target's fields, checked for length."""
        for path in self.paths[target]:
            value = message.value(path, group)
            if value is None:
                continue
            limit = MAX_LENGTH.get(target)
            if limit is not None and len(value) > limit:
                raise content_error(DATA_TYPE_ERROR, f"{path} ({target}) is {len(value)} "
                                    f"characters long, at most {limit} are allowed",
                                    _location(path))
            return value
        return None

    def history(self, message: ParsedMessage, group: OrderGroup) -> list[tuple[str, str]]:
        """(field, text) for every history field with text, in the configured order."""
        return [(str(path), text) for path in self.paths["history"]
                for text in message.values(path, group)]


@dataclass(frozen=True)
class ParsedOrder:
    """One order (ORC group) read from a message through the field mapping."""

    control: OrderControl
    placer_number: str | None
    filler_number: str | None
    status: str | None
    accession: str | None
    accession_issuer: str | None
    study_uid: str | None
    requested_procedure_id: str | None
    patient_id: str
    patient_id_issuer: str | None
    procedure: str | None
    reason: str | None
    priority: str | None
    order_date: str | None
    history_sources: list[tuple[str, str]] = field(default_factory=list)
    # The PID segment and OBR-4 (every component) in the standard delimiters, echoed
    # in the HL7 result.
    patient_identification: str | None = None
    procedure_code: str | None = None

    @property
    def history_text(self) -> str:
        """The history parts one per line; a part repeated in another field (a RIS
        often copies OBR-13 into OBR-31) is kept once."""
        parts: dict[str, str] = {}
        for _, text in self.history_sources:
            parts.setdefault(" ".join(text.split()).casefold(), text)
        return "\n".join(parts.values())

    @property
    def urgent(self) -> bool:
        return is_stat(self.priority)


def read_orders(message: ParsedMessage, mapping: FieldMapping) -> list[ParsedOrder]:
    """Every order in ``message``. Raises ``Hl7Rejection`` (AE) naming a missing or bad field."""
    return [_read_order(message, group, mapping) for group in message.groups]


def _read_order(message: ParsedMessage, group: OrderGroup, mapping: FieldMapping) -> ParsedOrder:
    control_text = message.value(FieldPath("ORC", 1), group)
    if not control_text:
        raise content_error(REQUIRED_FIELD_MISSING, f"ORC-1 order control is empty in order "
                            f"{group.index}", ErrorLocation("ORC", 1, sequence=group.index))
    try:
        control = OrderControl(control_text.upper())
    except ValueError:
        known = ", ".join(c.value for c in OrderControl)
        raise content_error(TABLE_VALUE_NOT_FOUND, f"ORC-1 order control {control_text!r} is "
                            f"not supported (only {known})",
                            ErrorLocation("ORC", 1, sequence=group.index)) from None
    patient_id = mapping.first(message, group, "patient_id")
    if not patient_id:
        raise content_error(REQUIRED_FIELD_MISSING, f"patient id ({_paths(mapping, 'patient_id')})"
                            " is empty", _location(mapping.paths["patient_id"][0]))
    placer = mapping.first(message, group, "placer_number")
    filler = mapping.first(message, group, "filler_number")
    if not placer and not filler:
        raise content_error(REQUIRED_FIELD_MISSING, "neither placer order number ("
                            f"{_paths(mapping, 'placer_number')}) nor filler order number ("
                            f"{_paths(mapping, 'filler_number')}) is given",
                            ErrorLocation("ORC", 2, sequence=group.index))
    study_uid = mapping.first(message, group, "study_uid")
    if study_uid and not _UID.fullmatch(study_uid):
        raise content_error(DATA_TYPE_ERROR, f"Study Instance UID {study_uid!r} "
                            f"({_paths(mapping, 'study_uid')}) is not a DICOM UID",
                            _location(mapping.paths["study_uid"][0]))
    order_date = mapping.first(message, group, "order_date")
    pid = message.segments_named("PID", group)[0]  # the message has one (checked)
    obr = next(s for s in group.segments if s.name == "OBR")
    return ParsedOrder(
        control=control, placer_number=placer, filler_number=filler,
        status=mapping.first(message, group, "order_status"),
        accession=mapping.first(message, group, "accession"),
        accession_issuer=mapping.first(message, group, "accession_issuer"),
        study_uid=study_uid,
        requested_procedure_id=mapping.first(message, group, "requested_procedure_id"),
        patient_id=patient_id,
        patient_id_issuer=mapping.first(message, group, "patient_id_issuer"),
        procedure=mapping.first(message, group, "procedure"),
        reason=mapping.first(message, group, "reason"),
        priority=mapping.first(message, group, "priority"),
        order_date=order_date[:8] if order_date and order_date[:8].isdigit() else None,
        history_sources=mapping.history(message, group),
        patient_identification=message.echo(pid),
        procedure_code=message.echo(obr, 4),
    )


def _paths(mapping: FieldMapping, target: str) -> str:
    return " / ".join(str(p) for p in mapping.paths[target])


def _location(path: FieldPath) -> ErrorLocation:
    return ErrorLocation(path.segment, path.field, path.component)
