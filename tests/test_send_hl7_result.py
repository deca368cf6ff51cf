"""The HL7 result (ORU^R01) to the RIS: content, lifecycle, ACK handling, retries.

Every ORU the node sends here passes hl7apy's strict v2.5.1 validation, table values
included (``tests/support/hl7_validation.py``). The orders come in through the order
intake as a RIS sends them, so the ORU is checked against what the RIS sent.
"""

from __future__ import annotations

import ssl
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import tomli_w
from hl7apy.parser import parse_message
from pydicom.uid import generate_uid
from sqlalchemy import select, update
from typer.testing import CliRunner

from mmbcd_node.admin.cli import app
from mmbcd_node.config import (
    ClientTlsConfig,
    Hl7Config,
    Hl7ResultsConfig,
    NodeConfig,
    StorageConfig,
)
from mmbcd_node.db.models import Instance, Job, JobState, Series, Study, StudyState, utcnow
from mmbcd_node.db.order_models import Order, StudyOrder
from mmbcd_node.db.result_models import (
    Delivery,
    DeliveryState,
    Hl7ResultMessage,
    Hl7ResultState,
    OutputObject,
    Result,
)
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction
from mmbcd_node.orders.intake import OrderIntake
from mmbcd_node.results.rejection_note import RejectionReason
from mmbcd_node.send.hl7_result import Hl7ResultSender, queue_result_message
from mmbcd_node.work.result_records import active_result
from mmbcd_node.work.withdrawal import withdraw_cancelled_results, withdraw_result
from tests.support.certificates import issue, make_ca
from tests.support.hl7_client import Ack, order_message
from tests.support.hl7_validation import field, segments, strict_message
from tests.support.mammo import make_mammogram, write_mammogram
from tests.support.predictions import OPERATING
from tests.support.ris import Ris

ORDER_PID = "PID|1||PAT7^^^HOSP^MR||Doe^Jane||19700101|F"


@pytest.fixture
def sessions(db_url: str):
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def config_for(ris: Ris, max_attempts: int = 5, storage: Path | None = None) -> NodeConfig:
    return NodeConfig(storage=StorageConfig(root=storage or Path("storage")),
                      hl7=Hl7Config(results=Hl7ResultsConfig(
                          host="127.0.0.1", port=ris.port, timeout_seconds=1.0,
                          max_attempts=max_attempts, backoff_seconds=0.0)))


def receive_order(sessions, control_id: str = "ORM1", control: str = "NW", **fields) -> str:
    """Take an order in through the intake, as the RIS sends it; return its text."""
    fields = {"placer": "PL7", "patient_id": "PAT7", "accession": "ACC7", **fields}
    text = order_message(control_id, control=control, **fields)
    ack = Ack.parse(OrderIntake(NodeConfig(), sessions).handle(text.encode("ascii")))
    assert ack.code == "AA", ack.error_text
    return text


def add_study(sessions, *, delivered: bool = True) -> int:
    with transaction(sessions) as session:
        study = Study(study_uid=generate_uid(), correlation_id=uuid.uuid4().hex,
                      patient_id="PAT7", issuer_of_patient_id="HOSP", accession_number="ACC7",
                      state=StudyState.DELIVERED if delivered else StudyState.DONE)
        session.add(study)
        session.flush()
        return study.id


def add_result(sessions, config: NodeConfig, *, study_id: int | None = None,
               with_order: bool = True, pending_dicom: bool = False,
               not_attempted: str | None = None, probability: float = 0.875) -> int:
    """Record a result of the study (a new one) the way the worker does: the study's
    active result is superseded, then the new one is stored and its ORU queued."""
    study_id = study_id or add_study(sessions, delivered=not pending_dicom)
    with transaction(sessions) as session:
        study = session.get(Study, study_id)
        order = (session.execute(select(Order).where(Order.placer_number == "PL7"))
                 .scalar_one() if with_order else None)
        if order is not None and session.execute(select(StudyOrder).where(
                StudyOrder.study_id == study_id)).first() is None:
            session.add(StudyOrder(study_id=study_id, order_id=order.id, rule="accession",
                                   decided_by="matcher"))
        previous = active_result(session, study_id)
        if previous is not None:
            withdraw_result(session, config, previous, study, RejectionReason.SUPERSEDED)
        job = Job(study_id=study_id, state=JobState.DONE,
                  started_at=utcnow() - timedelta(minutes=5))
        session.add(job)
        session.flush()
        scored = not_attempted is None
        result = Result(job_id=job.id, study_id=study_id, order_id=order.id if order else None,
                        probability=probability if scored else None,
                        right_probability=probability if scored else None,
                        left_probability=0.125 if scored else None,
                        not_attempted_reason=not_attempted, all_views_used=scored,
                        operating_threshold=0.5, breast_threshold=0.3,
                        operating_point=OPERATING.statement(), bundle_digest="f" * 64,
                        model_version="mmbcd-demo 1.0", history_used=True,
                        history_sources='["OBR-13", "NTE-3"]',
                        predecessor_id=previous.id if previous else None)
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
        return study_id


def message_row(sessions) -> Hl7ResultMessage:
    with sessions() as session:
        return session.execute(select(Hl7ResultMessage)).scalar_one()


def send_all(sessions, config: NodeConfig) -> None:
    sender = Hl7ResultSender(config, sessions, "sender-1")
    while sender.send_due():
        pass


def study_uid_of(sessions, study_id: int) -> str:
    with sessions() as session:
        return session.get(Study, study_id).study_uid


def test_oru_echoes_the_order_and_carries_scores_flag_provenance_and_study_uid(
        sessions, ris) -> None:
    config = config_for(ris)
    receive_order(sessions)
    study_uid = study_uid_of(sessions, add_result(sessions, config))
    assert Hl7ResultSender(config, sessions, "sender-1").send_due() == 1
    (text,) = ris.received
    message = strict_message(text)
    assert message.msh.msh_9.to_er7() == "ORU^R01^ORU_R01"
    assert message.msh.msh_12.to_er7() == "2.5.1"
    (obr,) = segments(text, "OBR")
    assert (field(obr, 2), field(obr, 3), field(obr, 18)) == ("PL7", "FI7", "ACC7")
    assert field(obr, 25) == "P", "preliminary, never mistaken for the report"
    rows = {obx.obx_3.obx_3_1.to_er7(): obx
            for obx in parse_message(text, find_groups=False).obx}
    case = rows["111047"]
    assert (case.obx_5.to_er7(), case.obx_8.to_er7()) == ("0.8750", "A")
    # Each breast is flagged at the breast threshold (0.3), the case at the study's (0.5).
    assert (rows["BREAST-R"].obx_5.to_er7(), rows["BREAST-R"].obx_8.to_er7()) == ("0.8750", "A")
    assert (rows["BREAST-L"].obx_5.to_er7(), rows["BREAST-L"].obx_8.to_er7()) == ("0.1250", "N")
    assert rows["OPERATING-POINT"].obx_5.to_er7() == (
        "calibrated (platt, validation split (96 studies)); flags at study >= 0.5000 "
        "(specificity:0.90), breast >= 0.4500 (specificity:0.90), view >= 0.4200 "
        "(specificity:0.90)")
    assert "mmbcd-demo 1.0" in rows["111003"].obx_5.to_er7()
    assert rows["HISTORY-SOURCE"].obx_5.to_er7() == "clinical history from OBR-13, NTE-3"
    assert rows["110180"].obx_5.to_er7() == study_uid
    assert {obx.obx_11.to_er7() for obx in rows.values()} == {"P"}
    row = message_row(sessions)
    assert (row.state, row.ack_code, row.attempts) == (Hl7ResultState.SENT, "AA", 1)


def test_pid_is_the_orders_pid_with_the_name_and_the_identifier_type_code(
        sessions, ris) -> None:
    config = config_for(ris)
    order = receive_order(sessions)
    add_result(sessions, config)
    send_all(sessions, config)
    (text,) = ris.received
    (pid,) = segments(text, "PID")
    assert pid == segments(order, "PID")[0] == ORDER_PID
    assert field(pid, 5) == "Doe^Jane", "PID-5 is required"
    assert field(pid, 3).split("^")[4] == "MR", "CX-5 identifier type code"
    strict_message(text)


def test_pid_echoes_the_orders_text_with_escapes_hl7apy_keeps(sessions, ris) -> None:
    config = config_for(ris)
    text = order_message("ORM1", placer="PL7", patient_id="PAT7", accession="ACC7")
    # A hex escape, an escaped component separator and a line break in the name.
    text = text.replace("Doe^Jane", "D\\X4F\\e&Smith^J\\S\\ane\\.br\\x~Doe^Jane")
    ack = Ack.parse(OrderIntake(NodeConfig(), sessions).handle(text.encode("ascii")))
    assert ack.code == "AA", ack.error_text
    add_result(sessions, config)
    send_all(sessions, config)
    (oru,) = ris.received
    (pid,) = segments(oru, "PID")
    assert field(pid, 5) == "DOe&Smith^J\\S\\ane x~Doe^Jane"
    assert field(pid, 3) == "PAT7^^^HOSP^MR"
    strict_message(oru)


def test_obr_4_is_the_orders_procedure_with_its_code(sessions, ris) -> None:
    config = config_for(ris)
    order = receive_order(sessions)
    add_result(sessions, config)
    send_all(sessions, config)
    (text,) = ris.received
    assert field(segments(text, "OBR")[0], 4) == field(segments(order, "OBR")[0], 4) \
        == "MAMMO^Mammography bilateral^99RIS"
    strict_message(text)


def test_orc_is_a_result_whose_order_status_agrees_with_the_result_status(
        sessions, ris) -> None:
    config = config_for(ris)
    receive_order(sessions)
    add_result(sessions, config)
    send_all(sessions, config)
    (text,) = ris.received
    (orc,), (obr,) = segments(text, "ORC"), segments(text, "OBR")
    assert field(orc, 1) == "RE", "table 0119: observations to follow"
    assert (field(obr, 25), field(orc, 5)) == ("P", "A"), \
        "a preliminary result leaves the order with some results, not complete"
    assert (field(orc, 2), field(orc, 3)) == (field(obr, 2), field(obr, 3))
    strict_message(text)


def test_obr_24_is_radiology_from_table_0074(sessions, ris) -> None:
    config = config_for(ris)
    receive_order(sessions)
    add_result(sessions, config)
    send_all(sessions, config)
    (text,) = ris.received
    assert field(segments(text, "OBR")[0], 24) == "RAD"
    strict_message(text)


def test_a_rerun_is_a_correction_under_the_same_filler_number(sessions, ris) -> None:
    config = config_for(ris)
    receive_order(sessions)
    study_id = add_result(sessions, config, probability=0.875)
    send_all(sessions, config)
    add_result(sessions, config, study_id=study_id, probability=0.25)
    send_all(sessions, config)
    first, second = ris.received
    (obr1,), (obr2,) = segments(first, "OBR"), segments(second, "OBR")
    assert (field(obr1, 25), field(obr2, 25)) == ("P", "C")
    assert field(obr2, 3) == field(obr1, 3) == "FI7"
    assert field(obr2, 2) == field(obr1, 2) == "PL7"
    assert {field(obx, 11) for obx in segments(second, "OBX")} == {"C"}
    assert field(segments(second, "ORC")[0], 5) == "A"
    case = next(obx for obx in segments(second, "OBX") if field(obx, 3).startswith("111047"))
    assert field(case, 5) == "0.2500"
    assert first.split("|")[9] != second.split("|")[9], "a new MSH-10"
    for text in (first, second):
        strict_message(text)


def test_a_rerun_before_the_first_oru_went_out_is_preliminary_and_the_first_never_goes(
        sessions, ris) -> None:
    config = config_for(ris)
    receive_order(sessions)
    study_id = add_result(sessions, config, probability=0.875)
    add_result(sessions, config, study_id=study_id, probability=0.25)
    send_all(sessions, config)
    (text,) = ris.received
    strict_message(text)
    assert field(segments(text, "OBR")[0], 25) == "P"
    with sessions() as session:
        first = session.execute(select(Hl7ResultMessage).order_by(Hl7ResultMessage.id)
                                ).scalars().first()
    assert (first.state, first.attempts) == (Hl7ResultState.FAILED, 0)


def test_cancel_withdraw_sends_the_cancellation_of_the_result_to_the_ris(
        sessions, ris, db_url, tmp_path) -> None:
    config = config_for(ris, storage=tmp_path / "storage")
    receive_order(sessions)
    study_id = add_result(sessions, config)
    send_all(sessions, config)
    settings = tmp_path / "node.toml"
    settings.write_text(tomli_w.dumps({
        "database": {"url": db_url}, "storage": {"root": str(tmp_path / "storage")},
        "hl7": {"results": {"host": "127.0.0.1", "port": ris.port, "timeout_seconds": 1.0,
                            "backoff_seconds": 0.0}}}))
    done = CliRunner().invoke(app, ["--config", str(settings), "cancel",
                                    study_uid_of(sessions, study_id), "--withdraw"])
    assert done.exit_code == 0, done.output
    with sessions() as session:
        queued = session.execute(select(Hl7ResultMessage).where(
            Hl7ResultMessage.state == Hl7ResultState.PENDING)).scalar_one()
        assert queued.result_status == "X"
    send_all(sessions, config)
    preliminary, cancellation = ris.received
    (orc,), (obr,) = segments(cancellation, "ORC"), segments(cancellation, "OBR")
    assert (field(obr, 25), field(orc, 1), field(orc, 5)) == ("X", "RE", "CA")
    assert segments(cancellation, "OBX") == [], "no results available"
    assert (field(obr, 2), field(obr, 3)) == (field(segments(preliminary, "OBR")[0], 2),
                                              field(segments(preliminary, "OBR")[0], 3))
    assert segments(cancellation, "PID") == segments(preliminary, "PID")
    assert message_state(sessions, "X") == Hl7ResultState.SENT
    strict_message(cancellation)


def message_state(sessions, status: str) -> str:
    with sessions() as session:
        return session.execute(select(Hl7ResultMessage.state).where(
            Hl7ResultMessage.result_status == status)).scalar_one()


def test_an_order_cancelled_by_the_ris_cancels_the_result_it_was_sent(sessions, ris) -> None:
    config = config_for(ris)
    receive_order(sessions)
    study_id = add_result(sessions, config)
    send_all(sessions, config)
    receive_order(sessions, "ORM2", control="CA")
    assert withdraw_cancelled_results(config, sessions) == 1
    send_all(sessions, config)
    assert len(ris.received) == 2
    cancellation = ris.received[1]
    (obr,) = segments(cancellation, "OBR")
    assert (field(obr, 2), field(obr, 3), field(obr, 25)) == ("PL7", "FI7", "X")
    with sessions() as session:
        assert active_result(session, study_id) is None
    strict_message(cancellation)


def test_a_withdrawn_result_the_ris_never_got_sends_nothing(sessions, ris) -> None:
    config = config_for(ris)
    receive_order(sessions)
    study_id = add_result(sessions, config)
    with transaction(sessions) as session:
        study = session.get(Study, study_id)
        withdraw_result(session, config, active_result(session, study_id), study,
                        RejectionReason.ORDER_CANCELLED)
    send_all(sessions, config)
    assert ris.received == []
    assert message_row(sessions).state == Hl7ResultState.FAILED


def test_without_an_order_the_oru_carries_the_nodes_filler_number_and_the_images_patient(
        sessions, ris, tmp_path) -> None:
    config = config_for(ris, storage=tmp_path / "storage")
    study_id = add_study(sessions)
    image = make_mammogram(patient_id="PAT7", PatientName="Roe^Anna^M^Dr^Jr",
                           PatientBirthDate="19650203", PatientSex="F",
                           IssuerOfPatientID="HOSP")
    write_mammogram(tmp_path / "storage" / "img.dcm", image)
    with transaction(sessions) as session:
        series = Series(study_id=study_id, series_uid=generate_uid())
        session.add(series)
        session.flush()
        session.add(Instance(study_id=study_id, series_id=series.id,
                             sop_instance_uid=image.SOPInstanceUID,
                             sop_class_uid=image.SOPClassUID,
                             transfer_syntax_uid="1.2.840.10008.1.2.1", path="img.dcm",
                             size_bytes=1, digest="sha256:00"))
    add_result(sessions, config, study_id=study_id, with_order=False, probability=0.875)
    send_all(sessions, config)
    add_result(sessions, config, study_id=study_id, with_order=False, probability=0.5)
    send_all(sessions, config)
    first, second = ris.received
    (obr1,), (obr2,) = segments(first, "OBR"), segments(second, "OBR")
    assert field(obr1, 2) == "" and field(obr1, 3) == f"MMBCD-{study_id}^MMBCD-NODE"
    assert field(segments(first, "ORC")[0], 3) == field(obr1, 3)
    assert (field(obr2, 3), field(obr2, 25)) == (field(obr1, 3), "C"), \
        "the same number for every run of the study"
    (pid,) = segments(first, "PID")
    assert (field(pid, 3), field(pid, 5), field(pid, 7), field(pid, 8)) == (
        "PAT7^^^HOSP", "Roe^Anna^M^Jr^Dr", "19650203", "F")
    for text in (first, second):
        strict_message(text)


def test_a_correction_waits_for_the_preliminary_another_sender_is_sending(
        sessions, ris) -> None:
    config = config_for(ris)
    receive_order(sessions)
    study_id = add_result(sessions, config)
    with transaction(sessions) as session:  # sender-1 holds the preliminary, then dies
        session.execute(update(Hl7ResultMessage).values(
            lease_owner="sender-1", next_attempt_at=utcnow() + timedelta(hours=1)))
    add_result(sessions, config, study_id=study_id, probability=0.25)
    sender = Hl7ResultSender(config, sessions, "sender-2")
    assert sender.send_due() == 0, "the correction waits for the preliminary"
    with transaction(sessions) as session:  # sender-1's lease runs out
        session.execute(update(Hl7ResultMessage).where(
            Hl7ResultMessage.lease_owner == "sender-1")
            .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    send_all(sessions, config)
    assert [field(segments(text, "OBR")[0], 25) for text in ris.received] == ["P", "C"]


def test_oru_of_a_not_attempted_result_carries_the_reason_instead_of_a_score(
        sessions, ris) -> None:
    config = config_for(ris)
    receive_order(sessions)
    reason = "nothing analysable: 1.2.3 (L CC): tomosynthesis only"
    add_result(sessions, config, not_attempted=reason)
    assert Hl7ResultSender(config, sessions, "sender-1").send_due() == 1
    (text,) = ris.received
    strict_message(text)
    rows = {obx.obx_3.obx_3_1.to_er7(): obx
            for obx in parse_message(text, find_groups=False).obx}
    assert "111047" not in rows and "BREAST-R" not in rows
    assert rows["NOT-ATTEMPTED"].obx_5.to_er7() == reason
    assert rows["VIEWS-USED"].obx_5.to_er7() == "no image analysed"


def test_ae_ar_and_a_silent_ris_are_retried_and_nothing_is_sent_again_after_aa(
        sessions, ris) -> None:
    config = config_for(ris)
    receive_order(sessions)
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
    receive_order(sessions)
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
    receive_order(sessions)
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


@pytest.fixture(scope="module")
def ris_pki(tmp_path_factory) -> dict[str, tuple[Path, Path]]:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca(folder)
    return {"ca": ca, "ris": issue(folder, "ris", ca), "node": issue(folder, "node", ca)}


def _tls_ris_context(ris_pki) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*ris_pki["ris"])
    context.load_verify_locations(cafile=str(ris_pki["ca"][0]))
    context.verify_mode = ssl.CERT_REQUIRED  # the interface engine authenticates the node
    return context


def _tls_config(ris: Ris, tls: ClientTlsConfig) -> NodeConfig:
    return NodeConfig(storage=StorageConfig(root=Path("storage")), hl7=Hl7Config(
        results=Hl7ResultsConfig(host="127.0.0.1", port=ris.port, timeout_seconds=5.0,
                                 max_attempts=5, backoff_seconds=0.0, tls=tls)))


def test_the_oru_reaches_a_tls_ris_that_verifies_the_node(sessions, tls_ris, ris_pki) -> None:  # type: ignore[no-untyped-def]
    ris = tls_ris(_tls_ris_context(ris_pki))
    cert, key = ris_pki["node"]
    config = _tls_config(ris, ClientTlsConfig(enabled=True, ca=ris_pki["ca"][0], cert=cert,
                                              key=key))
    receive_order(sessions)
    add_result(sessions, config)
    send_all(sessions, config)
    (text,) = ris.received
    strict_message(text)
    with sessions() as session:
        (message,) = session.execute(select(Hl7ResultMessage)).scalars()
        assert message.state == Hl7ResultState.SENT


def test_a_tls_ris_refuses_a_node_without_its_certificate_and_the_oru_waits(
        sessions, tls_ris, ris_pki) -> None:  # type: ignore[no-untyped-def]
    ris = tls_ris(_tls_ris_context(ris_pki))
    config = _tls_config(ris, ClientTlsConfig(enabled=True, ca=ris_pki["ca"][0]))
    receive_order(sessions)
    add_result(sessions, config)
    Hl7ResultSender(config, sessions, "sender-1").send_due()
    assert ris.received == []
    with sessions() as session:
        (message,) = session.execute(select(Hl7ResultMessage)).scalars()
        assert (message.state, message.attempts) == (Hl7ResultState.PENDING, 1)
        assert message.last_error
