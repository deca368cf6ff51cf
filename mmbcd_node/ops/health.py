"""Is this node process healthy? The checks behind ``/healthz``.

A process is healthy when the database answers, the storage root is writable and has
more free space than ``dicom.min_free_bytes``, the listeners of the roles it runs accept TCP
connections, and, when it runs the worker, the worker's heartbeat is fresh and its
model is loaded. Checks of roles that run elsewhere are reported, not required.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mmbcd_node.config import NodeConfig
from mmbcd_node.db.models import Job, JobState, utcnow
from mmbcd_node.ops.heartbeat import MODEL_LOADED, Heartbeat, heartbeats
from mmbcd_node.receive.admission import unwritable


@dataclass(frozen=True)
class Check:
    """One health check: passed or not, what was seen, and whether health depends on it."""

    name: str
    ok: bool
    detail: str
    required: bool = True


@dataclass(frozen=True)
class HealthReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(check.ok for check in self.checks if check.required)

    def as_json(self) -> dict[str, Any]:
        """``{"status": "ok"|"unhealthy", "checks": {name: {...}}}``."""
        return {"status": "ok" if self.healthy else "unhealthy",
                "checks": {c.name: {k: v for k, v in asdict(c).items() if k != "name"}
                           for c in self.checks}}


def local_address(host: str) -> str:
    """Where to connect to reach a listener bound to ``host`` (wildcards mean loopback)."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def tcp_check(name: str, host: str, port: int, timeout: float = 2.0,
              required: bool = True) -> Check:
    """Whether something accepts TCP connections at ``host:port``."""
    address = local_address(host)
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return Check(name, True, f"listening on {address}:{port}", required)
    except OSError as exc:
        return Check(name, False, f"nothing answers on {address}:{port} ({exc.strerror or exc})",
                     required)


def disk_check(config: NodeConfig) -> Check:
    """Free space of the storage root against ``dicom.min_free_bytes``."""
    root = config.storage.root
    probe = root if root.exists() else root.parent if root.parent.exists() else None
    if probe is None:
        return Check("disk", False, f"storage root {root} does not exist")
    problem = unwritable(probe)
    if problem is not None:
        return Check("disk", False, problem)
    free = shutil.disk_usage(probe).free
    floor = config.dicom.min_free_bytes
    return Check("disk", free >= floor, f"{free} bytes free under {root}, floor {floor}")


def database_check(engine: Engine) -> Check:
    """Whether the database answers a query."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return Check("database", False, f"{engine.dialect.name} unreachable: "
                     f"{type(getattr(exc, 'orig', None) or exc).__name__}")
    return Check("database", True, f"{engine.dialect.name} answers")


def worker_checks(config: NodeConfig, session: Session, here: bool) -> list[Check]:
    """Worker liveness and model status.

    A worker that publishes heartbeats (``beat(session, "worker", "model_loaded ...")``)
    is judged by its freshest beat (this process's own when it runs the worker here).
    A worker role started here without publishing beats is judged by the heartbeats of
    the jobs it holds (``jobs.heartbeat_at``); its model is loaded, since the role does not
    start without its bundle.
    """
    window = max(3 * config.worker.heartbeat_seconds, 15.0)
    beats = heartbeats(session, "worker")
    if here:
        own = [b for b in beats if b.host == socket.gethostname() and b.pid == os.getpid()]
        if own:
            return _from_beat(own[0], window, required=True)
        return _from_jobs(session, window)
    if not beats:
        detail = "no worker has published a heartbeat"
        return [Check("worker", False, detail, False), Check("model", False, detail, False)]
    return _from_beat(beats[0], window, required=False)


def _from_beat(newest: Heartbeat, window: float, required: bool) -> list[Check]:
    age = newest.age_seconds()
    fresh = age <= window
    status = newest.status or ""
    return [
        Check("worker", fresh, f"last beat {age:.0f}s ago from {newest.host} pid {newest.pid} "
              f"(stale after {window:.0f}s)", required),
        Check("model", fresh and status.startswith(MODEL_LOADED),
              status or "worker reports no model status", required),
    ]


def _from_jobs(session: Session, window: float) -> list[Check]:
    owner = f"worker@{socket.gethostname()}:{os.getpid()}"
    beats = session.execute(select(Job.id, Job.heartbeat_at).where(
        Job.state == JobState.RUNNING, Job.lease_owner == owner)).all()
    now = utcnow()
    stale = [job_id for job_id, at in beats
             if at is None or (now - at).total_seconds() > window]
    detail = (f"job(s) {', '.join(map(str, stale))} not heartbeaten for over {window:.0f}s"
              if stale else f"worker role running here, {len(beats)} job(s) in hand")
    return [Check("worker", not stale, detail),
            Check("model", True, "loaded when the worker role started")]


def check_health(config: NodeConfig, engine: Engine, roles: Sequence[str]) -> HealthReport:
    """Run every check for a process running ``roles``; never raises for a failed check."""
    checks = [database_check(engine), disk_check(config)]
    if "dicom" in roles:
        checks.append(tcp_check("dicom", config.dicom.host, config.dicom.port))
    if "hl7" in roles:
        checks.append(tcp_check("hl7", config.hl7.host, config.hl7.port))
    worker_here = "worker" in roles
    if checks[0].ok:
        try:
            with Session(engine) as session:
                checks.extend(worker_checks(config, session, here=worker_here))
        except SQLAlchemyError as exc:
            checks.append(Check("worker", False, f"cannot read heartbeats: {exc}", worker_here))
    elif worker_here:
        checks.append(Check("worker", False, "database unreachable", True))
    return HealthReport(checks)
