"""The job queue in SQL: jobs are added here and claimed by workers under a lease."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mmbcd_node.db.models import Job, JobState, Priority


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
