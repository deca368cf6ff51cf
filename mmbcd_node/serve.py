"""``mmbcd-node serve``: run the node's roles in one process, or one role alone.

Each role is a long-running part (DICOM receiver, HL7 listener, scheduler, worker,
sender, HTTP). Roles talk only through SQL and the storage root, so any subset can
run in separate processes or on separate machines against the same database.
"""

from __future__ import annotations

import gc
import importlib
import signal
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import NodeConfig
from mmbcd_node.logs import get_logger
from mmbcd_node.ops.heartbeat import RoleBeats
from mmbcd_node.process import role_running, running_roles_reset

log = get_logger(__name__)


class Role(Protocol):
    """A part of the node that starts in the background and stops on request."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


RoleFactory = Callable[[NodeConfig, sessionmaker[Session]], Role]

# Role name -> the class that implements it, in start order. Classes are imported
# only when their role runs, so one role never loads another's stack (a receiver
# host needs no torch).
ROLE_CLASSES = {
    "dicom": "mmbcd_node.receive.scp:DicomRole",
    "hl7": "mmbcd_node.orders.listener:Hl7Role",
    "scheduler": "mmbcd_node.scheduler:SchedulerRole",
    "worker": "mmbcd_node.work.worker:WorkerRole",
    "sender": "mmbcd_node.send.sender:SenderRole",
    "http": "mmbcd_node.ops.http:HttpRole",
    "audit": "mmbcd_node.ops.audit_forwarder:AuditForwarderRole",
}
ROLE_ORDER = tuple(ROLE_CLASSES)


def role_factories() -> dict[str, RoleFactory]:
    """Role name -> factory ``(config, sessions) -> Role``; the import happens on call."""
    return {name: partial(_construct, target) for name, target in ROLE_CLASSES.items()}


def _construct(target: str, config: NodeConfig, sessions: sessionmaker[Session]) -> Role:
    module_name, _, class_name = target.partition(":")
    role_class = getattr(importlib.import_module(module_name), class_name)
    return role_class(config, sessions)  # type: ignore[no-any-return]


def _settle_heap() -> None:
    """Collect once, then move every object start-up created (modules, metadata,
    pools) out of the cyclic collector's reach.

    Left in, each full collection walks them all while no thread runs Python: a receive
    stalls mid-object every few dozen images. Frozen, a full collection walks only what
    was created since (the figures are in the README's Benchmarks section).
    """
    gc.collect()
    gc.freeze()


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
    beats: RoleBeats | None = None
    running_roles_reset()
    try:
        for name in names:
            role = factories[name](config, sessions)
            role.start()
            started.append(role)
            role_running(name)
            log.info("role_started", role=name)
        beats = RoleBeats(sessions, started, config.storage.root, config.worker.heartbeat_seconds)
        beats.start()
        _settle_heap()
        stop.wait()
    finally:
        for role in reversed(started):
            try:
                role.stop()
            except Exception:
                log.exception("role_stop_failed", role=role.name)
        if beats is not None:
            beats.stop()
