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

Whatever a peer announces, memory follows what it sends, and every PDU has a deadline:

- before the association is accepted only an A-ASSOCIATE-RQ may come; one longer than
  ``MAX_ASSOCIATE_RQ`` (user identity included), or any other PDU but P-DATA-TF longer
  than ``MAX_CONTROL_PDU``, is answered A-ABORT and the connection closed at once,
  before anything is allocated for it;
- after it, a P-DATA-TF longer than the Maximum Length Received the node announced
  (``[dicom] max_pdu_size``) is answered A-ABORT in the same way; its body is read
  into a buffer that grows with the bytes that have arrived (at most ``GROWTH_STEP``,
  or twice them; data set fragments go straight into the file);
- each PDU must arrive whole within ``acse_timeout`` (before the association is
  accepted) or ``network_timeout`` (after), measured from its first byte: a peer
  trickling bytes does not reset it. The connection is closed when it runs out.

pynetdicom also performs the TLS handshake inside the accept loop, where a failure is
dropped without a trace and a silent client holds up every other connection.
``ReceiverServer`` only wraps the socket there and completes the handshake on the
connection's own thread, bounded by ``acse_timeout``; a failed handshake is reported to
``on_tls_failure`` (the role audits it) and the connection closed.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.transport import (
    AssociationSocket,
    RequestHandler,
    ThreadedAssociationServer,
)
from pynetdicom.utils import make_target

from mmbcd_node.logs import get_logger
from mmbcd_node.receive.incoming import DigestingFile

log = get_logger(__name__)

# How long the reactor blocks waiting for data before it checks for outgoing
# primitives again (a C-STORE response waits at most this long to be sent).
READY_WAIT = 0.0005
# Room in the kernel for data that arrives while the reactor writes to disk.
RECEIVE_BUFFER = 4 << 20

TlsFailureHandler = Callable[[str, str], None]

P_DATA_TF = 0x04
PDU_TYPES = range(0x01, 0x08)
DATA_SET_FRAGMENT = 0x00  # PS3.8 E.2 message control header: data set, not the last

# PS3.8 9.2 states of an acceptor before its A-ASSOCIATE-AC is sent: the connection not
# yet taken in (Sta1), awaiting the A-ASSOCIATE-RQ (Sta2) or the node's answer (Sta3).
# The reactor that reads also sends the A-ASSOCIATE-AC, so a PDU read after it sees Sta6.
BEFORE_ASSOCIATION = frozenset({"Sta1", "Sta2", "Sta3"})
MAX_ASSOCIATE_RQ = 64 << 10
MAX_CONTROL_PDU = 64 << 10
GROWTH_STEP = 1 << 20
# A-ABORT, source 2 (service provider), reason 6 (invalid PDU parameter value).
ABORT_INVALID_PARAMETER = struct.pack(">BBLBBBB", 0x07, 0, 4, 0, 0, 0x02, 0x06)


class ProbeClosed(ConnectionError):
    """The peer closed the connection without sending a byte: a port probe."""


class PduDeadline(TimeoutError):
    """A PDU did not arrive whole within its deadline."""


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

    on_close: Callable[[], None] | None = None  # told once the connection is closed

    def close(self) -> None:
        super().close()
        if self.on_close is not None:
            self.on_close()

    def start_deadline(self, seconds: float | None) -> None:
        """Every read from now on must end within ``seconds`` (None or 0: no deadline)."""
        self._deadline = time.monotonic() + seconds if seconds else None

    def recv_into(self, view: memoryview) -> int:
        """Fill ``view``; return the bytes read (fewer only when the peer closes).

        Raises ``PduDeadline`` when the deadline of ``start_deadline`` passes first.
        """
        sock = self.socket
        assert sock is not None
        wanted = len(view)
        received = 0
        tls = isinstance(sock, ssl.SSLSocket)
        # MSG_WAITALL lets the kernel gather a whole PDU; TLS sockets take no flags.
        flags = 0 if tls else socket.MSG_WAITALL
        deadline: float | None = getattr(self, "_deadline", None)
        try:
            while received < wanted:
                if deadline is not None:
                    _arm_timeout(sock, deadline, tls)
                try:
                    count = sock.recv_into(view[received:], wanted - received, flags)
                except (BlockingIOError, TimeoutError):  # the timeout armed above ran out
                    continue
                if not count:
                    break
                received += count
        finally:
            if deadline is not None and tls:
                sock.settimeout(None)
        return received


def _arm_timeout(sock: socket.socket, deadline: float, tls: bool) -> None:
    """Let the next receive on ``sock`` block at most until ``deadline``; raise
    ``PduDeadline`` when it has passed. Plain sockets keep blocking mode (a kernel
    receive timeout, so MSG_WAITALL still gathers whole PDUs); TLS sockets get a
    Python timeout."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise PduDeadline("the PDU did not arrive whole within its deadline")
    if tls:
        sock.settimeout(remaining)
        return
    seconds = int(remaining)
    micros = max(int((remaining - seconds) * 1_000_000), 0 if seconds else 1)  # 0 = forever
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", seconds, micros))


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
        awaiting_request = self.state_machine.current_state in BEFORE_ASSOCIATION
        sock.start_deadline(self.assoc.acse_timeout if awaiting_request
                            else self.assoc.network_timeout)
        try:
            header = sock.recv(6)
            if not header and awaiting_request:
                raise ProbeClosed("connection closed before any byte (a port probe)")
            if len(header) < 6:
                raise ConnectionError("connection closed within a PDU header")
            pdu_type, _, length = struct.unpack(">BBL", header)
            if pdu_type not in PDU_TYPES:
                log.error("unknown_pdu", type=f"0x{pdu_type:02X}")
                self.event_queue.put("Evt19")  # unrecognised or invalid PDU
                return False
            limit = (MAX_ASSOCIATE_RQ if awaiting_request
                     else self.assoc.acceptor.maximum_length or None if pdu_type == P_DATA_TF
                     else MAX_CONTROL_PDU)
            if limit is not None and length > limit:
                self._refuse(sock, f"PDU type 0x{pdu_type:02X} of {length} bytes is over "
                                   f"the {limit} allowed here")
                return False
            item = bytearray(6)
            received = 0
            if pdu_type == P_DATA_TF and length >= 6:
                received = sock.recv_into(memoryview(item))
                if received == 6 and self._receive_fragment(sock, memoryview(item), length):
                    return True
            body = self._receive_body(sock, item[:received], length)
        except (OSError, TimeoutError) as exc:
            # A TCP health check (status, /healthz, a balancer) connects and closes.
            level = log.debug if isinstance(exc, ProbeClosed) else log.info
            level("association_connection_lost", error=str(exc))
            sock.close()  # Evt17, transport connection closed: the slot is free now
            return False
        finally:
            sock.start_deadline(None)
        if pdu_type == P_DATA_TF and self._write_fragments(body):
            return True
        try:
            pdu, event = self._decode_pdu(header + body.tobytes())
        except Exception:
            log.exception("pdu_decode_failed")
            self.event_queue.put("Evt19")
            return False
        if isinstance(pdu, A_ASSOCIATE_RQ):
            # pynetdicom converts the request when the state machine takes it, and a
            # value it refuses there (a presentation context ID that is not odd) ends
            # the connection without an answer: convert it here, and abort instead.
            try:
                pdu.to_primitive()
            except (ValueError, TypeError, AttributeError) as exc:
                self._refuse(sock, f"A-ASSOCIATE-RQ with an invalid parameter: {exc}")
                return False
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)
        return False

    def _receive_body(self, sock: ReceiverSocket, start: bytes | bytearray,
                      length: int) -> memoryview:
        """The PDU body of ``length`` bytes, ``start`` of it already read, in this
        association's PDU buffer (reused for every PDU: a fresh 128 KiB buffer per PDU
        costs an allocation and a memset). A new buffer holds at most ``GROWTH_STEP``, or
        twice the bytes received. Raises ``ConnectionError`` when the
        peer closes first."""
        buffer: bytearray = getattr(self, "_pdu_buffer", None) or bytearray()
        if len(buffer) < min(length, GROWTH_STEP):
            buffer = bytearray(min(length, GROWTH_STEP))
        received = len(start)
        buffer[:received] = start
        while received < length:
            if received == len(buffer):
                # Full: a fresh buffer twice as large (the old one may still be viewed
                # by the last PDU's consumers).
                grown = bytearray(min(length, 2 * received))
                grown[:received] = buffer
                buffer = grown
            end = min(length, len(buffer))
            received += sock.recv_into(memoryview(buffer)[received:end])
            if received < end:
                raise ConnectionError("connection closed within a PDU")
        self._pdu_buffer = buffer
        return memoryview(buffer)[:length]

    def _refuse(self, sock: ReceiverSocket, reason: str) -> None:
        """Answer A-ABORT and close the connection now (not after the ARTIM timer: the
        connection's slot is free at once)."""
        log.warning("pdu_refused", address=self.assoc.requestor.address, reason=reason)
        raw = sock.socket
        try:
            if raw is not None:
                raw.sendall(ABORT_INVALID_PARAMETER)
        except OSError:
            pass
        sock.close()  # Evt17: the state machine ends the association

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
        server = cast(ReceiverServer, self.server)
        address = connection_address(self.client_address)

        def closed() -> None:
            server.gate.leave(address)
            if not assoc.is_established:
                # The acceptor thread waits up to acse_timeout for an A-ASSOCIATE-RQ
                # that can no longer come, holding a slot of pynetdicom's own cap: wake
                # it now (None is its "timed out"), so thread and slot end with the
                # connection.
                assoc.dul.to_user_queue.put(None)  # type: ignore[arg-type]

        cast(ReceiverSocket, assoc.dul.socket).on_close = closed
        raw = self.request
        try:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        except OSError:
            log.debug("rcvbuf_not_set")
        return assoc


class ConnectionGate:
    """Connections not admitted yet (no A-ASSOCIATE-RQ accepted): at most ``per_peer``
    from one address, and ``total`` in all, each known by ``connection_address``. A
    connection ``leave``s when its association is accepted or it closes, whichever
    comes first; leaving twice is harmless.

    When ``total`` are waiting, a new connection takes the place of the one that has
    waited longest, if that one has waited ``EVICT_AFTER`` seconds or more (a modality
    sends its A-ASSOCIATE-RQ within milliseconds of connecting; a peer still silent or
    trickling after a second is the likelier attacker): its socket is shut down. So
    peers holding connections open from several addresses cannot keep a modality out.
    """

    EVICT_AFTER = 1.0

    def __init__(self, total: int, per_peer: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.per_peer = per_peer
        self._clock = clock
        self._waiting: dict[tuple[str, int], tuple[float, socket.socket | None]] = {}
        self._lock = threading.Lock()

    def enter(self, address: tuple[str, int], sock: socket.socket | None = None) -> bool:
        """Let the connection from ``address`` (IP, port) wait for admission, if room."""
        evicted: tuple[tuple[str, int], float, socket.socket | None] | None = None
        with self._lock:
            now = self._clock()
            from_peer = sum(1 for other in self._waiting if other[0] == address[0])
            if from_peer >= self.per_peer:
                return False
            if len(self._waiting) >= self.total:
                oldest = min(self._waiting, key=lambda key: self._waiting[key][0])
                since, oldest_sock = self._waiting[oldest]
                if now - since < self.EVICT_AFTER:
                    return False
                del self._waiting[oldest]
                evicted = (oldest, now - since, oldest_sock)
            self._waiting[address] = (now, sock)
        if evicted is not None:
            old_address, waited, old_sock = evicted
            log.warning("connection_evicted", address=old_address[0], waited_s=round(waited, 1),
                        reason="no A-ASSOCIATE-RQ while the gate was full")
            if old_sock is not None:
                with contextlib.suppress(OSError):  # closed already
                    old_sock.shutdown(socket.SHUT_RDWR)  # its thread sees the close
        return True

    def leave(self, address: tuple[str, int]) -> None:
        with self._lock:
            self._waiting.pop(address, None)

    @property
    def waiting(self) -> int:
        return len(self._waiting)


class ReceiverServer(ThreadedAssociationServer):
    """A threaded association server whose TLS handshakes run per connection, and whose
    connections wait for admission through a ``ConnectionGate``."""

    def __init__(self, *args: Any, tls: ssl.SSLContext | None = None,
                 on_tls_failure: TlsFailureHandler | None = None,
                 handshake_timeout: float | None = 30.0, gate: ConnectionGate,
                 **kwargs: Any) -> None:
        kwargs["request_handler"] = ReceiverRequestHandler
        super().__init__(*args, **kwargs)
        self.tls = tls
        self.on_tls_failure = on_tls_failure
        self.handshake_timeout = handshake_timeout
        self.gate = gate

    def verify_request(self, request: Any, client_address: Any) -> bool:
        # On the accept loop, before a thread exists: over the gate's limits the
        # connection is closed at once.
        address = connection_address(client_address)
        if self.gate.enter(address, request if isinstance(request, socket.socket) else None):
            return True
        log.warning("connection_refused", address=address[0],
                    reason="too many connections not yet associated")
        return False

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        sock, address = self.socket.accept()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False)
        return sock, address

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # The association runs on a thread of its own: its socket leaves the gate when
        # it closes (ReceiverSocket.on_close), or when the association is accepted.
        if isinstance(request, ssl.SSLSocket) and not self._handshake(request, client_address):
            self.shutdown_request(request)
            self.gate.leave(connection_address(client_address))
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
            log.info("connection_closed_before_tls", address=address)
            return False
        except (OSError, ValueError) as exc:  # ssl.SSLError and timeouts are OSErrors
            reason = _tls_reason(exc)
            log.warning("tls_failure", address=address, reason=reason)
            if self.on_tls_failure is not None:
                self.on_tls_failure(address, reason)
            return False
        sock.settimeout(previous)
        return True


def start_receiver_server(ae: AE, address: tuple[str, int], *, evt_handlers: list[Any],
                          tls: ssl.SSLContext | None,
                          on_tls_failure: TlsFailureHandler | None,
                          gate: ConnectionGate) -> ReceiverServer:
    """Start a ``ReceiverServer`` for ``ae`` on ``address`` in a background thread.

    Does what ``AE.start_server(block=False)`` does, with our server class; the
    server is registered with the AE, so ``ae.shutdown()`` stops it.
    """
    server = ae.make_server(address, evt_handlers=evt_handlers, server_class=ReceiverServer,
                            tls=tls, on_tls_failure=on_tls_failure,
                            handshake_timeout=ae.acse_timeout, gate=gate)
    assert isinstance(server, ReceiverServer)
    thread = threading.Thread(target=make_target(server.serve_forever),
                              name="AcceptorServer@receiver", daemon=True)
    thread.start()
    ae._servers.append(server)  # what start_server does; shutdown() removes it again
    return server


def connection_address(client_address: Any) -> tuple[str, int]:
    """A connection's (IP, port) from its peer address, its key at the gate."""
    return str(client_address[0]), int(client_address[1])


def _tls_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"{exc.reason or type(exc).__name__}: {exc.verify_message}" \
            if isinstance(exc, ssl.SSLCertVerificationError) else str(exc.reason or exc)
    if isinstance(exc, TimeoutError):
        return "handshake timed out"
    return f"{type(exc).__name__}: {exc}"
