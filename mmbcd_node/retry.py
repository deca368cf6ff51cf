"""How long to wait before trying again: one rule for jobs, deliveries and HL7 results.

After the 1st, 2nd, 3rd ... failed attempt the wait is ``base``, ``2 x base``,
``4 x base`` ..., never more than ``MAX_BACKOFF`` (an hour), so a PACS or RIS that was
down overnight is tried again within the hour it comes back. ``base`` is the
``backoff_seconds`` of ``[worker]``, of the destination or of ``[hl7.results]``.
"""

from __future__ import annotations

from datetime import timedelta

MAX_BACKOFF = timedelta(hours=1)


def backoff(base_seconds: float, failed_attempts: int) -> timedelta:
    """The wait after ``failed_attempts`` failed attempts (1 or more)."""
    exponent = min(max(0, failed_attempts - 1), 64)  # 2**64 x base is past any cap
    seconds = base_seconds * 2.0 ** exponent
    return min(timedelta(seconds=min(seconds, MAX_BACKOFF.total_seconds())), MAX_BACKOFF)
