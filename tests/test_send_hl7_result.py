"""The HL7 result (ORU^R01) to the RIS: content, ACK handling, retries, no duplicates."""

from __future__ import annotations

import uuid

import pytest
from hl7apy.parser import parse_message
from pydicom.uid import generate_uid
from sqlalchemy import select

from mmbcd_node.config import Hl7Config, Hl7ResultsConfig, NodeConfig
from mmbcd_node.db.models import Job, JobState, Study, StudyState
from mmbcd_node.db.order_models import Order
from mmbcd_node.db.result_models import (
    Delivery,
    DeliveryState,
    Hl7ResultMessage,
    Hl7ResultState,
    OutputObject,
    Result,
)
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction
from mmbcd_node.send.hl7_result import Hl7ResultSender, queue_result_message
from tests.support.ris import Ris


@pytest.fixture
def sessions(db_url: str):
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def config_for(ris: Ris, max_attempts: int = 5) -> NodeConfig:
    return NodeConfig(hl7=Hl7Config(results=Hl7ResultsConfig(
        host="127.0.0.1", port=ris.port, timeout_seconds=1.0, max_attempts=max_attempts,
        backoff_seconds=0.0)))


def add_result(sessions, config: NodeConfig, *, pending_dicom: bool = False,
               not_attempted: str | None = None) -> str:
    with transaction(sessions) as session:
        study = Study(study_uid=generate_uid(), correlation_id=uuid.uuid4().hex,
                      patient_id="PAT7", issuer_of_patient_id="HOSP", accession_number="ACC7",
                      state=StudyState.DONE if pending_dicom else StudyState.DELIVERED)
        order = Order(placer_number="PL7", filler_number="FI7", control="NW",
                      accession_number="ACC7", procedure="Mammography bilateral",
                      requested_procedure_id="RP7")
        session.add_all([study, order])
        session.flush()
        job = Job(study_id=study.id, state=JobState.DONE)
        session.add(job)
        session.flush()
        scored = not_attempted is None
        result = Result(job_id=job.id, study_id=study.id, order_id=order.id,
                        probability=0.875 if scored else None,
                        right_probability=0.875 if scored else None,
                        left_probability=0.125 if scored else None,
                        not_attempted_reason=not_attempted, all_views_used=scored,
                        operating_threshold=0.5, bundle_digest="f" * 64,
                        model_version="mmbcd-demo 1.0", history_used=True,
                        history_sources='["OBR-13", "NTE-3"]')
        session.add(result)
        session.flush()
        if pending_dicom:
            output = OutputObject(result_id=result.id, kind="sr", sop_class_uid="1.2",
                                  sop_instance_uid=generate_uid(), series_instance_uid="1.3",
                                  path="sr.dcm")
            session.add(output)
            session.flush()
            session.add(Delivery(output_id=output.id, destination="pacs"))
        queue_result_message(session, config, result, study, order)
        return study.study_uid


def message_row(sessions) -> Hl7ResultMessage:
    with sessions() as session:
        return session.execute(select(Hl7ResultMessage)).scalar_one()


def test_oru_echoes_the_order_and_carries_scores_flag_provenance_and_study_uid(
        sessions, ris) -> None:
    config = config_for(ris)
    study_uid = add_result(sessions, config)
    assert Hl7ResultSender(config, sessions, "sender-1").send_due() == 1
    (text,) = ris.received
    message = parse_message(text, find_groups=False)
    assert message.msh.msh_9.to_er7() == "ORU^R01^ORU_R01"
    assert message.msh.msh_12.to_er7() == "2.5.1"
    obr = message.obr
    assert (obr.obr_2.to_er7(), obr.obr_3.to_er7(), obr.obr_18.to_er7()) == ("PL7", "FI7", "ACC7")
    assert obr.obr_25.to_er7() == "P", "preliminary, never mistaken for the report"
    rows = {obx.obx_3.obx_3_1.to_er7(): obx for obx in message.obx}
    case = rows["111047"]
    assert (case.obx_5.to_er7(), case.obx_8.to_er7()) == ("0.8750", "A")
    assert rows["BREAST-R"].obx_5.to_er7() == "0.8750"
    assert rows["BREAST-L"].obx_5.to_er7() == "0.1250"
    assert "mmbcd-demo 1.0" in rows["111003"].obx_5.to_er7()
    assert rows["HISTORY-SOURCE"].obx_5.to_er7() == "clinical history from OBR-13, NTE-3"
    assert rows["110180"].obx_5.to_er7() == study_uid
    row = message_row(sessions)
    assert (row.state, row.ack_code, row.attempts) == (Hl7ResultState.SENT, "AA", 1)


def test_oru_of_a_not_attempted_result_carries_the_reason_instead_of_a_score(
        sessions, ris) -> None:
    config = config_for(ris)
    reason = "nothing analysable: 1.2.3 (L CC): tomosynthesis only"
    add_result(sessions, config, not_attempted=reason)
    assert Hl7ResultSender(config, sessions, "sender-1").send_due() == 1
    (text,) = ris.received
    rows = {obx.obx_3.obx_3_1.to_er7(): obx
            for obx in parse_message(text, find_groups=False).obx}
    assert "111047" not in rows and "BREAST-R" not in rows
    assert rows["NOT-ATTEMPTED"].obx_5.to_er7() == reason
    assert rows["VIEWS-USED"].obx_5.to_er7() == "no image analysed"


def test_ae_ar_and_a_silent_ris_are_retried_and_nothing_is_sent_again_after_aa(
        sessions, ris) -> None:
    config = config_for(ris)
    add_result(sessions, config)
    sender = Hl7ResultSender(config, sessions, "sender-1")
    ris.answers = ["AE", "AR", None, "AA"]
    expected = [("AE", "RIS answered AE"), ("AR", "RIS answered AR"), (None, "no ACK")]
    for attempt, (code, error) in enumerate(expected, start=1):
        assert sender.send_due() == 1
        row = message_row(sessions)
        assert (row.state, row.attempts, row.ack_code) == (Hl7ResultState.PENDING, attempt, code)
        assert row.last_error.startswith(error)
    assert sender.send_due() == 1
    assert message_row(sessions).state == Hl7ResultState.SENT
    assert sender.send_due() == 0
    assert len(ris.received) == 4
    assert len({text.split("\r")[0].split("|")[9] for text in ris.received}) == 1, \
        "every retry carries the same MSH-10"


def test_oru_fails_for_good_after_its_attempts(sessions, ris) -> None:
    config = config_for(ris, max_attempts=2)
    add_result(sessions, config)
    ris.answers = ["AR", "AR"]
    sender = Hl7ResultSender(config, sessions, "sender-1")
    sender.send_due()
    sender.send_due()
    row = message_row(sessions)
    assert (row.state, row.attempts) == (Hl7ResultState.FAILED, 2)
    assert sender.send_due() == 0


def test_oru_waits_until_the_dicom_objects_are_delivered(sessions, ris) -> None:
    config = config_for(ris)
    add_result(sessions, config, pending_dicom=True)
    sender = Hl7ResultSender(config, sessions, "sender-1")
    assert sender.send_due() == 0
    with transaction(sessions) as session:
        for delivery in session.execute(select(Delivery)).scalars():
            delivery.state = DeliveryState.SENT
    assert sender.send_due() == 1
    assert len(ris.received) == 1


def test_no_oru_without_an_hl7_results_section(sessions) -> None:
    with transaction(sessions) as session:
        assert queue_result_message(session, NodeConfig(), None, None, None) is None  # type: ignore[arg-type]
