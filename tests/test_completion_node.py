"""Completion in the running node: the scheduler role, restarts and the admin commands."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from mmbcd_node.db.audit import os_user
from mmbcd_node.db.models import AuditEvent, Study
from tests.support.dicom_peers import db_rows, storescu
from tests.support.mammo import make_mammogram, write_mammogram

SQLITE_ONLY = pytest.mark.parametrize("empty_db_url", ["sqlite"], indirect=True)
FOUR_VIEWS = [("R", "CC"), ("R", "MLO"), ("L", "CC"), ("L", "MLO")]


def study_files(folder: Path, study_uid: str,
                views: list[tuple[str, str]]) -> list[Path]:
    return [write_mammogram(folder / f"{lat}{view}.dcm", make_mammogram(
        study_uid=study_uid, laterality=lat, view=view, rows=64, cols=48))
        for lat, view in views]


def wait_for_state(node, study_uid: str, state: str, timeout: float = 30) -> Study:  # type: ignore[no-untyped-def]
    """Poll SQL until the study reaches ``state`` (fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        (study,) = db_rows(node.db_url, Study, Study.study_uid == study_uid)
        if study.state == state or time.monotonic() > deadline:
            return study
        time.sleep(0.2)


def test_study_with_four_views_completes_in_the_running_node(
        node_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(roles=["dicom", "scheduler"])
    uid = generate_uid()
    assert storescu(node.dicom_port, study_files(tmp_path, uid, FOUR_VIEWS)).returncode == 0
    study = wait_for_state(node, uid, "complete")
    assert (study.state, study.completed_by) == ("complete", "expected_views")


def test_restart_rearms_the_quiet_timer_from_sql(node_factory,
                                                 tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(roles=["dicom", "scheduler"], settings={"completion": {
        "expected_views_quiet_seconds": 600.0, "quiet_seconds": 2.0}})
    uid = generate_uid()
    assert storescu(node.dicom_port, study_files(tmp_path, uid, FOUR_VIEWS[:1])).returncode == 0
    node.kill()  # before the quiet period ended: no timer survives in memory
    (study,) = db_rows(node.db_url, Study, Study.study_uid == uid)
    assert study.state == "receiving"
    time.sleep(2.5)
    node.start()
    study = wait_for_state(node, uid, "complete")
    assert (study.state, study.completed_by) == ("complete", "quiet")


@SQLITE_ONLY
def test_admin_commands_complete_status_and_studies(node_factory,
                                                   tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(roles=["dicom"])
    uid = generate_uid()
    assert storescu(node.dicom_port, study_files(tmp_path, uid, FOUR_VIEWS[:2])).returncode == 0

    assert node.cli("complete", uid).returncode == 0
    (event,) = db_rows(node.db_url, AuditEvent, AuditEvent.action == "study_completed")
    assert event.actor == os_user() and event.study_uid == uid
    again = node.cli("complete", uid, check=False)
    assert again.returncode == 1 and "complete, not receiving" in again.stderr
    assert node.cli("complete", "1.2.3.999", check=False).returncode == 1

    status = [json.loads(line) for line in node.cli("status", "--json").stdout.splitlines()]
    counts = {r["name"]: r["value"] for r in status if r["kind"] == "studies"}
    assert counts["complete"] == 1 and counts["receiving"] == 0
    listening = {r["name"].split()[0]: r["value"] for r in status if r["kind"] == "listener"}
    assert listening["dicom"] == "listening" and listening["hl7"] == "not reachable"
    assert any(r["kind"] == "disk" and r["value"] > 0 for r in status)

    (listed,) = [json.loads(line) for line in
                 node.cli("studies", "--json", "--state", "complete").stdout.splitlines()]
    assert listed["study_uid"] == uid and listed["instances"] == 2
    assert listed["completed_by"] == "forced"
