"""Logs: one structured line per event, a study's correlation id on its lines, no names."""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from logging import LogRecord
from pathlib import Path

import pytest

from mmbcd_node.db import migrate
from mmbcd_node.logs import (
    EventLogger,
    JsonFormatter,
    KeyValueFormatter,
    get_logger,
    study_context,
)
from tests.support.mammo import make_mammogram, write_mammogram


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only here: log lines do not depend on the database."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    migrate.upgrade(url)
    return url


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("mmbcd_node.work", logging.INFO, __file__, 1, message, (), None)


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def _captured(name: str = "tests.ops_logs") -> Iterator[tuple[EventLogger, list[LogRecord]]]:
    """An event logger whose records are kept here instead of going anywhere."""
    log = get_logger(name)
    kept = _Kept()
    log.logger.addHandler(kept)
    log.logger.setLevel(logging.INFO)
    log.logger.propagate = False
    try:
        yield log, kept.records
    finally:
        log.logger.removeHandler(kept)
        log.logger.propagate = True


def _event(name: str, **fields: object) -> logging.LogRecord:
    """The record ``get_logger(...).info(name, **fields)`` hands to the handlers."""
    with _captured() as (log, records):
        log.info(name, **fields)
    (record,) = records
    return record


def test_lines_logged_inside_a_study_context_carry_its_correlation_id() -> None:
    with study_context("c0ffee"):
        line = KeyValueFormatter().format(_event("job_claimed", job=7))
        fields = json.loads(JsonFormatter().format(_event("job_claimed", job=7)))
    assert line.endswith(" logger=tests.ops_logs event=job_claimed job=7 correlation_id=c0ffee")
    assert fields["correlation_id"] == "c0ffee" and fields["event"] == "job_claimed"
    assert fields["job"] == 7
    outside = KeyValueFormatter().format(_event("job_claimed", job=7))
    assert "correlation_id" not in outside
    assert "correlation_id" not in json.loads(JsonFormatter().format(_event("job_claimed")))


def test_a_field_with_spaces_and_quotes_comes_out_whole() -> None:
    error = 'peer said "no" to C-STORE; reason = out of space \\ retry=later'
    with study_context("c0ffee"):
        record = _event("store_refused", calling_ae="MODALITY 1", error=error, count=3,
                        probability=0.1235, tls=False, missing=None)
        line = KeyValueFormatter().format(record)
        payload = JsonFormatter().format(record)
    fields = json.loads(payload)
    assert "\n" not in payload and "\n" not in line
    assert fields == {"ts": fields["ts"], "level": "info", "logger": "tests.ops_logs",
                      "event": "store_refused", "calling_ae": "MODALITY 1", "error": error,
                      "count": 3, "probability": 0.1235, "tls": False, "missing": None,
                      "correlation_id": "c0ffee"}
    assert f" error={json.dumps(error)} " in line
    assert ' calling_ae="MODALITY 1" ' in line and " count=3 " in line
    # The key=value line splits back into exactly the fields logged.
    parsed = dict(token.split("=", 1) for token in shlex.split(line))
    assert parsed["error"] == error and parsed["calling_ae"] == "MODALITY 1"
    assert parsed["event"] == "store_refused" and parsed["correlation_id"] == "c0ffee"
    assert parsed["probability"] == "0.1235" and parsed["tls"] == "False"


def test_grepped_renderings_stay_as_they_were() -> None:
    """The strings the end-to-end tests and the README wait for in node logs."""
    line = KeyValueFormatter().format(_event("role_started", role="worker"))
    assert " event=role_started role=worker" in line
    line = KeyValueFormatter().format(
        _event("connection_refused", address="127.0.0.2",
               reason="too many connections not yet associated"))
    assert 'event=connection_refused address=127.0.0.2 reason="too many' in line
    assert str(_event("job_done", job=4, study_id=2).msg) == "event=job_done job=4 study_id=2"


def test_a_field_named_like_a_line_key_does_not_overwrite_it() -> None:
    fields = json.loads(JsonFormatter().format(_event("odd", level="x", msg="y")))
    assert fields["level"] == "info" and fields["level_"] == "x" and fields["msg_"] == "y"


def test_plain_messages_of_other_libraries_come_out_as_one_msg_field() -> None:
    record = _record("Association Aborted (reason: peer=x)")
    assert json.loads(JsonFormatter().format(record))["msg"] == record.getMessage()
    assert KeyValueFormatter().format(record).endswith(
        ' msg="Association Aborted (reason: peer=x)"')


def test_exceptions_come_out_as_one_field() -> None:
    with _captured() as (log, records):
        try:
            raise RuntimeError('disk "full"')
        except RuntimeError:
            log.exception("store_failed", path="/tmp/a b")
    (record,) = records
    assert record.levelno == logging.ERROR
    assert record.funcName == "test_exceptions_come_out_as_one_field"  # the caller, not ours
    fields = json.loads(JsonFormatter().format(record))
    assert fields["path"] == "/tmp/a b" and 'RuntimeError: disk "full"' in fields["exc"]
    assert KeyValueFormatter().format(record).split(" exc=")[0].endswith('path="/tmp/a b"')


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
