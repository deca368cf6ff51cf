"""The HL7 result for the RIS worklist: ORU^R01 v2.5.1 over MLLP, following the order.

Each result gets one ORU, built with hl7apy when the result is stored and sent once the
study's DICOM objects are delivered (or at once where no DICOM destination is
configured), so the RIS flag never points at a result the PACS does not show yet.
PID echoes the order's patient (``hl7_patient``); ORC and OBR echo the order's numbers
and OBR-4 with every component; OBX rows: case probability with the abnormal flag from
the bundle's study operating threshold (for a not-attempted result, the reason nothing
could be analysed instead), each breast probability with its flag from the breast
threshold, the study threshold, whether the probabilities are calibrated and at which
operating points the flags are set, the model version, the clinical history used (by
source field) or that the result is images-only, and the Study Instance UID.

The lifecycle (``Hl7ResultStatus``, OBR-25): the first result of an order is
preliminary (``P``); a re-run (reprocess, late images) whose predecessor may have
reached the RIS is a correction (``C``) under the same order numbers; a withdrawn
result (``cancel --withdraw``, the order cancelled by the RIS) that may have reached
the RIS is cancelled (``X``). A result without an order, or an order without a filler
number, carries the node's own filler order number, the same for every run of the
study. The messages of one study go out in the order they were made.

``AE``, ``AR`` and an ACK that never comes are failed attempts, retried with backoff
up to ``[hl7.results] max_attempts``; after ``AA`` the message is never sent again.
Messages are claimed under the sender's lease (``[worker] lease_seconds``, renewed
while they are sent), so a dead sender's messages go out again once it runs out.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from hl7apy.base_datatypes import ST
from hl7apy.core import Group, Message
from hl7apy.parser import parse_segment
from sqlalchemy import ColumnElement, and_, exists, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

import mmbcd_node
from mmbcd_node.config import Hl7ResultsConfig, NodeConfig
from mmbcd_node.db.audit import record_event
from mmbcd_node.db.models import Study, StudyState, utcnow
from mmbcd_node.db.order_models import Order
from mmbcd_node.db.result_models import (
    Delivery,
    DeliveryState,
    Hl7ResultMessage,
    Hl7ResultState,
    Hl7ResultStatus,
    OutputObject,
    Result,
)
from mmbcd_node.db.session import retried_transaction, transaction
from mmbcd_node.db.utc import database_now
from mmbcd_node.logs import get_logger
from mmbcd_node.process import renewing
from mmbcd_node.retry import backoff
from mmbcd_node.send.deliveries import WITHDRAWN_UNSENT
from mmbcd_node.send.hl7_patient import patient_identification
from mmbcd_node.send.mllp_client import RisClient

log = get_logger(__name__)

SENDING_APPLICATION = "MMBCD-NODE"
# OBR-4 of a result without an order (or of an order stored without its OBR-4 code).
OWN_SERVICE = ("MG-AI", "Mammography AI analysis", "99MMBCD")
# OBR-24, HL7 table 0074 (diagnostic service section ID): RAD, radiology.
DIAGNOSTIC_SERVICE = "RAD"
# ORC-1 of every ORU: RE, "observations/performed service to follow" (HL7 v2.5.1
# table 0119; the order control a result message carries, §4.5.1.1, §7.3.1).
ORDER_CONTROL = "RE"
# ORC-5 (table 0038, §4.5.1.5) and OBX-11 (table 0085, §7.4.2.11) for each OBR-25
# (table 0123, §4.5.3.25). OBR-25 governs when both are present (§4.5.3.25), so ORC-5
# must not say more than it does:
# - P "preliminary: a verified early result is available, final results not yet
#   obtained": the AI score comes before the radiologist's report, so the order is not
#   complete (not CM) but has "some, but not all, results available" (A); OBX-11 P.
# - C "correction to results": a re-run replaces the observations sent before; OBX-11 C
#   replaces previously sent data with the same observation ID and sub-ID (§7.4.2.11).
#   The report is still to come: ORC-5 A.
# - X "no results available; order canceled": the whole result is withdrawn; an OBR
#   whose observations cannot be provided goes back with OBR-25 X and no observation
#   segments (§4.5.3, OBR). ORC-5 CA, "order was canceled". (OBX-11 D deletes single
#   observations inside a result that stands, which a withdrawal is not.)
STATUSES: dict[Hl7ResultStatus, tuple[str, str | None]] = {
    Hl7ResultStatus.PRELIMINARY: ("A", "P"),
    Hl7ResultStatus.CORRECTED: ("A", "C"),
    Hl7ResultStatus.CANCELLED: ("CA", None),
}


def own_filler_number(study: Study) -> tuple[str, str]:
    """The node's filler order number (EI-1, EI-2) for ``study``: one for all its runs."""
    return f"MMBCD-{study.id}", SENDING_APPLICATION


def _observation(group: Group, index: int, value_type: str, code: str, value: str, *,
                 status: str, units: str = "", flag: str = "") -> None:
    obx = group.add_group("ORU_R01_OBSERVATION").obx
    obx.obx_1 = str(index)
    obx.obx_2 = value_type
    obx.obx_3 = code
    obx.obx_5 = ST(value).to_er7()  # escaped: | ^ & ~ \\ in the text stay text
    if units:
        obx.obx_6 = units
    if flag:
        obx.obx_8 = flag
    obx.obx_11 = status


def build_result_message(result: Result, study: Study, order: Order | None, *,
                         status: Hl7ResultStatus, patient: str, control_id: str,
                         sending_facility: str, receiving: Hl7ResultsConfig,
                         now: datetime | None = None) -> str:
    """ER7 text (segments separated by CR) of the ORU^R01 saying ``status`` of ``result``;
    ``patient`` is its PID segment (``patient_identification``)."""
    stamp = (now or utcnow()).strftime("%Y%m%d%H%M%S")
    order_status, observation_status = STATUSES[status]
    message = Message("ORU_R01", version="2.5.1")
    msh = message.msh
    msh.msh_3 = SENDING_APPLICATION
    msh.msh_4 = sending_facility
    msh.msh_5 = receiving.receiving_application
    if receiving.receiving_facility:
        msh.msh_6 = receiving.receiving_facility
    msh.msh_7 = stamp
    msh.msh_9 = "ORU^R01^ORU_R01"
    msh.msh_10 = control_id
    msh.msh_11 = "P"
    msh.msh_18 = "UNICODE UTF-8"
    patient_result = message.add_group("ORU_R01_PATIENT_RESULT")
    patient_result.add_group("ORU_R01_PATIENT").add(parse_segment(patient, version="2.5.1"))
    group = patient_result.add_group("ORU_R01_ORDER_OBSERVATION")
    placer = (order.placer_number if order else "") or ""
    filler = ((order.filler_number, "") if order and order.filler_number
              else own_filler_number(study))
    accession = (order.accession_number if order else None) or study.accession_number or ""
    obr = group.obr
    group.orc.orc_1 = ORDER_CONTROL
    _entity(group.orc.orc_2, placer)
    _entity(group.orc.orc_3, *filler)
    group.orc.orc_5 = order_status
    obr.obr_1 = "1"
    _entity(obr.obr_2, placer)
    _entity(obr.obr_3, *filler)
    if order and order.procedure_code:
        obr.obr_4 = order.procedure_code  # ER7 as the order sent it, every component
    elif order and order.procedure:
        obr.obr_4.ce_2 = ST(order.procedure)
    else:
        obr.obr_4 = "^".join(ST(part).to_er7() for part in OWN_SERVICE)
    obr.obr_7 = stamp
    obr.obr_18 = ST(accession)
    if order and order.requested_procedure_id:
        obr.obr_19 = ST(order.requested_procedure_id)
    obr.obr_22 = stamp
    obr.obr_24 = DIAGNOSTIC_SERVICE
    obr.obr_25 = status.value
    if observation_status is not None:
        for index, (value_type, code, value, row_flag) in enumerate(_rows(result, study),
                                                                    start=1):
            _observation(group, index, value_type, code, value, status=observation_status,
                         units="1^no units^UCUM" if value_type == "NM" else "",
                         flag=row_flag)
    return message.to_er7()


def _entity(field, identifier: str, namespace: str = "") -> None:  # type: ignore[no-untyped-def]
    """Set an EI field (order number): entity identifier and namespace ID."""
    field.ei_1 = ST(identifier)
    if namespace:
        field.ei_2 = namespace


ST_MAX = 199  # an ST value's length limit (HL7 v2.5.1, 2.A.74)


def _rows(result: Result, study: Study) -> list[tuple[str, str, str, str]]:
    """(value type, observation identifier, value, abnormal flag) of each OBX."""
    threshold = result.operating_threshold
    rows: list[tuple[str, str, str, str]] = []
    if result.probability is None:  # not attempted: the reason instead of a score
        rows.append(("ST", "NOT-ATTEMPTED^AI analysis not attempted^99MMBCD",
                     result.not_attempted_reason or "nothing analysable", ""))
    else:
        flag = "" if threshold is None else ("A" if result.probability >= threshold else "N")
        rows.append(("NM", "111047^Probability of cancer^DCM", f"{result.probability:.4f}",
                     flag))
    breast_threshold = result.breast_threshold
    for side, name, breast in (("R", "Right", result.right_probability),
                               ("L", "Left", result.left_probability)):
        if breast is not None:
            rows.append(("NM", f"BREAST-{side}^{name} breast probability^99MMBCD",
                         f"{breast:.4f}", "" if breast_threshold is None
                         else ("A" if breast >= breast_threshold else "N")))
    if threshold is not None:
        rows.append(("NM", "THRESHOLD^Operating threshold^99MMBCD", f"{threshold:.4f}", ""))
    if result.operating_point:
        rows.append(("ST", "OPERATING-POINT^Calibration and operating point^99MMBCD",
                     result.operating_point[:ST_MAX], ""))
    rows.append(("ST", "111003^Algorithm Version^DCM",
                 f"{result.model_version or ''} {result.bundle_digest}".strip(), ""))
    sources = json.loads(result.history_sources or "[]")
    rows.append(("ST", "HISTORY-SOURCE^Clinical history source^99MMBCD",
                 ("clinical history from " + ", ".join(sources)) if result.history_used
                 else "no history available (images only)", ""))
    views_used = ("no image analysed" if result.probability is None
                  else "all views used" if result.all_views_used else "not all views used")
    rows.append(("ST", "VIEWS-USED^Views used^99MMBCD", views_used, ""))
    rows.append(("ST", "110180^Study Instance UID^DCM", study.study_uid, ""))
    return rows


def _in_flight(now: datetime) -> ColumnElement[bool]:
    """A sender holds the message now: it may be on its way to the RIS."""
    return (Hl7ResultMessage.lease_owner.is_not(None)) & (Hl7ResultMessage.next_attempt_at > now)


def _shown_status(session: Session, study_id: int, order_id: int | None) -> str | None:
    """OBR-25 of the newest ORU about the study and order that may have reached the RIS
    (acknowledged, tried, or being sent), or None when none may have."""
    now = database_now(session)
    may_have_reached = (Hl7ResultMessage.sent_at.is_not(None) | (Hl7ResultMessage.attempts > 0)
                        | _in_flight(now))
    return session.execute(
        select(Hl7ResultMessage.result_status)
        .join(Result, Hl7ResultMessage.result_id == Result.id)
        .where(Result.study_id == study_id, Result.order_id.is_not_distinct_from(order_id),
               may_have_reached)
        .order_by(Hl7ResultMessage.id.desc()).limit(1)).scalar_one_or_none()


def queue_result_message(session: Session, config: NodeConfig, result: Result, study: Study,
                         order: Order | None) -> Hl7ResultMessage | None:
    """Store the ORU of a new ``result`` for sending (a correction where an earlier result
    of the study and order may be on the RIS); None when ``[hl7.results]`` is absent."""
    if config.hl7.results is None:
        return None
    shown = _shown_status(session, study.id, result.order_id)
    correcting = shown in (Hl7ResultStatus.PRELIMINARY, Hl7ResultStatus.CORRECTED)
    return _queue(session, config, result, study, order,
                  Hl7ResultStatus.CORRECTED if correcting else Hl7ResultStatus.PRELIMINARY)


def withdraw_result_messages(session: Session, config: NodeConfig, result: Result,
                             study: Study, *, cancel: bool) -> Hl7ResultMessage | None:
    """Stop the unsent ORUs of ``result`` (being withdrawn) and, with ``cancel``, queue the
    ORU cancelling it where a result of the study and order may be on the RIS.

    ``cancel`` is false for a result superseded by a re-run, whose ORU corrects it.
    Returns the cancelling message, if one was queued.
    """
    session.execute(
        update(Hl7ResultMessage).where(Hl7ResultMessage.result_id == result.id,
                                       Hl7ResultMessage.state == Hl7ResultState.PENDING,
                                       ~_in_flight(database_now(session)))
        .values(state=Hl7ResultState.FAILED, last_error=WITHDRAWN_UNSENT, lease_owner=None)
        .execution_options(synchronize_session=False))
    if not cancel or _shown_status(session, study.id, result.order_id) not in (
            Hl7ResultStatus.PRELIMINARY, Hl7ResultStatus.CORRECTED):
        return None
    order = session.get(Order, result.order_id) if result.order_id else None
    return _queue(session, config, result, study, order, Hl7ResultStatus.CANCELLED)


def _queue(session: Session, config: NodeConfig, result: Result, study: Study,
           order: Order | None, status: Hl7ResultStatus) -> Hl7ResultMessage | None:
    receiving = config.hl7.results
    if receiving is None:
        return None
    control_id = f"MMBCD{result.id:014d}{status.value}"
    row = Hl7ResultMessage(
        result_id=result.id, control_id=control_id, state=Hl7ResultState.PENDING,
        result_status=status,
        message=build_result_message(
            result, study, order, status=status, control_id=control_id,
            patient=patient_identification(session, Path(config.storage.root), study, order),
            sending_facility=config.dicom.ae_title, receiving=receiving))
    session.add(row)
    session.flush()
    return row


class Hl7ResultSender:
    """Sends due ORU messages; one ``send_due`` call is one pass."""

    def __init__(self, config: NodeConfig, sessions: sessionmaker[Session], owner: str) -> None:
        self.config = config
        self.sessions = sessions
        self.owner = owner

    def send_due(self, now: datetime | None = None) -> int:
        """Send every due message whose study is delivered; return how many were tried."""
        receiving = self.config.hl7.results
        if receiving is None:
            return 0
        lease = self.config.worker.lease_seconds
        # Due once no DICOM delivery of its result is outstanding (none pending, or sent
        # and awaiting commitment): the RIS flag follows the images into the PACS. And
        # only once the study's earlier messages are done, so the RIS gets them in order.
        outstanding = exists(
            select(Delivery.id).join(OutputObject, Delivery.output_id == OutputObject.id)
            .where(OutputObject.result_id == Result.id,
                   Delivery.state == DeliveryState.PENDING))
        earlier, earlier_result = aliased(Hl7ResultMessage), aliased(Result)
        waiting = exists(
            select(earlier.id).join(earlier_result, earlier.result_id == earlier_result.id)
            .where(earlier_result.study_id == Result.study_id,
                   earlier.id < Hl7ResultMessage.id,
                   earlier.state == Hl7ResultState.PENDING))
        with transaction(self.sessions) as session:
            now = now or database_now(session)
            ids = session.execute(
                select(Hl7ResultMessage.id)
                .join(Result, Hl7ResultMessage.result_id == Result.id)
                .join(Study, Result.study_id == Study.id)
                .where(Hl7ResultMessage.state == Hl7ResultState.PENDING,
                       Hl7ResultMessage.next_attempt_at <= now,
                       (Study.state == StudyState.DELIVERED) | ~outstanding, ~waiting)
                .order_by(Hl7ResultMessage.id).limit(20)).scalars().all()
            if not ids:
                return 0
            claimed = session.execute(
                update(Hl7ResultMessage).where(
                    Hl7ResultMessage.id.in_(ids),
                    and_(Hl7ResultMessage.state == Hl7ResultState.PENDING,
                         Hl7ResultMessage.next_attempt_at <= now))
                .values(lease_owner=self.owner,
                        next_attempt_at=now + timedelta(seconds=lease))
                .returning(Hl7ResultMessage.id, Hl7ResultMessage.message,
                           Hl7ResultMessage.attempts)
                .execution_options(synchronize_session=False)).all()
        ids = [row.id for row in claimed]
        with renewing(lambda: self._renew(ids), self.config.worker.heartbeat_seconds,
                      "hl7-result-claims"):
            for message_id, text, attempts in claimed:
                code, error = self._send(text, receiving)
                self._record(message_id, attempts + 1, code, error, receiving)
        return len(claimed)

    def _renew(self, ids: list[int]) -> None:
        lease = timedelta(seconds=self.config.worker.lease_seconds)
        with transaction(self.sessions) as session:
            session.execute(update(Hl7ResultMessage).where(
                Hl7ResultMessage.id.in_(ids), Hl7ResultMessage.lease_owner == self.owner,
                Hl7ResultMessage.state == Hl7ResultState.PENDING)
                .values(next_attempt_at=database_now(session) + lease)
                .execution_options(synchronize_session=False))

    def _send(self, text: str, receiving: Hl7ResultsConfig) -> tuple[str | None, str | None]:
        try:
            with RisClient(receiving) as client:
                reply = client.send_message(text)
        except TimeoutError:
            return None, f"no ACK within {receiving.timeout_seconds:.0f}s"
        except OSError as exc:
            return None, f"RIS {receiving.host}:{receiving.port} unreachable: {exc}"
        ack = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        msa = next((seg.split("|") for seg in ack.strip("\x0b\x1c\r\n").split("\r")
                    if seg.startswith("MSA|")), None)
        if msa is None or len(msa) < 2:
            return None, f"reply without MSA: {ack[:200]!r}"
        code = msa[1]
        if code in ("AA", "CA"):
            return code, None
        return code, f"RIS answered {code}: {msa[3] if len(msa) > 3 else ''}".strip()

    def _record(self, message_id: int, attempts: int, code: str | None, error: str | None,
                receiving: Hl7ResultsConfig) -> None:
        now = utcnow()
        values: dict[str, object] = {"attempts": attempts, "ack_code": code, "lease_owner": None}
        if error is None:
            values.update(state=Hl7ResultState.SENT, sent_at=now, last_error=None)
        elif attempts >= receiving.max_attempts:
            values.update(state=Hl7ResultState.FAILED, last_error=error)
        else:
            values.update(last_error=error,
                          next_attempt_at=now + backoff(receiving.backoff_seconds, attempts))
        # The RIS may have the message: recording its answer outlasts a database outage
        # of up to a lease, so that it is not sent again.
        retried_transaction(self.sessions,
                            lambda session: self._record_in(session, message_id, values, code,
                                                            error, attempts, receiving),
                            within=self.config.worker.lease_seconds, what="record_oru")
        log.info("hl7_result", attempt=attempts, ack=code or "-", error=error or "")

    def _record_in(self, session: Session, message_id: int, values: dict[str, object],
                   code: str | None, error: str | None, attempts: int,
                   receiving: Hl7ResultsConfig) -> None:
        session.execute(update(Hl7ResultMessage).where(
            Hl7ResultMessage.id == message_id, Hl7ResultMessage.lease_owner == self.owner)
            .values(**values).execution_options(synchronize_session=False))
        row = session.get(Hl7ResultMessage, message_id)
        result = session.get(Result, row.result_id) if row else None
        study = session.get(Study, result.study_id) if result else None
        record_event(session, "hl7_result_sent",
                     outcome="success" if error is None else "failure",
                     peer_address=receiving.host,
                     study_uid=study.study_uid if study else None,
                     detail={"control_id": row.control_id if row else None,
                             "ack": code, "attempt": attempts, "error": error,
                             "node_version": mmbcd_node.__version__})
