"""A RIS on loopback for tests: an MLLP listener that records what it receives.

``ris`` (fixture) answers each message with the next code of ``Ris.answers`` (``AA`` when
the list is empty); ``None`` reads the message and never answers, like a stuck
interface engine.
"""

from __future__ import annotations

import contextlib
import itertools
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.node import free_port

SB, EB = b"\x0b", b"\x1c\r"


@dataclass
class Ris:
    """An MLLP listener answering each message with the next code of ``answers``.

    ``None`` in ``answers`` means: read the message and never answer.
    """

    port: int
    answers: list[str | None]
    received: list[str] = field(default_factory=list)
    refused: int = 0  # TLS connections whose handshake failed


@pytest.fixture
def ris() -> Iterator[Ris]:
    """A RIS MLLP listener on a free loopback port, stopped after the test."""
    with _listening(None) as peer:
        yield peer


@pytest.fixture
def tls_ris() -> Iterator[Callable[[ssl.SSLContext], Ris]]:
    """Starts RIS listeners that speak MLLP over TLS with the given server context."""
    stack: list[contextlib.ExitStack] = []

    def start(context: ssl.SSLContext) -> Ris:
        exits = contextlib.ExitStack()
        stack.append(exits)
        return exits.enter_context(_listening(context))

    yield start
    for exits in stack:
        exits.close()


@contextlib.contextmanager
def _listening(tls: ssl.SSLContext | None) -> Iterator[Ris]:
    peer = Ris(port=free_port(), answers=[])

    class Handler(socketserver.BaseRequestHandler):
        def setup(self) -> None:
            self.ready = True
            if tls is not None:
                try:
                    self.request = tls.wrap_socket(self.request, server_side=True)
                except (ssl.SSLError, OSError):
                    peer.refused += 1
                    self.ready = False

        def handle(self) -> None:
            if not self.ready:
                return
            data = b""
            while EB not in data:
                chunk = self.request.recv(65536)
                if not chunk:
                    return
                data += chunk
            text = data[data.index(SB) + 1:data.index(EB)].decode("utf-8")
            peer.received.append(text)
            code = peer.answers.pop(0) if peer.answers else "AA"
            if code is None:
                threading.Event().wait(3)  # silent: longer than the sender waits
                return
            control = text.split("\r")[0].split("|")[9]
            ack = (f"MSH|^~\\&|RIS|HOSP|MMBCD-NODE|MMBCD|20261130120000||ACK^R01^ACK|A{control}"
                   f"|P|2.5.1\rMSA|{code}|{control}|{'' if code == 'AA' else 'not today'}\r")
            self.request.sendall(SB + ack.encode() + EB)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", peer.port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        server.shutdown()
        server.server_close()


def recording_mllp_server(address: tuple[str, int], folder: Path) -> socketserver.TCPServer:
    """A RIS that answers AA to each message and keeps it as a file in ``folder``
    (``<MSH-10>.hl7``; a control id received twice gets a second file). Serves on a
    thread of its own until ``shutdown()``."""
    count = itertools.count()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data = b""
            while True:
                while EB not in data:
                    chunk = self.request.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                frame, data = data.split(EB, 1)
                text = frame[frame.index(SB) + 1:].decode("utf-8")
                control = text.split("\r")[0].split("|")[9]
                (folder / f"{control}.{next(count)}.hl7").write_text(text)
                ack = (f"MSH|^~\\&|RIS|HOSP|MMBCD-NODE|MMBCD|20261130120000||ACK^R01^ACK|"
                       f"A{control}|P|2.5.1\rMSA|AA|{control}\r")
                self.request.sendall(SB + ack.encode() + EB)

    server = socketserver.ThreadingTCPServer(address, Handler, bind_and_activate=False)
    server.allow_reuse_address = True
    server.daemon_threads = True
    server.server_bind()
    server.server_activate()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
