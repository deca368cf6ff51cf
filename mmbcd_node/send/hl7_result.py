"""The HL7 result for the RIS worklist: ORU^R01 v2.5.1, preliminary, over MLLP.

One message per result, built with hl7apy when the result is stored and sent once
the study's DICOM objects are delivered (or at once where no DICOM destination is
configured), so the RIS flag never points at a result the PACS does not show yet.
OBR echoes the order and says ``P`` (preliminary) in OBR-25: the worklist can sort by
the score, but nobody mistakes it for the report. OBX rows: case probability with the
abnormal flag from the bundle's operating threshold (for a not-attempted result, the
reason nothing could be analysed instead), each breast probability, the
threshold, the model version, the clinical history used (by source field) or that
the result is images-only, and the Study Instance UID.

``AE``, ``AR`` and an ACK that never comes are failed attempts, retried with backoff
up to ``[hl7.results] max_attempts``; after ``AA`` the message is never sent again.
Messages are claimed under the sender's lease (``[worker] lease_seconds``, renewed
while they are sent), so a dead sender's messages go out again once it runs out.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from hl7.client import MLLPClient
from hl7apy.base_datatypes import ST
from hl7apy.core import Message
from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import Session, sessionmaker

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
    OutputObject,
    Result,
    ResultState,
)
from mmbcd_node.db.session import transaction
from mmbcd_node.process import renewing
from mmbcd_node.retry import backoff

log = logging.getLogger(__name__)

SENDING_APPLICATION = "MMBCD-NODE"


def _observation(group, index: int, value_type: str, code: str, value: str,  # type: ignore[no-untyped-def]
                 *, units: str = "", flag: str = "") -> None:
    obx = group.add_group("ORU_R01_OBSERVATION").obx
    obx.obx_1 = str(index)
    obx.obx_2 = value_type
    obx.obx_3 = code
    obx.obx_5 = ST(value).to_er7()  # escaped: | ^ & ~ \\ in the text stay text
    if units:
        obx.obx_6 = units
    if flag:
        obx.obx_8 = flag
    obx.obx_11 = "P"  # preliminary, like OBR-25


def build_result_message(result: Result, study: Study, order: Order | None, *,
                         control_id: str, sending_facility: str,
                         receiving: Hl7ResultsConfig, now: datetime | None = None) -> str:
    """ER7 text (segments separated by CR) of the ORU^R01 for ``result``."""
    stamp = (now or utcnow()).strftime("%Y%m%d%H%M%S")
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
    pid = patient_result.add_group("ORU_R01_PATIENT").pid
    pid.pid_1 = "1"
    issuer = study.issuer_of_patient_id or (order.issuer_of_patient_id if order else "") or ""
    pid.pid_3.cx_1 = ST(study.patient_id or "")
    if issuer:
        pid.pid_3.cx_4.hd_1 = ST(issuer)
    group = patient_result.add_group("ORU_R01_ORDER_OBSERVATION")
    placer = (order.placer_number if order else "") or ""
    filler = (order.filler_number if order else "") or ""
    accession = (order.accession_number if order else None) or study.accession_number or ""
    group.orc.orc_1 = "SC"
    group.orc.orc_2.ei_1 = ST(placer)
    group.orc.orc_3.ei_1 = ST(filler)
    group.orc.orc_5 = "CM"
    obr = group.obr
    obr.obr_1 = "1"
    obr.obr_2.ei_1 = ST(placer)
    obr.obr_3.ei_1 = ST(filler)
    obr.obr_4.ce_2 = ST((order.procedure if order else "") or "Mammography")
    obr.obr_7 = stamp
    obr.obr_18 = ST(accession)
    if order and order.requested_procedure_id:
        obr.obr_19 = ST(order.requested_procedure_id)
    obr.obr_22 = stamp
    obr.obr_24 = "MG"
    obr.obr_25 = "P"
    threshold = result.operating_threshold
    rows: list[tuple[str, str, str, str]] = []
    if result.probability is None:  # not attempted: the reason instead of a score
        rows.append(("ST", "NOT-ATTEMPTED^AI analysis not attempted^99MMBCD",
                     result.not_attempted_reason or "nothing analysable", ""))
    else:
        flag = "" if threshold is None else ("A" if result.probability >= threshold else "N")
        rows.append(("NM", "111047^Probability of cancer^DCM", f"{result.probability:.4f}",
                     flag))
    for side, name, breast in (("R", "Right", result.right_probability),
                               ("L", "Left", result.left_probability)):
        if breast is not None:
            rows.append(("NM", f"BREAST-{side}^{name} breast probability^99MMBCD",
                         f"{breast:.4f}", ""))
    if threshold is not None:
        rows.append(("NM", "THRESHOLD^Operating threshold^99MMBCD", f"{threshold:.4f}", ""))
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
    for index, (value_type, code, value, row_flag) in enumerate(rows, start=1):
        _observation(group, index, value_type, code, value,
                     units="1^no units^UCUM" if value_type == "NM" else "", flag=row_flag)
    return message.to_er7()


def queue_result_message(session: Session, config: NodeConfig, result: Result, study: Study,
                         order: Order | None) -> Hl7ResultMessage | None:
    """Store the ORU of ``result`` for sending; None when ``[hl7.results]`` is absent."""
    receiving = config.hl7.results
    if receiving is None:
        return None
    control_id = f"MMBCD{result.id:015d}"[-20:]
    row = Hl7ResultMessage(
        result_id=result.id, control_id=control_id, state=Hl7ResultState.PENDING,
        message=build_result_message(result, study, order, control_id=control_id,
                                     sending_facility=config.dicom.ae_title,
                                     receiving=receiving))
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
        now = now or utcnow()
        lease = self.config.worker.lease_seconds
        # Due once no DICOM delivery of its result is outstanding (none pending, or sent
        # and awaiting commitment): the RIS flag follows the images into the PACS.
        outstanding = exists(
            select(Delivery.id).join(OutputObject, Delivery.output_id == OutputObject.id)
            .where(OutputObject.result_id == Result.id,
                   Delivery.state == DeliveryState.PENDING))
        with transaction(self.sessions) as session:
            ids = session.execute(
                select(Hl7ResultMessage.id)
                .join(Result, Hl7ResultMessage.result_id == Result.id)
                .join(Study, Result.study_id == Study.id)
                .where(Hl7ResultMessage.state == Hl7ResultState.PENDING,
                       Hl7ResultMessage.next_attempt_at <= now,
                       Result.state == ResultState.ACTIVE,
                       (Study.state == StudyState.DELIVERED) | ~outstanding)
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
                .values(next_attempt_at=utcnow() + lease)
                .execution_options(synchronize_session=False))

    def _send(self, text: str, receiving: Hl7ResultsConfig) -> tuple[str | None, str | None]:
        try:
            with MLLPClient(receiving.host, receiving.port, encoding="utf-8") as client:
                client.socket.settimeout(receiving.timeout_seconds)
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
        with transaction(self.sessions) as session:
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
        log.info("event=hl7_result attempt=%d ack=%s error=%r", attempts, code or "-",
                 error or "")
