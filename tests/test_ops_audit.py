"""Audit queries: filters, formats, the story of one study, and a chain that shows tampering."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text

from mmbcd_node.db.audit import os_user, record_event
from mmbcd_node.db.models import utcnow
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction
from mmbcd_node.ops.audit_queries import AuditFilter, find_events, study_story
from tests.support.operations import seed_study


def _fill(db_url: str, tmp_path: Path) -> tuple[str, str]:
    sessions = make_sessionmaker(make_engine(db_url))
    with transaction(sessions) as session:
        first = seed_study(session, tmp_path / "storage", patient_id="P1", accession="A1",
                           calling_ae="MAMMO1", received_at=utcnow() - timedelta(hours=1))
        second = seed_study(session, tmp_path / "storage", patient_id="P2", accession="A2",
                            calling_ae="MAMMO2")
        record_event(session, "association_rejected", outcome="failure", calling_ae="INTRUDER",
                     called_ae="MMBCD", peer_address="10.0.0.9",
                     detail={"reason": "calling AE not allowed"})
        record_event(session, "study_reprocessed", actor="radadmin", study_uid=first.study_uid,
                     patient_id="P1", accession_number="A1")
    return first.study_uid, second.study_uid


def test_audit_filters_combine_patient_accession_ae_action_actor_and_time(
        db_url: str, tmp_path: Path) -> None:
    first, second = _fill(db_url, tmp_path)
    with make_sessionmaker(make_engine(db_url))() as session:
        assert {e["study_uid"] for e in find_events(session, AuditFilter(patient_id="P2"))} == {
            second}
        stored = find_events(session, AuditFilter(accession="A1", action="instance_stored"))
        assert len(stored) == 4 and all(e["study_uid"] == first for e in stored)
        rejected = find_events(session, AuditFilter(ae="INTRUDER"))
        assert [e["action"] for e in rejected] == ["association_rejected"]
        assert rejected[0]["detail"] == {"reason": "calling AE not allowed"}
        assert [e["action"] for e in find_events(session, AuditFilter(actor="radadmin"))] == [
            "study_reprocessed"]
        assert len(find_events(session, AuditFilter(calling_ae="MAMMO1"))) == 5
        future = AuditFilter(since=utcnow() + timedelta(minutes=1))
        assert find_events(session, future) == []
        past = AuditFilter(until=utcnow() - timedelta(minutes=1))
        assert find_events(session, past) == []
        everything = find_events(session, AuditFilter(since=utcnow() - timedelta(minutes=5)))
        assert len(everything) == 12
        assert [e["id"] for e in everything] == sorted(e["id"] for e in everything)


def test_audit_command_prints_json_lines_csv_and_a_table(node_factory, tmp_path: Path) -> None:
    node = node_factory(start=False)
    first, _ = _fill(node.db_url, tmp_path)
    lines = node.cli("audit", "--patient-id", "P1", "--json").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert len(events) == 5 and {e["patient_id"] for e in events} == {"P1"}
    assert {e["study_uid"] for e in events} == {first}
    rows = list(csv.DictReader(io.StringIO(
        node.cli("audit", "--action", "association_rejected", "--csv").stdout)))
    assert [(r["calling_ae"], r["outcome"]) for r in rows] == [("INTRUDER", "failure")]
    assert json.loads(rows[0]["detail"]) == {"reason": "calling AE not allowed"}
    node.env["COLUMNS"] = "250"  # a wide terminal, so rich does not shorten cells
    table = node.cli("audit", "--since", "1h", "--actor", "radadmin").stdout
    assert "study_reprocessed" in table and "instance_stored" not in table
    bad = node.cli("audit", "--since", "yesterday", check=False)
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_study_story_lists_receiving_job_and_admin_actions_in_time_order(
        db_url: str, tmp_path: Path) -> None:
    first, second = _fill(db_url, tmp_path)
    with make_sessionmaker(make_engine(db_url))() as session:
        story = study_story(session, first)
    whats = [entry["what"] for entry in story]
    assert whats.count("instance received") == 4
    assert whats.count("instance_stored (success)") == 4
    assert "job started" in whats and "job finished" in whats
    assert whats.index("study first_received") < whats.index("job finished")
    assert whats[-1] == "study_reprocessed (success)"
    job = next(e for e in story if e["what"] == "job finished")
    assert job["detail"]["bundle_digest"] == "sha256:demo" and job["detail"]["state"] == "done"
    assert all(second not in json.dumps(e, default=str) for e in story)


def test_audit_study_command_names_an_unknown_study(node_factory, tmp_path: Path) -> None:
    node = node_factory(start=False)
    first, _ = _fill(node.db_url, tmp_path)
    lines = node.cli("audit", "study", first, "--json").stdout.splitlines()
    assert [json.loads(line)["what"] for line in lines][-1] == "study_reprocessed (success)"
    missing = node.cli("audit", "study", "1.2.3.4", check=False)
    assert missing.returncode == 1 and "no study 1.2.3.4" in missing.stderr


def test_editing_an_audit_row_in_sql_breaks_audit_verify_at_that_row(
        node_factory, tmp_path: Path) -> None:
    node = node_factory(start=False)
    _fill(node.db_url, tmp_path)
    assert "intact: 12 rows" in node.cli("audit", "verify").stdout
    engine = make_engine(node.db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_events SET actor = :who WHERE id = 7"),
                           {"who": os_user()})
    engine.dispose()
    broken = node.cli("audit", "verify", check=False)
    assert broken.returncode == 1
    assert "broken at row 7" in broken.stderr and "6 rows before it verified" in broken.stderr


def test_study_story_shows_this_studys_order_match_but_no_clinical_text(
        db_url: str, tmp_path: Path) -> None:
    from mmbcd_node.db.order_models import Order, StudyOrder

    sessions = make_sessionmaker(make_engine(db_url))
    with transaction(sessions) as session:
        mine = seed_study(session, tmp_path, patient_id="P7", accession="A7")
        other = seed_study(session, tmp_path, patient_id="P7", accession="A8")
        order = Order(control="NW", accession_number="A7", patient_id="P7",
                      reason="R1^Palpable lump^L", history_text="lump since march",
                      history_sources='["OBR-13"]')
        session.add(order)
        session.flush()
        session.add_all([
            StudyOrder(study_id=mine.id, order_id=order.id, rule="accession", state="linked",
                       decided_by="matcher"),
            StudyOrder(study_id=other.id, order_id=order.id, rule="patient_date",
                       state="candidate", decided_by="matcher", note="same patient, 2 days")])
    with sessions() as session:
        story = study_story(session, mine.study_uid)
    told = json.dumps(story, default=str)
    matches = [e for e in story if e["what"] == "study_order decided"]
    assert [m["detail"]["rule"] for m in matches] == ["accession"]
    created = next(e for e in story if e["what"] == "order created")
    assert created["detail"]["history_sources"] == '["OBR-13"]'
    assert "Palpable" not in told and "lump since" not in told and "2 days" not in told
