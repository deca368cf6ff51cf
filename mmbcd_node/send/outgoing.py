"""An object on its way to a destination: what the store and commitment steps share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OutgoingObject:
    """One result object to send: its SOP class and instance, and its file."""

    sop_class_uid: str
    sop_instance_uid: str
    path: Path
