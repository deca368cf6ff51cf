"""The one back-off rule of jobs, deliveries and HL7 results."""

from __future__ import annotations

from datetime import timedelta

from mmbcd_node.retry import MAX_BACKOFF, backoff


def test_the_wait_doubles_after_each_failed_attempt() -> None:
    assert [backoff(10.0, n).total_seconds() for n in (1, 2, 3, 4)] == [10, 20, 40, 80]


def test_the_wait_is_capped_at_an_hour_however_many_attempts_failed() -> None:
    assert timedelta(hours=1) == MAX_BACKOFF
    assert backoff(10.0, 10) == MAX_BACKOFF  # 10 x 2^9 = 5120 s
    assert backoff(30.0, 10_000) == MAX_BACKOFF  # no overflow


def test_a_zero_base_retries_at_once() -> None:
    assert backoff(0.0, 5) == timedelta(0)
