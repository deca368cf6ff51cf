"""Which failures of a job a retry can fix.

A job is retried only after a transient failure: the database or the disk was briefly
away, the machine ran out of memory, the GPU out of memory. Anything else comes from the
study's own input (an image, a header, an order), which does not change between
attempts: that job fails on its first attempt, with the reason, and a late image that
reopens the study gives it a new job.
"""

from __future__ import annotations

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# A lost connection, a locked or restarting database, a full pool; not an integrity error.
_TRANSIENT: tuple[type[BaseException], ...] = (
    OperationalError, InterfaceError, PoolTimeout, OSError, MemoryError, TimeoutError)


def is_transient(exc: BaseException) -> bool:
    """True for failures a later attempt may not meet (database, I/O, memory, CUDA OOM)."""
    if isinstance(exc, _TRANSIENT):
        return True
    try:
        import torch

        return isinstance(exc, torch.OutOfMemoryError)
    except ImportError:  # pragma: no cover - torch is a dependency of the worker
        return False


def transient_message(error: str) -> bool:
    """True for a per-view error message (``"Type: text"``) of a transient failure."""
    kind = error.split(":", 1)[0].strip()
    return kind in {"MemoryError", "OutOfMemoryError", "OSError", "TimeoutError"}
