"""What runs where, and what waits: the role processes of every host and each
destination's backlog, read from SQL. ``status`` and ``/metrics`` show the same.

A process is *up* while its heartbeats are fresh (``heartbeat.stale_after``) and *dead*
after; it died at about its last beat. The leases a process holds are the running jobs,
deliveries and HL7 results naming it (``role@host:pid``) whose lease has not run out.
All ages are read against the database clock, the clock leases use.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mmbcd_node.db.models import Job, JobState
from mmbcd_node.db.result_models import (
    Delivery,
    DeliveryState,
    Hl7ResultMessage,
    Hl7ResultState,
)
from mmbcd_node.db.utc import database_now
from mmbcd_node.ops.heartbeat import Heartbeat, heartbeats, stale_after

HL7_RESULTS = "hl7 results"  # the backlog name of ORUs on their way to the RIS


@dataclass(frozen=True)
class RoleProcess:
    beat: Heartbeat
    up: bool
    age_seconds: float
    leases: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Backlog:
    """What waits for one destination (or the RIS): pending items, the oldest's time,
    the newest error of a waiting or failed item, and how many gave up."""

    destination: str
    pending: int
    oldest_pending_at: datetime | None
    last_error: str | None
    failed: int


def role_processes(session: Session, heartbeat_seconds: float) -> list[RoleProcess]:
    """Every role process with a heartbeat row, up ones first, then by host and role."""
    now = database_now(session)
    window = stale_after(heartbeat_seconds)
    held: dict[str, Counter[str]] = {}
    for kind, owner, count in _lease_holders(session, now):
        held.setdefault(owner, Counter())[kind] += count
    processes = [RoleProcess(b, b.age_seconds(now) <= window, b.age_seconds(now),
                             dict(held.get(b.process, Counter())))
                 for b in heartbeats(session)]
    return sorted(processes, key=lambda p: (not p.up, p.beat.host, p.beat.role, p.beat.pid))


def _lease_holders(session: Session, now: datetime) -> list[tuple[str, str, int]]:
    jobs = session.execute(
        select(Job.lease_owner, func.count()).where(
            Job.state == JobState.RUNNING, Job.lease_owner.is_not(None),
            Job.lease_expires_at >= now).group_by(Job.lease_owner)).all()
    deliveries = session.execute(
        select(Delivery.lease_owner, func.count()).where(
            Delivery.state == DeliveryState.PENDING, Delivery.lease_owner.is_not(None),
            Delivery.next_attempt_at > now).group_by(Delivery.lease_owner)).all()
    messages = session.execute(
        select(Hl7ResultMessage.lease_owner, func.count()).where(
            Hl7ResultMessage.state == Hl7ResultState.PENDING,
            Hl7ResultMessage.lease_owner.is_not(None),
            Hl7ResultMessage.next_attempt_at > now).group_by(Hl7ResultMessage.lease_owner)).all()
    return ([("jobs", str(o), int(n)) for o, n in jobs]
            + [("deliveries", str(o), int(n)) for o, n in deliveries]
            + [("hl7 results", str(o), int(n)) for o, n in messages])


def backlogs(session: Session, destinations: list[str]) -> list[Backlog]:
    """The backlog of every configured destination (also those with nothing waiting),
    of any other destination deliveries name, and of the RIS (``HL7_RESULTS``)."""
    pending = {name: (int(n), oldest) for name, n, oldest in session.execute(
        select(Delivery.destination, func.count(), func.min(Delivery.created_at))
        .where(Delivery.state == DeliveryState.PENDING).group_by(Delivery.destination)).all()}
    failed = dict(session.execute(
        select(Delivery.destination, func.count())
        .where(Delivery.state == DeliveryState.FAILED).group_by(Delivery.destination)).all())
    names = list(dict.fromkeys([*destinations, *pending, *failed]))
    found = []
    for name in names:
        waiting, oldest_at = pending.get(name, (0, None))
        found.append(Backlog(name, waiting, oldest_at,
                             _last_error(session, Delivery, Delivery.destination == name),
                             int(failed.get(name, 0))))
    count, oldest = session.execute(
        select(func.count(), func.min(Hl7ResultMessage.created_at))
        .where(Hl7ResultMessage.state == Hl7ResultState.PENDING)).one()
    messages_failed = session.execute(select(func.count()).where(
        Hl7ResultMessage.state == Hl7ResultState.FAILED)).scalar_one()
    if count or messages_failed:
        found.append(Backlog(HL7_RESULTS, int(count), oldest,
                             _last_error(session, Hl7ResultMessage, True),
                             int(messages_failed)))
    return found


def _last_error(session: Session, table: type[Delivery] | type[Hl7ResultMessage],
                where: object) -> str | None:
    """The error of the newest pending or failed item that has one."""
    return session.execute(
        select(table.last_error).where(where,  # type: ignore[arg-type]
                                       table.state.in_(["pending", "failed"]),
                                       table.last_error.is_not(None))
        .order_by(table.id.desc()).limit(1)).scalar_one_or_none()
