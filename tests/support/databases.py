"""Fresh, migrated databases for tests: SQLite always, PostgreSQL when MMBCD_TEST_PG_URL is set.

Each PostgreSQL test gets its own database created from scratch and dropped afterwards,
so tests never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mmbcd_node.db import migrate

PG_URL_ENV = "MMBCD_TEST_PG_URL"


def _pg_admin_url() -> str | None:
    return os.environ.get(PG_URL_ENV)


def create_pg_database() -> str:
    """Create an empty PostgreSQL database next to MMBCD_TEST_PG_URL; return its URL."""
    admin_url = make_url(_pg_admin_url() or "")
    name = f"mmbcd_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    parsed = make_url(url)
    engine = create_engine(make_url(_pg_admin_url() or ""), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    engine.dispose()


DB_KINDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=[
        pytest.mark.postgres,
        pytest.mark.skipif(not _pg_admin_url(), reason=f"{PG_URL_ENV} is not set"),
    ]),
]


@pytest.fixture(params=DB_KINDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'node.db'}"
        return
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
def db_url(empty_db_url: str) -> str:
    """The URL of a database of each kind, migrated to the newest revision."""
    migrate.upgrade(empty_db_url)
    return empty_db_url
