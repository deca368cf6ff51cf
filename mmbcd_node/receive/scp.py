"""The DICOM receiver role: a pynetdicom Verification and Storage SCP.

Handlers are thin: association requests go to ``Admission``, received objects to
``InstanceStore``; the handlers only turn their answers into DICOM (an A-ASSOCIATE-RJ,
a C-STORE status) and write the association audit events.

Objects are received straight into a file (``STORE_RECV_CHUNKED_DATASET``), so a
500 MB tomosynthesis object never sits in memory, and every storage SOP class is
accepted, private ones included (``UNRESTRICTED_STORAGE_SERVICE``), so a whole-study
push never fails. Both are process-wide pynetdicom settings.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any, cast

from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import NodeConfig
from mmbcd_node.db.audit import record_event
from mmbcd_node.db.session import transaction
from mmbcd_node.logs import get_logger
from mmbcd_node.receive.admission import Admission, Rejection
from mmbcd_node.receive.catalogue import Peer
from mmbcd_node.receive.header import ReceiveError
from mmbcd_node.receive.incoming import receive_into
from mmbcd_node.receive.memory_budget import check_memory_budget
from mmbcd_node.receive.store import InstanceStore, clear_incoming, incoming_dir
from mmbcd_node.receive.transport import (
    ConnectionGate,
    ReceiverServer,
    connection_address,
    start_receiver_server,
)
from mmbcd_node.send.commitment import bind_commitment_reports
from mmbcd_node.tls import server_context

log = get_logger(__name__)

VERIFICATION = "1.2.840.10008.1.1"  # Verification SOP Class (C-ECHO)
UNABLE_TO_PROCESS = 0xC211  # failure status pynetdicom also answers for a handler's defect
_PYNETDICOM_REJECTIONS = {(0x02, 0x03, 0x02): "association limit (max_associations) reached"}


class DicomRole:
    """Role ``dicom``: listens on ``[dicom] host:port`` until stopped."""

    name = "dicom"

    def __init__(self, config: NodeConfig, sessions: sessionmaker[Session]) -> None:
        self.config = config
        self.sessions = sessions
        root = Path(config.storage.root)
        self.memory = check_memory_budget(config.dicom)
        self.admission = Admission(config.dicom, root)
        self.store = InstanceStore(root, config.dicom.uid_root, sessions,
                                   min_free_bytes=config.dicom.min_free_bytes)
        self.ae: AE | None = None
        self.server: ReceiverServer | None = None
        # Associations admitted by _on_requested and not yet closed: what
        # max_associations caps (pynetdicom's own count includes connections not
        # yet admitted, which the gate caps).
        self._admitted: set[Association] = set()
        self._admitted_lock = threading.Lock()

    def start(self) -> None:
        """Clear partial files of an earlier run and start listening (non-blocking)."""
        dicom = self.config.dicom
        root = Path(self.config.storage.root)
        receiver = receiver_name(dicom.port)
        removed = clear_incoming(root, receiver)
        if removed:
            log.warning("incoming_cleared", files=removed)
        receive_into(incoming_dir(root, receiver), on_head=self.store.prepare)
        ae = AE(ae_title=dicom.ae_title)
        # The called AE title is checked (and audited) by Admission.
        ae.require_called_aet = False
        # pynetdicom counts every connection's thread; connections not yet admitted
        # have their own cap (the gate), and _on_requested caps associations.
        ae.maximum_associations = dicom.max_associations + dicom.max_unauthenticated
        ae.maximum_pdu_size = dicom.max_pdu_size
        ae.acse_timeout = dicom.acse_timeout
        ae.dimse_timeout = dicom.dimse_timeout
        ae.network_timeout = dicom.network_timeout
        ae.add_supported_context(VERIFICATION)
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_CONN_CLOSE, self._on_closed),
            (evt.EVT_C_ECHO, _on_echo),
            (evt.EVT_C_STORE, self._on_store),
        ]
        # Storage commitment reports (N-EVENT-REPORT) answering the sender's requests.
        handlers += bind_commitment_reports(ae, self.sessions)
        self.ae = ae
        self.server = start_receiver_server(
            ae, (dicom.host, dicom.port), evt_handlers=handlers,
            tls=server_context(dicom.tls, "dicom.tls"),
            on_tls_failure=self._on_tls_failure,
            gate=ConnectionGate(dicom.max_unauthenticated, dicom.max_unauthenticated_per_peer))
        log.info("dicom_listening", ae_title=dicom.ae_title, host=dicom.host, port=dicom.port,
                 tls=dicom.tls.enabled, worst_case_memory_mib=self.memory.total >> 20)

    def stop(self) -> None:
        """Abort associations in flight and close the listener.

        A peer loses only objects not yet answered, which it sends again; waiting
        for idle associations instead could hold a restart for ``network_timeout``.
        """
        if self.ae is not None:
            self.ae.shutdown()
            self.ae = None
            self.server = None

    # -- handlers -------------------------------------------------------------------------

    def _on_requested(self, event: evt.Event) -> None:
        peer = _peer(event)
        with self._admitted_lock:
            # Associations whose thread has ended count no more, whether or not their
            # connection's close was reported. (Kept as objects, not ids: the id of an
            # ended association is soon reused by a new one.)
            self._admitted = {assoc for assoc in self._admitted if assoc.is_alive()}
            rejection = self.admission.check(
                called_ae=peer.called_ae, calling_ae=peer.calling_ae, address=peer.address,
                established=len(self._admitted))
            if rejection is None:  # counted from now until its connection closes
                self._admitted.add(event.assoc)
                return
        self._audit_rejection(peer, rejection)
        event.assoc.acse.send_reject(rejection.result, rejection.source, rejection.diagnostic)
        # As pynetdicom does after its own rejections: wait for the A-ASSOCIATE-RJ to
        # go out and the peer to close, then end the association thread.
        event.assoc.kill()

    def _on_closed(self, event: evt.Event) -> None:
        with self._admitted_lock:
            self._admitted.discard(event.assoc)

    def _on_accepted(self, event: evt.Event) -> None:
        peer = _peer(event)
        if self.server is not None:  # admitted: no longer waiting at the gate
            requestor = event.assoc.requestor
            self.server.gate.leave(connection_address((requestor.address, requestor.port)))
        contexts = len(event.assoc.accepted_contexts)
        self._audit("association_accepted", peer, detail={
            "contexts": contexts, "tls": self.config.dicom.tls.enabled})
        log.info("association_accepted", calling_ae=peer.calling_ae, address=peer.address,
                 contexts=contexts)

    def _on_rejected(self, event: evt.Event) -> None:
        # Rejections made by pynetdicom itself (the association cap); ours are audited
        # where they are made.
        primitive = event.assoc.acceptor.primitive
        if primitive is None:
            return
        triple = (int(primitive.result or 0), int(primitive.result_source or 0),
                  int(primitive.diagnostic or 0))
        reason = _PYNETDICOM_REJECTIONS.get(triple, f"rejected {triple}")
        self._audit_rejection(_peer(event), Rejection(*triple, reason=reason))

    def _on_tls_failure(self, address: str, reason: str) -> None:
        # No association exists yet: the peer is known by its address alone.
        peer = Peer(calling_ae="", called_ae="", address=address)
        self._audit("tls_failure", peer, outcome="failure", detail={
            "service": "dicom", "port": self.config.dicom.port, "error": reason[:300]})

    def _on_store(self, event: evt.Event) -> int:
        request = cast(C_STORE, event.request)
        peer = _peer(event)
        try:
            self.store.receive(Path(event.dataset_path),
                               sop_class_uid=str(request.AffectedSOPClassUID),
                               sop_instance_uid=str(request.AffectedSOPInstanceUID), peer=peer)
        except ReceiveError as exc:
            log.warning("store_refused", status=f"0x{exc.status:04X}",
                        sop_instance_uid=request.AffectedSOPInstanceUID, calling_ae=peer.calling_ae,
                        reason=str(exc))
            self._audit("instance_rejected", peer, outcome="failure",
                        sop_instance_uid=str(request.AffectedSOPInstanceUID or "")[:64] or None,
                        detail={"status": f"0x{exc.status:04X}", "reason": str(exc)})
            return exc.status
        except Exception:
            # A defect in the node, not in the object: said as such (0xC211, "unable to
            # process"), logged with its traceback, and nothing left behind.
            log.exception("store_failed", sop_instance_uid=request.AffectedSOPInstanceUID,
                          calling_ae=peer.calling_ae)
            Path(event.dataset_path).unlink(missing_ok=True)
            return UNABLE_TO_PROCESS
        return 0x0000

    # -- audit ----------------------------------------------------------------------------

    def _audit_rejection(self, peer: Peer, rejection: Rejection) -> None:
        log.warning("association_rejected", calling_ae=peer.calling_ae, address=peer.address,
                    reason=rejection.reason)
        self._audit("association_rejected", peer, outcome="failure", detail={
            "reason": rejection.reason, "result": rejection.result,
            "source": rejection.source, "diagnostic": rejection.diagnostic})

    def _audit(self, action: str, peer: Peer, *, outcome: str = "success",
               detail: dict[str, Any], **fields: Any) -> None:
        try:
            with transaction(self.sessions) as session:
                record_event(session, action, outcome=outcome, calling_ae=peer.calling_ae or None,
                             called_ae=peer.called_ae or None, peer_address=peer.address,
                             detail=detail, **fields)
        except SQLAlchemyError:
            log.exception("audit_write_failed", action=action)


def receiver_name(port: int) -> str:
    """This receiver's name among those sharing a storage root: host and port."""
    return f"{socket.gethostname()}-{port}"


def _on_echo(event: evt.Event) -> int:
    return 0x0000


def _peer(event: evt.Event) -> Peer:
    assoc = event.assoc
    primitive = assoc.requestor.primitive
    # The A-ASSOCIATE-RQ is the source: requestor.ae_title is only set after negotiation.
    called = primitive.called_ae_title if primitive is not None else assoc.acceptor.ae_title
    calling = primitive.calling_ae_title if primitive is not None else assoc.requestor.ae_title
    return Peer(calling_ae=str(calling).strip()[:16],
                called_ae=str(called).strip()[:16], address=str(assoc.requestor.address))
