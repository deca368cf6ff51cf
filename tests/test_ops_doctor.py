"""``mmbcd-node doctor``: every check against the real thing, with a fix for each failure."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from mmbcd_node.db import migrate
from mmbcd_node.db.ops_models import NodeHeartbeat
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction
from mmbcd_node.db.utc import database_now
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


def test_doctor_on_a_node_whose_allow_list_omits_its_own_ae_title(node_factory) -> None:
    node = node_factory(roles=["dicom", "hl7", "http"], settings={
        "dicom": {"allowed_calling_aes": ["MODALITY@127.0.0.1"]}})
    report = findings(node.cli("doctor", "--json", check=False))
    listener = report["dicom listener"]
    assert listener["status"] == "ok", listener
    assert "refused our own calling AE" in listener["detail"]
    assert "'MMBCD' from 127.0.0.1 is not in allowed_calling_aes" in listener["detail"]
    node.stop()
    stopped = findings(node.cli("doctor", "--json", check=False))["dicom listener"]
    assert stopped["status"] == "FAIL" and "mmbcd-node serve" in stopped["fix"]


def test_doctor_names_the_host_with_another_storage_root_bundle_or_clock(
        node_factory, db_url: str) -> None:
    node = node_factory(roles=["dicom", "http"], settings={"worker": {"heartbeat_seconds": 1.0}})
    own = findings(node.cli("doctor", "--json", check=False))
    assert own["clock"]["status"] == "ok" and "sqlite server's clock" in own["clock"]["detail"]
    assert own["hosts: storage root"]["status"] == "ok"
    assert own["hosts: clocks"]["status"] == "ok"
    engine = make_engine(db_url)
    with transaction(make_sessionmaker(engine)) as session:
        now = database_now(session)
        storage = session.execute(select(NodeHeartbeat.storage_id)).scalars().first()
        session.add_all([
            NodeHeartbeat(role="worker", host="host-a", pid=1, started_at=now, beat_at=now,
                          storage_id=storage, bundle_digest="sha256:aaa", clock_offset_ms=4.0),
            NodeHeartbeat(role="worker", host="host-b", pid=2, started_at=now, beat_at=now,
                          storage_id="another-export", bundle_digest="sha256:bbb",
                          clock_offset_ms=-2500.0)])
    engine.dispose()
    report = findings(node.cli("doctor", "--json", check=False))
    assert report["hosts: storage root"]["status"] == "FAIL"
    assert "host-b: another-export" in report["hosts: storage root"]["detail"]
    assert "host-a: sha256:aaa; host-b: sha256:bbb" in report["hosts: model bundle"]["detail"]
    assert report["hosts: clocks"]["status"] == "FAIL"
    assert "host-b -2500 ms" in report["hosts: clocks"]["detail"]
