"""The MLLP listener (``serve --role hl7``): asyncio, many messages per connection.

MLLP frames a message as ``0x0B <message> 0x1C 0x0D``. Each connection is read frame
by frame; each message is handled (in a worker thread, since SQL blocks) and
acknowledged before the next one on that connection is read, so the sender's order
is kept. Connections are independent. A frame longer than ``[hl7] max_message_bytes``
is skipped to its end and answered AE; bytes outside frames are discarded; a
connection idle for ``read_timeout_seconds`` is closed. A connection from an address
outside ``allowed_senders``, or beyond ``max_connections``, is closed before anything
is read and audited as ``hl7_connection_rejected``. TLS is on when ``[hl7.tls]
cert`` is set; the handshake runs on each accepted connection (not inside asyncio's
accept, which drops a failed handshake silently), so a failure is audited as
``tls_failure``. hl7apy's own MLLP server is not used: it closed the connection after
the first message and dropped the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import NodeConfig
from mmbcd_node.db.audit import record_event
from mmbcd_node.db.session import transaction
from mmbcd_node.logs import get_logger
from mmbcd_node.orders.admission import SenderAdmission
from mmbcd_node.orders.intake import OrderIntake
from mmbcd_node.tls import server_context

log = get_logger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"


def frame(payload: bytes) -> bytes:
    """Wrap one message (or ACK) in MLLP framing."""
    return START_BLOCK + payload + END_BLOCK


class FrameReader:
    """Reads MLLP frames from a stream; ``read`` returns (payload, oversized_size)."""

    def __init__(self, reader: asyncio.StreamReader, limit: int) -> None:
        self.reader = reader
        self.limit = limit

    async def read(self) -> tuple[bytes, int] | None:
        """The next frame, or None at end of stream.

        Returns ``(payload, 0)`` normally; for a frame over the limit ``(head, size)``
        with the first bytes of the frame and its size, the rest having been skipped.
        """
        # Discard anything before the start block (line noise, keep-alive bytes).
        while True:
            byte = await self.reader.read(1)
            if not byte:
                return None
            if byte == START_BLOCK:
                break
        head = b""
        skipped = 0
        while True:
            try:
                chunk = await self.reader.readuntil(END_BLOCK)
            except asyncio.LimitOverrunError as exc:
                # No end block within the stream's buffer: the frame is over the limit.
                # Keep its start (for the ACK header) and skip the rest.
                data = await self.reader.readexactly(max(exc.consumed, 1))
                head = (head + data)[:4096]
                skipped += len(data)
                continue
            payload = chunk[:-len(END_BLOCK)]
            size = skipped + len(payload)
            if size > self.limit:
                return (head + payload)[:4096], size
            return payload, 0


class MllpServer:
    """An asyncio MLLP server handing every message to an ``OrderIntake``."""

    def __init__(self, config: NodeConfig, intake: OrderIntake) -> None:
        self.config = config
        self.intake = intake
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="hl7")
        self._server: asyncio.base_events.Server | None = None
        self._tls = server_context(config.hl7.tls, "hl7.tls")
        self.admission = SenderAdmission(config.hl7)
        self._open = 0

    async def start(self) -> None:
        hl7 = self.config.hl7
        self._server = await asyncio.start_server(
            self._serve_connection, hl7.host, hl7.port, limit=hl7.max_message_bytes + 1024)
        log.info("hl7_listening", host=hl7.host, port=hl7.port, tls=hl7.tls.enabled)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.executor.shutdown(wait=True)

    async def _serve_connection(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = f"{peer[0]}:{peer[1]}" if peer else None
        refusal = self.admission.check(peer[0] if peer else None, self._open)
        if refusal is not None:
            await self._reject(writer, address, refusal)
            return
        self._open += 1
        try:
            await self._serve_admitted(reader, writer, address)
        finally:
            self._open -= 1

    async def _serve_admitted(self, reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter, address: str | None) -> None:
        frames = FrameReader(reader, self.config.hl7.max_message_bytes)
        loop = asyncio.get_running_loop()
        log.debug("hl7_connection_opened", peer=address)
        if self._tls is not None and not await self._handshake(writer, address):
            return
        messages = 0
        try:
            while True:
                try:
                    got = await asyncio.wait_for(frames.read(),
                                                 self.config.hl7.read_timeout_seconds)
                except TimeoutError:
                    log.info("hl7_connection_idle", peer=address)
                    break
                except asyncio.IncompleteReadError:
                    break
                if got is None:
                    break
                payload, oversized = got
                if oversized:
                    ack = await loop.run_in_executor(
                        self.executor, self.intake.handle_oversized, payload, oversized, address)
                else:
                    ack = await loop.run_in_executor(self.executor, self.intake.handle,
                                                     payload, address)
                writer.write(frame(ack))
                await writer.drain()
                messages += 1
        except (ConnectionError, ssl.SSLError) as exc:
            log.info("hl7_connection_lost", peer=address, error=str(exc))
        finally:
            writer.close()
            # The peer may already be gone; closing is all that is left to do.
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
            # A connection that carried no message is a port probe (status, /healthz).
            (log.info if messages else log.debug)("hl7_connection_closed", peer=address,
                                                  messages=messages)

    async def _handshake(self, writer: asyncio.StreamWriter, address: str | None) -> bool:
        """Upgrade the connection to TLS; on failure audit it, close, and return False."""
        assert self._tls is not None
        try:
            await writer.start_tls(self._tls, ssl_handshake_timeout=float(
                self.config.hl7.read_timeout_seconds))
        except (ssl.SSLEOFError, ConnectionResetError):
            # Closed before any TLS bytes: a port probe, not a failed authentication.
            log.info("hl7_connection_closed_before_tls", peer=address)
            writer.transport.abort()
            return False
        except OSError as exc:  # ssl.SSLError and handshake timeouts are OSErrors
            reason = str(getattr(exc, "reason", None) or exc or type(exc).__name__)
            log.warning("tls_failure", peer=address, reason=reason)
            await asyncio.get_running_loop().run_in_executor(
                self.executor, self._audit_refusal, "tls_failure", address,
                {"error": reason[:300]})
            writer.transport.abort()
            return False
        return True

    async def _reject(self, writer: asyncio.StreamWriter, address: str | None,
                      reason: str) -> None:
        """Close a connection refused by ``SenderAdmission``, and audit it."""
        log.warning("hl7_connection_rejected", peer=address, reason=reason)
        writer.transport.abort()
        await asyncio.get_running_loop().run_in_executor(
            self.executor, self._audit_refusal, "hl7_connection_rejected", address,
            {"reason": reason})

    def _audit_refusal(self, action: str, address: str | None,
                       detail: dict[str, str]) -> None:
        host = address.rsplit(":", 1)[0] if address else None
        try:
            with transaction(self.intake.sessions) as session:
                record_event(session, action, outcome="failure", peer_address=host,
                             detail={"service": "hl7", "peer": address,
                                     "port": self.config.hl7.port, **detail})
        except Exception:  # noqa: BLE001 - the connection is refused either way
            log.exception("audit_write_failed", action=action)


class Hl7Role:
    """The ``hl7`` role: the MLLP listener on its own event loop in a background thread."""

    name = "hl7"

    def __init__(self, config: NodeConfig, sessions: sessionmaker[Session]) -> None:
        self.config = config
        self.server = MllpServer(config, OrderIntake(config, sessions))
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        """Bind the port and serve in the background; raises if the port cannot be bound."""
        self._thread = threading.Thread(target=self._run, name="hl7-listener", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.server.start())
        except BaseException as exc:  # noqa: BLE001 - re-raised in start()
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.server.stop())
        self._loop.close()

    def stop(self) -> None:
        if self._thread is None or self._error is not None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
