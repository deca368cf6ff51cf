"""Each database is one installation with its own identity, the source of result UIDs."""

from __future__ import annotations

from sqlalchemy import delete

from mmbcd_node.db import migrate
from mmbcd_node.db.installation import Installation, installation_uuid
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction


def _identity(url: str) -> str:
    engine = make_engine(url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            return installation_uuid(session)
    finally:
        engine.dispose()


def test_db_upgrade_gives_each_fresh_database_its_own_lasting_identity(db_url, tmp_path):
    other = f"sqlite:///{tmp_path / 'other.db'}"
    migrate.upgrade(other)
    mine = _identity(db_url)
    assert len(mine) == 36 and mine != _identity(other)
    migrate.upgrade(db_url)  # a second upgrade keeps it
    assert _identity(db_url) == mine


def test_a_database_without_its_identity_gets_one_on_first_use(db_url):
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as session:
        session.execute(delete(Installation))
    with transaction(sessions) as session:
        made = installation_uuid(session)
    with transaction(sessions) as session:
        assert installation_uuid(session) == made
    engine.dispose()
