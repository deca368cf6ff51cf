"""Matching orders to studies, on both events, and the no-order policies.

Studies are inserted as rows (the receiver's job); orders arrive through
``OrderIntake``; the scheduler's periodic check is ``check_complete_studies``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import NodeConfig, OrdersConfig
from mmbcd_node.db.models import AuditEvent, Job, Priority, Study, StudyState, utcnow
from mmbcd_node.db.order_models import MatchState, StudyOrder
from mmbcd_node.db.session import make_engine, make_sessionmaker
from mmbcd_node.match.matcher import check_complete_studies
from mmbcd_node.orders.history import history_for_study
from mmbcd_node.orders.intake import OrderIntake
from tests.support.hl7_client import order_message

OMI = {"message_type": "OMI^O23^OMI_O23", "version": "2.5.1"}


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def node_config(**orders: object) -> NodeConfig:
    return NodeConfig(orders=OrdersConfig(**orders))  # type: ignore[arg-type]


def add_study(sessions: sessionmaker[Session], *, uid: str = "1.2.3.100", patient: str = "PAT1",
              issuer: str | None = "HOSP", accession: str | None = "ACC1",
              rp_id: str | None = None, study_date: str = "20261130",
              state: str = StudyState.COMPLETE, completed_ago: float = 0.0) -> int:
    with sessions() as session, session.begin():
        study = Study(study_uid=uid, patient_id=patient, issuer_of_patient_id=issuer,
                      accession_number=accession, requested_procedure_id=rp_id,
                      study_date=study_date, state=state, correlation_id="c" * 8,
                      completed_at=utcnow() - timedelta(seconds=completed_ago))
        session.add(study)
        session.flush()
        return study.id


def deliver(sessions: sessionmaker[Session], config: NodeConfig, text: str) -> None:
    ack = OrderIntake(config, sessions).handle(text.encode("utf-8"))
    assert b"MSA|AA|" in ack, ack


def study_state(sessions: sessionmaker[Session], study_id: int) -> str:
    with sessions() as session:
        return session.get(Study, study_id).state


def matches(sessions: sessionmaker[Session], study_id: int) -> list[tuple[str, str]]:
    with sessions() as session:
        rows = session.execute(select(StudyOrder).where(StudyOrder.study_id == study_id)
                               .order_by(StudyOrder.id)).scalars().all()
        return [(r.rule, r.state) for r in rows]


def jobs(sessions: sessionmaker[Session], study_id: int) -> list[Job]:
    with sessions() as session:
        return list(session.execute(select(Job).where(Job.study_id == study_id)).scalars())


def test_order_before_study_links_when_study_completes(sessions: sessionmaker[Session]) -> None:
    config = node_config()
    deliver(sessions, config, order_message("M1", accession="ACC1"))
    study_id = add_study(sessions, accession="ACC1", state=StudyState.RECEIVING)
    assert check_complete_studies(config, sessions) == 0  # still receiving
    with sessions() as session, session.begin():
        session.get(Study, study_id).state = StudyState.COMPLETE
    assert check_complete_studies(config, sessions) == 1
    assert study_state(sessions, study_id) == StudyState.QUEUED
    assert matches(sessions, study_id) == [("accession", MatchState.LINKED)]
    (job,) = jobs(sessions, study_id)
    assert (job.priority, job.without_history) == (Priority.NORMAL, False)


def test_study_before_order_queues_when_order_arrives(sessions: sessionmaker[Session]) -> None:
    config = node_config()
    study_id = add_study(sessions, accession="ACC1")
    check_complete_studies(config, sessions)
    assert study_state(sessions, study_id) == StudyState.COMPLETE  # waits for its order
    deliver(sessions, config, order_message("M1", accession="ACC1"))
    assert study_state(sessions, study_id) == StudyState.QUEUED
    assert len(jobs(sessions, study_id)) == 1


def test_study_uid_rule_wins_over_a_different_accession(sessions: sessionmaker[Session]) -> None:
    config = node_config()
    study_id = add_study(sessions, uid="1.2.3.555", accession="LOCAL-ACC")
    deliver(sessions, config, order_message("M1", **OMI, accession="RIS-ACC",
                                            study_uid="1.2.3.555"))
    assert matches(sessions, study_id) == [("study_uid", MatchState.LINKED)]
    assert study_state(sessions, study_id) == StudyState.QUEUED


def test_requested_procedure_id_rule(sessions: sessionmaker[Session]) -> None:
    config = node_config()
    study_id = add_study(sessions, accession=None, rp_id="RP1")
    deliver(sessions, config, order_message("M1", accession="OTHER"))
    assert matches(sessions, study_id) == [("requested_procedure_id", MatchState.LINKED)]


def test_accession_with_different_issuers_does_not_match(sessions: sessionmaker[Session]
                                                         ) -> None:
    config = node_config()
    study_id = add_study(sessions, accession="ACC1", rp_id=None)
    with sessions() as session, session.begin():
        session.get(Study, study_id).issuer_of_accession = "OTHER-HOSPITAL"
    deliver(sessions, config, order_message("M1", **OMI, accession="ACC1"))  # IPC-1.2 HOSP
    assert all(rule != "accession" for rule, _ in matches(sessions, study_id))
    assert study_state(sessions, study_id) == StudyState.COMPLETE


def test_identifier_match_with_other_patient_goes_to_reconciliation(
        sessions: sessionmaker[Session]) -> None:
    config = node_config(wait_seconds=0, no_order_policy="run_without_history")
    study_id = add_study(sessions, patient="PAT1", accession="ACC1")
    deliver(sessions, config, order_message("M1", patient_id="SOMEONE-ELSE", accession="ACC1"))
    assert matches(sessions, study_id) == [("accession", MatchState.CANDIDATE)]
    check_complete_studies(config, sessions)
    # Even the run-without-history policy holds a study with an open candidate.
    assert study_state(sessions, study_id) == StudyState.HELD
    assert jobs(sessions, study_id) == []
    with sessions() as session:
        assert history_for_study(session, study_id) is None


def test_same_patient_id_from_another_issuer_is_not_the_same_patient(
        sessions: sessionmaker[Session]) -> None:
    config = node_config()
    study_id = add_study(sessions, patient="PAT1", issuer="HOSP")
    deliver(sessions, config, order_message("M1", patient_issuer="CLINIC-B"))
    assert matches(sessions, study_id) == [("accession", MatchState.CANDIDATE)]


def test_patient_only_candidate_within_date_window_is_never_linked(
        sessions: sessionmaker[Session]) -> None:
    config = node_config(wait_seconds=0, date_window_days=3)
    study_id = add_study(sessions, accession="STUDY-ACC", study_date="20261130")
    far_id = add_study(sessions, uid="1.2.3.101", accession="OLD-ACC", study_date="20260101")
    done_id = add_study(sessions, uid="1.2.3.102", accession="DONE-ACC", study_date="20261129",
                        state=StudyState.DELIVERED)
    deliver(sessions, config, order_message("M1", accession="ORDER-ACC", order_date="20261128"))
    assert matches(sessions, study_id) == [("patient_date", MatchState.CANDIDATE)]
    assert matches(sessions, far_id) == []
    assert matches(sessions, done_id) == []  # already processed: nothing to reconcile
    check_complete_studies(config, sessions)
    assert study_state(sessions, study_id) == StudyState.HELD


def test_several_orders_for_one_study_newest_live_one_supplies_history(
        sessions: sessionmaker[Session]) -> None:
    config = node_config()
    study_id = add_study(sessions, state=StudyState.RECEIVING)
    deliver(sessions, config, order_message("M1", placer="P-A", clinical="older order"))
    deliver(sessions, config, order_message("M2", placer="P-B", clinical="newer order"))
    assert [state for _, state in matches(sessions, study_id)] == [MatchState.LINKED] * 2
    with sessions() as session:
        history = history_for_study(session, study_id)
    assert history is not None and history.text.startswith("newer order")
    assert history.placer_number == "P-B"
    # Updating the older order changes it in place; it does not become the newest.
    deliver(sessions, config, order_message("M3", placer="P-A", control="XO",
                                            clinical="older order, corrected"))
    with sessions() as session:
        assert history_for_study(session, study_id).placer_number == "P-B"


def test_stat_order_gives_urgent_job(sessions: sessionmaker[Session]) -> None:
    config = node_config()
    study_id = add_study(sessions)
    deliver(sessions, config, order_message("M1", **OMI, accession="ACC1", priority="S"))
    (job,) = jobs(sessions, study_id)
    assert job.priority == Priority.URGENT


def test_stat_update_raises_priority_of_queued_job(sessions: sessionmaker[Session]) -> None:
    config = node_config()
    study_id = add_study(sessions)
    deliver(sessions, config, order_message("M1", priority="R"))
    deliver(sessions, config, order_message("M2", control="XO", priority="S"))
    (job,) = jobs(sessions, study_id)
    assert job.priority == Priority.URGENT


def test_no_order_policy_hold_holds_after_wait(sessions: sessionmaker[Session]) -> None:
    config = node_config(wait_seconds=60, no_order_policy="hold")
    waiting = add_study(sessions, uid="1.2.3.1", completed_ago=10)
    overdue = add_study(sessions, uid="1.2.3.2", completed_ago=120)
    check_complete_studies(config, sessions)
    assert study_state(sessions, waiting) == StudyState.COMPLETE
    assert study_state(sessions, overdue) == StudyState.HELD
    assert jobs(sessions, overdue) == []
    with sessions() as session:
        actions = session.execute(select(AuditEvent.action)).scalars().all()
    assert "study_held" in actions


def test_held_study_is_queued_when_its_order_arrives(sessions: sessionmaker[Session]) -> None:
    config = node_config(wait_seconds=0, no_order_policy="hold")
    study_id = add_study(sessions)
    check_complete_studies(config, sessions)
    assert study_state(sessions, study_id) == StudyState.HELD
    deliver(sessions, config, order_message("M1"))
    assert study_state(sessions, study_id) == StudyState.QUEUED


def test_no_order_policy_run_without_history_queues_flagged_job(
        sessions: sessionmaker[Session]) -> None:
    config = node_config(wait_seconds=0, no_order_policy="run_without_history")
    study_id = add_study(sessions)
    check_complete_studies(config, sessions)
    assert study_state(sessions, study_id) == StudyState.QUEUED
    (job,) = jobs(sessions, study_id)
    assert job.without_history is True


def test_study_whose_only_order_was_cancelled_before_completion_is_cancelled(
        sessions: sessionmaker[Session]) -> None:
    config = node_config(wait_seconds=0, no_order_policy="run_without_history")
    study_id = add_study(sessions, state=StudyState.RECEIVING)
    deliver(sessions, config, order_message("M1"))
    deliver(sessions, config, order_message("M2", control="CA"))
    with sessions() as session, session.begin():
        session.get(Study, study_id).state = StudyState.COMPLETE
    check_complete_studies(config, sessions)
    assert study_state(sessions, study_id) == StudyState.CANCELLED
    assert jobs(sessions, study_id) == []
