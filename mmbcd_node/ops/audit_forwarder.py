"""The ``audit`` role: forwards the audit trail to a syslog collector as DICOM audit messages.

The forwarder tails ``audit_events`` by id. It reads the next batch after the cursor
(``audit_forward_cursors``), sends its messages, and only then moves the cursor, in a
conditional update: a crash or a collector that is down means the batch is sent again
later, never skipped (at-least-once). A lease on the cursor row lets one process at a
time forward, however many run the role.
Every stage keeps writing only its own audit rows; nothing else needs to know about
syslog.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import NodeConfig
from mmbcd_node.db.audit import record_event
from mmbcd_node.db.models import AuditEvent, utcnow
from mmbcd_node.db.ops_models import AuditForwardCursor
from mmbcd_node.db.session import transaction
from mmbcd_node.logs import get_logger
from mmbcd_node.ops.activity import record_application_activity
from mmbcd_node.ops.audit_messages import NodeIdentity, group_key, messages_for
from mmbcd_node.ops.syslog import SyslogSender
from mmbcd_node.process import running_roles

log = get_logger(__name__)

CURSOR = "syslog"


def _claim(session: Session, owner: str, lease_seconds: float) -> int | None:
    """Take (or extend) the forwarding lease; the cursor position, or ``None`` if taken."""
    now = utcnow()
    cursor = session.get(AuditForwardCursor, CURSOR)
    if cursor is None:
        session.add(AuditForwardCursor(name=CURSOR, last_event_id=0, lease_owner=owner,
                                       lease_expires_at=now + timedelta(seconds=lease_seconds)))
        session.flush()
        return 0
    taken = session.execute(
        update(AuditForwardCursor)
        .where(AuditForwardCursor.name == CURSOR,
               or_(AuditForwardCursor.lease_owner.is_(None),
                   AuditForwardCursor.lease_owner == owner,
                   AuditForwardCursor.lease_expires_at < now))
        .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_seconds))
        .returning(AuditForwardCursor.last_event_id)
        .execution_options(synchronize_session=False)).scalar_one_or_none()
    return taken


def release_lease(sessions: sessionmaker[Session], owner: str) -> None:
    """Give the forwarding lease up (on stop), so another process takes over at once."""
    with transaction(sessions) as session:
        session.execute(update(AuditForwardCursor)
                        .where(AuditForwardCursor.name == CURSOR,
                               AuditForwardCursor.lease_owner == owner)
                        .values(lease_owner=None, lease_expires_at=None)
                        .execution_options(synchronize_session=False))


def settled(events: list[AuditEvent], quiet_since: datetime) -> list[AuditEvent]:
    """The events up to the first image whose transfer may still be going on.

    Received images become one DICOM Instances Transferred message per peer and study;
    while that peer has sent an image of that study after ``quiet_since``, the
    association is taken to be still sending, and forwarding stops before its images.
    """
    busy = {group_key(e) for e in events if e.action == "instance_stored"
            and e.occurred_at > quiet_since}
    for index, event in enumerate(events):
        if event.action == "instance_stored" and group_key(event) in busy:
            return events[:index]
    return events


def forward_pending(sessions: sessionmaker[Session], sender: SyslogSender,
                    identity: NodeIdentity, *, owner: str = "", batch: int = 200,
                    lease_seconds: float = 60.0, quiet_seconds: float = 2.0) -> int:
    """Send the audit events after the cursor (one batch); return how many were consumed.

    Images still arriving (within ``quiet_seconds``) wait for the next call (``settled``).
    Only the holder of the forwarding lease sends (``owner``, default this process);
    another process gets 0 until the lease is released or runs out. Raises ``OSError``
    (``ssl.SSLError`` included) when the collector cannot be reached; the cursor then
    stays where it was.
    """
    owner = owner or f"audit@{socket.gethostname()}:{os.getpid()}"
    with transaction(sessions) as session:
        last = _claim(session, owner, lease_seconds)
        if last is None:
            return 0
        events = session.execute(select(AuditEvent).where(AuditEvent.id > last)
                                 .order_by(AuditEvent.id).limit(batch)).scalars().all()
        session.expunge_all()
    events = settled(list(events), utcnow() - timedelta(seconds=quiet_seconds))
    if not events:
        return 0
    messages = messages_for(events, identity)
    if messages:
        sender.send(messages)
    with transaction(sessions) as session:
        moved = session.execute(
            update(AuditForwardCursor)
            .where(AuditForwardCursor.name == CURSOR, AuditForwardCursor.last_event_id == last,
                   AuditForwardCursor.lease_owner == owner)
            .values(last_event_id=events[-1].id, forwarded_at=utcnow())
            .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    if not moved:
        log.warning("audit_forward_lease_lost", after_id=last, owner=owner)
        return 0
    log.debug("audit_forwarded", events=len(events), messages=len(messages), last_id=events[-1].id)
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
        self.owner = f"audit@{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Audit the application start; forward in the background when syslog is configured."""
        record_application_activity(self.sessions, True, running_roles())
        syslog = self.config.audit.syslog
        if syslog is None:
            log.info("audit_forwarding_off", reason="no_audit_syslog_section")
            return
        self._sender = SyslogSender(syslog)
        self._thread = threading.Thread(target=self._run, name="audit-forwarder", daemon=True)
        self._thread.start()
        log.info("audit_forwarding_on", transport=syslog.transport, host=syslog.host,
                 port=syslog.port)

    def stop(self) -> None:
        """Audit the application stop, forward what is left, then end the thread."""
        record_application_activity(self.sessions, False, running_roles())
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._drain()
            self._sender.close()
            try:
                release_lease(self.sessions, self.owner)
            except Exception:  # noqa: BLE001 - the lease then simply runs out
                log.warning("audit_lease_release_failed", owner=self.owner)

    def _drain(self) -> None:
        """Forward what is left (the application-stop event among it) before exiting."""
        try:
            while forward_pending(self.sessions, self._sender, self.identity, owner=self.owner):
                pass
        except Exception as exc:  # noqa: BLE001 - the cursor stays; the next start resends
            log.warning("audit_forward_failed", during="stop", error=str(exc))

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                while forward_pending(self.sessions, self._sender, self.identity,
                                      owner=self.owner):
                    if self._stop.is_set():
                        return
                failing = False
            except ssl.SSLError as exc:
                if not failing:
                    self._tls_failure(exc)
                failing = True
            except Exception as exc:  # noqa: BLE001 - keep trying; the cursor did not move
                if not failing:
                    log.warning("audit_forward_failed", error=str(exc)[:200])
                failing = True
            self._stop.wait(self.interval if not failing else max(self.interval, 5.0))

    def _tls_failure(self, exc: ssl.SSLError) -> None:
        syslog = self.config.audit.syslog
        assert syslog is not None
        log.warning("audit_forward_tls_failed", host=syslog.host, port=syslog.port,
                    error=str(exc)[:200])
        try:
            with transaction(self.sessions) as session:
                record_event(session, "tls_failure", outcome="failure",
                             peer_address=syslog.host,
                             detail={"peer": f"{syslog.host}:{syslog.port}", "service": "syslog",
                                     "error": str(exc)[:300]})
        except Exception:  # noqa: BLE001
            log.exception("audit_write_failed", action="tls_failure")
