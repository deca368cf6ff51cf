"""Storing orders: AA only after commit, duplicates, updates, cancels, nothing half-stored.

``OrderIntake.handle`` is what the MLLP listener calls for each message; here it is
called directly against SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import NodeConfig, OrdersConfig
from mmbcd_node.db.models import AuditEvent, Job, JobState, Study, StudyState, utcnow
from mmbcd_node.db.order_models import Hl7Message, Order, OrderMessage, StudyOrder
from mmbcd_node.db.session import make_engine, make_sessionmaker
from mmbcd_node.orders.history import history_for_study
from mmbcd_node.orders.intake import OrderIntake
from tests.support.hl7_client import Ack, encode, order_message
from tests.support.node import free_port


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def intake(sessions: sessionmaker[Session]) -> OrderIntake:
    return OrderIntake(NodeConfig(), sessions)


def send(intake: OrderIntake, text: str | bytes) -> Ack:
    raw = text.encode("ascii") if isinstance(text, str) else text
    return Ack.parse(intake.handle(raw, "127.0.0.1:5000"))


def count(sessions: sessionmaker[Session], model: type) -> int:
    with sessions() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def add_study(sessions: sessionmaker[Session], *, uid: str = "1.2.3.100", patient: str = "PAT1",
              accession: str = "ACC1", state: str = StudyState.COMPLETE) -> int:
    with sessions() as session, session.begin():
        study = Study(study_uid=uid, patient_id=patient, issuer_of_patient_id="HOSP",
                      accession_number=accession, study_date="20261130", state=state,
                      completed_at=utcnow(), correlation_id="c" * 8)
        session.add(study)
        session.flush()
        return study.id


def test_aa_is_sent_after_raw_message_and_order_are_committed(
        intake: OrderIntake, sessions: sessionmaker[Session]) -> None:
    text = order_message("MSG-1", accession="ACC-7", clinical="lump left breast 2 months")
    ack = send(intake, text)
    assert (ack.code, ack.control_id) == ("AA", "MSG-1")
    with sessions() as session:  # a fresh session sees only committed rows
        stored = session.execute(select(Hl7Message)).scalar_one()
        order = session.execute(select(Order)).scalar_one()
    assert stored.raw == text.encode("ascii")
    assert (stored.control_id, stored.ack_code) == ("MSG-1", "AA")
    assert order.accession_number == "ACC-7"
    assert json.loads(order.history_sources)[0] == ["OBR-13", "lump left breast 2 months"]


def test_resent_identical_message_is_aa_again_without_second_order(
        intake: OrderIntake, sessions: sessionmaker[Session]) -> None:
    text = order_message("MSG-1")
    assert send(intake, text).code == "AA"
    assert send(intake, text).code == "AA"
    assert count(sessions, Hl7Message) == 1
    assert count(sessions, Order) == 1
    assert count(sessions, OrderMessage) == 1


def test_same_key_with_different_content_is_ae_205_and_changes_nothing(
        intake: OrderIntake, sessions: sessionmaker[Session]) -> None:
    assert send(intake, order_message("MSG-1", clinical="first")).code == "AA"
    ack = send(intake, order_message("MSG-1", clinical="second"))
    assert (ack.code, ack.error_code) == ("AE", "205")
    with sessions() as session:
        assert session.execute(select(Order.history_text)).scalar_one().startswith("first")
    assert count(sessions, Hl7Message) == 1


def test_same_control_id_from_another_sender_is_a_different_message(
        intake: OrderIntake, sessions: sessionmaker[Session]) -> None:
    assert send(intake, order_message("MSG-1", placer="A", filler="FA")).code == "AA"
    assert send(intake, order_message("MSG-1", placer="B", filler="FB",
                                      sending=("RIS2", "HOSP"))).code == "AA"
    assert count(sessions, Order) == 2


@pytest.mark.parametrize("case, raw", [
    ("no MSH", b"PID|1||PAT1\rORC|NW|PL1\rOBR|1|PL1\r"),
    ("binary garbage", bytes(range(256)) * 4),
    ("wrong field separator", order_message().replace("|", ";").encode()),
    ("unknown type", order_message(message_type="ADT^A08").encode()),
    ("unsupported version", order_message(version="2.8").encode()),
    ("broken escape", order_message(clinical="lump \\Zpp").encode()),
    ("escape standing for NUL", order_message(clinical="lump \\X00\\ left").encode()),
    ("latin-1 without MSH-18", order_message(clinical="Größe").encode("latin-1")),
    ("no patient id", order_message(patient_id="").encode()),
    ("second order of message broken", order_message(extra_orders=1).replace(
        "ORC|NW|PL1-1", "ORC|QQ|PL1-1").encode()),
    ("MSH-10 longer than kept", order_message("M" * 200).encode()),
    ("MSH-3 longer than kept", order_message(sending=("R" * 181, "HOSP")).encode()),
    ("MSH-4 longer than kept", order_message(sending=("RIS", "H" * 181)).encode()),
])
def test_rejected_message_leaves_nothing_stored_and_is_audited(
        intake: OrderIntake, sessions: sessionmaker[Session], case: str, raw: bytes) -> None:
    ack = send(intake, raw)
    assert ack.code in ("AE", "AR"), case
    assert ack.error_code, case
    assert count(sessions, Hl7Message) == 0
    assert count(sessions, Order) == 0
    with sessions() as session:
        event = session.execute(select(AuditEvent).where(AuditEvent.action == "hl7_ack_sent")
                                ).scalar_one()
    assert event.outcome == "failure"
    assert json.loads(event.detail)["ack"] == ack.code


@pytest.mark.parametrize("field, raw", [
    ("MSH-10", order_message("M" * 200).encode()),
    ("MSH-3", order_message(sending=("R" * 181, "HOSP")).encode()),
])
def test_header_field_too_long_for_its_column_is_ae_naming_it_on_every_database(
        intake: OrderIntake, field: str, raw: bytes) -> None:
    ack = send(intake, raw)
    assert (ack.code, ack.error_code) == ("AE", "102"), ack.raw
    assert field.encode() in ack.raw


def test_longest_header_fields_kept_are_accepted_on_every_database(
        intake: OrderIntake, sessions: sessionmaker[Session]) -> None:
    ack = send(intake, order_message("M" * 199, sending=("R" * 180, "H" * 180)))
    assert ack.code == "AA", ack.raw
    assert count(sessions, Hl7Message) == 1


def test_latin1_and_utf8_history_is_stored_as_text(intake: OrderIntake,
                                                   sessions: sessionmaker[Session]) -> None:
    latin = order_message("M-L", placer="L", charset="8859/1", clinical="Größe 2 cm, Brustkrebs?")
    utf8 = order_message("M-U", placer="U", charset="UNICODE UTF-8", clinical="结节 — nódulo")
    assert send(intake, encode(latin, "8859/1")).code == "AA"
    assert send(intake, encode(utf8, "UNICODE UTF-8")).code == "AA"
    with sessions() as session:
        texts = dict(session.execute(select(Order.placer_number, Order.history_text)).all())
    assert texts["L"].startswith("Größe 2 cm, Brustkrebs?")
    assert texts["U"].startswith("结节 — nódulo")


def test_update_before_processing_changes_the_history_used(
        intake: OrderIntake, sessions: sessionmaker[Session]) -> None:
    study_id = add_study(sessions, state=StudyState.RECEIVING)
    assert send(intake, order_message("M1", clinical="screening")).code == "AA"
    assert send(intake, order_message("M2", control="XO",
                                      clinical="lump left breast 2 months")).code == "AA"
    assert count(sessions, Order) == 1
    with sessions() as session:
        history = history_for_study(session, study_id)
    assert history is not None
    assert history.text.startswith("lump left breast 2 months")
    assert history.source_fields[0] == "OBR-13"
    assert (history.placer_number, history.accession_number) == ("PL1", "ACC1")


def test_cancel_cancels_queued_job_and_study(intake: OrderIntake,
                                             sessions: sessionmaker[Session]) -> None:
    study_id = add_study(sessions)
    assert send(intake, order_message("M1")).code == "AA"
    with sessions() as session:
        assert session.get(Study, study_id).state == StudyState.QUEUED
    assert send(intake, order_message("M2", control="CA")).code == "AA"
    with sessions() as session:
        assert session.get(Study, study_id).state == StudyState.CANCELLED
        job = session.execute(select(Job).where(Job.study_id == study_id)).scalar_one()
        assert job.state == JobState.CANCELLED
        assert session.execute(select(Order.cancelled)).scalar_one() is True
        assert history_for_study(session, study_id) is None
        actions = session.execute(select(AuditEvent.action)).scalars().all()
    assert "order_cancelled" in actions


def test_cancel_of_a_study_with_results_requests_their_withdrawal(
        intake: OrderIntake, sessions: sessionmaker[Session]) -> None:
    study_id = add_study(sessions)
    assert send(intake, order_message("M1")).code == "AA"
    with sessions() as session, session.begin():
        session.get(Study, study_id).state = StudyState.DELIVERED
    assert send(intake, order_message("M2", control="OC")).code == "AA"
    with sessions() as session:
        assert session.get(Study, study_id).state == StudyState.DELIVERED
        actions = session.execute(select(AuditEvent.action)).scalars().all()
    assert "results_withdrawal_requested" in actions


def test_cancel_of_one_of_several_orders_keeps_the_study_on_the_other(
        intake: OrderIntake, sessions: sessionmaker[Session]) -> None:
    study_id = add_study(sessions, state=StudyState.RECEIVING)
    assert send(intake, order_message("M1", placer="P-A", filler="F-A",
                                      clinical="first order")).code == "AA"
    assert send(intake, order_message("M2", placer="P-B", filler="F-B",
                                      clinical="second order")).code == "AA"
    with sessions() as session:
        assert history_for_study(session, study_id).text.startswith("second order")
    assert send(intake, order_message("M3", placer="P-B", filler="F-B", control="DC")).code == "AA"
    with sessions() as session:
        assert session.get(Study, study_id).state == StudyState.RECEIVING
        history = history_for_study(session, study_id)
        assert history is not None and history.text.startswith("first order")
        links = session.execute(select(func.count()).select_from(StudyOrder)).scalar_one()
    assert links == 2


def test_status_change_updates_status_but_keeps_history(
        intake: OrderIntake, sessions: sessionmaker[Session]) -> None:
    assert send(intake, order_message("M1", clinical="lump")).code == "AA"
    text = order_message("M2", control="SC", clinical="").replace("||SC||", "||CM||")
    assert send(intake, text).code == "AA"
    with sessions() as session:
        order = session.execute(select(Order)).scalar_one()
    assert order.status == "CM"
    assert order.history_text.startswith("lump")


def test_database_down_answers_ar_so_the_sender_retries() -> None:
    dead = f"postgresql+psycopg://root@127.0.0.1:{free_port()}/nothing?connect_timeout=2"
    intake = OrderIntake(NodeConfig(), make_sessionmaker(make_engine(dead)))
    ack = Ack.parse(intake.handle(order_message("M1").encode()))
    assert (ack.code, ack.control_id, ack.error_code) == ("AR", "M1", "207")


def test_order_received_audit_has_control_id_and_accession_but_no_names(
        intake: OrderIntake, sessions: sessionmaker[Session]) -> None:
    assert send(intake, order_message("M1", accession="ACC-9")).code == "AA"
    with sessions() as session:
        events = session.execute(select(AuditEvent)).scalars().all()
    received = next(e for e in events if e.action == "order_received")
    assert received.accession_number == "ACC-9"
    assert json.loads(received.detail)["control_id"] == "M1"
    assert json.loads(received.detail)["control"] == "NW"
    assert any(e.action == "hl7_ack_sent" and json.loads(e.detail)["ack"] == "AA"
               for e in events)
    assert not any("Doe" in (e.detail + str(e.patient_id)) for e in events)


def test_stat_order_queues_its_study_as_urgent(sessions: sessionmaker[Session]) -> None:
    intake = OrderIntake(NodeConfig(orders=OrdersConfig(wait_seconds=0)), sessions)
    study_id = add_study(sessions)
    assert send(intake, order_message("M1", priority="S")).code == "AA"
    with sessions() as session:
        job = session.execute(select(Job).where(Job.study_id == study_id)).scalar_one()
    assert job.priority == 0  # Priority.URGENT
    assert utcnow() - job.created_at.replace(tzinfo=utcnow().tzinfo) < timedelta(minutes=5)
