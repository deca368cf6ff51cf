"""Retention: images go when the policy says so, never while work on the study is pending."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from mmbcd_node.config import load_config
from mmbcd_node.db.audit import verify_chain
from mmbcd_node.db.models import AuditEvent, Instance, Job, JobState, Study, StudyState, utcnow
from mmbcd_node.db.result_models import Delivery, Result
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction
from mmbcd_node.ops.retention import find_candidates, purge_due, run_purge
from mmbcd_node.ops.storage_identity import MARKER
from tests.support.mammo import make_mammogram, write_mammogram
from tests.support.operations import seed_study


def _config(db_url: str, root: Path, schedule: str = "0 3 * * *"):  # type: ignore[no-untyped-def]
    return load_config(environ={"MMBCD_NODE__DATABASE__URL": db_url,
                                "MMBCD_NODE__STORAGE__ROOT": str(root),
                                "MMBCD_NODE__RETENTION__DELIVERED_DAYS": "30",
                                "MMBCD_NODE__RETENTION__UNDELIVERED_DAYS": "180",
                                "MMBCD_NODE__RETENTION__SCHEDULE": f'"{schedule}"'})


def _seed_policy_cases(db_url: str, root: Path) -> dict[str, str]:
    """One study per rule of the policy; returns label -> Study Instance UID."""
    now = utcnow()
    sessions = make_sessionmaker(make_engine(db_url))
    uids: dict[str, str] = {}
    with transaction(sessions) as session:
        def seed(label: str, days: float, **kwargs) -> Study:  # type: ignore[no-untyped-def]
            study = seed_study(session, root, patient_id=f"P-{label}", accession=label,
                               received_at=now - timedelta(days=days), **kwargs)
            uids[label] = study.study_uid
            return study

        seed("delivered_old", 41, state=StudyState.DELIVERED, delivery_state="committed")
        seed("delivered_recent", 10, state=StudyState.DELIVERED, delivery_state="committed")
        seed("held_old", 200, state=StudyState.HELD, job_state=None)
        seed("held_recent", 100, state=StudyState.HELD, job_state=None)
        seed("cancelled_old", 181, state=StudyState.CANCELLED, job_state=JobState.CANCELLED)
        seed("queued_ancient", 400, state=StudyState.QUEUED, job_state=JobState.QUEUED)
        seed("receiving_ancient", 400, state=StudyState.RECEIVING, job_state=None)
        seed("delivery_pending_ancient", 400, state=StudyState.DONE, delivery_state="pending")
        seed("failed_delivery", 41, state=StudyState.DELIVERED, delivery_state="failed")
        awaiting = seed("awaiting_commitment_ancient", 400, state=StudyState.DONE,
                        delivery_state="sent")
        session.execute(update(Delivery).where(Delivery.output_id.in_(
            select(Delivery.output_id).join(Result, Result.study_id == awaiting.id)))
            .values(commitment_state="requested"))
        rerun = seed("held_with_job_waiting", 400, state=StudyState.HELD, job_state=None)
        session.add(Job(study_id=rerun.id, state=JobState.QUEUED, reason="reprocess"))
    return uids


def test_purge_deletes_only_what_the_policy_lets_go_and_keeps_results_and_audit(
        db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "storage"
    uids = _seed_policy_cases(db_url, root)
    config = _config(db_url, root)
    sessions = make_sessionmaker(make_engine(db_url))
    with sessions() as session:
        planned = {c.study_uid: c.rule for c in find_candidates(session, config.retention)}
    gone = {"delivered_old": "delivered", "held_old": "undelivered",
            "cancelled_old": "undelivered"}
    assert planned == {uids[label]: rule for label, rule in gone.items()}
    files_before = {p for p in root.rglob("*.dcm")}

    report = run_purge(config, sessions, actor="tester")
    assert (report.studies, report.files, report.bytes) == (3, 12, 12 * 1000)
    with sessions() as session:
        instances = session.execute(select(Study.study_uid, Instance.path, Instance.purged_at)
                                    .join(Study, Instance.study_id == Study.id)).all()
        for study_uid, path, purged_at in instances:
            should_go = study_uid in planned
            assert (purged_at is not None) == should_go, study_uid
            assert (root / path).exists() != should_go, path
        assert session.execute(select(Result.id)).scalars().all()  # results stay
        purged = session.execute(select(AuditEvent.study_uid, AuditEvent.actor)
                                 .where(AuditEvent.action == "study_purged")).all()
        assert sorted(purged) == sorted((uid, "tester") for uid in planned)
        checked, broken = verify_chain(session)
        assert broken is None and checked > 0
    remaining = {p for p in root.rglob("*.dcm")}
    assert len(files_before - remaining) == 12
    assert not (root / uids["delivered_old"]).exists()  # its empty folders are gone too

    again = run_purge(config, sessions, actor="tester")
    assert (again.studies, again.files) == (0, 0)


def test_purge_command_on_a_received_study_dry_run_first(node_factory, tmp_path: Path) -> None:
    node = node_factory(roles=["dicom"])
    files = []
    for index, (laterality, view) in enumerate([("R", "CC"), ("L", "CC")]):
        ds = make_mammogram(laterality=laterality, view=view, seed=index, study_uid="1.2.3.66",
                            patient_id="P66", accession="ACC66")
        write_mammogram(tmp_path / f"{index}.dcm", ds)
        files.append(tmp_path / f"{index}.dcm")
    assert subprocess.run(["storescu", "-aet", "MODALITY", "-aec", "MMBCD", "127.0.0.1",
                           str(node.dicom_port), *map(str, files)],
                          capture_output=True, timeout=60).returncode == 0
    node.stop()
    stored = [p for p in node.storage_root.rglob("*")
              if p.is_file() and p.name != MARKER and ".incoming" not in p.parts]
    assert len(stored) == 2
    long_ago = utcnow() - timedelta(days=200)
    engine = make_engine(node.db_url)
    with engine.begin() as connection:  # the order was cancelled 200 days ago
        connection.execute(update(Study).values(state=StudyState.CANCELLED,
                                                last_received_at=long_ago,
                                                state_changed_at=long_ago))
    engine.dispose()
    plan = [json.loads(line) for line in node.cli("purge", "--dry-run", "--json")
            .stdout.splitlines()]
    assert [(p["study_uid"], p["rule"], p["files"]) for p in plan] == [
        ("1.2.3.66", "undelivered", 2)]
    assert all(p.exists() for p in stored)  # a dry run deletes nothing
    done = json.loads(node.cli("purge", "--json").stdout.splitlines()[-1])
    assert done["studies"] == 1 and done["files"] == 2
    assert not any(p.exists() for p in stored)
    events = [json.loads(line) for line in node.cli(
        "audit", "--action", "study_purged", "--json").stdout.splitlines()]
    assert [(e["study_uid"], e["detail"]["files"]) for e in events] == [("1.2.3.66", 2)]


def test_scheduled_purge_runs_once_per_cron_fire(db_url: str, tmp_path: Path) -> None:
    config = _config(db_url, tmp_path, schedule="*/5 * * * *")
    sessions = make_sessionmaker(make_engine(db_url))
    now = utcnow()
    assert purge_due(config, sessions, now)  # fired less than 5 minutes ago, never ran
    run_purge(config, sessions, actor="retention", now=now)
    assert not purge_due(config, sessions, now + timedelta(seconds=1))
    assert purge_due(config, sessions, now + timedelta(minutes=5, seconds=1))
