"""Admin commands for jobs and results: jobs, reprocess, cancel, results, resend, echo."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import tomli_w
from pydicom.uid import generate_uid
from sqlalchemy import select
from typer.testing import CliRunner

from mmbcd_node.admin.cli import app
from mmbcd_node.db.models import AuditEvent, Job, JobState, Priority, Study, StudyState
from mmbcd_node.db.result_models import (
    Delivery,
    DeliveryState,
    OutputObject,
    Result,
    ResultRoi,
)
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction
from tests.support.node import free_port

runner = CliRunner()


@pytest.fixture
def node(tmp_path: Path, db_url: str, storescp_factory):
    pacs = storescp_factory()
    config = tmp_path / "node.toml"
    config.write_text(tomli_w.dumps({
        "database": {"url": db_url}, "storage": {"root": str(tmp_path / "storage")},
        "destinations": [
            {"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": pacs.port},
            {"name": "gone", "ae_title": "GONE", "host": "127.0.0.1", "port": free_port()}],
    }))
    engine = make_engine(db_url)
    yield config, make_sessionmaker(engine)
    engine.dispose()


def cli(config: Path, *args: str):
    return runner.invoke(app, ["--config", str(config), *args], env={"COLUMNS": "250"})


def add_study_with_result(sessions, *, job_state=JobState.DONE, error=None) -> tuple[str, int]:
    with transaction(sessions) as session:
        study = Study(study_uid=generate_uid(), correlation_id=uuid.uuid4().hex,
                      state=StudyState.DELIVERED, patient_id="P9", accession_number="ACC9")
        session.add(study)
        session.flush()
        job = Job(study_id=study.id, state=job_state, priority=Priority.NORMAL, attempts=3,
                  error=error)
        session.add(job)
        session.flush()
        result = Result(job_id=job.id, study_id=study.id, probability=0.8125,
                        right_probability=0.8125, left_probability=0.25, bundle_digest="d" * 64,
                        model_version="demo 1", history_used=True,
                        history_sources='["OBR-13"]', operating_threshold=0.5)
        session.add(result)
        session.flush()
        session.add(ResultRoi(result_id=result.id, view_sop_instance_uid="1.2.3", laterality="R",
                              rank=1, x0=10, y0=20, x1=30, y1=40, detector_score=0.9,
                              attention=0.75))
        output = OutputObject(result_id=result.id, kind="sr", sop_class_uid="1.2",
                              sop_instance_uid=generate_uid(), series_instance_uid="1.3",
                              path="x.dcm")
        session.add(output)
        session.flush()
        for name in ("pacs", "gone"):
            session.add(Delivery(output_id=output.id, destination=name,
                                 state=DeliveryState.SENT if name == "pacs"
                                 else DeliveryState.FAILED, attempts=20))
        return study.study_uid, job.id


def test_jobs_lists_and_jobs_show_gives_the_full_error(node) -> None:
    config, sessions = node
    error = "view 1.2.3 (L MLO) could not be processed: " + "x" * 200
    study_uid, job_id = add_study_with_result(sessions, job_state=JobState.FAILED, error=error)
    listing = cli(config, "jobs", "--state", "failed", "--json")
    assert listing.exit_code == 0, listing.output
    (row,) = [json.loads(line) for line in listing.output.splitlines()]
    assert (row["id"], row["study_uid"], row["attempts"]) == (job_id, study_uid, 3)
    shown = cli(config, "jobs", "show", str(job_id))
    assert shown.exit_code == 0
    assert f"error: {error}" in shown.output
    assert cli(config, "jobs", "show", "999").exit_code == 1


def test_reprocess_queues_a_background_job_and_is_audited(node) -> None:
    config, sessions = node
    study_uid, _ = add_study_with_result(sessions)
    result = cli(config, "reprocess", study_uid)
    assert result.exit_code == 0, result.output
    with sessions() as session:
        job = session.execute(select(Job).where(Job.state == JobState.QUEUED)).scalar_one()
        assert (job.priority, job.reason) == (Priority.BACKGROUND, "reprocess")
        assert session.execute(select(Study.state)).scalar_one() == StudyState.QUEUED
        event = session.execute(select(AuditEvent).where(
            AuditEvent.action == "study_reprocess_requested")).scalar_one()
        assert event.actor and event.study_uid == study_uid
    assert cli(config, "reprocess", "1.2.999").exit_code == 1


def test_cancel_stops_pending_jobs(node) -> None:
    config, sessions = node
    study_uid, _ = add_study_with_result(sessions)
    cli(config, "reprocess", study_uid, "--priority", "urgent")
    result = cli(config, "cancel", study_uid)
    assert result.exit_code == 0, result.output
    with sessions() as session:
        states = session.execute(select(Job.state).order_by(Job.id)).scalars().all()
        assert states == [JobState.DONE, JobState.CANCELLED]
        assert session.execute(select(Study.state)).scalar_one() == StudyState.CANCELLED


def test_results_prints_scores_rois_and_deliveries(node) -> None:
    config, sessions = node
    study_uid, _ = add_study_with_result(sessions)
    table = cli(config, "results", study_uid)
    assert table.exit_code == 0, table.output
    assert "0.8125" in table.output and "OBR-13" in table.output
    assert "0.75" in table.output, "the ROI's attention is listed"
    (record,) = [json.loads(line) for line in cli(config, "results", study_uid,
                                                  "--json").output.splitlines()]
    assert record["rois"][0]["box"] == [10.0, 20.0, 30.0, 40.0]


def test_resend_queues_deliveries_again_for_one_destination(node) -> None:
    config, sessions = node
    study_uid, _ = add_study_with_result(sessions)
    result = cli(config, "resend", study_uid, "--destination", "gone")
    assert result.exit_code == 0, result.output
    with sessions() as session:
        states = dict(session.execute(select(Delivery.destination, Delivery.state)).all())
    assert states == {"pacs": DeliveryState.SENT, "gone": DeliveryState.PENDING}
    assert cli(config, "resend", study_uid, "--destination", "nowhere").exit_code == 2


def test_echo_reports_success_and_failure(node) -> None:
    config, _ = node
    ok = cli(config, "echo", "pacs")
    assert ok.exit_code == 0 and "C-ECHO success" in ok.output
    down = cli(config, "echo", "gone")
    assert down.exit_code == 1
    assert cli(config, "echo", "unknown").exit_code == 2
