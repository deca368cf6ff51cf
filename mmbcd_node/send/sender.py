"""The sender: deliver due output objects to their destinations, as a role of the node.

Each pass claims the due deliveries, sends them per destination over one association,
and records every outcome in SQL. A destination that is down costs one failed attempt
per delivery and a backoff; nothing is dropped, and an object already accepted by
the destination is never sent to it again (unless an admin asks with ``resend``, or
the destination reports a failed commitment).

Deliveries are claimed under a lease that the sender renews while it sends them; a
sender that dies loses them when the lease runs out. Its last C-STORE may have been
accepted before the outcome was recorded: where the destination answers C-FIND
(``query_before_resend``), such interrupted deliveries are looked up first and only
the missing ones are sent; elsewhere they are sent again (at least once).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import DestinationConfig, NodeConfig
from mmbcd_node.db.audit import record_event
from mmbcd_node.db.models import Study
from mmbcd_node.db.result_models import CommitmentState, Delivery, DeliveryState
from mmbcd_node.db.session import retried_transaction, transaction
from mmbcd_node.logs import get_logger
from mmbcd_node.process import process_name, renewing
from mmbcd_node.send.deliveries import (
    DueDelivery,
    claim_due_deliveries,
    extend_claims,
    mark_attempt_failed,
    mark_sent,
    mark_study_delivered_if_complete,
    resend_uncommitted,
)
from mmbcd_node.send.hl7_result import Hl7ResultSender
from mmbcd_node.send.outgoing import OutgoingObject
from mmbcd_node.send.store_scu import DestinationUnavailable, instances_held, store_objects

log = get_logger(__name__)


class Sender:
    """Sends due deliveries; one ``send_due`` call is one pass over the queue."""

    def __init__(self, config: NodeConfig, sessions: sessionmaker[Session],
                 owner: str | None = None) -> None:
        self.config = config
        self.sessions = sessions
        self.owner = owner or process_name("sender")

    def send_due(self) -> int:
        """Send what is due now; return how many deliveries were attempted."""
        with transaction(self.sessions) as session:
            for destination in self.config.destinations:
                if destination.storage_commitment:
                    resend_uncommitted(session, destination)
            due = claim_due_deliveries(session, self.owner, self.config.worker.lease_seconds)
        if not due:
            return 0
        by_destination: dict[str, list[DueDelivery]] = defaultdict(list)
        for item in due:
            by_destination[item.destination].append(item)
        ids = [item.id for item in due]
        with renewing(lambda: self._renew(ids), self.config.worker.heartbeat_seconds,
                      "delivery-claims"):
            for name, items in by_destination.items():
                self._send_batch(name, items)
        return len(due)

    def _renew(self, ids: list[int]) -> None:
        with transaction(self.sessions) as session:
            extend_claims(session, self.owner, ids, self.config.worker.lease_seconds)

    def _held(self, destination: DestinationConfig,
              interrupted: list[OutgoingObject]) -> list[OutgoingObject]:
        """Which interrupted objects the destination already has, where it can tell."""
        if not interrupted or not destination.query_before_resend:
            return []
        try:
            held = instances_held(interrupted, destination, self.config.dicom)
        except (DestinationUnavailable, OSError, TimeoutError) as exc:
            log.warning("resend_unchecked", destination=destination.name,
                        deliveries=len(interrupted), error=str(exc))
            return []
        return [o for o in interrupted if o.sop_instance_uid in held]

    def _send_batch(self, name: str, items: list[DueDelivery]) -> None:
        try:
            destination = self.config.destination(name)
        except KeyError as exc:
            self._fail(items, str(exc.args[0]), retry=False)
            return
        root = Path(self.config.storage.root)
        present = [i for i in items if (root / i.path).is_file()]
        self._fail([i for i in items if i not in present], "output file missing from storage",
                   retry=False, destination=destination)
        if not present:
            return
        objects = [OutgoingObject(i.sop_class_uid, i.sop_instance_uid, root / i.path)
                   for i in present]
        by_uid = {i.sop_instance_uid: i for i in present}
        held = self._held(destination, [o for o in objects
                                         if by_uid[o.sop_instance_uid].interrupted])
        objects = [o for o in objects if o not in held]

        def record_stored(stored: list[str], transaction_uid: str | None) -> None:
            # The objects are at the PACS: recording that outlasts a database outage of
            # up to a lease, so that no other sender sends them again.
            def mark(session: Session) -> None:
                for uid in stored:
                    mark_sent(session, by_uid[uid].id, self.owner,
                              commitment_transaction_uid=transaction_uid)

            retried_transaction(self.sessions, mark, within=self.config.worker.lease_seconds,
                                what="record_sent")

        try:
            outcome = store_objects(objects, destination, self.config.dicom,
                                    on_stored=record_stored, held=held)
        except (DestinationUnavailable, OSError, TimeoutError) as exc:
            log.warning("destination_unavailable", destination=name, deliveries=len(present),
                        error=str(exc))
            self._fail(present, str(exc), destination=destination)
            return
        with transaction(self.sessions) as session:
            for uid, error in outcome.errors.items():
                mark_attempt_failed(session, by_uid[uid].id, self.owner, error, destination)
            if outcome.commitment_error:
                session.execute(update(Delivery).where(
                    Delivery.id.in_([by_uid[uid].id for uid in [*outcome.stored, *outcome.held]]),
                    Delivery.commitment_state == CommitmentState.REQUESTED).values(
                    commitment_state=CommitmentState.FAILED, last_error=outcome.commitment_error))
            for study_id in {i.study_id for i in present}:
                mark_study_delivered_if_complete(session, study_id)
                study = session.get(Study, study_id)
                mine = [i for i in present if i.study_id == study_id]
                kept = {*outcome.stored, *outcome.held}
                sent = [i for i in mine if i.sop_instance_uid in kept]
                record_event(session, "results_sent",
                             outcome="success" if len(sent) == len(mine) else "partial",
                             called_ae=destination.ae_title, peer_address=destination.host,
                             study_uid=study.study_uid if study else None,
                             patient_id=study.patient_id if study else None,
                             detail={"destination": name, "sent": len(sent),
                                     "refused": len(mine) - len(sent),
                                     "already_there": sum(i.sop_instance_uid in outcome.held
                                                          for i in mine),
                                     "commitment": outcome.commitment_transaction_uid})

    def _fail(self, items: list[DueDelivery], error: str, *, retry: bool = True,
              destination: DestinationConfig | None = None) -> None:
        """Record a failed attempt for ``items``; without a destination (no longer
        configured) they fail for good."""
        if not items:
            return
        with transaction(self.sessions) as session:
            for item in items:
                if destination is None:
                    session.execute(update(Delivery).where(Delivery.id == item.id).values(
                        state=DeliveryState.FAILED, last_error=error, lease_owner=None))
                else:
                    mark_attempt_failed(session, item.id, self.owner, error, destination,
                                        retry=retry)


class SenderRole:
    """``serve --role sender``: DICOM deliveries and HL7 results, a pass every poll interval."""

    name = "sender"

    def __init__(self, config: NodeConfig, sessions: sessionmaker[Session]) -> None:
        self.sender = Sender(config, sessions)
        self.hl7_results = Hl7ResultSender(config, sessions, self.sender.owner)
        self.poll_seconds = config.worker.poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.sender.send_due() + self.hl7_results.send_due()
            except Exception:  # keep the role alive; the pass is retried
                log.exception("sender_pass_failed")
                busy = 0
            if not busy:
                self._stop.wait(self.poll_seconds)
