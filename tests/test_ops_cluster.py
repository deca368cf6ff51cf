"""What the operator sees of a site: every role process of every host, the leases each
holds, dead ones and when they died, and each destination's backlog with its last error."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from pathlib import Path

import pytest

from mmbcd_node.admin.study_commands import backlog_record, process_record
from mmbcd_node.config import DestinationConfig, DicomConfig, NodeConfig, StorageConfig
from mmbcd_node.db.models import Job, JobState
from mmbcd_node.db.ops_models import NodeHeartbeat
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction
from mmbcd_node.db.utc import database_now
from mmbcd_node.ops.cluster import backlogs, role_processes
from mmbcd_node.ops.metrics import exposition
from mmbcd_node.send.sender import Sender
from tests.support.deliveries import stored_outputs
from tests.support.node import free_port
from tests.support.pacs import wait_until


@pytest.fixture
def engine(db_url: str):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def unreachable_pacs(tmp_path: Path) -> NodeConfig:
    return NodeConfig(storage=StorageConfig(root=tmp_path / "storage"),
                      dicom=DicomConfig(ae_title="MMBCD", acse_timeout=5, network_timeout=5),
                      destinations=[
                          DestinationConfig(name="pacs", ae_title="PACS", host="127.0.0.1",
                                            port=free_port(), backoff_seconds=0.0),
                          DestinationConfig(name="archive", ae_title="ARCH", host="127.0.0.1",
                                            port=free_port(), backoff_seconds=0.0,
                                            kinds=["sr"])])


def test_a_dead_worker_and_its_leases_and_an_unreachable_pacs_are_named(
        engine, tmp_path: Path) -> None:
    sessions = make_sessionmaker(engine)
    config = unreachable_pacs(tmp_path)
    study_id, _ = stored_outputs(sessions, config)
    assert Sender(config, sessions).send_due() == 3, "three objects tried, none delivered"
    with transaction(sessions) as session:
        now = database_now(session)
        session.add_all([
            NodeHeartbeat(role="worker", host="host-b", pid=77, started_at=now - timedelta(hours=1),
                          beat_at=now - timedelta(seconds=120), version="0.1.0"),
            NodeHeartbeat(role="sender", host="host-a", pid=12, started_at=now, beat_at=now,
                          version="0.1.0", clock_offset_ms=3.0),
            Job(study_id=study_id, state=JobState.RUNNING, lease_owner="worker@host-b:77",
                lease_expires_at=now + timedelta(seconds=30), attempts=1)])

    with sessions() as session:
        processes = {p.beat.process: p for p in role_processes(session, heartbeat_seconds=2.0)}
        waiting = {b.destination: b for b in backlogs(session, ["pacs", "archive"])}
    dead, alive = processes["worker@host-b:77"], processes["sender@host-a:12"]
    assert (dead.up, dead.leases) == (False, {"jobs": 1})
    assert (alive.up, alive.leases) == (True, {})
    assert "DEAD: last beat" in process_record(dead)["value"]
    assert "its leases run out: 1 jobs" in process_record(dead)["value"]
    assert "leases: none" in process_record(alive)["value"]

    pacs, archive = waiting["pacs"], waiting["archive"]
    assert (pacs.pending, pacs.failed) == (3, 0) and pacs.oldest_pending_at is not None
    assert "association with pacs" in (pacs.last_error or "")
    assert "3 waiting" in backlog_record(pacs)["value"]
    assert "last error: " in backlog_record(pacs)["value"]
    assert (archive.pending, archive.last_error) == (0, None)
    assert backlog_record(archive)["value"] == "nothing waiting"

    page = exposition(engine, config.storage.root).decode()
    assert 'mmbcd_role_up{host="host-b",pid="77",role="worker",version="0.1.0"} 0.0' in page
    assert 'mmbcd_role_up{host="host-a",pid="12",role="sender",version="0.1.0"} 1.0' in page
    assert 'mmbcd_leases{host="host-b",kind="jobs",pid="77",role="worker"} 1.0' in page
    assert 'mmbcd_backlog{destination="pacs",queue="deliveries"} 3.0' in page
    assert 'mmbcd_backlog{destination="",queue="jobs"} 0.0' in page


def test_status_shows_the_running_roles_and_why_nothing_was_delivered(
        node_factory, tmp_path: Path) -> None:
    node = node_factory(roles=["dicom", "sender", "http"], settings={
        "worker": {"heartbeat_seconds": 1.0},
        "destinations": [{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1",
                          "port": free_port(), "backoff_seconds": 60.0}]})
    sessions = make_sessionmaker(make_engine(node.db_url))
    config = NodeConfig(storage=StorageConfig(root=node.storage_root),
                        destinations=[DestinationConfig(name="pacs", ae_title="PACS",
                                                        host="127.0.0.1", port=1)])
    stored_outputs(sessions, config)

    def status() -> list[dict[str, object]]:
        return [json.loads(line) for line in node.cli("status", "--json").stdout.splitlines()]

    wait_until(lambda: any(r["kind"] == "backlog" and r["last_error"] for r in status()),
               timeout=60, message="the sender to try the PACS")
    records = status()
    (pacs,) = [r for r in records if r["kind"] == "backlog"]
    assert pacs["name"] == "pacs" and pacs["pending"] == 3
    assert "association with pacs" in str(pacs["last_error"])
    processes = [r for r in records if r["kind"] == "process"]
    assert {r["role"] for r in processes} == {"dicom", "sender", "http"}
    assert {(r["host"], r["pid"], r["up"]) for r in processes} == {
        (socket.gethostname(), node.process.pid, True)}
    assert all(r["storage_id"] and r["version"] for r in processes)
    node.stop()
    after = [r for r in status() if r["kind"] == "process"]
    assert after == [], "a process that stopped cleanly is not reported dead"
