"""Time in the database: every datetime is stored and read back as an aware UTC moment.

PostgreSQL keeps ``timestamptz`` and returns aware datetimes; SQLite keeps text and
returns naive ones. ``UtcDateTime`` makes both back ends alike: it refuses a naive
datetime on the way in (its zone is unknowable) and stores the moment in UTC; on the
way out it hands back an aware UTC datetime. ``as_utc`` is the same rule for values
that bypass the models (reflected rows, raw SQL).

Leases (jobs, deliveries) are measured by one clock for all hosts: ``database_now``,
the PostgreSQL server's clock. Hosts whose own clocks drift still agree on when a lease
runs out; SQLite serves one host, whose clock is the database's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect, text
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """Now, aware, in UTC."""
    return datetime.now(UTC)


def database_now(session: Session) -> datetime:
    """Now by the database server's clock (PostgreSQL ``clock_timestamp()``); this host's
    clock on SQLite, which has no server."""
    if session.get_bind().dialect.name == "postgresql":
        return as_utc(session.execute(text("SELECT clock_timestamp()")).scalar_one())
    return utcnow()


def clock_offset_ms(session: Session) -> float:
    """This host's clock minus the database's, in milliseconds, read at the midpoint of
    the query so that its round trip does not count."""
    before = utcnow()
    database = database_now(session)
    return ((before + (utcnow() - before) / 2) - database).total_seconds() * 1000.0


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; a naive one is taken to be UTC already (what
    SQLite hands back)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A ``UtcDateTime`` column that takes and gives aware UTC datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"a time stored in the database must be an aware datetime, "
                             f"not {value!r}")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)
