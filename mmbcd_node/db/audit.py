"""The append-only audit trail with a SHA-256 hash chain.

``record_event`` is the one way to write an audit event. Each row's hash covers its
own fields and the previous row's hash, so editing or deleting any row breaks the
chain from that row on; ``verify_chain`` finds the first broken row.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select, text
from sqlalchemy.orm import Session

from mmbcd_node.db.models import AuditEvent, utcnow
from mmbcd_node.db.utc import as_utc

GENESIS = "0" * 64
_CHAINED = (
    "occurred_at", "action", "outcome", "actor", "calling_ae", "called_ae", "peer_address",
    "patient_id", "study_uid", "sop_instance_uid", "accession_number", "detail",
)
_LAST_HASH = select(AuditEvent.row_hash).order_by(AuditEvent.id.desc()).limit(1)
_TABLE = cast(Table, AuditEvent.__table__)
_INSERT = insert(_TABLE).returning(_TABLE.c.id)
# Any constant works; it serialises appends to the chain between PostgreSQL sessions.
_PG_CHAIN_LOCK = 0x4D4D4243


def os_user() -> str:
    """The operating-system user running an admin command (recorded as the actor)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return str(os.getuid())


def record_event(session: Session, action: str, *, outcome: str = "success",
                 detail: dict[str, Any] | None = None, **fields: Any) -> AuditEvent:
    """Append one event inside the caller's transaction and return it (a detached
    ``AuditEvent``, its ``id`` set).

    ``fields`` are columns of ``AuditEvent`` (actor, calling_ae, study_uid, ...);
    ``detail`` is a JSON object for everything else. Never put patient names or
    history text here. The row becomes visible when the caller commits.
    """
    unknown = set(fields) - set(_CHAINED)
    if unknown:
        raise TypeError(f"unknown audit field(s): {', '.join(sorted(unknown))}")
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_CHAIN_LOCK})
    prev = session.execute(_LAST_HASH).scalar_one_or_none() or GENESIS
    values = {name: None for name in _CHAINED} | fields | {
        "action": action, "outcome": outcome, "occurred_at": utcnow(),
        "detail": json.dumps(detail or {}, sort_keys=True, default=str), "prev_hash": prev}
    event = AuditEvent(**values)
    event.row_hash = event_hash(event, prev)
    # A Core insert: the ORM's unit of work costs more than the rest of a received
    # image's transaction.
    event.id = session.execute(_INSERT, values | {"row_hash": event.row_hash}).scalar_one()
    return event


def event_hash(event: AuditEvent, prev_hash: str) -> str:
    """The chain hash of ``event`` given the hash of the row before it."""
    payload = {name: _canonical(getattr(event, name)) for name in _CHAINED}
    payload["prev_hash"] = prev_hash
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):  # hashed as naive UTC, whichever back end wrote it
        return as_utc(value).replace(tzinfo=None).isoformat(timespec="microseconds")
    return value


@dataclass(frozen=True)
class ChainBreak:
    row_id: int
    reason: str


def verify_chain(session: Session, batch: int = 5000) -> tuple[int, ChainBreak | None]:
    """Walk the whole table in id order; return (rows checked, first break or None)."""
    prev = GENESIS
    checked = 0
    for event in _iter_events(session, batch):
        if event.prev_hash != prev:
            return checked, ChainBreak(event.id, "previous-hash link does not match the row before")
        if event_hash(event, prev) != event.row_hash:
            return checked, ChainBreak(event.id, "row content does not match its hash")
        prev = event.row_hash
        checked += 1
    return checked, None


def _iter_events(session: Session, batch: int) -> Iterator[AuditEvent]:
    last_id = 0
    while True:
        rows = session.execute(
            select(AuditEvent).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch)
        ).scalars().all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id
        session.expunge_all()
