"""The one back-off rule of jobs, deliveries and HL7 results, and the transaction retried
across a lost database connection."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mmbcd_node.retry import MAX_BACKOFF, backoff


def test_the_wait_doubles_after_each_failed_attempt() -> None:
    assert [backoff(10.0, n).total_seconds() for n in (1, 2, 3, 4)] == [10, 20, 40, 80]


def test_the_wait_is_capped_at_an_hour_however_many_attempts_failed() -> None:
    assert timedelta(hours=1) == MAX_BACKOFF
    assert backoff(10.0, 10) == MAX_BACKOFF  # 10 x 2^9 = 5120 s
    assert backoff(30.0, 10_000) == MAX_BACKOFF  # no overflow


def test_a_zero_base_retries_at_once() -> None:
    assert backoff(0.0, 5) == timedelta(0)


def test_a_transaction_safe_to_repeat_outlasts_a_lost_connection(tmp_path) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError, OperationalError

    from mmbcd_node.db.session import make_engine, make_sessionmaker, retried_transaction

    sessions = make_sessionmaker(make_engine(f"sqlite:///{tmp_path / 'x.db'}"))
    calls: list[int] = []

    def flaky(session) -> int:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("SELECT 1", {}, ConnectionError("server closed the connection"))
        return int(session.execute(text("SELECT 41 + 1")).scalar_one())

    assert retried_transaction(sessions, flaky, within=10, what="test") == 42
    assert len(calls) == 3

    def constraint(session) -> None:
        calls.append(1)
        raise IntegrityError("INSERT", {}, ValueError("duplicate"))

    calls.clear()
    with pytest.raises(IntegrityError):
        retried_transaction(sessions, constraint, within=10, what="test")
    assert len(calls) == 1, "an error of the work itself is not repeated"

    def down(session) -> None:
        calls.append(1)
        raise OperationalError("SELECT 1", {}, ConnectionError("connection refused"))

    calls.clear()
    with pytest.raises(OperationalError):
        retried_transaction(sessions, down, within=0.5, what="test")
    assert 1 < len(calls) <= 3, "tried again within the bound, then given up"
