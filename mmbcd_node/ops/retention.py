"""Retention: delete received images when the policy of ``[retention]`` says they may go.

- A study whose results were delivered (every delivery sent, and committed where
  commitment was asked) loses its images ``delivered_days`` after the last delivery.
- A study that will never deliver (held, failed, cancelled; done with no delivery or a
  failed one) loses them ``undelivered_days`` after it last changed.
- A study with pending work (receiving, complete, queued, running, a job waiting, a
  delivery outstanding) is never touched, however old.

Only image files go: results, output objects, rows and the audit trail stay.
``instances.purged_at`` is set and a ``study_purged`` audit event (sent on as a DICOM
Study Deleted message) is written in the same transaction, before any file is
unlinked, so a crash can leave a marked file behind, which the next run removes,
but never an unmarked row whose file is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import NodeConfig, RetentionConfig
from mmbcd_node.db.audit import record_event
from mmbcd_node.db.models import Instance, Job, JobState, Study, StudyState, utcnow
from mmbcd_node.db.ops_models import ScheduledRun
from mmbcd_node.db.result_models import (
    CommitmentState,
    Delivery,
    DeliveryState,
    OutputObject,
    Result,
)
from mmbcd_node.db.session import transaction
from mmbcd_node.logs import get_logger

log = get_logger(__name__)

PENDING_STATES = (StudyState.RECEIVING, StudyState.COMPLETE, StudyState.QUEUED,
                  StudyState.RUNNING)
RUN_NAME = "retention"


@dataclass(frozen=True)
class PurgeCandidate:
    """One study the policy lets go, and why."""

    study_id: int
    study_uid: str
    patient_id: str | None
    accession_number: str | None
    state: str
    rule: str  # delivered | undelivered
    since: datetime  # the moment the age is counted from
    files: int
    bytes: int

    def age_days(self, now: datetime) -> float:
        return (now - self.since).total_seconds() / 86400


def _deliveries_by_study(session: Session) -> dict[int, list[tuple[DeliveryState,
                                                                  CommitmentState | None,
                                                                  datetime | None]]]:
    """Study id -> [(delivery state, commitment state, moment)] over the study's results."""
    rows = session.execute(
        select(Result.study_id, Delivery.state, Delivery.commitment_state,
               func.coalesce(Delivery.committed_at, Delivery.sent_at))
        .select_from(Delivery).join(OutputObject, Delivery.output_id == OutputObject.id)
        .join(Result, OutputObject.result_id == Result.id)).all()
    found: dict[int, list[tuple[DeliveryState, CommitmentState | None, datetime | None]]] = {}
    for study_id, state, commitment, moment in rows:
        found.setdefault(study_id, []).append(
            (DeliveryState(state), CommitmentState(commitment) if commitment else None, moment))
    return found


def find_candidates(session: Session, policy: RetentionConfig,
                    now: datetime | None = None) -> list[PurgeCandidate]:
    """Studies whose unpurged images the policy lets go at ``now``, oldest first."""
    now = now or utcnow()
    busy_jobs = select(Job.study_id).where(Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
    files = (select(Instance.study_id, func.count(Instance.id).label("files"),
                    func.sum(Instance.size_bytes).label("bytes"))
             .where(Instance.purged_at.is_(None)).group_by(Instance.study_id).subquery())
    rows = session.execute(
        select(Study, files.c.files, files.c.bytes).join(files, files.c.study_id == Study.id)
        .where(Study.state.not_in(PENDING_STATES), Study.id.not_in(busy_jobs))).all()
    deliveries = _deliveries_by_study(session)
    candidates = []
    for study, count, size in rows:
        rule, since = _rule(study, deliveries.get(study.id, []))
        if rule is None or since is None:
            continue
        days = policy.delivered_days if rule == "delivered" else policy.undelivered_days
        if since <= now - timedelta(days=days):
            candidates.append(PurgeCandidate(study.id, study.study_uid, study.patient_id,
                                             study.accession_number, study.state, rule, since,
                                             int(count), int(size or 0)))
    return sorted(candidates, key=lambda c: c.since)


def _rule(study: Study,
          deliveries: list[tuple[DeliveryState, CommitmentState | None, datetime | None]]
          ) -> tuple[str | None, datetime | None]:
    outstanding = [d for d in deliveries
                   if d[0] == DeliveryState.PENDING
                   or (d[0] == DeliveryState.SENT and d[1] == CommitmentState.REQUESTED)]
    if outstanding:
        return None, None  # results still on their way: pending work
    changed = max(study.last_received_at, study.state_changed_at)
    if study.state == StudyState.DELIVERED and deliveries and all(
            d[0] in (DeliveryState.SENT, DeliveryState.COMMITTED) for d in deliveries):
        moments = [d[2] for d in deliveries if d[2] is not None]
        return "delivered", max(moments) if moments else changed
    return "undelivered", changed


def purge_study(session: Session, candidate: PurgeCandidate, actor: str, storage_root: Path,
                now: datetime | None = None) -> list[Path]:
    """Mark the study's unpurged images purged and audit it; return the files to unlink.

    Re-checks, inside the caller's transaction, that the study is still in the state it
    was found in (a late image reopens a study; then nothing is marked).
    """
    now = now or utcnow()
    still = session.execute(
        select(Study.id).where(Study.id == candidate.study_id, Study.state == candidate.state)
        .with_for_update()).scalar_one_or_none()
    if still is None:
        return []
    paths = session.execute(
        update(Instance).where(Instance.study_id == candidate.study_id,
                               Instance.purged_at.is_(None))
        .values(purged_at=now).returning(Instance.path)
        .execution_options(synchronize_session=False)).scalars().all()
    if not paths:
        return []
    record_event(session, "study_purged", actor=actor, study_uid=candidate.study_uid,
                 patient_id=candidate.patient_id, accession_number=candidate.accession_number,
                 detail={"rule": candidate.rule, "files": len(paths),
                         "bytes": candidate.bytes, "state": candidate.state,
                         "age_days": round(candidate.age_days(now), 2)})
    return [storage_root / p for p in paths]


def unlink_files(paths: Iterable[Path], storage_root: Path) -> int:
    """Delete the files and the folders they leave empty (below the storage root)."""
    removed = 0
    root = storage_root.resolve()
    for path in paths:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            continue
        folder = path.parent.resolve()
        while folder != root and root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent
    return removed


def leftover_files(session: Session, storage_root: Path) -> list[Path]:
    """Files of instances marked purged that are still on disk (a run that crashed)."""
    paths = session.execute(select(Instance.path).where(Instance.purged_at.is_not(None))
                            ).scalars().all()
    return [storage_root / p for p in paths if (storage_root / p).exists()]


@dataclass(frozen=True)
class PurgeReport:
    studies: int
    files: int
    bytes: int


def run_purge(config: NodeConfig, sessions: sessionmaker[Session], actor: str,
              now: datetime | None = None,
              progress: Callable[[list[PurgeCandidate]], Iterable[PurgeCandidate]] = iter,
              ) -> PurgeReport:
    """Purge every study the policy lets go; one transaction per study; audited.

    ``progress`` wraps the list of studies (the CLI passes a progress bar).
    """
    root = Path(config.storage.root)
    with sessions() as session:
        candidates = find_candidates(session, config.retention, now)
        leftovers = leftover_files(session, root)
    studies = files = size = 0
    unlink_files(leftovers, root)
    for candidate in progress(candidates):
        with transaction(sessions) as session:
            paths = purge_study(session, candidate, actor, root, now)
        if paths:
            files += unlink_files(paths, root)
            studies += 1
            size += candidate.bytes
            log.info("study_purged", study_uid=candidate.study_uid, rule=candidate.rule,
                     files=len(paths))
    with transaction(sessions) as session:
        _mark_run(session, now or utcnow())
    return PurgeReport(studies, files, size)


def _mark_run(session: Session, moment: datetime) -> None:
    changed = session.execute(update(ScheduledRun).where(ScheduledRun.name == RUN_NAME)
                              .values(last_run_at=moment)
                              .execution_options(synchronize_session=False)
                              ).rowcount  # type: ignore[attr-defined]
    if not changed:
        session.add(ScheduledRun(name=RUN_NAME, last_run_at=moment))


def purge_due(config: NodeConfig, sessions: sessionmaker[Session],
              now: datetime | None = None) -> bool:
    """Whether the ``[retention] schedule`` (cron, local time) fired since the last run.

    The last run is kept in ``scheduled_runs``, so a restart, or several scheduler
    processes, never lose or repeat a scheduled run (a repeat finds nothing to purge).
    A node that has never purged waits for a fire time less than an hour old.
    """
    now = now or utcnow()
    trigger = CronTrigger.from_crontab(config.retention.schedule)
    fired = None
    moment = trigger.get_next_fire_time(None, now - timedelta(days=2))
    while moment is not None and moment <= now:
        fired = moment
        moment = trigger.get_next_fire_time(moment, moment + timedelta(seconds=1))
    if fired is None:
        return False
    with sessions() as session:
        last = session.execute(select(ScheduledRun.last_run_at)
                               .where(ScheduledRun.name == RUN_NAME)).scalar()
    if last is None:
        return now - fired <= timedelta(hours=1)
    return last < fired


def scheduled_purge(config: NodeConfig, sessions: sessionmaker[Session]) -> None:
    """The scheduler's periodic check: purge when the retention schedule is due."""
    if purge_due(config, sessions):
        report = run_purge(config, sessions, actor="retention")
        log.info("retention_run", studies=report.studies, files=report.files, bytes=report.bytes)
