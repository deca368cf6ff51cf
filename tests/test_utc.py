"""Every time the database hands back is an aware UTC datetime, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import DateTime, select
from sqlalchemy.exc import StatementError

from mmbcd_node.db import migrate
from mmbcd_node.db.models import Base, Study
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction
from mmbcd_node.db.utc import UtcDateTime, as_utc

# Importing the model modules registers their tables on Base.metadata.
import mmbcd_node.db.installation  # noqa: E402,F401  isort: skip
import mmbcd_node.db.ops_models  # noqa: E402,F401  isort: skip
import mmbcd_node.db.order_models  # noqa: E402,F401  isort: skip
import mmbcd_node.db.result_models  # noqa: E402,F401  isort: skip


def test_every_time_column_of_the_models_is_utc() -> None:
    columns = [f"{table.name}.{column.name}" for table in Base.metadata.tables.values()
               for column in table.columns
               if isinstance(column.type, DateTime | UtcDateTime)
               and not isinstance(column.type, UtcDateTime)]
    assert columns == []
    assert sum(isinstance(column.type, UtcDateTime) for table in Base.metadata.tables.values()
               for column in table.columns) > 30


def test_a_time_in_another_zone_reads_back_as_the_same_moment_in_utc(db_url: str) -> None:
    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    paris = datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    with transaction(sessions) as session:
        session.add(Study(study_uid="1.2.3", state="receiving", correlation_id="c-1",
                          state_changed_at=paris,
                          first_received_at=paris, last_received_at=paris))
    with sessions() as session:
        stored = session.execute(select(Study.state_changed_at)).scalar_one()
        # A comparison in SQL sees the same moment as the one written.
        later = session.execute(select(Study.id).where(
            Study.last_received_at < paris + timedelta(seconds=1))).scalar_one_or_none()
    engine.dispose()
    assert stored == paris and stored.tzinfo is UTC
    assert stored.hour == 1  # 03:30 at +02:00
    assert later is not None


def test_a_naive_time_is_refused_before_it_reaches_the_database(db_url: str) -> None:
    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    with (pytest.raises(StatementError, match="must be an aware datetime"),
          transaction(make_sessionmaker(engine)) as session):
        session.add(Study(study_uid="1.2.4", state="receiving",
                          state_changed_at=datetime(2026, 1, 1, 12, 0)))
    engine.dispose()


def test_as_utc_takes_a_naive_time_as_utc_and_converts_an_aware_one() -> None:
    assert as_utc(datetime(2026, 1, 1, 12)) == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert as_utc(datetime(2026, 1, 1, 12, tzinfo=timezone(-timedelta(hours=5)))).hour == 17
