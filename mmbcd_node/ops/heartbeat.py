"""Role heartbeats in SQL: each role process says it is alive; health and status read them.

Every process that runs roles beats for each of them every ``[worker] heartbeat_seconds``
(``RoleBeats``), publishing its version, its clock's offset from the database's, the
storage root it sees and, for the worker, its model (``"model_loaded digest=..."``). Rows
are keyed by role, host and process id, so any number of processes on any number of
machines share the table. A process that stops cleanly removes its rows; one whose rows
stopped beating died, at about its last beat.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node import __version__
from mmbcd_node.db.models import utcnow
from mmbcd_node.db.ops_models import NodeHeartbeat
from mmbcd_node.db.session import transaction
from mmbcd_node.db.utc import clock_offset_ms, database_now
from mmbcd_node.logs import get_logger
from mmbcd_node.ops.storage_identity import storage_identity

log = get_logger(__name__)

MODEL_LOADED = "model_loaded"
# Rows of processes dead for longer than this are dropped by the next beat of any process.
FORGET_AFTER = timedelta(days=7)


def stale_after(heartbeat_seconds: float) -> float:
    """Seconds without a beat after which a role process counts as dead."""
    return max(3 * heartbeat_seconds, 15.0)


def beat(session: Session, role: str, status: str | None = None, *,
         now: datetime | None = None, **facts: object) -> None:
    """Record that ``role`` in this process is alive (inside the caller's transaction).

    ``status`` replaces the published status when given; ``None`` keeps the last one.
    ``facts`` are other columns to publish (``version``, ``clock_offset_ms``,
    ``storage_id``, ``bundle_digest``); the ones not given keep their values. Beats
    are stamped by the database clock, like leases.
    """
    now = now or database_now(session)
    host, pid = socket.gethostname(), os.getpid()
    values: dict[str, object] = {"beat_at": now, **facts}
    if status is not None:
        values["status"] = status[:255]
    changed = session.execute(
        update(NodeHeartbeat)
        .where(NodeHeartbeat.role == role, NodeHeartbeat.host == host, NodeHeartbeat.pid == pid)
        .values(**values).execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not changed:
        session.add(NodeHeartbeat(role=role, host=host, pid=pid, started_at=now, **values))
        session.flush()


class BeatingRole(Protocol):
    """A role as ``RoleBeats`` sees it: a name, and optionally ``beat_facts() -> dict``
    (``status``, ``bundle_digest``) to publish with each beat."""

    name: str


class RoleBeats:
    """Beats for every role of this process, on a thread of its own, until ``stop``.

    A failed beat (the database away) is logged and tried again at the next one.
    """

    def __init__(self, sessions: sessionmaker[Session], roles: Sequence[BeatingRole],
                 storage_root: Path, every: float) -> None:
        self.sessions = sessions
        self.roles = list(roles)
        self.storage_root = storage_root
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="role-beats", daemon=True)

    def start(self) -> None:
        if self.roles:
            self._thread.start()

    def stop(self) -> None:
        """Stop beating and remove this process's rows: it stopped, it did not die."""
        self._stop.set()
        if not self._thread.is_alive():
            return
        self._thread.join(timeout=30)
        try:
            with transaction(self.sessions) as session:
                session.execute(delete(NodeHeartbeat).where(
                    NodeHeartbeat.host == socket.gethostname(), NodeHeartbeat.pid == os.getpid()))
        except Exception:  # noqa: BLE001 - the rows then read as a death; harmless
            log.exception("heartbeat_cleanup_failed")

    def beat_once(self) -> None:
        storage_id = storage_identity(self.storage_root)
        with transaction(self.sessions) as session:
            offset = clock_offset_ms(session)
            now = database_now(session)
            for role in self.roles:
                facts = dict(role.beat_facts()) if hasattr(role, "beat_facts") else {}
                status = facts.pop("status", None)
                beat(session, role.name, None if status is None else str(status), now=now,
                     version=__version__, clock_offset_ms=offset, storage_id=storage_id,
                     **facts)
            session.execute(delete(NodeHeartbeat).where(NodeHeartbeat.beat_at < now - FORGET_AFTER))

    def _run(self) -> None:
        while True:
            try:
                self.beat_once()
            except Exception:  # noqa: BLE001 - the next beat retries
                log.exception("role_beat_failed")
            if self._stop.wait(self.every):
                return


@dataclass(frozen=True)
class Heartbeat:
    role: str
    host: str
    pid: int
    started_at: datetime
    beat_at: datetime
    status: str | None
    version: str | None = None
    clock_offset_ms: float | None = None
    storage_id: str | None = None
    bundle_digest: str | None = None

    @property
    def process(self) -> str:
        """``role@host:pid``, as leases name their holder (``process.process_name``)."""
        return f"{self.role}@{self.host}:{self.pid}"

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
    return [Heartbeat(b.role, b.host, b.pid, b.started_at, b.beat_at, b.status, b.version,
                      b.clock_offset_ms, b.storage_id, b.bundle_digest)
            for b in session.execute(query).scalars()]
