"""Questions a privacy officer asks of the audit trail, answered from SQL.

``find_events`` filters the audit trail (patient, study, accession, AE titles,
action, actor, time range). ``study_story`` tells what happened to one study in time
order: the audit events plus the rows every stage keeps about it (instances, orders,
matches, jobs, results, output objects, deliveries), found by following foreign keys
from the study, so tables added by later migrations join the story without changes
here. Free-text columns (raw HL7, history text, names) are left out of the story.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, MetaData, Select, Table, Text, inspect, or_, select
from sqlalchemy.orm import Session

from mmbcd_node.db.models import AuditEvent, Study
from mmbcd_node.db.utc import as_utc

EVENT_COLUMNS = ("id", "occurred_at", "action", "outcome", "actor", "calling_ae", "called_ae",
                 "peer_address", "patient_id", "study_uid", "accession_number",
                 "sop_instance_uid", "detail")
STORY_COLUMNS = ("at", "source", "what", "detail")

# Tables that are not about one study, or whose rows the story already shows otherwise.
_NOT_IN_STORY = {"audit_events", "alembic_version", "node_heartbeats", "audit_forward_cursors",
                 "series"}
# Timestamps that only tick (leases, retries not yet due) rather than mark an event.
_TICKING = ("lease", "heartbeat", "not_before", "next_", "expires", "state_changed")
# Column names that may hold identifying free text (raw HL7, history, names); never printed.
_PRIVATE = ("raw", "indication", "patient_name", "comment", "hl7", "history_text", "note")
# Long-text columns that hold no clinical free text; every other one is left out.
_TEXT_KEPT = {"error", "last_error", "history_sources"}


class UnknownStudy(LookupError):
    """No study with that Study Instance UID is known to the node."""


@dataclass(frozen=True)
class AuditFilter:
    """Every criterion is optional; the given ones must all hold (AND)."""

    patient_id: str | None = None
    study_uid: str | None = None
    accession: str | None = None
    calling_ae: str | None = None
    called_ae: str | None = None
    ae: str | None = None  # either calling or called
    action: str | None = None
    outcome: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        """``query`` over ``AuditEvent`` restricted by this filter."""
        exact = {AuditEvent.patient_id: self.patient_id, AuditEvent.study_uid: self.study_uid,
                 AuditEvent.accession_number: self.accession,
                 AuditEvent.calling_ae: self.calling_ae, AuditEvent.called_ae: self.called_ae,
                 AuditEvent.action: self.action, AuditEvent.outcome: self.outcome,
                 AuditEvent.actor: self.actor}
        for column, value in exact.items():
            if value is not None:
                query = query.where(column == value)
        if self.ae is not None:
            query = query.where(or_(AuditEvent.calling_ae == self.ae,
                                    AuditEvent.called_ae == self.ae))
        if self.since is not None:
            query = query.where(AuditEvent.occurred_at >= self.since)
        if self.until is not None:
            query = query.where(AuditEvent.occurred_at < self.until)
        return query


def event_record(event: AuditEvent) -> dict[str, Any]:
    """One audit event as a flat record (``detail`` parsed back into an object)."""
    record = {name: getattr(event, name) for name in EVENT_COLUMNS}
    try:
        record["detail"] = json.loads(event.detail or "{}")
    except ValueError:
        record["detail"] = event.detail
    return record


def find_events(session: Session, criteria: AuditFilter, *, limit: int | None = 1000,
                newest_first: bool = False) -> list[dict[str, Any]]:
    """Audit events matching ``criteria`` in time order (oldest first unless asked)."""
    order = AuditEvent.id.desc() if newest_first else AuditEvent.id
    query = criteria.apply(select(AuditEvent)).order_by(order)
    if limit is not None:
        query = query.limit(limit)
    return [event_record(e) for e in session.execute(query).scalars()]


def study_story(session: Session, study_uid: str) -> list[dict[str, Any]]:
    """Everything known about one study as records (at, source, what, detail), oldest first.

    Raises ``UnknownStudy`` when neither a study row nor an audit event names the UID.
    """
    study = session.execute(select(Study).where(Study.study_uid == study_uid)).scalar_one_or_none()
    events_query = select(AuditEvent).where(AuditEvent.study_uid == study_uid)
    if study is not None and study.accession_number:
        events_query = select(AuditEvent).where(or_(
            AuditEvent.study_uid == study_uid,
            (AuditEvent.accession_number == study.accession_number)
            & AuditEvent.study_uid.is_(None)))
    events = session.execute(events_query.order_by(AuditEvent.id)).scalars().all()
    if study is None and not events:
        raise UnknownStudy(f"no study {study_uid} in the database or the audit trail")
    story: list[dict[str, Any]] = []
    for event in events:
        record = event_record(event)
        who = {k: record[k] for k in ("actor", "calling_ae", "called_ae", "peer_address",
                                      "sop_instance_uid") if record[k]}
        story.append({"at": event.occurred_at, "source": "audit",
                      "what": f"{event.action} ({event.outcome})",
                      "detail": {**who, **(record["detail"] if isinstance(record["detail"], dict)
                                           else {"detail": record["detail"]})}})
    if study is not None:
        story.extend(_row_entries(session.connection(), study.id))
    story.sort(key=lambda entry: (_sortable(entry["at"]), entry["source"] != "audit"))
    return story


def _sortable(value: datetime) -> datetime:
    # Reflected rows bypass the models' UtcDateTime: SQLite gives them back naive.
    return as_utc(value)


def _row_entries(connection: Connection, study_id: int) -> list[dict[str, Any]]:
    """Entries for every row reachable from the study by foreign keys, one per timestamp."""
    metadata = MetaData()
    names = [n for n in inspect(connection).get_table_names() if n not in _NOT_IN_STORY]
    metadata.reflect(connection, only=names)
    related = _related_rows(connection, metadata.tables, study_id)
    entries: list[dict[str, Any]] = []
    for table_name, rows in related.items():
        table = metadata.tables[table_name]
        for row in rows.values():
            summary = _summary(table, row)
            for column in table.columns:
                value = row.get(column.name)
                if isinstance(value, datetime) and not any(t in column.name for t in _TICKING):
                    label = column.name.removesuffix("_at")
                    entries.append({"at": value, "source": f"{table_name}#{row.get('id', '')}",
                                    "what": f"{_singular(table_name)} {label}",
                                    "detail": summary})
    return entries


def _related_rows(connection: Connection, tables: Mapping[str, Table],
                  study_id: int) -> dict[str, dict[Any, dict[str, Any]]]:
    """Rows tied to the study: children by foreign key, and the parents of those children."""
    related: dict[str, dict[Any, dict[str, Any]]] = {"studies": {}}
    study_row = connection.execute(
        select(tables["studies"]).where(tables["studies"].c.id == study_id)).mappings().one()
    related["studies"][study_id] = dict(study_row)
    changed = True
    while changed:
        changed = False
        for name, table in tables.items():
            if name == "studies" or "id" not in table.c:
                continue
            known = related.setdefault(name, {})
            # A row that names a study must name this one (an order matched to two studies
            # brings only this study's match into the story).
            own = [fk.parent == study_id for fk in table.foreign_keys
                   if fk.column.table.name == "studies"]
            for fk in table.foreign_keys:
                parent_ids = list(related.get(fk.column.table.name, {}))
                if not parent_ids:
                    continue
                rows = connection.execute(
                    select(table).where(fk.parent.in_(parent_ids), *own)).mappings().all()
                for row in rows:
                    if row["id"] not in known:
                        known[row["id"]] = dict(row)
                        changed = True
            # Parents of related rows (an order referenced by a study-order match).
            for fk in table.foreign_keys:
                parent = fk.column.table
                if parent.name in ("studies", name) or parent.name not in tables:
                    continue
                wanted = {r[fk.parent.name] for r in known.values()} - set(
                    related.get(parent.name, {})) - {None}
                if not wanted:
                    continue
                rows = connection.execute(
                    select(tables[parent.name]).where(fk.column.in_(wanted))).mappings().all()
                for row in rows:
                    related.setdefault(parent.name, {})[row[fk.column.name]] = dict(row)
                    changed = True
    return {name: rows for name, rows in related.items() if rows}


def _summary(table: Table, row: Mapping[str, Any]) -> dict[str, Any]:
    """The row's non-empty, non-private, non-timestamp columns."""
    keep: dict[str, Any] = {}
    for column in table.columns:
        value = row.get(column.name)
        if value is None or value == "" or isinstance(value, datetime):
            continue
        if column.name == "id" or column.name.endswith("_id") and column.foreign_keys:
            continue
        if (any(p in column.name for p in _PRIVATE) or column.name.endswith("text")
                or isinstance(value, bytes)
                or (isinstance(column.type, Text) and column.name not in _TEXT_KEPT)):
            continue
        if isinstance(value, str) and len(value) > 300:
            value = value[:300] + "..."
        keep[column.name] = value
    return keep


def _singular(table_name: str) -> str:
    if table_name.endswith("ies"):
        return table_name[:-3] + "y"
    return table_name[:-1] if table_name.endswith("s") else table_name


def flatten(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Records with nested ``detail`` objects written as compact JSON, for tables and CSV."""
    flat = []
    for record in records:
        row = dict(record)
        if isinstance(row.get("detail"), dict | list):
            row["detail"] = json.dumps(row["detail"], sort_keys=True, default=str,
                                       separators=(",", ":"))
        flat.append(row)
    return flat
