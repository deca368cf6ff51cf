"""The job queue in SQL: jobs are added here and claimed by workers under a lease.

A claim is one atomic statement per database: PostgreSQL selects the next jobs with
``FOR UPDATE SKIP LOCKED`` (two workers never wait on, or take, the same row); SQLite,
where SQLAlchemy silently drops ``SKIP LOCKED``, runs one conditional
``UPDATE ... WHERE id IN (SELECT ...) RETURNING`` inside ``BEGIN IMMEDIATE``.

Order: a job's *virtual start* is ``not_before + priority x priority_aging_seconds``;
the smallest runs first. An urgent job beats a normal one queued at the same time,
but a background job that has waited ``2 x priority_aging_seconds`` beats a fresh
urgent one, so no priority starves.

A worker holds its job by heartbeats that push ``lease_expires_at`` forward. A job
whose lease ran out (its worker died) counts as a failed attempt and is queued again
with backoff, or ``failed`` when its attempts are used up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, extract, func, literal, select, update
from sqlalchemy.orm import Session

from mmbcd_node.config import WorkerConfig
from mmbcd_node.db.models import Job, JobState, Priority, utcnow
from mmbcd_node.db.utc import database_now
from mmbcd_node.logs import get_logger
from mmbcd_node.retry import backoff

log = get_logger(__name__)


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker needs about a job it holds: the id, the study and the attempt."""

    id: int
    study_id: int
    attempt: int
    reason: str
    without_history: bool
    priority: int


def enqueue_job(session: Session, study_id: int, *, priority: Priority = Priority.NORMAL,
                reason: str = "new", without_history: bool = False) -> Job:
    """Add a queued job for the study inside the caller's transaction.

    A study has at most one pending (queued or running) job: if one exists it is
    returned, with its priority raised when the new request is more urgent.
    """
    pending = session.execute(
        select(Job).where(Job.study_id == study_id,
                          Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
    ).scalar_one_or_none()
    if pending is not None:
        pending.priority = min(pending.priority, int(priority))
        pending.without_history = pending.without_history or without_history
        return pending
    job = Job(study_id=study_id, priority=int(priority), reason=reason,
              without_history=without_history, state=JobState.QUEUED)
    session.add(job)
    session.flush()
    return job


def _virtual_start(session: Session, aging_seconds: float) -> ColumnElement[Any]:
    """``not_before + priority x aging`` as a sortable SQL expression of this dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return extract("epoch", Job.not_before) + Job.priority * literal(aging_seconds)
    return func.julianday(Job.not_before) * 86400.0 + Job.priority * literal(aging_seconds)


def claim_jobs(session: Session, owner: str, policy: WorkerConfig, *, limit: int = 1,
               now: datetime | None = None) -> list[ClaimedJob]:
    """Claim up to ``limit`` runnable jobs for ``owner``; commit right after.

    Expired leases are released first (see ``release_expired_leases``). The claimed
    jobs are ``running`` with ``lease_owner = owner`` and a lease of
    ``policy.lease_seconds``; an empty list means nothing is runnable now.
    """
    now = now or database_now(session)
    release_expired_leases(session, policy, now=now)
    runnable = and_(Job.state == JobState.QUEUED, Job.not_before <= now)
    order = (_virtual_start(session, policy.priority_aging_seconds), Job.id)
    if session.get_bind().dialect.name == "postgresql":
        ids = select(Job.id).where(runnable).order_by(*order).limit(limit).with_for_update(
            skip_locked=True)
        locked = session.execute(ids).scalars().all()
        if not locked:
            return []
        wanted: ColumnElement[bool] = Job.id.in_(locked)
    else:
        # One statement; BEGIN IMMEDIATE already serialises writers between processes.
        wanted = Job.id.in_(select(Job.id).where(runnable).order_by(*order).limit(limit)
                            .scalar_subquery())
    rows = session.execute(
        update(Job).where(wanted, Job.state == JobState.QUEUED)
        .values(state=JobState.RUNNING, lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=policy.lease_seconds),
                heartbeat_at=now, started_at=now, attempts=Job.attempts + 1)
        .returning(Job.id, Job.study_id, Job.attempts, Job.reason, Job.without_history,
                   Job.priority)
        .execution_options(synchronize_session=False)
    ).all()
    claimed = [ClaimedJob(*row) for row in rows]
    for job in claimed:
        log.info("job_claimed", job=job.id, study_id=job.study_id, attempt=job.attempt, owner=owner)
    return claimed


def release_expired_leases(session: Session, policy: WorkerConfig, *,
                           now: datetime | None = None) -> int:
    """Requeue (with backoff) or fail every running job whose lease has run out.

    Returns how many jobs were released. The dead worker's attempt counts; the error
    names it, so ``jobs show`` tells why the job ran again.
    """
    now = now or database_now(session)
    expired = session.execute(
        select(Job.id, Job.lease_owner)
        .where(Job.state == JobState.RUNNING, Job.lease_expires_at < now)
    ).all()
    for job_id, owner in expired:
        _end_attempt(session, job_id, owner, f"lease of worker {owner} expired", policy,
                     now=now, retry=True)
    return len(expired)


def heartbeat(session: Session, job_id: int, owner: str, policy: WorkerConfig, *,
              now: datetime | None = None) -> bool:
    """Extend ``owner``'s lease on the job; ``False`` means the lease is lost.

    A worker whose heartbeat fails must drop its work: another worker may hold the job.
    """
    now = now or database_now(session)
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == owner,
                          Job.state == JobState.RUNNING)
        .values(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=policy.lease_seconds))
        .execution_options(synchronize_session=False))
    return result.rowcount == 1  # type: ignore[attr-defined]


def holds_lease(session: Session, job_id: int, owner: str) -> bool:
    """Whether ``owner`` still holds the job, read with a row lock where the database has one.

    Called in the transaction that stores a job's results, so that a worker whose lease
    was taken over never stores a second result set.
    """
    query = select(Job.id).where(Job.id == job_id, Job.lease_owner == owner,
                                 Job.state == JobState.RUNNING)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return session.execute(query).first() is not None


def complete_job(session: Session, job_id: int, owner: str, *, bundle_digest: str | None = None,
                 now: datetime | None = None) -> bool:
    """Mark ``owner``'s job done; ``False`` (and nothing changed) if the lease was lost."""
    now = now or utcnow()
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == owner,
                          Job.state == JobState.RUNNING)
        .values(state=JobState.DONE, finished_at=now, lease_expires_at=None,
                bundle_digest=bundle_digest, error=None)
        .execution_options(synchronize_session=False))
    return result.rowcount == 1  # type: ignore[attr-defined]


def fail_job(session: Session, job_id: int, owner: str, error: str, policy: WorkerConfig, *,
             retry: bool = True, now: datetime | None = None) -> str | None:
    """End ``owner``'s attempt with ``error``: queued again with backoff, or ``failed``.

    ``retry=False`` fails the job at once (input that no retry can fix, such as
    corrupt pixel data). Returns the new state, or ``None`` if the lease was lost.
    """
    return _end_attempt(session, job_id, owner, error, policy, now=now or utcnow(), retry=retry)


def _end_attempt(session: Session, job_id: int, owner: str | None, error: str,
                 policy: WorkerConfig, *, now: datetime, retry: bool) -> str | None:
    attempts = session.execute(select(Job.attempts).where(Job.id == job_id)).scalar_one()
    give_up = not retry or attempts >= policy.max_attempts
    values: dict[str, object] = {"error": error[:4000], "lease_owner": None,
                                 "lease_expires_at": None}
    if give_up:
        values.update(state=JobState.FAILED, finished_at=now)
    else:
        values.update(state=JobState.QUEUED,
                      not_before=now + backoff(policy.backoff_seconds, attempts))
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == owner,
                          Job.state == JobState.RUNNING, Job.attempts == attempts)
        .values(**values).execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    state = str(values["state"])
    log.warning("job_attempt_failed", job=job_id, attempt=attempts, state=state, error=error[:200])
    return state


def cancel_pending_jobs(session: Session, study_id: int, reason: str) -> Sequence[int]:
    """Cancel the study's queued or running jobs; return their ids.

    A running job's worker finds its lease gone when it tries to store results and
    drops them, so a cancelled study never gets a late result.
    """
    ids = session.execute(
        update(Job).where(Job.study_id == study_id,
                          Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
        .values(state=JobState.CANCELLED, finished_at=utcnow(), error=reason,
                lease_owner=None, lease_expires_at=None)
        .returning(Job.id).execution_options(synchronize_session=False)
    ).scalars().all()
    return ids
