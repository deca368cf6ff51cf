"""SQL state of operating the node: heartbeats, audit-forwarding progress, scheduled runs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mmbcd_node.db.models import Base, utcnow
from mmbcd_node.db.utc import UtcDateTime


class NodeHeartbeat(Base):
    """The last sign of life of one role in one process (``beat`` keeps it fresh)."""

    __tablename__ = "node_heartbeats"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(32), index=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Free text a role may publish with its beat ("model loaded digest=...").
    status: Mapped[str | None] = mapped_column(String(255))
    version: Mapped[str | None] = mapped_column(String(32))
    # This host's clock minus the database's, measured at the beat (leases use the latter).
    clock_offset_ms: Mapped[float | None] = mapped_column(Float)
    # The identity written in the storage root this process sees (``storage_identity``).
    storage_id: Mapped[str | None] = mapped_column(String(36))
    bundle_digest: Mapped[str | None] = mapped_column(String(80))

    __table_args__ = (UniqueConstraint("role", "host", "pid",
                                       name="uq_node_heartbeats_role_host_pid"),)


class AuditForwardCursor(Base):
    """How far the audit trail has been forwarded to one collector (by audit event id)."""

    __tablename__ = "audit_forward_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(Integer, default=0)
    forwarded_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # One forwarder at a time: the process holding the lease sends, the others wait.
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ScheduledRun(Base):
    """When a scheduled operation (retention) last ran, so restarts never repeat or skip it."""

    __tablename__ = "scheduled_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_run_at: Mapped[datetime] = mapped_column(UtcDateTime)
