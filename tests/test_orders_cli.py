"""``mmbcd-node orders`` and ``reconcile``: listing, showing, and admin decisions audited.

The console script's typer app runs in-process (``CliRunner``) with the node's
configuration file, against the test database; the node itself is not started, since
the commands only need SQL. Exit codes and output are the script's own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from click.testing import Result
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from mmbcd_node.admin.cli import app
from mmbcd_node.config import NodeConfig
from mmbcd_node.db.audit import os_user
from mmbcd_node.db.models import AuditEvent, Job, Study, StudyState, utcnow
from mmbcd_node.db.order_models import MatchState, StudyOrder
from mmbcd_node.db.session import make_engine, make_sessionmaker
from mmbcd_node.orders.intake import OrderIntake
from tests.support.hl7_client import encode, order_message
from tests.support.node import NodeFactory, RunningNode


@pytest.fixture
def node(node_factory: NodeFactory) -> RunningNode:
    return node_factory(roles=["hl7"], start=False)


@pytest.fixture
def sessions(node: RunningNode) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(node.db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@dataclass
class Cli:
    """``mmbcd-node --config <node config> ARGS`` for one test node."""

    node: RunningNode

    def __call__(self, *args: str, check: bool = True) -> Result:
        result = CliRunner().invoke(app, ["--config", str(self.node.config_path), *args])
        if check and result.exit_code != 0:
            raise AssertionError(f"mmbcd-node {' '.join(args)} exited {result.exit_code}: "
                                 f"{result.output}{result.exception!r}")
        return result


@pytest.fixture
def cli(node: RunningNode) -> Cli:
    return Cli(node)


def deliver(sessions: sessionmaker[Session], text: str, charset: str = "") -> None:
    assert b"MSA|AA|" in OrderIntake(NodeConfig(), sessions).handle(encode(text, charset))


def add_study(sessions: sessionmaker[Session], uid: str, patient: str, accession: str,
              state: str = StudyState.HELD) -> None:
    with sessions() as session, session.begin():
        session.add(Study(study_uid=uid, patient_id=patient, issuer_of_patient_id="HOSP",
                          accession_number=accession, study_date="20261130", state=state,
                          completed_at=utcnow() - timedelta(hours=1), correlation_id="c" * 8))


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def audit_actions(sessions: sessionmaker[Session]) -> list[tuple[str, str | None, str]]:
    with sessions() as session:
        return [(e.action, e.actor, e.detail) for e in
                session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()]


def test_orders_lists_with_filters_and_show_prints_raw_message_and_fields(
        cli: Cli, sessions: sessionmaker[Session]) -> None:
    deliver(sessions, order_message("M1", placer="PL1", accession="ACC-1", charset="8859/1",
                                    clinical="Knoten links, Größe 2 cm"), "8859/1")
    deliver(sessions, order_message("M2", placer="PL2", accession="ACC-2", patient_id="PAT2"))
    deliver(sessions, order_message("M3", placer="PL2", control="CA", patient_id="PAT2",
                                    accession="ACC-2"))
    listed = json_lines(cli("orders", "--json").stdout)
    assert sorted(o["accession_number"] for o in listed) == ["ACC-1", "ACC-2"]
    live = json_lines(cli("orders", "--live", "--json").stdout)
    assert [o["accession_number"] for o in live] == ["ACC-1"]
    by_patient = json_lines(cli("orders", "--patient-id", "PAT2", "--json").stdout)
    assert [o["cancelled"] for o in by_patient] == [True]
    order_id = str(live[0]["id"])
    shown = cli("orders", "show", order_id).stdout
    assert "MSH|^~\\&|RIS|HOSP" in shown
    assert "OBR-13: Knoten links, Größe 2 cm" in shown
    detail = json.loads(cli("orders", "show", order_id, "--json").stdout)
    assert detail["history_sources"][0] == ["OBR-13", "Knoten links, Größe 2 cm"]
    assert detail["messages"][0]["control_id"] == "M1"
    assert cli("orders", "show", "999", check=False).exit_code == 1


def test_reconcile_lists_held_studies_and_candidates_and_link_queues_audited(
        cli: Cli, sessions: sessionmaker[Session]) -> None:
    add_study(sessions, "1.2.3.7", patient="PAT-STUDY", accession="ACC-X")
    deliver(sessions, order_message("M1", patient_id="PAT-ORDER", accession="ACC-X"))
    listed = json_lines(cli("reconcile", "--json").stdout)
    kinds = sorted((r["kind"], r["study_uid"]) for r in listed)
    assert kinds == [("candidate", "1.2.3.7"), ("held", "1.2.3.7")]
    candidate = next(r for r in listed if r["kind"] == "candidate")
    assert candidate["rule"] == "accession" and "patient id differs" in str(candidate["note"])
    cli("reconcile", "link", "1.2.3.7", str(candidate["order_id"]))
    with sessions() as session:
        study = session.execute(select(Study)).scalar_one()
        match = session.execute(select(StudyOrder)).scalar_one()
        job = session.execute(select(Job)).scalar_one()
    assert study.state == StudyState.QUEUED
    assert (match.state, match.rule, match.decided_by) == (MatchState.LINKED, "manual", os_user())
    assert not job.without_history
    reconciled = [a for a in audit_actions(sessions) if a[0] == "order_reconciled"]
    assert reconciled and reconciled[0][1] == os_user()
    assert json.loads(reconciled[0][2])["decision"] == "link"


def test_reconcile_reject_then_run_without_history(
        cli: Cli, sessions: sessionmaker[Session]) -> None:
    add_study(sessions, "1.2.3.8", patient="PAT-STUDY", accession="ACC-Y")
    deliver(sessions, order_message("M1", patient_id="PAT-ORDER", accession="ACC-Y"))
    order_id = str(json_lines(cli("reconcile", "--json").stdout)[0]["order_id"])
    cli("reconcile", "reject", "1.2.3.8", order_id)
    listed = json_lines(cli("reconcile", "--json").stdout)
    assert [r["kind"] for r in listed] == ["held"]
    # A re-sent order does not bring a rejected candidate back.
    deliver(sessions, order_message("M2", control="XO", patient_id="PAT-ORDER",
                                    accession="ACC-Y"))
    assert [r["kind"] for r in json_lines(cli("reconcile", "--json").stdout)] == ["held"]
    cli("reconcile", "run-without-history", "1.2.3.8")
    with sessions() as session:
        assert session.execute(select(Study.state)).scalar_one() == StudyState.QUEUED
        assert session.execute(select(Job.without_history)).scalar_one() is True
    decisions = [json.loads(d)["decision"] for a, actor, d in audit_actions(sessions)
                 if a == "order_reconciled" and actor == os_user()]
    assert decisions == ["reject", "run_without_history"]
    again = cli("reconcile", "run-without-history", "1.2.3.8", check=False)
    assert again.exit_code == 1 and "queued" in again.output
