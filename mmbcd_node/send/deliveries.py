"""Deliveries in SQL: one output object on its way to one destination.

A delivery is ``pending`` until a C-STORE to its destination succeeds, then ``sent``;
where the destination does storage commitment it becomes ``committed`` when the
destination's N-EVENT-REPORT says so (a reported failure makes it ``pending`` again).
Failed attempts back off exponentially up to the destination's ``max_attempts``,
then the delivery is ``failed`` with the last error kept.

A sender claims due deliveries by writing its name into ``lease_owner`` and moving
``next_attempt_at`` forward by a lease (``[worker] lease_seconds``, as for jobs), which
it renews while it works on them (``extend_claims``). Another sender sees them as not
due; if the first one dies they fall due again when the lease runs out, and the next
claim knows the last attempt was interrupted (``DueDelivery.interrupted``): the object
may have reached the destination before the crash. Marking a delivery sent or failed
needs the claim, so a sender that lost it to another changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from mmbcd_node.config import DestinationConfig
from mmbcd_node.db.models import StudyState, utcnow
from mmbcd_node.db.result_models import (
    CommitmentState,
    Delivery,
    DeliveryState,
    Hl7ResultMessage,
    Hl7ResultState,
    Hl7ResultStatus,
    OutputObject,
    Result,
    ResultState,
)
from mmbcd_node.db.study_state import change_state
from mmbcd_node.db.utc import database_now
from mmbcd_node.output_kinds import SR_CLASS_UIDS, OutputKind
from mmbcd_node.retry import backoff

WITHDRAWN_UNSENT = "withdrawn before it was sent"


@dataclass(frozen=True)
class DueDelivery:
    """A claimed delivery with what the sender needs to send it."""

    id: int
    destination: str
    attempts: int
    sop_class_uid: str
    sop_instance_uid: str
    path: str
    study_id: int
    # The claim before this one ran out without an outcome (its sender died): the
    # destination may hold the object already.
    interrupted: bool = False


def takes(destination: DestinationConfig, output: OutputObject, default_sr_class: str) -> bool:
    """Whether ``destination`` gets ``output``: its kind, and for SRs its SR class.

    Rejection notes (kind ``ko``) go to every destination, whatever its kinds, since
    they withdraw objects sent there.
    """
    if output.kind == OutputKind.KO:
        return True
    if output.kind not in destination.kinds:
        return False
    if output.kind == OutputKind.SR:
        wanted = SR_CLASS_UIDS.get(destination.sr_class or default_sr_class)
        return wanted is None or output.sop_class_uid == wanted
    return True


def create_deliveries(session: Session, outputs: Iterable[OutputObject],
                      destinations: Sequence[DestinationConfig], *,
                      default_sr_class: str = "comprehensive") -> list[Delivery]:
    """One pending delivery per output and destination that takes it (see ``takes``).

    ``default_sr_class`` is ``[results] sr_class``, for destinations without their own
    ``sr_class``. Existing pairs are left alone.
    """
    created = []
    for output in outputs:
        for destination in destinations:
            if not takes(destination, output, default_sr_class):
                continue
            exists = session.execute(select(Delivery.id).where(
                Delivery.output_id == output.id, Delivery.destination == destination.name)
            ).first()
            if exists:
                continue
            delivery = Delivery(output_id=output.id, destination=destination.name,
                                state=DeliveryState.PENDING, next_attempt_at=utcnow())
            session.add(delivery)
            created.append(delivery)
    session.flush()
    return created


def claim_due_deliveries(session: Session, owner: str, lease_seconds: float, *,
                         limit: int = 100, now: datetime | None = None) -> list[DueDelivery]:
    """Claim pending deliveries whose time has come, oldest first, for ``lease_seconds``;
    commit right after."""
    now = now or database_now(session)
    due = and_(Delivery.state == DeliveryState.PENDING, Delivery.next_attempt_at <= now)
    # Objects withdrawn while they waited (a re-run superseded them) are never sent.
    withdrawn = select(OutputObject.id).where(OutputObject.withdrawn_at.is_not(None),
                                              OutputObject.kind != OutputKind.KO)
    session.execute(
        update(Delivery).where(due, Delivery.output_id.in_(withdrawn))
        .values(state=DeliveryState.FAILED, last_error=WITHDRAWN_UNSENT, lease_owner=None)
        .execution_options(synchronize_session=False))
    ids_query = (select(Delivery.id, Delivery.lease_owner).where(due)
                 .order_by(Delivery.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        ids_query = ids_query.with_for_update(skip_locked=True)
    # A pending delivery still naming a sender: that sender's claim ran out unreleased.
    candidates = session.execute(ids_query).all()
    interrupted = {row.id for row in candidates if row.lease_owner}
    ids = [row.id for row in candidates]
    if not ids:
        return []
    claimed = session.execute(
        update(Delivery).where(Delivery.id.in_(ids), due)
        .values(lease_owner=owner, next_attempt_at=now + timedelta(seconds=lease_seconds))
        .returning(Delivery.id).execution_options(synchronize_session=False)
    ).scalars().all()
    rows = session.execute(
        select(Delivery.id, Delivery.destination, Delivery.attempts, OutputObject.sop_class_uid,
               OutputObject.sop_instance_uid, OutputObject.path, Result.study_id)
        .join(OutputObject, Delivery.output_id == OutputObject.id)
        .join(Result, OutputObject.result_id == Result.id)
        .where(Delivery.id.in_(claimed)).order_by(Delivery.id)
    ).all()
    return [DueDelivery(*row, interrupted=row.id in interrupted) for row in rows]


def extend_claims(session: Session, owner: str, ids: Iterable[int], lease_seconds: float, *,
                  now: datetime | None = None) -> int:
    """Renew ``owner``'s claims on the deliveries ``ids`` for another ``lease_seconds``;
    returns how many it still holds."""
    now = now or database_now(session)
    return int(session.execute(
        update(Delivery).where(Delivery.id.in_(list(ids)), Delivery.lease_owner == owner,
                               Delivery.state == DeliveryState.PENDING)
        .values(next_attempt_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)).rowcount)  # type: ignore[attr-defined]


def mark_sent(session: Session, delivery_id: int, owner: str, *,
              commitment_transaction_uid: str | None = None,
              now: datetime | None = None) -> bool:
    """Record a successful C-STORE (and the commitment request, if one was made)."""
    now = now or utcnow()
    values: dict[str, object] = {"state": DeliveryState.SENT, "sent_at": now,
                                 "attempts": Delivery.attempts + 1, "last_error": None,
                                 "lease_owner": None}
    if commitment_transaction_uid:
        values.update(commitment_transaction_uid=commitment_transaction_uid,
                      commitment_state=CommitmentState.REQUESTED)
    result = session.execute(
        update(Delivery).where(Delivery.id == delivery_id, Delivery.lease_owner == owner,
                               Delivery.state == DeliveryState.PENDING)
        .values(**values).execution_options(synchronize_session=False))
    return result.rowcount == 1  # type: ignore[attr-defined]


def mark_attempt_failed(session: Session, delivery_id: int, owner: str, error: str,
                        destination: DestinationConfig, *, retry: bool = True,
                        now: datetime | None = None) -> str | None:
    """Record a failed attempt: pending again after backoff, or ``failed`` for good.

    Returns the new state, or ``None`` when another sender holds the delivery now.
    """
    now = now or utcnow()
    attempts = session.execute(
        select(Delivery.attempts).where(Delivery.id == delivery_id)).scalar_one() + 1
    give_up = not retry or attempts >= destination.max_attempts
    values: dict[str, object] = {
        "attempts": attempts, "last_error": error[:4000], "lease_owner": None,
        "state": DeliveryState.FAILED if give_up else DeliveryState.PENDING,
    }
    if not give_up:
        values["next_attempt_at"] = now + backoff(destination.backoff_seconds, attempts)
    result = session.execute(
        update(Delivery).where(Delivery.id == delivery_id, Delivery.lease_owner == owner)
        .values(**values).execution_options(synchronize_session=False))
    return str(values["state"]) if result.rowcount == 1 else None  # type: ignore[attr-defined]


def record_commitment_report(session: Session, transaction_uid: str,
                             committed: Iterable[str], failed: dict[str, str],
                             now: datetime | None = None) -> int:
    """Apply a destination's storage-commitment report to the deliveries it names.

    ``committed`` holds SOP instance UIDs the destination took responsibility for;
    ``failed`` maps SOP instance UIDs to the failure reason. Failed ones become
    ``pending`` again so they are resent. Returns how many deliveries changed.
    """
    now = now or utcnow()
    changed = 0
    rows = session.execute(
        select(Delivery.id, OutputObject.sop_instance_uid)
        .join(OutputObject, Delivery.output_id == OutputObject.id)
        .where(Delivery.commitment_transaction_uid == transaction_uid)
    ).all()
    committed = set(committed)
    for delivery_id, sop_uid in rows:
        if sop_uid in committed:
            values: dict[str, object] = {"state": DeliveryState.COMMITTED, "committed_at": now,
                                         "commitment_state": CommitmentState.COMMITTED}
        elif sop_uid in failed:
            values = {"state": DeliveryState.PENDING, "next_attempt_at": now,
                      "commitment_state": CommitmentState.FAILED,
                      "last_error": f"storage commitment failed: {failed[sop_uid]}"}
        else:
            continue
        changed += session.execute(
            update(Delivery).where(Delivery.id == delivery_id,
                                   Delivery.state == DeliveryState.SENT)
            .values(**values).execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    return changed


def resend_uncommitted(session: Session, destination: DestinationConfig, *,
                       now: datetime | None = None) -> int:
    """Deliveries to ``destination`` whose commitment report never came: send them again.

    After ``commitment_timeout_seconds`` without an N-EVENT-REPORT the delivery is
    ``pending`` again (the next send asks for commitment anew), or ``failed`` once its
    attempts are used up. Returns how many were reopened or failed.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=destination.commitment_timeout_seconds)
    error = (f"no storage commitment report within "
             f"{destination.commitment_timeout_seconds:.0f}s")
    waiting = and_(Delivery.destination == destination.name,
                   Delivery.state == DeliveryState.SENT,
                   Delivery.commitment_state == CommitmentState.REQUESTED,
                   Delivery.sent_at < cutoff)
    failed = session.execute(
        update(Delivery).where(waiting, Delivery.attempts >= destination.max_attempts)
        .values(state=DeliveryState.FAILED, commitment_state=CommitmentState.FAILED,
                last_error=error).execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    reopened = session.execute(
        update(Delivery).where(waiting)
        .values(state=DeliveryState.PENDING, next_attempt_at=now, lease_owner=None,
                commitment_state=CommitmentState.FAILED, last_error=error)
        .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    return int(failed) + int(reopened)


def mark_study_delivered_if_complete(session: Session, study_id: int) -> bool:
    """Move a ``done`` study to ``delivered`` once none of its active outputs is outstanding.

    Outstanding means pending, or sent and still awaiting a storage commitment.
    """
    outstanding = session.execute(
        select(func.count(Delivery.id))
        .join(OutputObject, Delivery.output_id == OutputObject.id)
        .join(Result, OutputObject.result_id == Result.id)
        .where(Result.study_id == study_id,
               (Delivery.state == DeliveryState.PENDING)
               | ((Delivery.state == DeliveryState.SENT)
                  & (Delivery.commitment_state == CommitmentState.REQUESTED)))
    ).scalar_one()
    if outstanding:
        return False
    return change_state(session, study_id, StudyState.DELIVERED)


def requeue_deliveries(session: Session, study_id: int,
                       destination: str | None = None) -> int:
    """Send the study's active outputs (and rejection notes) again: ``resend``.

    Returns how many deliveries were set back to ``pending``.
    """
    outputs = select(OutputObject.id).join(Result, OutputObject.result_id == Result.id).where(
        Result.study_id == study_id,
        (Result.state == ResultState.ACTIVE) | (OutputObject.kind == OutputKind.KO),
        OutputObject.withdrawn_at.is_(None))
    query = update(Delivery).where(Delivery.output_id.in_(outputs))
    if destination:
        query = query.where(Delivery.destination == destination)
    else:  # the HL7 results to the RIS go again too: the active one's and cancellations
        session.execute(
            update(Hl7ResultMessage).where(
                Hl7ResultMessage.result_id.in_(select(Result.id).where(
                    Result.study_id == study_id)),
                (Hl7ResultMessage.result_id.in_(select(Result.id).where(
                    Result.state == ResultState.ACTIVE)))
                | (Hl7ResultMessage.result_status == Hl7ResultStatus.CANCELLED))
            .values(state=Hl7ResultState.PENDING, next_attempt_at=utcnow(), attempts=0,
                    lease_owner=None).execution_options(synchronize_session=False))
    return session.execute(
        query.values(state=DeliveryState.PENDING, next_attempt_at=utcnow(), attempts=0,
                     lease_owner=None, commitment_state=None, commitment_transaction_uid=None)
        .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]

