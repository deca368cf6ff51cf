"""SQLAlchemy models of the node's durable state.

Every schema change goes through an Alembic migration in ``migrations/versions``;
``tests/test_migrations.py`` fails when these models and the migrations disagree.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from mmbcd_node.db.utc import UtcDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

UID = String(64)
AE = String(16)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class StudyState(enum.StrEnum):
    RECEIVING = "receiving"
    COMPLETE = "complete"
    HELD = "held"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # None of the study's images can be analysed (tomosynthesis only, For Processing
    # only, no standard view): a final state, with the reason in ``state_reason``.
    NOT_ANALYSABLE = "not_analysable"


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(UID, unique=True)
    patient_id: Mapped[str | None] = mapped_column(String(64))
    issuer_of_patient_id: Mapped[str | None] = mapped_column(String(64))
    accession_number: Mapped[str | None] = mapped_column(String(64), index=True)
    issuer_of_accession: Mapped[str | None] = mapped_column(String(64))
    requested_procedure_id: Mapped[str | None] = mapped_column(String(64))
    study_date: Mapped[str | None] = mapped_column(String(8))
    study_description: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=StudyState.RECEIVING, index=True)
    state_changed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    first_received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # How the study became complete: expected_views | quiet | forced.
    completed_by: Mapped[str | None] = mapped_column(String(16))
    # Set when late images reopen a study whose results exist; the next run supersedes them.
    rerun_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    correlation_id: Mapped[str] = mapped_column(String(32))
    # Why the study is failed or not_analysable, naming the image and the attribute.
    state_reason: Mapped[str | None] = mapped_column(Text)

    series: Mapped[list[Series]] = relationship(back_populates="study")
    instances: Mapped[list[Instance]] = relationship(back_populates="study")


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    series_uid: Mapped[str] = mapped_column(UID, unique=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    laterality: Mapped[str | None] = mapped_column(String(1))
    series_number: Mapped[int | None] = mapped_column(Integer)
    series_description: Mapped[str | None] = mapped_column(String(64))

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Instance(Base):
    """One stored SOP instance; the file lives at ``storage.root / path``."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    transfer_syntax_uid: Mapped[str] = mapped_column(UID)
    patient_id: Mapped[str | None] = mapped_column(String(64))
    accession_number: Mapped[str | None] = mapped_column(String(64))
    laterality: Mapped[str | None] = mapped_column(String(1))
    view: Mapped[str | None] = mapped_column(String(16))
    presentation_intent: Mapped[str | None] = mapped_column(String(16))
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(512))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(80))  # <algorithm>:<hex>, see receive.digest
    calling_ae: Mapped[str | None] = mapped_column(AE)
    called_ae: Mapped[str | None] = mapped_column(AE)
    peer_address: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Set when retention deleted the file; the row stays for the audit trail.
    purged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    study: Mapped[Study] = relationship(back_populates="instances")
    series: Mapped[Series] = relationship(back_populates="instances")


class AuditEvent(Base):
    """Append-only audit trail; ``row_hash`` chains each row to the one before it."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    action: Mapped[str] = mapped_column(String(48), index=True)
    outcome: Mapped[str] = mapped_column(String(16), default="success")
    actor: Mapped[str | None] = mapped_column(String(64))
    calling_ae: Mapped[str | None] = mapped_column(AE)
    called_ae: Mapped[str | None] = mapped_column(AE)
    peer_address: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    study_uid: Mapped[str | None] = mapped_column(UID, index=True)
    sop_instance_uid: Mapped[str | None] = mapped_column(UID)
    # Indexed: audit queries filter by accession number.
    accession_number: Mapped[str | None] = mapped_column(String(64), index=True)
    detail: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_audit_events_occurred_at", "occurred_at"),)


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Priority(enum.IntEnum):
    """Lower runs first; ageing in the claim query keeps background work from starving."""

    URGENT = 0
    NORMAL = 1
    BACKGROUND = 2


class Job(Base):
    """One run of the model over one study, claimed by a worker under a lease."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED, index=True)
    priority: Mapped[int] = mapped_column(Integer, default=Priority.NORMAL)
    # Why the job exists: new | rerun (study reopened) | reprocess (admin).
    reason: Mapped[str] = mapped_column(String(16), default="new")
    # Set by the no-order policy: run with an empty history and say so in the result.
    without_history: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    bundle_digest: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_jobs_claim", "state", "priority", "not_before"),)
