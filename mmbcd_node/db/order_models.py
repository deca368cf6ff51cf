"""SQL models of HL7 orders and of their matches to studies (the README's "Orders (HL7)").

``hl7_messages`` keeps every accepted message exactly as received; ``orders`` is the
current state of each order (the newest NW/XO/XX/CA/SC applied); ``order_messages``
records which message changed which order; ``study_orders`` is the match between a
study and an order and how it was made.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mmbcd_node.db.models import UID, Base, utcnow
from mmbcd_node.db.utc import UtcDateTime


class Hl7Message(Base):
    """One accepted HL7 message, raw bytes as received (MLLP framing removed)."""

    __tablename__ = "hl7_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # MSH-3 + MSH-4 + MSH-10: the duplicate-detection key.
    # MSH-3|MSH-4|MSH-10: room for each at its longest (180, 180, 199).
    message_key: Mapped[str] = mapped_column(String(561), unique=True)
    control_id: Mapped[str] = mapped_column(String(199), index=True)
    sending_application: Mapped[str | None] = mapped_column(String(180))
    sending_facility: Mapped[str | None] = mapped_column(String(180))
    message_type: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(8))
    charset: Mapped[str] = mapped_column(String(32))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    ack_code: Mapped[str] = mapped_column(String(2))
    peer_address: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class OrderControl(enum.StrEnum):
    NEW = "NW"
    CHANGE = "XO"
    CHANGED = "XX"
    CANCEL = "CA"
    CANCELLED = "OC"
    DISCONTINUE = "DC"
    STATUS = "SC"


CANCEL_CONTROLS = frozenset({OrderControl.CANCEL, OrderControl.CANCELLED,
                             OrderControl.DISCONTINUE})
# Priority values meaning STAT: TQ1-9 (Table 0485) and the TQ priority component.
STAT_PRIORITIES = frozenset({"S", "STAT"})


def is_stat(priority: str | None) -> bool:
    """Whether an order priority (TQ1-9, ORC-7.6, OBR-27.6) means STAT."""
    return (priority or "").strip().upper() in STAT_PRIORITIES


class Order(Base):
    """The current state of one order, identified by its placer (else filler) number."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    placer_number: Mapped[str | None] = mapped_column(String(64), index=True)
    filler_number: Mapped[str | None] = mapped_column(String(64), index=True)
    control: Mapped[str] = mapped_column(String(2))  # the last order control applied
    status: Mapped[str | None] = mapped_column(String(8))  # ORC-5
    accession_number: Mapped[str | None] = mapped_column(String(64), index=True)
    issuer_of_accession: Mapped[str | None] = mapped_column(String(64))
    study_uid: Mapped[str | None] = mapped_column(UID, index=True)
    requested_procedure_id: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    issuer_of_patient_id: Mapped[str | None] = mapped_column(String(64))
    procedure: Mapped[str | None] = mapped_column(String(200))
    # OBR-4 with every component, and the patient's PID segment, as the newest message
    # sent them (standard delimiters ``|^~\&``): the HL7 result echoes both.
    procedure_code: Mapped[str | None] = mapped_column(Text)
    patient_identification: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[str | None] = mapped_column(String(16))
    order_date: Mapped[str | None] = mapped_column(String(8))  # YYYYMMDD, for the date window
    history_text: Mapped[str] = mapped_column(Text, default="")
    # JSON list of [field, text] pairs: where each part of the history came from.
    history_sources: Mapped[str] = mapped_column(Text, default="[]")
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    messages: Mapped[list[OrderMessage]] = relationship(back_populates="order",
                                                        order_by="OrderMessage.id")


class OrderMessage(Base):
    """Which message changed which order, and with which order control."""

    __tablename__ = "order_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"),
                                          index=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("hl7_messages.id", ondelete="CASCADE"),
                                            index=True)
    control: Mapped[str] = mapped_column(String(2))

    order: Mapped[Order] = relationship(back_populates="messages")
    message: Mapped[Hl7Message] = relationship()


class MatchState(enum.StrEnum):
    LINKED = "linked"        # this order's history may be used for this study
    CANDIDATE = "candidate"  # needs an admin: patient disagrees or patient/date only
    REJECTED = "rejected"    # an admin said no; never proposed again


class StudyOrder(Base):
    """A match between a study and an order: by which rule, in which state, by whom."""

    __tablename__ = "study_orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"),
                                          index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"),
                                          index=True)
    # study_uid | accession | requested_procedure_id | patient_date | manual
    rule: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default=MatchState.LINKED, index=True)
    note: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(String(64))  # "matcher" or the OS user
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    order: Mapped[Order] = relationship()

    __table_args__ = (UniqueConstraint("study_id", "order_id",
                                       name="uq_study_orders_study_id_order_id"),)
