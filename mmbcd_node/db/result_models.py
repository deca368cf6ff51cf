"""SQL models of what a job produced and where it went (the README's "Processing and delivery").

A ``Result`` is one run of the model over a study: its study, breast and view
probabilities, its ROIs, the bundle that made it and the history that went in.
Its ``OutputObject`` rows are the DICOM objects built from it (SR, CAD SR, SC,
GSPS, and the rejection note that withdraws it), each stored under the storage
root; a ``Delivery`` is one object on its way to one destination.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mmbcd_node.db.models import UID, Base, utcnow
from mmbcd_node.db.utc import UtcDateTime


class ResultState(enum.StrEnum):
    ACTIVE = "active"
    SUPERSEDED = "superseded"  # a re-run replaced it; its objects are withdrawn
    WITHDRAWN = "withdrawn"  # the order was cancelled; its objects are withdrawn


class DeliveryState(enum.StrEnum):
    PENDING = "pending"  # to be sent (again) at next_attempt_at
    SENT = "sent"  # C-STORE succeeded; awaiting commitment where requested
    COMMITTED = "committed"  # the destination took over responsibility
    FAILED = "failed"  # attempts used up, or refused for good


class CommitmentState(enum.StrEnum):
    REQUESTED = "requested"  # N-ACTION accepted, N-EVENT-REPORT awaited
    COMMITTED = "committed"
    FAILED = "failed"  # the destination reported a failure for this instance


class Result(Base):
    __tablename__ = "results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"),
                                          index=True)
    state: Mapped[str] = mapped_column(String(16), default=ResultState.ACTIVE, index=True)
    predecessor_id: Mapped[int | None] = mapped_column(ForeignKey("results.id"))
    # The order whose history went in (and whose numbers the outputs echo), if any.
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    # The study (case) probability; null for a not-attempted result (no image analysable).
    probability: Mapped[float | None] = mapped_column(Float)
    right_probability: Mapped[float | None] = mapped_column(Float)
    left_probability: Mapped[float | None] = mapped_column(Float)
    bundle_digest: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(64))
    operating_threshold: Mapped[float | None] = mapped_column(Float)  # study level
    breast_threshold: Mapped[float | None] = mapped_column(Float)
    # Whether the probabilities are calibrated and where each level's flag is set.
    operating_point: Mapped[str | None] = mapped_column(Text)
    history_used: Mapped[bool] = mapped_column(Boolean, default=False)
    # JSON list of the order fields the history came from ("OBR-13", "NTE-3"); [] = none.
    history_sources: Mapped[str] = mapped_column(Text, default="[]")
    all_views_used: Mapped[bool] = mapped_column(Boolean, default=True)
    # Why the model did not run on the study (its state_reason): set on a not-attempted
    # result only, whose outputs say so to the PACS and the RIS.
    not_attempted_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    views: Mapped[list[ResultView]] = relationship(back_populates="result",
                                                   cascade="all, delete-orphan")
    rois: Mapped[list[ResultRoi]] = relationship(back_populates="result",
                                                 cascade="all, delete-orphan",
                                                 order_by="ResultRoi.rank")
    outputs: Mapped[list[OutputObject]] = relationship(back_populates="result",
                                                       cascade="all, delete-orphan")


class ResultView(Base):
    """One source view of a result: its probability, or why it could not be read."""

    __tablename__ = "result_views"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"),
                                           index=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID)
    laterality: Mapped[str | None] = mapped_column(String(1))
    view: Mapped[str | None] = mapped_column(String(16))
    probability: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)

    result: Mapped[Result] = relationship(back_populates="views")


class ResultRoi(Base):
    """One region of interest: box in stored pixel coordinates of its source view."""

    __tablename__ = "result_rois"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"),
                                           index=True)
    view_sop_instance_uid: Mapped[str] = mapped_column(UID)
    laterality: Mapped[str | None] = mapped_column(String(1))
    rank: Mapped[int] = mapped_column(Integer)  # 1 = most attended within its view
    x0: Mapped[float] = mapped_column(Float)
    y0: Mapped[float] = mapped_column(Float)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    detector_score: Mapped[float] = mapped_column(Float)
    attention: Mapped[float] = mapped_column(Float)

    result: Mapped[Result] = relationship(back_populates="rois")


class OutputObject(Base):
    """A DICOM object this node built; the file is at ``storage.root / path``."""

    __tablename__ = "output_objects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"),
                                           index=True)
    kind: Mapped[str] = mapped_column(String(16))
    sop_class_uid: Mapped[str] = mapped_column(UID)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    series_instance_uid: Mapped[str] = mapped_column(UID)
    path: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Set when a rejection note withdrew this object from the destinations.
    withdrawn_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    result: Mapped[Result] = relationship(back_populates="outputs")
    deliveries: Mapped[list[Delivery]] = relationship(back_populates="output",
                                                      cascade="all, delete-orphan")


class Delivery(Base):
    """One output object to one destination, retried until sent (and committed)."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    output_id: Mapped[int] = mapped_column(ForeignKey("output_objects.id", ondelete="CASCADE"),
                                           index=True)
    destination: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    committed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Storage commitment (push model): the N-ACTION's transaction and its outcome.
    commitment_transaction_uid: Mapped[str | None] = mapped_column(UID, index=True)
    commitment_state: Mapped[str | None] = mapped_column(String(16))
    # The sender process sending it now; its claim lasts until next_attempt_at, so a
    # dead sender's deliveries fall due again.
    lease_owner: Mapped[str | None] = mapped_column(String(128))

    output: Mapped[OutputObject] = relationship(back_populates="deliveries")

    __table_args__ = (
        UniqueConstraint("output_id", "destination", name="uq_deliveries_output_destination"),
        Index("ix_deliveries_due", "state", "next_attempt_at"),
    )


class Hl7ResultState(enum.StrEnum):
    PENDING = "pending"  # to be sent (again) at next_attempt_at
    SENT = "sent"  # the RIS answered AA
    FAILED = "failed"  # attempts used up


class Hl7ResultStatus(enum.StrEnum):
    """What an ORU says of its result: OBR-25 (HL7 table 0123)."""

    PRELIMINARY = "P"  # the first result of an order
    CORRECTED = "C"  # a re-run replacing a result the RIS may have
    CANCELLED = "X"  # the result is withdrawn: no results available


class Hl7ResultMessage(Base):
    """One ORU^R01 of a result for the RIS (``[hl7.results]``), tracked like a delivery.

    The message text is built once, so every retry carries the same MSH-10. A result
    has its preliminary or corrected ORU and, once withdrawn, the cancelling one.
    """

    __tablename__ = "hl7_result_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"),
                                           index=True)
    control_id: Mapped[str] = mapped_column(String(20), unique=True)  # MSH-10
    message: Mapped[str] = mapped_column(Text)  # ER7, segments separated by CR
    result_status: Mapped[str] = mapped_column(String(1), default=Hl7ResultStatus.PRELIMINARY)
    state: Mapped[str] = mapped_column(String(16), default=Hl7ResultState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    ack_code: Mapped[str | None] = mapped_column(String(2))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (Index("ix_hl7_result_messages_due", "state", "next_attempt_at"),)
