"""The schema is defined by the Alembic migrations, and they agree with the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

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
