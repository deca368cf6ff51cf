"""What an order cancel (ORC-1 CA, OC, DC) does to the studies linked to it.

Pending work is cancelled and the study moves to ``cancelled``, unless another live
order is still linked to the study (then that order's history is used instead). A
study whose results exist or are being made gets a ``results_withdrawal_requested``
audit event through ``request_results_withdrawal``, the hook where the sender withdraws
delivered results (IHE IOCM rejection note).
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mmbcd_node.db.audit import record_event
from mmbcd_node.db.models import Job, JobState, Study, StudyState, utcnow
from mmbcd_node.db.order_models import MatchState, Order, StudyOrder
from mmbcd_node.db.study_state import change_state
from mmbcd_node.logs import get_logger
from mmbcd_node.match.matcher import MATCHER, live_orders

log = get_logger(__name__)

CANCELLABLE = (StudyState.COMPLETE, StudyState.HELD, StudyState.QUEUED)
WITH_RESULTS = (StudyState.RUNNING, StudyState.DONE, StudyState.DELIVERED,
                StudyState.NOT_ANALYSABLE)  # a not-attempted result goes too


def cancel_order_work(session: Session, order: Order) -> list[Study]:
    """Cancel the pending work of every study linked only to ``order`` (now cancelled).

    Runs in the caller's transaction; returns the studies affected. A study still
    receiving images is left alone: once complete, the matcher finds every linked
    order cancelled and cancels it then.
    """
    studies = session.execute(
        select(Study).join(StudyOrder, StudyOrder.study_id == Study.id)
        .where(StudyOrder.order_id == order.id, StudyOrder.state == MatchState.LINKED)
    ).scalars().all()
    affected = []
    for study in studies:
        if live_orders(session, study.id):
            record_event(session, "order_cancelled", actor=MATCHER, study_uid=study.study_uid,
                         accession_number=order.accession_number,
                         detail={"order_id": order.id, "study_continues": True})
            continue
        jobs = session.execute(
            update(Job).where(Job.study_id == study.id, Job.state == JobState.QUEUED)
            .values(state=JobState.CANCELLED, finished_at=utcnow(),
                    error=f"order {order.id} cancelled")
            .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
        before = study.state
        cancelled = change_state(session, study, StudyState.CANCELLED,
                                 only_from=set(CANCELLABLE))
        record_event(session, "order_cancelled", actor=MATCHER, study_uid=study.study_uid,
                     accession_number=order.accession_number,
                     detail={"order_id": order.id, "jobs_cancelled": jobs,
                             "study_state_before": before, "study_cancelled": cancelled})
        if before in WITH_RESULTS:
            request_results_withdrawal(session, study, order)
        log.info("order_cancelled", order_id=order.id, study_uid=study.study_uid,
                 jobs_cancelled=jobs, study_cancelled=cancelled)
        affected.append(study)
    return affected


def request_results_withdrawal(session: Session, study: Study, order: Order) -> None:
    """Record that the results of ``study`` must be withdrawn because its order was cancelled.

    The sender acts on ``results_withdrawal_requested`` events (IOCM rejection note for
    every delivered object); this function is the single place that asks for it.
    """
    record_event(session, "results_withdrawal_requested", actor=MATCHER,
                 study_uid=study.study_uid, accession_number=order.accession_number,
                 detail={"order_id": order.id, "study_state": study.state,
                         "reason": "order cancelled"})
