"""Withdrawing results from the destinations with an IHE IOCM rejection note, and from
the RIS with an ORU.

A result is withdrawn when a re-run supersedes it (late images), its order was
cancelled, or an admin cancels the study with ``--withdraw``. Its objects not yet sent
are simply not sent; for those already delivered somewhere, a rejection note (Key
Object Selection) listing them is built, stored and delivered to those destinations
like any other output. Its ORU not yet sent is not sent either; where the RIS may show
the result, a cancelled result gets an ORU cancelling it (a superseded one is corrected
by the re-run's ORU instead).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pydicom
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import NodeConfig
from mmbcd_node.db.audit import record_event
from mmbcd_node.db.installation import installation_uuid
from mmbcd_node.db.models import AuditEvent, Job, Study, utcnow
from mmbcd_node.db.result_models import (
    Delivery,
    DeliveryState,
    OutputObject,
    Result,
    ResultState,
)
from mmbcd_node.db.session import transaction
from mmbcd_node.logs import get_logger
from mmbcd_node.results.rejection_note import RejectionReason, build_rejection_note
from mmbcd_node.send.deliveries import WITHDRAWN_UNSENT, create_deliveries
from mmbcd_node.send.hl7_result import withdraw_result_messages
from mmbcd_node.work.result_records import object_references, record_output, write_object

log = get_logger(__name__)

WITHDRAWAL_REQUESTED = "results_withdrawal_requested"


def withdraw_result(session: Session, config: NodeConfig, result: Result, study: Study,
                    reason: RejectionReason, *, actor: str = "worker") -> OutputObject | None:
    """Withdraw ``result`` inside the caller's transaction; return its rejection note, if any.

    The result becomes ``superseded`` (reason SUPERSEDED) or ``withdrawn``; its pending
    deliveries and ORU are dropped; a rejection note goes to every destination that
    received one of its objects, and a withdrawn result's cancelling ORU to the RIS.
    Returns None when nothing had been delivered anywhere.
    """
    references = object_references(session, result, study.study_uid)
    outputs = session.execute(select(OutputObject).where(
        OutputObject.result_id == result.id, OutputObject.kind != "ko",
        OutputObject.withdrawn_at.is_(None)).order_by(OutputObject.id)).scalars().all()
    output_ids = [o.id for o in outputs]
    now = utcnow()
    # A delivery a sender holds right now may reach the destination: it counts as
    # delivered here (the note names it; naming an object never received is harmless).
    reached_states = or_(
        Delivery.state.in_([DeliveryState.SENT, DeliveryState.COMMITTED]),
        (Delivery.state == DeliveryState.PENDING) & Delivery.lease_owner.is_not(None)
        & (Delivery.next_attempt_at > now))
    reached = set(session.execute(select(Delivery.destination).distinct().where(
        Delivery.output_id.in_(output_ids), reached_states)).scalars())
    session.execute(update(Delivery).where(
        Delivery.output_id.in_(output_ids), Delivery.state == DeliveryState.PENDING,
        ~reached_states)
        .values(state=DeliveryState.FAILED, last_error=WITHDRAWN_UNSENT,
                lease_owner=None).execution_options(synchronize_session=False))
    session.execute(update(OutputObject).where(OutputObject.id.in_(output_ids))
                    .values(withdrawn_at=now).execution_options(synchronize_session=False))
    result.state = (ResultState.SUPERSEDED if reason is RejectionReason.SUPERSEDED
                    else ResultState.WITHDRAWN)
    result.ended_at = now
    oru = withdraw_result_messages(session, config, result, study,
                                   cancel=reason is not RejectionReason.SUPERSEDED)
    note = None
    delivered = [r for r, o in zip(references, outputs, strict=True)
                 if session.execute(select(Delivery.id).where(
                     Delivery.output_id == o.id, reached_states)).first()]
    if delivered and reached:
        root = Path(config.storage.root)
        header = pydicom.dcmread(root / outputs[0].path, stop_before_pixels=True)
        ds = build_rejection_note(header, delivered, uid_root=config.dicom.uid_root,
                                  series_numbers=config.results.series_numbers, reason=reason,
                                  device_serial_number=config.dicom.ae_title,
                                  uid_entropy=f"{study.study_uid}/withdraw-result-{result.id}",
                                  installation=installation_uuid(session))
        note = record_output(session, result.id, "ko", ds, write_object(root, ds, "ko"))
        create_deliveries(session, [note],
                          [d for d in config.destinations if d.name in reached])
    record_event(session, "results_withdrawn", actor=actor, study_uid=study.study_uid,
                 patient_id=study.patient_id, accession_number=study.accession_number,
                 detail={"result_id": result.id, "reason": reason.name.lower(),
                         "objects": len(output_ids), "delivered": len(delivered),
                         "rejection_note": note.sop_instance_uid if note else None,
                         "hl7_cancellation": oru.control_id if oru else None})
    log.info("results_withdrawn", study_uid=study.study_uid, result=result.id,
             reason=reason.name.lower(), delivered=len(delivered))
    return note


def order_cancelled_since(session: Session, study_uid: str, since: datetime) -> bool:
    """Whether the study's order was cancelled (withdrawal requested) after ``since``."""
    return session.execute(select(AuditEvent.id).where(
        AuditEvent.study_uid == study_uid, AuditEvent.action == WITHDRAWAL_REQUESTED,
        AuditEvent.occurred_at >= since).limit(1)).first() is not None


def withdraw_cancelled_results(config: NodeConfig, sessions: sessionmaker[Session]) -> int:
    """Withdraw active results made for orders cancelled since their job started.

    Acts on ``results_withdrawal_requested`` audit events (written when an order is
    cancelled); a result counts when its job started before the event. Idempotent:
    a withdrawn result is not active any more. Returns how many were withdrawn.
    """
    with transaction(sessions) as session:
        rows = session.execute(
            select(Result, Study).join(Study, Result.study_id == Study.id)
            .join(Job, Result.job_id == Job.id)
            .join(AuditEvent, (AuditEvent.study_uid == Study.study_uid)
                  & (AuditEvent.action == WITHDRAWAL_REQUESTED))
            .where(Result.state == ResultState.ACTIVE, Job.started_at < AuditEvent.occurred_at)
        ).unique().all()
        seen = set()
        for result, study in rows:
            if result.id in seen:
                continue
            seen.add(result.id)
            withdraw_result(session, config, result, study, RejectionReason.ORDER_CANCELLED)
    return len(seen)
