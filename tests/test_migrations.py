"""The schema is defined by the Alembic migrations, and they agree with the models."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from mmbcd_node.db import migrate
from mmbcd_node.db.schema import Base
from mmbcd_node.db.session import make_engine


def test_upgrade_reaches_head_and_matches_models(db_url: str) -> None:
    engine = make_engine(db_url)
    assert migrate.current_revision(engine) == migrate.head_revision(db_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


def test_upgrade_is_idempotent(db_url: str) -> None:
    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    tables = set(inspect(engine).get_table_names())
    assert {"studies", "series", "instances", "audit_events"} <= tables
    engine.dispose()


def test_instance_digests_stored_before_0005_keep_their_sha256(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, "0004")
    engine = make_engine(empty_db_url)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO studies (id, study_uid, state, state_changed_at, first_received_at,"
            " last_received_at, rerun_requested, reopen_count, correlation_id)"
            " VALUES (1, '1.2.3', 'receiving', :now, :now, :now, false, 0, 'c')"),
            {"now": datetime.now(UTC)})
        connection.execute(text(
            "INSERT INTO series (id, study_id, series_uid) VALUES (1, 1, '1.2.3.4')"))
        connection.execute(text(
            "INSERT INTO instances (study_id, series_id, sop_instance_uid, sop_class_uid,"
            " transfer_syntax_uid, path, size_bytes, sha256, received_at)"
            " VALUES (1, 1, '1.2.3.4.5', '1.2.840.10008.5.1.4.1.1.1.2', '1.2.840.10008.1.2.1',"
            " 'a.dcm', 10, :sha, :now)"), {"sha": "ab" * 32, "now": datetime.now(UTC)})
    migrate.upgrade(empty_db_url)
    with engine.connect() as connection:
        digest = connection.execute(text("SELECT digest FROM instances")).scalar_one()
    engine.dispose()
    assert digest == "sha256:" + "ab" * 32


def test_hl7_results_stored_before_0010_are_preliminary(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, "0009")
    engine = make_engine(empty_db_url)
    now = {"now": datetime.now(UTC)}
    with engine.begin() as connection:
        for statement in (
                "INSERT INTO studies (id, study_uid, state, state_changed_at, first_received_at,"
                " last_received_at, rerun_requested, reopen_count, correlation_id)"
                " VALUES (1, '1.2.3', 'delivered', :now, :now, :now, false, 0, 'c')",
                "INSERT INTO jobs (id, study_id, state, priority, reason, without_history,"
                " attempts, not_before, created_at)"
                " VALUES (1, 1, 'done', 1, 'new', false, 1, :now, :now)",
                "INSERT INTO results (id, job_id, study_id, state, probability, bundle_digest,"
                " history_used, history_sources, all_views_used, created_at)"
                " VALUES (1, 1, 1, 'active', 0.5, 'd', false, '[]', true, :now)",
                "INSERT INTO hl7_result_messages (result_id, control_id, message, state,"
                " attempts, next_attempt_at, created_at)"
                " VALUES (1, 'MMBCD000000000000001', 'MSH|', 'sent', 1, :now, :now)"):
            connection.execute(text(statement), now)
    migrate.upgrade(empty_db_url)
    with engine.connect() as connection:
        status = connection.execute(text("SELECT result_status FROM hl7_result_messages")
                                    ).scalar_one()
    engine.dispose()
    assert status == "P"
