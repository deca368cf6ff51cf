"""Study completion: when a study has stopped receiving, and reopening it when late images come.

A study in ``receiving`` becomes ``complete`` when

* all four standard views (R/L x CC/MLO) are present and no instance arrived for
  ``[completion] expected_views_quiet_seconds``  (``completed_by = expected_views``), or
* no instance arrived for ``quiet_seconds``  (``quiet``), or
* an administrator forces it with ``mmbcd-node complete STUDY_UID``  (``forced``).

Every transition is one conditional ``UPDATE ... WHERE state = ...``: when two
processes race, exactly one sees a changed row and writes the audit event. Nothing is
kept in memory, so a restarted scheduler simply finds the due studies again in SQL.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import NodeConfig
from mmbcd_node.db.audit import record_event
from mmbcd_node.db.models import Instance, Study, StudyState, utcnow
from mmbcd_node.db.session import transaction
from mmbcd_node.db.study_state import change_state
from mmbcd_node.logs import get_logger

log = get_logger(__name__)

EXPECTED_VIEWS = frozenset({("R", "CC"), ("R", "MLO"), ("L", "CC"), ("L", "MLO")})
# A late image does not bring a cancelled study (its order was withdrawn) back to life.
NOT_REOPENED = frozenset({StudyState.RECEIVING, StudyState.CANCELLED})


class CompletedBy(enum.StrEnum):
    EXPECTED_VIEWS = "expected_views"
    QUIET = "quiet"
    FORCED = "forced"


@dataclass(frozen=True)
class ForceOutcome:
    """Result of ``force_complete``: whether it changed the study, and its state now."""

    completed: bool
    state: str | None  # None: no such study


def present_views(session: Session, study_id: int) -> set[tuple[str, str]]:
    """The (laterality, view) pairs among the study's stored instances."""
    rows = session.execute(
        select(Instance.laterality, Instance.view).where(Instance.study_id == study_id)
        .where(Instance.laterality.is_not(None), Instance.view.is_not(None)).distinct()
    ).all()
    return {(str(lat), str(view)) for lat, view in rows}


def has_expected_views(session: Session, study_id: int) -> bool:
    """True when R/L x CC/MLO are all present."""
    return EXPECTED_VIEWS.issubset(present_views(session, study_id))


def mark_complete(session: Session, study: Study, by: CompletedBy, *,
                  received_before: datetime | None = None, actor: str | None = None) -> bool:
    """Move ``study`` from receiving to complete, if it is still receiving.

    ``received_before``: only if no instance arrived after it (a new image in the
    meantime restarts the quiet period). Returns True when this call made the change;
    the audit event is written in the caller's transaction.
    """
    changed = change_state(
        session, study.id, StudyState.COMPLETE, completed_at=utcnow(), completed_by=by.value,
        where=None if received_before is None else Study.last_received_at <= received_before)
    if changed:
        record_event(session, "study_completed", actor=actor, study_uid=study.study_uid,
                     patient_id=study.patient_id, accession_number=study.accession_number,
                     detail={"completed_by": by.value})
        log.info("study_completed", study_uid=study.study_uid, completed_by=by.value)
    return changed


def complete_due_studies(config: NodeConfig, sessions: sessionmaker[Session]) -> int:
    """The periodic completion check: complete every receiving study whose timer ran out.

    Returns how many studies this call completed. Safe to run in several processes.
    """
    now = utcnow()
    views_cutoff = now - timedelta(seconds=config.completion.expected_views_quiet_seconds)
    quiet_cutoff = now - timedelta(seconds=config.completion.quiet_seconds)
    # Candidates: quiet for at least the shorter of the two periods.
    with sessions() as session:
        candidates = session.execute(
            select(Study).where(Study.state == StudyState.RECEIVING,
                                Study.last_received_at <= max(views_cutoff, quiet_cutoff))
        ).scalars().all()
    completed = 0
    for study in candidates:
        with transaction(sessions) as session:
            if study.last_received_at <= quiet_cutoff:
                done = mark_complete(session, study, CompletedBy.QUIET,
                                     received_before=quiet_cutoff)
            elif has_expected_views(session, study.id):
                done = mark_complete(session, study, CompletedBy.EXPECTED_VIEWS,
                                     received_before=views_cutoff)
            else:
                done = False
        completed += done
    return completed


def force_complete(sessions: sessionmaker[Session], study_uid: str, actor: str) -> ForceOutcome:
    """Complete ``study_uid`` now on an administrator's request (audited with ``actor``)."""
    with transaction(sessions) as session:
        study = session.execute(
            select(Study).where(Study.study_uid == study_uid)).scalar_one_or_none()
        if study is None:
            return ForceOutcome(completed=False, state=None)
        done = mark_complete(session, study, CompletedBy.FORCED, actor=actor)
        state = StudyState.COMPLETE.value if done else study.state
    return ForceOutcome(completed=done, state=state)


def reopen_if_finished(session: Session, study: Study, *, sop_instance_uid: str) -> bool:
    """A new mammogram arrived for ``study``: if it had left ``receiving``, reopen it.

    Back to ``receiving`` with ``rerun_requested`` set and ``reopen_count`` + 1, so the
    model runs again once it completes and earlier results get superseded. Runs in
    the caller's (the store's) transaction; returns True when it reopened the study.
    """
    if study.state in NOT_REOPENED:
        return False
    previous = study.state
    changed = change_state(session, study.id, StudyState.RECEIVING,
                           only_from={StudyState(previous)},
                           completed_at=None, completed_by=None, rerun_requested=True,
                           reopen_count=Study.reopen_count + 1, state_reason=None)
    if changed:
        record_event(session, "study_reopened", study_uid=study.study_uid,
                     patient_id=study.patient_id, accession_number=study.accession_number,
                     sop_instance_uid=sop_instance_uid, detail={"previous_state": previous})
        log.info("study_reopened", study_uid=study.study_uid, previous_state=previous)
    return changed
