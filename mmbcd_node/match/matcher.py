"""Which order belongs to which study, and when a matched study is ready for work.

Rules, first hit wins (the README's "Orders (HL7)", Matching): Study Instance UID;
accession number (with its issuer when both sides carry one); requested procedure id. A
hit counts only when the patient id (and its issuer, when both carry one) agrees;
otherwise the pair goes on the reconciliation list as a candidate, because the wrong
history on the wrong patient is the worst thing this node can do. A study with no
linked order whose patient has an order dated within ``[orders] date_window_days`` gets
that order as a candidate too, never as a link. An admin decides candidates with
``mmbcd-node reconcile``.

Matching runs when an order arrives (``match_order``) and when a study is complete
(``match_study``, from the scheduler's periodic check); ``advance_study`` then moves a
complete or held study on: queued when a live order is linked, cancelled when all its
linked orders are cancelled, and after ``[orders] wait_seconds`` without an order the
``no_order_policy``. Every state change is a conditional UPDATE so that two processes
never both take the same step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import NodeConfig
from mmbcd_node.db.audit import record_event
from mmbcd_node.db.models import Priority, Study, StudyState, utcnow
from mmbcd_node.db.order_models import MatchState, Order, StudyOrder, is_stat
from mmbcd_node.db.session import transaction
from mmbcd_node.db.study_state import change_state
from mmbcd_node.job_queue import enqueue_job
from mmbcd_node.logs import get_logger, study_context

log = get_logger(__name__)
# Complete or held: waiting for an order, or for the wait to end.
WAITING = frozenset({StudyState.COMPLETE, StudyState.HELD})

MATCHER = "matcher"
RULES = ("study_uid", "accession", "requested_procedure_id")
PATIENT_DATE = "patient_date"
MANUAL = "manual"
# Studies whose order may still change what happens to them.
AWAITING = (StudyState.RECEIVING, StudyState.COMPLETE, StudyState.HELD)


@dataclass(frozen=True)
class Match:
    """The outcome of comparing one study with one order."""

    rule: str
    state: MatchState
    note: str | None = None


def compare(study: Study, order: Order, *, window_days: int, study_has_link: bool
            ) -> Match | None:
    """Whether ``order`` belongs to ``study``: a link, a candidate, or None (unrelated)."""
    rule = identifier_rule(study, order)
    patient_ok, why = patient_agrees(study, order)
    if rule is not None:
        if patient_ok:
            return Match(rule, MatchState.LINKED)
        return Match(rule, MatchState.CANDIDATE, f"{rule} matches but {why}")
    if patient_ok and not study_has_link and _within_window(study, order, window_days):
        return Match(PATIENT_DATE, MatchState.CANDIDATE,
                     f"same patient, dates within {window_days} days; no identifier matches")
    return None


def identifier_rule(study: Study, order: Order) -> str | None:
    """The first identifier rule by which study and order match, or None."""
    if order.study_uid and order.study_uid == study.study_uid:
        return "study_uid"
    if order.accession_number and order.accession_number == study.accession_number and \
            _same_or_unknown(order.issuer_of_accession, study.issuer_of_accession):
        return "accession"
    if order.requested_procedure_id and \
            order.requested_procedure_id == study.requested_procedure_id:
        return "requested_procedure_id"
    return None


def patient_agrees(study: Study, order: Order) -> tuple[bool, str]:
    """(True, "") when the patient ids (and issuers, where both have one) are equal."""
    if not study.patient_id or not order.patient_id:
        return False, "the study or the order has no patient id"
    if study.patient_id.strip() != order.patient_id.strip():
        return False, (f"patient id differs (study {study.patient_id!r}, "
                       f"order {order.patient_id!r})")
    if not _same_or_unknown(order.issuer_of_patient_id, study.issuer_of_patient_id):
        return False, (f"issuer of patient id differs (study {study.issuer_of_patient_id!r}, "
                       f"order {order.issuer_of_patient_id!r})")
    return True, ""


def match_order(session: Session, order: Order, config: NodeConfig) -> list[StudyOrder]:
    """Match a new or updated order against the studies held; advance linked studies.

    Runs inside the caller's transaction. Returns the matches created or changed.
    """
    if order.cancelled:
        return []
    clauses = [Study.patient_id == order.patient_id]
    if order.study_uid:
        clauses.append(Study.study_uid == order.study_uid)
    if order.accession_number:
        clauses.append(Study.accession_number == order.accession_number)
    if order.requested_procedure_id:
        clauses.append(Study.requested_procedure_id == order.requested_procedure_id)
    studies = session.execute(select(Study).where(or_(*clauses))).scalars().all()
    changed = []
    for study in studies:
        # Log lines about this study's match carry its correlation id.
        with study_context(study.correlation_id):
            match = compare(study, order, window_days=config.orders.date_window_days,
                            study_has_link=_has_live_link(session, study.id))
            if (match is not None and match.rule == PATIENT_DATE
                    and study.state not in AWAITING):
                match = None  # a study already processed needs no candidate order any more
            if match is not None:
                row = record_match(session, study, order, match)
                if row is not None:
                    changed.append(row)
            if study.state in (StudyState.COMPLETE, StudyState.HELD, StudyState.QUEUED):
                advance_study(session, study, config)
    return changed


def match_study(session: Session, study: Study, config: NodeConfig) -> list[StudyOrder]:
    """Match a (complete) study against every live order. Runs in the caller's transaction."""
    changed = []
    for order, match in new_matches(session, study, config):
        row = record_match(session, study, order, match)
        if row is not None:
            changed.append(row)
    return changed


def new_matches(session: Session, study: Study, config: NodeConfig
                ) -> list[tuple[Order, Match]]:
    """The matches ``match_study`` would record for ``study``; reads only."""
    clauses = [Order.study_uid == study.study_uid]
    if study.patient_id:
        clauses.append(Order.patient_id == study.patient_id)
    if study.accession_number:
        clauses.append(Order.accession_number == study.accession_number)
    if study.requested_procedure_id:
        clauses.append(Order.requested_procedure_id == study.requested_procedure_id)
    orders = session.execute(
        select(Order).where(Order.cancelled.is_(False), or_(*clauses)).order_by(Order.id)
    ).scalars().all()
    if not orders:
        return []
    recorded = {order_id: state for order_id, state in session.execute(
        select(StudyOrder.order_id, StudyOrder.state).where(StudyOrder.study_id == study.id))}
    has_link = _has_live_link(session, study.id)
    found: list[tuple[Order, Match]] = []
    # Identifier links first, so that patient/date candidates appear only for studies
    # that no identifier links.
    for order in sorted(orders, key=lambda o: identifier_rule(study, o) is None):
        match = compare(study, order, window_days=config.orders.date_window_days,
                        study_has_link=has_link)
        if match is None:
            continue
        previous = recorded.get(order.id)
        if previous in (MatchState.REJECTED, MatchState.LINKED) or previous == match.state:
            continue
        found.append((order, match))
        has_link = has_link or match.state == MatchState.LINKED
    return found


def record_match(session: Session, study: Study, order: Order, match: Match, *,
                 actor: str = MATCHER) -> StudyOrder | None:
    """Insert or upgrade the study-order row; None when nothing changed.

    A rejected pair is never proposed again by the matcher, and a link is never
    downgraded to a candidate by it: only an admin undoes those.
    """
    row = session.execute(select(StudyOrder).where(
        StudyOrder.study_id == study.id, StudyOrder.order_id == order.id)).scalar_one_or_none()
    if row is not None:
        if actor == MATCHER and (row.state in (MatchState.REJECTED, MatchState.LINKED)
                                 or row.state == match.state):
            return None
        row.state, row.rule, row.note = match.state, match.rule, match.note
        row.decided_by, row.decided_at = actor, utcnow()
    else:
        row = StudyOrder(study_id=study.id, order_id=order.id, rule=match.rule,
                         state=match.state, note=match.note, decided_by=actor)
        session.add(row)
    session.flush()
    action = "order_matched" if match.state == MatchState.LINKED else "order_candidate"
    record_event(session, action, actor=actor, study_uid=study.study_uid,
                 accession_number=order.accession_number, patient_id=study.patient_id,
                 detail={"order_id": order.id, "rule": match.rule, "state": match.state,
                         "note": match.note})
    log.info(action, study_uid=study.study_uid, order_id=order.id, rule=match.rule)
    return row


def live_orders(session: Session, study_id: int) -> list[Order]:
    """The non-cancelled orders linked to the study, newest (by creation) first.

    An update (XO/XX/SC) changes an order in place; it does not make it newer.
    """
    return list(session.execute(
        select(Order).join(StudyOrder, StudyOrder.order_id == Order.id)
        .where(StudyOrder.study_id == study_id, StudyOrder.state == MatchState.LINKED,
               Order.cancelled.is_(False))
        .order_by(Order.created_at.desc(), Order.id.desc())
    ).scalars().all())


def advance_study(session: Session, study: Study, config: NodeConfig,
                  now: datetime | None = None) -> str | None:
    """Move a complete/held study on; return its new state, or None when it stays.

    Queued (urgent for a STAT order) when a live order is linked; cancelled when every
    linked order is cancelled; after ``wait_seconds`` without a linked order the
    ``no_order_policy`` applies, except that open candidates always hold the study for
    an admin. A queued study whose order turns STAT has its job's priority raised.
    """
    now = now or utcnow()
    live = live_orders(session, study.id)
    urgent = any(is_stat(o.priority) for o in live)
    if study.state == StudyState.QUEUED:
        if urgent:
            enqueue_job(session, study.id, priority=Priority.URGENT)
        return None
    if study.state not in (StudyState.COMPLETE, StudyState.HELD):
        return None
    if live:
        return _queue(session, study, priority=Priority.URGENT if urgent else Priority.NORMAL,
                      without_history=False, why=f"order {live[0].id}")
    if _has_link(session, study.id):
        if change_state(session, study, StudyState.CANCELLED, only_from=WAITING):
            record_event(session, "study_cancelled", actor=MATCHER, study_uid=study.study_uid,
                         detail={"reason": "every linked order is cancelled"})
            return StudyState.CANCELLED
        return None
    if study.state != StudyState.COMPLETE:
        return None
    if not _wait_over(study, config, now):
        return None
    has_candidates = session.execute(select(StudyOrder.id).where(
        StudyOrder.study_id == study.id, StudyOrder.state == MatchState.CANDIDATE).limit(1)
    ).first() is not None
    if config.orders.no_order_policy == "run_without_history" and not has_candidates:
        return _queue(session, study, priority=Priority.NORMAL, without_history=True,
                      why="no order after the wait (policy run_without_history)")
    if change_state(session, study, StudyState.HELD, only_from={StudyState.COMPLETE}):
        reason = ("candidate orders need reconciliation" if has_candidates
                  else "no order after the wait (policy hold)")
        record_event(session, "study_held", actor=MATCHER, study_uid=study.study_uid,
                     patient_id=study.patient_id, accession_number=study.accession_number,
                     detail={"reason": reason})
        log.info("study_held", study_uid=study.study_uid, reason=reason)
        return StudyState.HELD
    return None


def queue_study(session: Session, study: Study, *, without_history: bool, why: str,
                actor: str) -> bool:
    """Queue a complete or held study now (admin decisions); False if its state moved on."""
    live = live_orders(session, study.id)
    priority = Priority.URGENT if any(is_stat(o.priority) for o in live) else Priority.NORMAL
    return _queue(session, study, priority=priority, without_history=without_history, why=why,
                  actor=actor) is not None


def check_complete_studies(config: NodeConfig, sessions: sessionmaker[Session],
                           limit: int = 200) -> int:
    """Periodic check: match complete studies with orders and apply the wait policy.

    One read finds the studies with something to do (a new match, a linked order, the
    wait over); each of those is then handled in its own transaction, so studies that
    are simply waiting cost no write. Returns how many changed state.
    """
    now = utcnow()
    with sessions() as session:
        studies = session.execute(select(Study).where(Study.state == StudyState.COMPLETE)
                                  .order_by(Study.completed_at).limit(limit)).scalars().all()
        due = [s.id for s in studies if _wait_over(s, config, now) or _has_link(session, s.id)
               or new_matches(session, s, config)]
    changed = 0
    for study_id in due:
        with transaction(sessions) as session:
            study = session.get(Study, study_id)
            if study is None or study.state != StudyState.COMPLETE:
                continue
            match_study(session, study, config)
            if advance_study(session, study, config, now) is not None:
                changed += 1
    return changed


def _queue(session: Session, study: Study, *, priority: Priority, without_history: bool,
           why: str, actor: str = MATCHER) -> str | None:
    if not change_state(session, study, StudyState.QUEUED, only_from=WAITING):
        return None
    job = enqueue_job(session, study.id, priority=priority,
                      reason="rerun" if study.rerun_requested else "new",
                      without_history=without_history)
    record_event(session, "study_queued", actor=actor, study_uid=study.study_uid,
                 accession_number=study.accession_number,
                 detail={"job_id": job.id, "priority": Priority(job.priority).name.lower(),
                         "without_history": without_history, "why": why})
    log.info("study_queued", study_uid=study.study_uid, job_id=job.id,
             priority=Priority(job.priority).name.lower(), without_history=without_history)
    return StudyState.QUEUED


def _has_live_link(session: Session, study_id: int) -> bool:
    return bool(live_orders(session, study_id))


def _has_link(session: Session, study_id: int) -> bool:
    """Whether any order (live or cancelled) is linked to the study."""
    return session.execute(select(StudyOrder.id).where(
        StudyOrder.study_id == study_id, StudyOrder.state == MatchState.LINKED).limit(1)
    ).first() is not None


def _wait_over(study: Study, config: NodeConfig, now: datetime) -> bool:
    completed = study.completed_at or study.state_changed_at
    return now >= completed + timedelta(seconds=config.orders.wait_seconds)


def _same_or_unknown(a: str | None, b: str | None) -> bool:
    return not a or not b or a.strip() == b.strip()


def _within_window(study: Study, order: Order, days: int) -> bool:
    study_day, order_day = _day(study.study_date), _day(order.order_date)
    if study_day is None or order_day is None:
        return False
    return abs((study_day - order_day).days) <= days


def _day(text: str | None) -> date | None:
    try:
        return datetime.strptime(text or "", "%Y%m%d").date()
    except ValueError:
        return None



