"""Study completion and reopening, on SQLite and PostgreSQL.

The rules run against rows written by the real store; quiet periods are set to 0 or
to an hour instead of waiting, so nothing here depends on the clock's speed.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest
from pydicom.uid import ComprehensiveSRStorage, generate_uid
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import CompletionConfig, NodeConfig
from mmbcd_node.db.models import AuditEvent, Study, StudyState
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction
from mmbcd_node.match.completion import (
    CompletedBy,
    complete_due_studies,
    force_complete,
    mark_complete,
)
from mmbcd_node.receive.catalogue import Peer
from mmbcd_node.receive.store import InstanceStore
from tests.support.mammo import make_mammogram, write_mammogram

PEER = Peer(calling_ae="MODALITY", called_ae="MMBCD", address="127.0.0.1")
UID_ROOT = NodeConfig().dicom.uid_root
FOUR_VIEWS = [("R", "CC"), ("R", "MLO"), ("L", "CC"), ("L", "MLO")]
HOUR = 3600.0


@pytest.fixture
def sessions(db_url: str) -> sessionmaker[Session]:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def store(sessions: sessionmaker[Session], tmp_path: Path) -> InstanceStore:
    return InstanceStore(tmp_path / "storage", UID_ROOT, sessions)


def receive(store: InstanceStore, folder: Path, **fields: object) -> str:
    """Receive one mammogram through the real store; return its SOP Instance UID."""
    ds = make_mammogram(rows=64, cols=48, **fields)  # type: ignore[arg-type]
    path = write_mammogram(folder / "in" / f"{ds.SOPInstanceUID}.dcm", ds)
    store.receive(path, sop_class_uid=ds.SOPClassUID, sop_instance_uid=ds.SOPInstanceUID,
                  peer=PEER)
    return str(ds.SOPInstanceUID)


def config(views_quiet: float, quiet: float) -> NodeConfig:
    return dataclasses.replace(NodeConfig(), completion=CompletionConfig(
        expected_views_quiet_seconds=views_quiet, quiet_seconds=quiet))


def study(sessions: sessionmaker[Session], study_uid: str) -> Study:
    with sessions() as session:
        return session.execute(select(Study).where(Study.study_uid == study_uid)).scalar_one()


def events(sessions: sessionmaker[Session], action: str) -> list[AuditEvent]:
    with sessions() as session:
        return list(session.execute(
            select(AuditEvent).where(AuditEvent.action == action)).scalars().all())


def test_four_views_complete_once_the_short_quiet_period_passed(
        store: InstanceStore, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    uid = generate_uid()
    for laterality, view in FOUR_VIEWS:
        receive(store, tmp_path, study_uid=uid, laterality=laterality, view=view)
    assert complete_due_studies(config(views_quiet=HOUR, quiet=HOUR), sessions) == 0
    assert study(sessions, uid).state == StudyState.RECEIVING
    assert complete_due_studies(config(views_quiet=0, quiet=HOUR), sessions) == 1
    done = study(sessions, uid)
    assert (done.state, done.completed_by) == (StudyState.COMPLETE, "expected_views")
    (event,) = events(sessions, "study_completed")
    assert event.study_uid == uid and '"expected_views"' in event.detail


def test_missing_view_waits_for_the_long_quiet_period(
        store: InstanceStore, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    uid = generate_uid()
    for laterality, view in FOUR_VIEWS[:3]:
        receive(store, tmp_path, study_uid=uid, laterality=laterality, view=view)
    assert complete_due_studies(config(views_quiet=0, quiet=HOUR), sessions) == 0
    assert complete_due_studies(config(views_quiet=0, quiet=0), sessions) == 1
    assert study(sessions, uid).completed_by == "quiet"


def test_views_without_laterality_do_not_count(
        store: InstanceStore, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    uid = generate_uid()
    for laterality, view in FOUR_VIEWS[:3]:
        receive(store, tmp_path, study_uid=uid, laterality=laterality, view=view)
    receive(store, tmp_path, study_uid=uid, laterality="L", view="MLO", ImageLaterality=None,
            SeriesDescription="SCREENING")
    assert complete_due_studies(config(views_quiet=0, quiet=HOUR), sessions) == 0


def test_image_arriving_after_the_check_read_the_study_keeps_it_receiving(
        store: InstanceStore, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    uid = generate_uid()
    receive(store, tmp_path, study_uid=uid)
    stale = study(sessions, uid)
    before_it = stale.last_received_at
    receive(store, tmp_path, study_uid=uid, view="MLO")  # moves last_received_at on
    with transaction(sessions) as session:
        assert not mark_complete(session, stale, CompletedBy.QUIET, received_before=before_it)
    assert study(sessions, uid).state == StudyState.RECEIVING


def test_racing_checks_complete_a_study_exactly_once(
        store: InstanceStore, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    uid = generate_uid()
    receive(store, tmp_path, study_uid=uid)
    results: list[int] = []
    start = threading.Barrier(4)

    def check() -> None:
        start.wait()
        results.append(complete_due_studies(config(views_quiet=0, quiet=0), sessions))

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results) == 1
    assert len(events(sessions, "study_completed")) == 1


def test_forced_completion_is_audited_with_the_actor(
        store: InstanceStore, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    uid = generate_uid()
    receive(store, tmp_path, study_uid=uid)
    outcome = force_complete(sessions, uid, actor="radiology-admin")
    assert (outcome.completed, outcome.state) == (True, "complete")
    assert study(sessions, uid).completed_by == "forced"
    (event,) = events(sessions, "study_completed")
    assert event.actor == "radiology-admin"
    again = force_complete(sessions, uid, actor="radiology-admin")
    assert (again.completed, again.state) == (False, "complete")
    assert force_complete(sessions, "1.2.3.404", actor="x").state is None


def test_late_mammogram_reopens_a_completed_study_for_a_rerun(
        store: InstanceStore, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    uid = generate_uid()
    receive(store, tmp_path, study_uid=uid)
    force_complete(sessions, uid, actor="admin")
    with transaction(sessions) as session:  # as if results had been delivered
        session.execute(update(Study).where(Study.study_uid == uid)
                        .values(state=StudyState.DELIVERED))
    late = receive(store, tmp_path, study_uid=uid, laterality="R")
    reopened = study(sessions, uid)
    assert reopened.state == StudyState.RECEIVING
    assert reopened.rerun_requested and reopened.reopen_count == 1
    assert reopened.completed_at is None
    (event,) = events(sessions, "study_reopened")
    assert event.sop_instance_uid == late and '"delivered"' in event.detail


def test_resent_instance_and_own_objects_never_reopen(
        store: InstanceStore, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    uid = generate_uid()
    ds = make_mammogram(study_uid=uid, rows=64, cols=48)
    first = write_mammogram(tmp_path / "a.dcm", ds)
    resend = write_mammogram(tmp_path / "b.dcm", ds)
    store.receive(first, sop_class_uid=ds.SOPClassUID, sop_instance_uid=ds.SOPInstanceUID,
                  peer=PEER)
    force_complete(sessions, uid, actor="admin")
    store.receive(resend, sop_class_uid=ds.SOPClassUID, sop_instance_uid=ds.SOPInstanceUID,
                  peer=PEER)
    sr = make_mammogram(study_uid=uid, sop_class=ComprehensiveSRStorage, Modality="SR",
                        SOPInstanceUID=UID_ROOT + "42.1", PixelData=None)
    sr_path = write_mammogram(tmp_path / "sr.dcm", sr)
    store.receive(sr_path, sop_class_uid=sr.SOPClassUID, sop_instance_uid=sr.SOPInstanceUID,
                  peer=PEER)
    assert study(sessions, uid).state == StudyState.COMPLETE
    assert events(sessions, "study_reopened") == []


def test_cancelled_study_is_not_reopened(
        store: InstanceStore, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    uid = generate_uid()
    receive(store, tmp_path, study_uid=uid)
    with transaction(sessions) as session:
        session.execute(update(Study).where(Study.study_uid == uid)
                        .values(state=StudyState.CANCELLED))
    receive(store, tmp_path, study_uid=uid, view="MLO")
    assert study(sessions, uid).state == StudyState.CANCELLED


def test_scheduler_runs_every_check_and_survives_a_failing_one() -> None:
    from mmbcd_node.scheduler import PeriodicCheck, SchedulerRole, periodic_checks

    assert "study_completion" in [c.name for c in periodic_checks(NodeConfig())]
    calls = {"failing": 0, "counting": 0}
    enough = threading.Event()

    def failing(_config: NodeConfig, _sessions: object) -> None:
        calls["failing"] += 1
        raise RuntimeError("database briefly away")

    def counting(_config: NodeConfig, _sessions: object) -> None:
        calls["counting"] += 1
        if calls["counting"] >= 3 and calls["failing"] >= 3:
            enough.set()

    role = SchedulerRole(NodeConfig(), sessionmaker(), checks=[
        PeriodicCheck("failing", 0.05, failing), PeriodicCheck("counting", 0.05, counting)])
    role.start()
    try:
        assert enough.wait(timeout=30), calls
    finally:
        role.stop()
