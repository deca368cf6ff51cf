"""``mmbcd-node doctor``: every check against the real thing, with a fix for each failure."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mmbcd_node.db import migrate
from tests.support.node import free_port


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only here: the checks talk to peers; the database check is the same on both."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    migrate.upgrade(url)
    return url


def findings(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    return {r["check"]: r for r in map(json.loads, result.stdout.splitlines())}


def test_doctor_passes_on_a_running_node_with_a_reachable_pacs(node_factory,
                                                              storescp_factory) -> None:
    pacs = storescp_factory(ae_title="PACS")
    node = node_factory(roles=["dicom", "hl7", "http"], settings={"destinations": [
        {"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": pacs.port}]})
    result = node.cli("doctor", "--json", check=False)
    report = findings(result)
    assert result.returncode == 0, result.stdout
    assert {"config", "database", "storage", "disk", "dicom listener", "hl7 listener",
            "http /healthz", "model bundle", "destination pacs", "retention"} <= set(report)
    assert all(r["status"] == "ok" for r in report.values())
    assert "digest" in report["model bundle"]["detail"]


def test_doctor_names_each_problem_and_how_to_fix_it(node_factory, tmp_path: Path) -> None:
    node = node_factory(roles=["dicom", "http"], start=False, settings={"destinations": [
        {"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": free_port()}],
        "audit": {"syslog": {"host": "127.0.0.1", "port": free_port(), "transport": "tcp"}},
        "retention": {"schedule": "every night"}})
    node.env["MMBCD_NODE__STORAGE__ROOT"] = str(tmp_path / "missing")
    result = node.cli("doctor", "--json", "--expect", "dicom", "--expect", "http", check=False)
    assert result.returncode == 1
    report = findings(result)
    failed = {name for name, r in report.items() if r["status"] == "FAIL"}
    assert failed == {"storage", "dicom listener", "http /healthz", "destination pacs",
                      "audit syslog", "retention"}, report
    assert "0 3 * * *" in report["retention"]["fix"]
    assert "mkdir -p" in report["storage"]["fix"]
    assert "mmbcd-node serve" in report["dicom listener"]["fix"]
    assert "PACS@127.0.0.1" in report["destination pacs"]["detail"]
    assert report["database"]["status"] == "ok"


def test_doctor_reports_an_unmigrated_database_and_a_bad_config(tmp_path: Path) -> None:
    import os
    import sys

    config = tmp_path / "node.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/empty.db"\n'
                      f'[storage]\nroot = "{tmp_path}"\n[dicom]\nmin_free_bytes = 0\n')
    run = [sys.executable, "-m", "mmbcd_node", "--config", str(config), "doctor", "--json",
           "--expect", "hl7"]
    result = subprocess.run(run, capture_output=True, text=True, timeout=120, env=os.environ)
    report = findings(result)
    assert result.returncode == 1
    assert report["database"]["fix"] == "run `mmbcd-node db upgrade`"
    config.write_text('[dicom]\nport = "eleven"\n')
    result = subprocess.run(run, capture_output=True, text=True, timeout=120, env=os.environ)
    assert result.returncode == 1
    assert "dicom.port must be int" in findings(result)["config"]["detail"]
