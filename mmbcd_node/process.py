"""Who this process is to the others, and how it keeps what it has claimed.

Workers claim jobs and senders claim deliveries and HL7 results under a lease: the
claim names the process (``process_name``) and runs out unless it is renewed. A
process renews its claims with ``renewing`` while it works on them, every
``[worker] heartbeat_seconds``; when it dies, the claims run out after
``[worker] lease_seconds`` and another process takes them over.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mmbcd_node.logs import get_logger

log = get_logger(__name__)


_running: list[str] = []


def running_roles() -> tuple[str, ...]:
    """The roles ``serve`` has started in this process (``/healthz`` checks these)."""
    return tuple(_running)


def role_running(name: str) -> None:
    """Record that ``serve`` started the role ``name`` in this process."""
    _running.append(name)


def running_roles_reset() -> None:
    _running.clear()


def process_name(role: str) -> str:
    """``role@host:pid``: who holds a lease, as shown by ``jobs`` and in the logs."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}"


@contextmanager
def renewing(renew: Callable[[], None], every: float, name: str) -> Iterator[None]:
    """Call ``renew`` every ``every`` seconds on a thread of its own for as long as the
    block runs. A failing renewal is logged and tried again at the next beat: the
    claims it keeps run out on their own if it keeps failing."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                renew()
            except Exception:
                log.exception("lease_renewal_failed", thread=name)

    thread = threading.Thread(target=beat, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
