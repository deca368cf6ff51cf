"""Logs: one structured line per event, a study's correlation id on its lines, no names."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest

from mmbcd_node.db import migrate
from mmbcd_node.logs import JsonFormatter, KeyValueFormatter, study_context
from tests.support.mammo import make_mammogram, write_mammogram


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only here: log lines do not depend on the database."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    migrate.upgrade(url)
    return url


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("mmbcd_node.work", logging.INFO, __file__, 1, message, (), None)


def test_lines_logged_inside_a_study_context_carry_its_correlation_id() -> None:
    with study_context("c0ffee"):
        line = KeyValueFormatter().format(_record("event=job_claimed job=7"))
        fields = json.loads(JsonFormatter().format(_record("event=job_claimed job=7")))
    assert line.endswith("event=job_claimed job=7 correlation_id=c0ffee")
    assert fields["correlation_id"] == "c0ffee" and fields["event"] == "job_claimed"
    outside = KeyValueFormatter().format(_record("event=job_claimed job=7"))
    assert "correlation_id" not in outside


def test_info_logs_of_a_receiving_node_name_no_patient(node_factory, tmp_path: Path) -> None:
    node = node_factory(roles=["dicom", "scheduler", "http"],
                        settings={"logging": {"level": "INFO", "format": "keyvalue"}})
    files = []
    for index, (laterality, view) in enumerate([("R", "CC"), ("L", "CC"), ("R", "MLO"),
                                                ("L", "MLO")]):
        ds = make_mammogram(laterality=laterality, view=view, seed=index, study_uid="1.2.3.77",
                            PatientName="PRIVATE^JANEDOE", PatientBirthDate="19610203")
        write_mammogram(tmp_path / f"{index}.dcm", ds)
        files.append(tmp_path / f"{index}.dcm")
    sent = subprocess.run(["storescu", "-aet", "MODALITY", "-aec", "MMBCD", "127.0.0.1",
                           str(node.dicom_port), *map(str, files)], capture_output=True,
                          text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    node.stop()
    log = node.log_text()
    assert log.count("event=instance_stored") == 4, log
    for line in log.splitlines():
        assert "JANEDOE" not in line.upper() and "19610203" not in line, line
