"""Storage commitment, push model (PS3.4 Annex J), as the SCU.

The sender asks a destination to commit the instances it stored (N-ACTION, action
type 1) and records the transaction UID on their deliveries. The destination answers
later with an N-EVENT-REPORT, usually on a new association to the node's DICOM
listener: ``handle_commitment_report`` is the handler for it, bound by the DICOM role
next to its storage handlers (``bind_commitment_reports``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.db.audit import record_event
from mmbcd_node.db.result_models import Delivery, OutputObject, Result
from mmbcd_node.db.session import transaction
from mmbcd_node.logs import get_logger
from mmbcd_node.send.deliveries import (
    mark_study_delivered_if_complete,
    record_commitment_report,
)
from mmbcd_node.send.outgoing import OutgoingObject

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.events import Event


log = get_logger(__name__)

# The well-known SOP Instance of the Storage Commitment Push Model (PS3.4 J.3.5).
COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
REQUEST_COMMITMENT = 1  # N-ACTION Action Type ID
ALL_COMMITTED, SOME_FAILED = 1, 2  # N-EVENT-REPORT Event Type IDs


def new_transaction_uid() -> str:
    """A fresh Transaction UID for one commitment request."""
    return str(generate_uid())


def request_commitment(assoc: Association, objects: Sequence[OutgoingObject],
                       transaction_uid: str) -> None:
    """Send the N-ACTION asking for commitment of ``objects`` under ``transaction_uid``.

    Raises ``RuntimeError`` when the destination refuses or does not answer.
    """
    request = Dataset()
    request.TransactionUID = transaction_uid
    request.ReferencedSOPSequence = DicomSequence()
    for obj in objects:
        item = Dataset()
        item.ReferencedSOPClassUID = obj.sop_class_uid
        item.ReferencedSOPInstanceUID = obj.sop_instance_uid
        request.ReferencedSOPSequence.append(item)
    status, _reply = assoc.send_n_action(request, REQUEST_COMMITMENT,
                                         StorageCommitmentPushModel, COMMITMENT_INSTANCE)
    code = int(getattr(status, "Status", -1))
    if code != 0x0000:
        raise RuntimeError(f"storage commitment request refused (status {code:#06x})"
                           if code >= 0 else "no answer to the storage commitment request")


def parse_report(info: Dataset) -> tuple[str, list[str], dict[str, str]]:
    """(transaction UID, committed SOP instance UIDs, failed UID -> reason) of a report."""
    committed = [str(item.ReferencedSOPInstanceUID)
                 for item in info.get("ReferencedSOPSequence", [])]
    failed = {str(item.ReferencedSOPInstanceUID):
              f"failure reason {int(item.get('FailureReason', 0)):#06x}"
              for item in info.get("FailedSOPSequence", [])}
    return str(info.TransactionUID), committed, failed


def handle_commitment_report(event: Event,
                             sessions: sessionmaker[Session]) -> tuple[int, Dataset | None]:
    """pynetdicom ``EVT_N_EVENT_REPORT`` handler: apply a commitment report in SQL.

    Returns Success once the deliveries are updated and committed; 0x0110 (processing
    failure) when the report cannot be read or stored, so the destination retries.
    """
    if str(event.request.AffectedSOPClassUID) != StorageCommitmentPushModel:
        return 0x0112, None  # No such SOP Instance: we only take commitment reports
    try:
        transaction_uid, committed, failed = parse_report(event.event_information)
    except (AttributeError, ValueError, KeyError) as exc:
        log.warning("commitment_report_unreadable", error=str(exc))
        return 0x0110, None
    calling_ae = event.assoc.requestor.ae_title
    with transaction(sessions) as session:
        changed = record_commitment_report(session, transaction_uid, committed, failed)
        study_ids = session.execute(
            select(Result.study_id).distinct()
            .join(OutputObject, OutputObject.result_id == Result.id)
            .join(Delivery, Delivery.output_id == OutputObject.id)
            .where(Delivery.commitment_transaction_uid == transaction_uid)).scalars().all()
        for study_id in study_ids:
            mark_study_delivered_if_complete(session, study_id)
        record_event(session, "storage_commitment_report",
                     outcome="success" if not failed else "partial",
                     calling_ae=calling_ae,
                     detail={"transaction_uid": transaction_uid, "committed": len(committed),
                             "failed": len(failed), "deliveries_updated": changed})
    log.info("commitment_report", transaction=transaction_uid, committed=len(committed),
             failed=len(failed), updated=changed)
    return 0x0000, None


def bind_commitment_reports(ae: AE, sessions: sessionmaker[Session]) -> list[tuple]:  # type: ignore[type-arg]
    """Let ``ae`` (an SCP) take commitment reports; return the handlers to bind.

    The destination opens the association as the commitment SCP, so the context is
    accepted with the requestor in the SCP role (and without role selection, too).
    """
    ae.add_supported_context(StorageCommitmentPushModel,
                             [ExplicitVRLittleEndian, ImplicitVRLittleEndian],
                             scu_role=False, scp_role=True)
    return [(evt.EVT_N_EVENT_REPORT, handle_commitment_report, [sessions])]
