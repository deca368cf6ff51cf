"""``mmbcd-node serve``: run the node's roles in one process, or one role alone.

Each role is a long-running part (DICOM receiver, HL7 listener, scheduler, worker,
sender, HTTP). Roles talk only through SQL and the storage root, so any subset can
run in separate processes or on separate machines against the same database.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import NodeConfig

log = logging.getLogger(__name__)


class Role(Protocol):
    """A part of the node that starts in the background and stops on request."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


RoleFactory = Callable[[NodeConfig, sessionmaker[Session]], Role]
ROLE_ORDER = ("dicom", "hl7", "scheduler", "worker", "sender", "http", "audit")


def role_factories() -> dict[str, RoleFactory]:
    """Role name -> factory; imported lazily so one role never loads another's stack."""
    factories: dict[str, RoleFactory] = {}

    def dicom(config: NodeConfig, sessions: sessionmaker[Session]) -> Role:
        from mmbcd_node.receive.scp import DicomRole

        return DicomRole(config, sessions)

    def scheduler(config: NodeConfig, sessions: sessionmaker[Session]) -> Role:
        from mmbcd_node.match.scheduler import SchedulerRole

        return SchedulerRole(config, sessions)

    def hl7(config: NodeConfig, sessions: sessionmaker[Session]) -> Role:
        from mmbcd_node.orders.listener import Hl7Role

        return Hl7Role(config, sessions)

    def http(config: NodeConfig, sessions: sessionmaker[Session]) -> Role:
        from mmbcd_node.ops.http import HttpRole

        return HttpRole(config, sessions)

    def worker(config: NodeConfig, sessions: sessionmaker[Session]) -> Role:
        from mmbcd_node.work.worker import WorkerRole

        return WorkerRole(config, sessions)

    def sender(config: NodeConfig, sessions: sessionmaker[Session]) -> Role:
        from mmbcd_node.send.sender import SenderRole

        return SenderRole(config, sessions)

    def audit(config: NodeConfig, sessions: sessionmaker[Session]) -> Role:
        from mmbcd_node.ops.audit_forwarder import AuditForwarderRole

        return AuditForwarderRole(config, sessions)

    factories["http"] = http
    factories["audit"] = audit
    factories["dicom"] = dicom
    factories["worker"] = worker
    factories["sender"] = sender
    factories["scheduler"] = scheduler
    factories["hl7"] = hl7
    return factories


_running: list[str] = []


def running_roles() -> tuple[str, ...]:
    """The roles ``run_roles`` has started in this process (``/healthz`` checks these)."""
    return tuple(_running)


def run_roles(config: NodeConfig, sessions: sessionmaker[Session], names: Sequence[str],
              stop_event: threading.Event | None = None) -> None:
    """Start the named roles, block until SIGINT/SIGTERM (or ``stop_event``), stop them."""
    factories = role_factories()
    unknown = [n for n in names if n not in factories]
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(unknown)}; known: {', '.join(factories)}")
    stop = stop_event or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    started: list[Role] = []
    _running.clear()
    try:
        for name in names:
            role = factories[name](config, sessions)
            role.start()
            started.append(role)
            _running.append(name)
            log.info("event=role_started role=%s", name)
        stop.wait()
    finally:
        for role in reversed(started):
            try:
                role.stop()
            except Exception:
                log.exception("event=role_stop_failed role=%s", role.name)
