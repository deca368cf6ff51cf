"""The receiver's listening socket: pynetdicom's association server, read faster and
with the TLS handshake off the accept loop.

pynetdicom reads a PDU in 4 KiB ``recv`` calls and, whenever the socket is momentarily
empty, sleeps a millisecond before looking again; at mammography sizes (27 MB for a
4096 x 3328 16-bit image, 128 KiB PDUs) those costs bound the throughput. ``ReceiverSocket``
reads each PDU with one ``recv_into`` and waits for data in ``select`` instead of
sleeping, so it wakes as soon as bytes arrive. ``ReceiverDUL`` receives the P-DATA-TF
PDUs that only continue the data set of a C-STORE being received from the socket
straight into the file's block buffers (no copy through a PDU buffer), skipping the
per-PDU objects, events and queues that pynetdicom builds for them (about 200 such
PDUs make one mammogram); every other PDU, and the one that ends the data set, takes
pynetdicom's own path.

pynetdicom also performs the TLS handshake inside the accept loop, where a failure is
dropped without a trace and a silent client holds up every other connection.
``ReceiverServer`` only wraps the socket there and completes the handshake on the
connection's own thread, bounded by ``acse_timeout``; a failed handshake is reported to
``on_tls_failure`` (the role audits it) and the connection closed.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from typing import Any, cast

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import (
    AssociationSocket,
    RequestHandler,
    ThreadedAssociationServer,
)
from pynetdicom.utils import make_target

from mmbcd_node.receive.incoming import DigestingFile

log = logging.getLogger(__name__)

# How long the reactor blocks waiting for data before it checks for outgoing
# primitives again (a C-STORE response waits at most this long to be sent).
READY_WAIT = 0.0005
# Room in the kernel for data that arrives while the reactor writes to disk.
RECEIVE_BUFFER = 4 << 20

TlsFailureHandler = Callable[[str, str], None]

P_DATA_TF = 0x04
PDU_TYPES = range(0x01, 0x08)
DATA_SET_FRAGMENT = 0x00  # PS3.8 E.2 message control header: data set, not the last


class ReceiverSocket(AssociationSocket):
    """An ``AssociationSocket`` that reads whole PDUs in one call and waits in ``select``."""

    @property
    def ready(self) -> bool:
        """True when data can be read; blocks up to ``READY_WAIT`` for it to arrive."""
        sock = self.socket
        if sock is None or self._is_connected is False:
            return False
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        try:
            readable, _, _ = select.select([sock], [], [], READY_WAIT)
        except (OSError, ValueError):
            self.event_queue.put("Evt17")  # transport connection closed
            return False
        return bool(readable)

    def recv(self, nr_bytes: int) -> bytearray:
        """Read ``nr_bytes`` (fewer only when the peer closes the connection)."""
        data = bytearray(nr_bytes)
        received = self.recv_into(memoryview(data))
        del data[received:]
        return data

    def recv_into(self, view: memoryview) -> int:
        """Fill ``view``; return the bytes read (fewer only when the peer closes)."""
        sock = self.socket
        assert sock is not None
        wanted = len(view)
        received = 0
        # MSG_WAITALL lets the kernel gather a whole PDU; TLS sockets take no flags.
        flags = 0 if isinstance(sock, ssl.SSLSocket) else socket.MSG_WAITALL
        while received < wanted:
            count = sock.recv_into(view[received:], wanted - received, flags)
            if not count:
                break
            received += count
        return received


class ReceiverDUL(DULServiceProvider):
    """pynetdicom's DUL provider with a direct path for data set fragments."""

    def _read_pdu_data(self) -> None:
        # Fragments written directly create no event, and the reactor sleeps after a
        # loop without one: keep reading while fragments follow and nothing waits to
        # be sent (an A-ABORT, say) or stops the provider.
        while (self._read_one_pdu() and not self._kill_thread
               and self.to_provider_queue.empty() and self.socket is not None
               and self.socket.ready):
            pass

    def _read_one_pdu(self) -> bool:
        """Read one PDU; True when it was data set fragments written directly."""
        # As DULServiceProvider._read_pdu_data (PS3.8 9.3.1: type, reserved, length),
        # with the fragment paths in between.
        sock = cast(ReceiverSocket, self.socket)  # switched over in _create_association
        try:
            header = sock.recv(6)
            if len(header) < 6:
                raise ConnectionError("connection closed within a PDU header")
            pdu_type, _, length = struct.unpack(">BBL", header)
            if pdu_type not in PDU_TYPES:
                log.error("event=unknown_pdu type=0x%02X", pdu_type)
                self.event_queue.put("Evt19")  # unrecognised or invalid PDU
                return False
            received = 0
            body = self._body(length)
            if pdu_type == P_DATA_TF and length >= 6:
                received = sock.recv_into(body[:6])
                if received == 6 and self._receive_fragment(sock, body[:6], length):
                    return True
            if received + sock.recv_into(body[received:]) != length:
                raise ConnectionError("connection closed within a PDU")
        except (OSError, TimeoutError) as exc:
            log.info("event=association_connection_lost error=%r", str(exc))
            self.event_queue.put("Evt17")  # transport connection closed
            return False
        if pdu_type == P_DATA_TF and self._write_fragments(body):
            return True
        try:
            pdu, event = self._decode_pdu(header + body.tobytes())
        except Exception:
            log.exception("event=pdu_decode_failed")
            self.event_queue.put("Evt19")
            return False
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)
        return False

    def _body(self, length: int) -> memoryview:
        """A view of ``length`` bytes of this association's PDU buffer, reused for every
        PDU (a fresh 128 KiB buffer per PDU costs an allocation and a memset)."""
        buffer: bytearray | None = getattr(self, "_pdu_buffer", None)
        if buffer is None or len(buffer) < length:
            buffer = bytearray(length)
            self._pdu_buffer = buffer
        return memoryview(buffer)[:length]

    def _fragment_target(self) -> tuple[C_STORE_RQ, DigestingFile] | None:
        """The C-STORE being received and its file, when data set fragments may go
        straight into it: nothing else is waiting in the state machine."""
        if (self.state_machine.current_state != "Sta6" or not self.event_queue.empty()
                or not self._recv_pdu.empty()):
            return None
        message = self.assoc.dimse.message
        target = getattr(message, "_data_set_file", None)
        if not isinstance(message, C_STORE_RQ) or not isinstance(target, DigestingFile):
            return None
        return message, target

    def _receive_fragment(self, sock: ReceiverSocket, item: memoryview, length: int) -> bool:
        """Receive a P-DATA-TF of ``length`` bytes whose first PDV item header (``item``)
        has been read: when it is one data set fragment, not the last, of the C-STORE
        being received, its value goes from the socket straight into the file; False
        (nothing more read) if not."""
        found = self._fragment_target()
        if found is None:
            return False
        message, target = found
        (item_length,) = struct.unpack_from(">L", item)
        if (item_length + 4 != length or item_length < 2 or item[4] != message.context_id
                or item[5] != DATA_SET_FRAGMENT):
            return False
        target.receive_fragment(sock.recv_into, item_length - 2)
        return True

    def _write_fragments(self, body: memoryview) -> bool:
        """Write the PDU's PDVs into the C-STORE's file when every one is a data set
        fragment that is not the last, on the message's presentation context, and
        nothing else is waiting in the state machine; False (nothing written) if not."""
        found = self._fragment_target()
        if found is None:
            return False
        message, target = found
        fragments = []
        offset, end = 0, len(body)
        while offset < end:
            if end - offset < 6:
                return False
            (item_length,) = struct.unpack_from(">L", body, offset)
            item_end = offset + 4 + item_length
            if item_length < 2 or item_end > end:
                return False
            if body[offset + 4] != message.context_id or body[offset + 5] != DATA_SET_FRAGMENT:
                return False
            fragments.append(body[offset + 6:item_end])
            offset = item_end
        for fragment in fragments:
            target.write_fragment(fragment)
        return True


class ReceiverRequestHandler(RequestHandler):
    """Creates each acceptor association with a ``ReceiverSocket``."""

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        # pynetdicom builds the socket and the DUL provider inside the association; the
        # subclasses only change how they read, so the instances are switched over
        # rather than rebuilt (a second socket would announce the connection to the
        # state machine twice).
        assoc.dul.socket.__class__ = ReceiverSocket
        assoc.dul.__class__ = ReceiverDUL
        raw = self.request
        try:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        except OSError:
            log.debug("event=rcvbuf_not_set")
        return assoc


class ReceiverServer(ThreadedAssociationServer):
    """A threaded association server whose TLS handshakes run per connection."""

    def __init__(self, *args: Any, tls: ssl.SSLContext | None = None,
                 on_tls_failure: TlsFailureHandler | None = None,
                 handshake_timeout: float | None = 30.0, **kwargs: Any) -> None:
        kwargs["request_handler"] = ReceiverRequestHandler
        super().__init__(*args, **kwargs)
        self.tls = tls
        self.on_tls_failure = on_tls_failure
        self.handshake_timeout = handshake_timeout

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        sock, address = self.socket.accept()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False)
        return sock, address

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket) and not self._handshake(request, client_address):
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)

    def _handshake(self, sock: ssl.SSLSocket, client_address: Any) -> bool:
        previous = sock.gettimeout()
        sock.settimeout(self.handshake_timeout)
        address = str(client_address[0]) if client_address else ""
        try:
            sock.do_handshake()
        except (ssl.SSLEOFError, ConnectionResetError):
            # Closed before any TLS bytes: a port probe, not a failed authentication.
            log.info("event=connection_closed_before_tls address=%s", address)
            return False
        except (OSError, ValueError) as exc:  # ssl.SSLError and timeouts are OSErrors
            reason = _tls_reason(exc)
            log.warning("event=tls_failure address=%s reason=%r", address, reason)
            if self.on_tls_failure is not None:
                self.on_tls_failure(address, reason)
            return False
        sock.settimeout(previous)
        return True


def start_receiver_server(ae: AE, address: tuple[str, int], *, evt_handlers: list[Any],
                          tls: ssl.SSLContext | None,
                          on_tls_failure: TlsFailureHandler | None) -> ReceiverServer:
    """Start a ``ReceiverServer`` for ``ae`` on ``address`` in a background thread.

    Does what ``AE.start_server(block=False)`` does, with our server class; the
    server is registered with the AE, so ``ae.shutdown()`` stops it.
    """
    server = ae.make_server(address, evt_handlers=evt_handlers, server_class=ReceiverServer,
                            tls=tls, on_tls_failure=on_tls_failure,
                            handshake_timeout=ae.acse_timeout)
    assert isinstance(server, ReceiverServer)
    thread = threading.Thread(target=make_target(server.serve_forever),
                              name="AcceptorServer@receiver", daemon=True)
    thread.start()
    ae._servers.append(server)  # what start_server does; shutdown() removes it again
    return server


def _tls_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"{exc.reason or type(exc).__name__}: {exc.verify_message}" \
            if isinstance(exc, ssl.SSLCertVerificationError) else str(exc.reason or exc)
    if isinstance(exc, TimeoutError):
        return "handshake timed out"
    return f"{type(exc).__name__}: {exc}"
