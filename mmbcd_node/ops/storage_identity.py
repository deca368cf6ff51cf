"""Which storage root a process sees: a random identity written once in the root.

Every host of a site must see the same storage root (one NFS or CephFS export). A host
that mounted another export, or none, finds another identity there, or none, and makes
its own; heartbeats publish what each process read, so ``doctor`` and ``status`` can
name the host that sees a different root.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

MARKER = ".mmbcd-storage-id"


def storage_identity(root: Path) -> str | None:
    """The identity in ``root``, written now if the root has none; ``None`` when the root
    cannot be read or written (missing, or read-only without a marker)."""
    marker = root / MARKER
    try:
        return marker.read_text().strip() or None
    except FileNotFoundError:
        pass
    except OSError:
        return None
    # Written whole under a private name, then linked into place: a reader never sees
    # a half-written marker, and of two first writers exactly one wins.
    draft = root / f"{MARKER}.{os.getpid()}.tmp"
    try:
        with draft.open("w") as handle:
            handle.write(str(uuid.uuid4()))
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(draft, marker)
        return marker.read_text().strip() or None
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            draft.unlink(missing_ok=True)
