"""Role heartbeats in SQL: each long-running role says it is alive, health reads them.

A role calls ``beat(session, role)`` every few seconds (the worker passes its model
status, e.g. ``"model_loaded digest=sha256:..."``). Rows are keyed by role, host and
process id, so any number of processes on any number of machines share the table.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mmbcd_node.db.models import utcnow
from mmbcd_node.db.ops_models import NodeHeartbeat

MODEL_LOADED = "model_loaded"


def beat(session: Session, role: str, status: str | None = None, *,
         now: datetime | None = None) -> None:
    """Record that ``role`` in this process is alive (inside the caller's transaction).

    ``status`` replaces the published status when given; ``None`` keeps the last one.
    """
    now = now or utcnow()
    host, pid = socket.gethostname(), os.getpid()
    values: dict[str, object] = {"beat_at": now}
    if status is not None:
        values["status"] = status[:255]
    changed = session.execute(
        update(NodeHeartbeat)
        .where(NodeHeartbeat.role == role, NodeHeartbeat.host == host, NodeHeartbeat.pid == pid)
        .values(**values).execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not changed:
        session.add(NodeHeartbeat(role=role, host=host, pid=pid, started_at=now, beat_at=now,
                                  status=status))
        session.flush()


@dataclass(frozen=True)
class Heartbeat:
    role: str
    host: str
    pid: int
    beat_at: datetime
    status: str | None

    def age_seconds(self, now: datetime | None = None) -> float:
        """Seconds since the last beat."""
        return ((now or utcnow()) - self.beat_at).total_seconds()


def heartbeats(session: Session, role: str | None = None,
               newer_than: timedelta | None = None) -> list[Heartbeat]:
    """Heartbeats, newest first: of ``role`` and within ``newer_than`` when those are given."""
    query = select(NodeHeartbeat).order_by(NodeHeartbeat.beat_at.desc())
    if role is not None:
        query = query.where(NodeHeartbeat.role == role)
    if newer_than is not None:
        query = query.where(NodeHeartbeat.beat_at >= utcnow() - newer_than)
    return [Heartbeat(b.role, b.host, b.pid, b.beat_at, b.status)
            for b in session.execute(query).scalars()]
