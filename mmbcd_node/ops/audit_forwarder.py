"""The ``audit`` role: forwards the audit trail to a syslog collector as DICOM audit messages.

The forwarder tails ``audit_events`` by id. It reads the next batch after the cursor
(``audit_forward_cursors``), sends its messages, and only then moves the cursor, in a
conditional update: a crash or a collector that is down means the batch is sent again
later, never skipped (at-least-once; collectors de-duplicate by content if they must).
Every stage keeps writing only its own audit rows; nothing else needs to know about
syslog.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import NodeConfig
from mmbcd_node.db.audit import record_event
from mmbcd_node.db.models import AuditEvent, utcnow
from mmbcd_node.db.ops_models import AuditForwardCursor
from mmbcd_node.db.session import transaction
from mmbcd_node.ops.activity import record_application_activity
from mmbcd_node.ops.audit_messages import NodeIdentity, messages_for
from mmbcd_node.ops.syslog import SyslogSender

log = logging.getLogger(__name__)

CURSOR = "syslog"


def _cursor(session: Session) -> int:
    found = session.get(AuditForwardCursor, CURSOR)
    if found is None:
        session.add(AuditForwardCursor(name=CURSOR, last_event_id=0))
        session.flush()
        return 0
    return found.last_event_id


def forward_pending(sessions: sessionmaker[Session], sender: SyslogSender,
                    identity: NodeIdentity, *, batch: int = 200) -> int:
    """Send the audit events after the cursor (one batch); return how many were consumed.

    Raises ``OSError`` (``ssl.SSLError`` included) when the collector cannot be reached;
    the cursor then stays where it was.
    """
    with transaction(sessions) as session:
        last = _cursor(session)
        events = session.execute(select(AuditEvent).where(AuditEvent.id > last)
                                 .order_by(AuditEvent.id).limit(batch)).scalars().all()
        session.expunge_all()
    if not events:
        return 0
    messages = messages_for(events, identity)
    if messages:
        sender.send(messages)
    with transaction(sessions) as session:
        moved = session.execute(
            update(AuditForwardCursor)
            .where(AuditForwardCursor.name == CURSOR, AuditForwardCursor.last_event_id == last)
            .values(last_event_id=events[-1].id, forwarded_at=utcnow())
            .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    if not moved:
        log.warning("event=audit_forward_raced after_id=%s", last)
    log.debug("event=audit_forwarded events=%d messages=%d last_id=%d",
              len(events), len(messages), events[-1].id)
    return len(events)


class AuditForwarderRole:
    """Role ``audit``: audits application start/stop and forwards the audit trail.

    Without ``[audit.syslog]`` only the application activity is recorded.
    """

    name = "audit"

    def __init__(self, config: NodeConfig, sessions: sessionmaker[Session],
                 interval: float = 1.0) -> None:
        self.config = config
        self.sessions = sessions
        self.interval = interval
        self.identity = NodeIdentity(config.dicom.ae_title, socket.gethostname())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Audit the application start; forward in the background when syslog is configured."""
        from mmbcd_node.serve import running_roles

        record_application_activity(self.sessions, True, running_roles())
        syslog = self.config.audit.syslog
        if syslog is None:
            log.info("event=audit_forwarding_off reason=no_audit_syslog_section")
            return
        self._sender = SyslogSender(syslog)
        self._thread = threading.Thread(target=self._run, name="audit-forwarder", daemon=True)
        self._thread.start()
        log.info("event=audit_forwarding_on transport=%s host=%s port=%s",
                 syslog.transport, syslog.host, syslog.port)

    def stop(self) -> None:
        """Audit the application stop, forward what is left, then end the thread."""
        from mmbcd_node.serve import running_roles

        record_application_activity(self.sessions, False, running_roles())
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._drain()
            self._sender.close()

    def _drain(self) -> None:
        """Forward what is left (the application-stop event among it) before exiting."""
        try:
            while forward_pending(self.sessions, self._sender, self.identity):
                pass
        except Exception as exc:  # noqa: BLE001 - the cursor stays; the next start resends
            log.warning("event=audit_forward_failed during=stop error=%s", exc)

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                while forward_pending(self.sessions, self._sender, self.identity):
                    if self._stop.is_set():
                        return
                failing = False
            except ssl.SSLError as exc:
                if not failing:
                    self._tls_failure(exc)
                failing = True
            except Exception as exc:  # noqa: BLE001 - keep trying; the cursor did not move
                if not failing:
                    log.warning("event=audit_forward_failed error=%r", str(exc)[:200])
                failing = True
            self._stop.wait(self.interval if not failing else max(self.interval, 5.0))

    def _tls_failure(self, exc: ssl.SSLError) -> None:
        syslog = self.config.audit.syslog
        assert syslog is not None
        log.warning("event=audit_forward_tls_failed host=%s port=%s error=%r",
                    syslog.host, syslog.port, str(exc)[:200])
        try:
            with transaction(self.sessions) as session:
                record_event(session, "tls_failure", outcome="failure",
                             peer_address=syslog.host,
                             detail={"peer": f"{syslog.host}:{syslog.port}", "service": "syslog",
                                     "error": str(exc)[:300]})
        except Exception:  # noqa: BLE001
            log.exception("event=audit_write_failed action=tls_failure")
