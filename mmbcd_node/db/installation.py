"""This installation's identity: one random UUID per database, made by ``db upgrade``.

Every UID the node derives for its results (SR, CAD SR, SC, GSPS, rejection notes, the
observer device) starts from it, then the study and the job: two nodes with the default
UID root and fresh databases never issue the same UID, while building the same result
again yields the same UIDs. Nodes that share one database (a standby taking over) are
one installation and share the identity.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from mmbcd_node.db.models import Base, utcnow
from mmbcd_node.db.utc import UtcDateTime

ROW_ID = 1  # the table holds one row


class Installation(Base):
    """The identity of the database this node writes to (one row)."""

    __tablename__ = "installation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


def new_installation_uuid() -> str:
    """A fresh identity (random, RFC 9562 version 4)."""
    return str(uuid.uuid4())


def installation_uuid(session: Session) -> str:
    """The installation's UUID; made now if the database predates it (first use wins)."""
    row = session.get(Installation, ROW_ID)
    if row is not None:
        return row.uuid
    try:
        with session.begin_nested():
            session.add(Installation(id=ROW_ID, uuid=new_installation_uuid()))
    except IntegrityError:  # another process made it first
        pass
    row = session.get(Installation, ROW_ID, populate_existing=True)
    assert row is not None
    return row.uuid
