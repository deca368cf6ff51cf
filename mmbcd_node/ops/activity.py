"""Application start and stop in the audit trail (DICOM Application Activity)."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node import __version__
from mmbcd_node.db.audit import os_user, record_event
from mmbcd_node.db.session import transaction
from mmbcd_node.logs import get_logger

log = get_logger(__name__)


def record_application_activity(sessions: sessionmaker[Session], started: bool,
                                roles: Sequence[str]) -> None:
    """Audit ``application_start``/``application_stop`` of this process and its roles.

    A database that is down is logged, not raised: it must not keep the node from
    stopping, and the receiver refuses work itself while it cannot write.
    """
    action = "application_start" if started else "application_stop"
    try:
        with transaction(sessions) as session:
            record_event(session, action, actor=os_user(),
                         detail={"roles": list(roles), "host": socket.gethostname(),
                                 "pid": os.getpid(), "version": __version__})
    except SQLAlchemyError as exc:
        log.warning("audit_write_failed", action=action, error=type(exc).__name__)
