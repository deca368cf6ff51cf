"""Operating a node that really ran a study: story, metrics, health, audit messages, purge.

A modality (dcmtk ``storescu``) and a RIS (MLLP) feed the node running every role; the
results reach a PACS (dcmtk ``storescp``). The operator's tools then answer from the
database that run filled, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select

from mmbcd_node.config import load_config
from mmbcd_node.db.models import Study
from mmbcd_node.db.session import make_engine, make_sessionmaker
from mmbcd_node.ops.audit_queries import study_story
from mmbcd_node.ops.retention import find_candidates, run_purge
from tests.support.e2e import make_study, push_study, send_order
from tests.support.pacs import wait_until
from tests.test_audit_messages import SyslogCollector, event_name
from tests.test_health import scrape

pytestmark = pytest.mark.slow

ROLES = ["dicom", "hl7", "scheduler", "worker", "sender", "http", "audit"]


def _study_state(db_url: str, study_uid: str) -> str | None:
    engine = make_engine(db_url)
    with engine.connect() as connection:
        state = connection.execute(select(Study.state).where(Study.study_uid == study_uid)
                                   ).scalar()
    engine.dispose()
    return state


def test_a_delivered_study_is_told_counted_forwarded_and_purged(
        node_factory, storescp_factory, tmp_path: Path) -> None:
    pacs = storescp_factory()
    collector = SyslogCollector("udp")
    node = node_factory(roles=ROLES, settings={
        "worker": {"heartbeat_seconds": 1.0, "poll_seconds": 0.2},
        "model": {"device": "cpu"},
        "results": {"kinds": ["sr"]},
        "destinations": [{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1",
                          "port": pacs.port, "backoff_seconds": 0.5}],
        "audit": {"syslog": {"host": "127.0.0.1", "port": collector.port, "transport": "udp"}},
    })
    study = make_study(tmp_path / "in", 1)
    push_study(node.dicom_port, study.files)
    send_order(node.hl7_port, study)
    wait_until(lambda: _study_state(node.db_url, study.study_uid) == "delivered", timeout=300,
               message=f"study delivered; node log:\n{node.log_text()[-3000:]}")

    # The story: from where the images came, the order, the model run, where it went.
    sessions = make_sessionmaker(make_engine(node.db_url))
    with sessions() as session:
        story = study_story(session, study.study_uid)
    whats = [entry["what"] for entry in story]
    for expected in ("instance received", "instance_stored (success)", "order created",
                     "order_received (success)", "study_completed (success)", "job finished",
                     "result created", "delivery sent", "results_sent (success)"):
        assert expected in whats, (expected, whats)
    assert whats.index("instance received") < whats.index("job finished") < whats.index(
        "delivery sent")
    job = next(e for e in story if e["what"] == "job finished")
    assert job["detail"]["bundle_digest"]
    sent = next(e for e in story if e["what"] == "delivery sent")
    assert sent["detail"]["destination"] == "pacs"
    received = next(e for e in story if e["what"] == "instance_stored (success)")
    assert received["detail"]["calling_ae"] == "MODALITY"
    told = json.dumps(story, default=str)
    assert "history_text" not in told and "Doe^Jane" not in told

    metrics = scrape(node.http_port)
    assert metrics["mmbcd_hl7_messages_total"][(("ack_code", "AA"),)] == 1
    assert metrics["mmbcd_deliveries"][(("destination", "pacs"), ("state", "sent"))] == 1
    assert metrics["mmbcd_inference_seconds_count"][()] == 1
    assert metrics["mmbcd_time_to_result_seconds_count"][()] == 1
    assert metrics["mmbcd_studies"][(("state", "delivered"),)] == 1
    with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/healthz") as response:
        health = json.loads(response.read())
    assert health["status"] == "ok" and {"dicom", "hl7", "worker", "model"} <= set(
        health["checks"])

    def transfer_actions(messages: list) -> set[str]:  # type: ignore[type-arg]
        return {m.find("EventIdentification").get("EventActionCode")
                for m in messages if event_name(m) == "DICOM Instances Transferred"}

    # Images in (C; one message per peer and study in each forwarded batch), results out (R).
    messages = collector.wait_for(lambda ms: transfer_actions(ms) == {"C", "R"})
    assert "Order Record" in map(event_name, messages)

    node.stop()
    config = load_config(node.config_path,
                         environ={"MMBCD_NODE__RETENTION__DELIVERED_DAYS": "0"})
    with sessions() as session:
        plan = find_candidates(session, config.retention)
    assert [(p.study_uid, p.rule, p.files) for p in plan] == [(study.study_uid, "delivered", 4)]
    assert run_purge(config, sessions, actor="tester").files == 4
    left = [p for p in node.storage_root.rglob("*.dcm") if study.study_uid in str(p)]
    assert left and all("results" in p.parts for p in left)  # images gone, our SR kept
    assert pacs.files()  # what the PACS holds is not ours to delete
    with sessions() as session:
        assert study_story(session, study.study_uid)[-1]["what"] == "study_purged (success)"
    collector.close()
