"""The SQL side of receiving: study, series and instance rows for a stored mammogram.

Rows are created with ``INSERT ... ON CONFLICT DO NOTHING`` so that two associations
delivering the same study (or the same instance) at once never fail each other.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Executable, Table, bindparam, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mmbcd_node.db.models import Instance, Series, Study, StudyState
from mmbcd_node.match.completion import NOT_REOPENED, reopen_if_finished
from mmbcd_node.receive.header import InstanceHeader


@dataclass(frozen=True)
class Peer:
    """Who sent an object: calling and called AE titles and the peer's IP address."""

    calling_ae: str
    called_ae: str
    address: str


@dataclass(frozen=True)
class StoredFile:
    """A received file already in its final place under the storage root."""

    relative_path: str
    size_bytes: int
    digest: str  # <algorithm>:<hex>


@dataclass(frozen=True)
class RecordOutcome:
    created: bool  # False: the instance row already existed (a concurrent duplicate)
    study_id: int
    correlation_id: str
    reopened: bool


def find_instance(session: Session, sop_instance_uid: str) -> Instance | None:
    """The stored instance with this SOP Instance UID, if any."""
    return session.execute(
        select(Instance).where(Instance.sop_instance_uid == sop_instance_uid)
    ).scalar_one_or_none()


def lookup_instance(session: Session, study_uid: str,
                    sop_instance_uid: str) -> tuple[str | None, bool]:
    """The correlation id of the study (None: not known yet) and whether the instance
    is stored, in one statement."""
    row = session.execute(_LOOKUP, {"study": study_uid, "sop": sop_instance_uid}).one()
    return row[0], bool(row[1])


def record_instance(session: Session, header: InstanceHeader, series_uid: str,
                    stored: StoredFile, peer: Peer, now: datetime) -> RecordOutcome:
    """Create (or find) the study and series and add the instance row, in ``session``.

    Also moves the study's ``last_received_at`` on and reopens a finished study (see
    ``reopen_if_finished``). The caller commits. Runs once per received image, so its
    statements are built once per dialect and only their parameters change.
    """
    sql = _statements(session.get_bind().dialect.name)
    study_uid = header.study_uid or ""
    patient_id = _short(header.text("PatientID"))
    accession = _short(header.text("AccessionNumber"))
    session.execute(sql.insert_study, {
        "study_uid": study_uid, "patient_id": patient_id,
        "issuer_of_patient_id": _short(header.text("IssuerOfPatientID")),
        "accession_number": accession,
        "issuer_of_accession": _short(_issuer_of_accession(header)),
        "requested_procedure_id": _short(_requested_procedure_id(header)),
        "study_date": _short(header.text("StudyDate"), 8),
        "study_description": _short(header.text("StudyDescription")),
        "state": StudyState.RECEIVING.value, "state_changed_at": now,
        "first_received_at": now, "last_received_at": now, "rerun_requested": False,
        "reopen_count": 0, "correlation_id": uuid.uuid4().hex,
    })
    study = session.execute(sql.find_study, {"uid": study_uid}).one()
    session.execute(sql.insert_series, {
        "study_id": study.id, "series_uid": series_uid, "modality": _short(header.modality, 16),
        "laterality": header.laterality, "series_number": _integer(header.text("SeriesNumber")),
        "series_description": _short(header.text("SeriesDescription")),
    })
    series_id = session.execute(sql.find_series, {"uid": series_uid}).scalar_one()
    created = session.execute(sql.insert_instance, {
        "study_id": study.id, "series_id": series_id,
        "sop_instance_uid": header.sop_instance_uid, "sop_class_uid": header.sop_class_uid,
        "transfer_syntax_uid": header.transfer_syntax_uid, "patient_id": patient_id,
        "accession_number": accession, "laterality": header.laterality, "view": header.view,
        "presentation_intent": _intent(header),
        "rows": _integer(header.text("Rows")), "columns": _integer(header.text("Columns")),
        "path": stored.relative_path, "size_bytes": stored.size_bytes, "digest": stored.digest,
        "calling_ae": peer.calling_ae, "called_ae": peer.called_ae,
        "peer_address": peer.address, "received_at": now,
    }).scalar_one_or_none() is not None
    reopened = False
    if created:
        if study.state not in NOT_REOPENED:
            finished = session.get(Study, study.id)
            assert finished is not None  # found by the same transaction just above
            reopened = reopen_if_finished(session, finished,
                                          sop_instance_uid=header.sop_instance_uid)
        session.execute(sql.touch_study, {"sid": study.id, "now": now})
    return RecordOutcome(created=created, study_id=study.id,
                         correlation_id=study.correlation_id, reopened=reopened)


_STUDIES, _INSTANCES = (cast(Table, model.__table__) for model in (Study, Instance))
_LOOKUP = select(
    select(_STUDIES.c.correlation_id).where(_STUDIES.c.study_uid == bindparam("study"))
    .scalar_subquery(),
    exists().where(_INSTANCES.c.sop_instance_uid == bindparam("sop")))


@dataclass(frozen=True)
class _Statements:
    insert_study: Executable
    find_study: Executable
    insert_series: Executable
    find_series: Executable
    insert_instance: Executable
    touch_study: Executable


@functools.cache
def _statements(dialect: str) -> _Statements:
    """``record_instance``'s statements for ``dialect`` (``INSERT ... ON CONFLICT DO
    NOTHING`` is dialect-specific), with bound parameters."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    studies, series, instances = (cast(Table, model.__table__)
                                  for model in (Study, Series, Instance))
    return _Statements(
        insert_study=insert(studies).on_conflict_do_nothing(index_elements=["study_uid"]),
        find_study=select(studies.c.id, studies.c.state, studies.c.correlation_id)
        .where(studies.c.study_uid == bindparam("uid")),
        insert_series=insert(series).on_conflict_do_nothing(index_elements=["series_uid"]),
        find_series=select(series.c.id).where(series.c.series_uid == bindparam("uid")),
        insert_instance=insert(instances)
        .on_conflict_do_nothing(index_elements=["sop_instance_uid"]).returning(instances.c.id),
        touch_study=update(studies).where(studies.c.id == bindparam("sid"))
        .values(last_received_at=bindparam("now")),
    )


def _short(value: str | None, length: int = 64) -> str | None:
    return None if value is None else value[:length]


def _integer(value: str | None) -> int | None:
    try:
        return None if value is None else int(float(value))
    except ValueError:
        return None


def _intent(header: InstanceHeader) -> str | None:
    value = header.text("PresentationIntentType")
    return None if value is None else value[:16]


def _issuer_of_accession(header: InstanceHeader) -> str | None:
    for item in header.dataset.get("IssuerOfAccessionNumberSequence") or []:
        value = str(item.get("LocalNamespaceEntityID", "") or "").strip()
        if value:
            return value
    return None


def _requested_procedure_id(header: InstanceHeader) -> str | None:
    for item in header.dataset.get("RequestAttributesSequence") or []:
        value = str(item.get("RequestedProcedureID", "") or "").strip()
        if value:
            return value
    return None
