"""Engines and sessions for SQLite (embedded default) and PostgreSQL (deployment)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.logs import get_logger

log = get_logger(__name__)
T = TypeVar("T")


def make_engine(url: str) -> Engine:
    """Create the engine for ``url``.

    SQLite runs in WAL mode with a busy timeout, and every transaction starts with
    ``BEGIN IMMEDIATE`` so that read-then-write sequences (the audit chain, conditional
    state changes) are serialised between processes instead of failing at commit.
    PostgreSQL URLs without a driver use psycopg 3.
    """
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy issue BEGIN itself (see _on_begin) instead of pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):  # type: ignore[no-untyped-def]
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back and re-raises on error."""
    with factory() as session, session.begin():
        yield session


def retried_transaction(factory: sessionmaker[Session], work: Callable[[Session], T], *,
                        within: float, what: str) -> T:
    """``work`` in one transaction, run again on a fresh connection when the database
    connection fails (the server restarting, the network away), with backoff, for up to
    ``within`` seconds; then the last error is raised.

    Only for work that is safe to run twice: conditional updates keyed on the caller's
    lease, recording what already happened outside (an object stored at the PACS, an
    ACK from the RIS), so that a database outage does not make it happen a second time.
    """
    deadline = time.monotonic() + within
    delay = 0.25
    while True:
        try:
            with transaction(factory) as session:
                return work(session)
        except DBAPIError as exc:
            lost = isinstance(exc, OperationalError) or exc.connection_invalidated
            if not lost or time.monotonic() + delay > deadline:
                raise
            log.warning("transaction_retried", what=what,
                        error=type(exc.orig).__name__ if exc.orig else type(exc).__name__)
            time.sleep(delay)
            delay = min(2 * delay, 2.0)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
