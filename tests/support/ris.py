"""A RIS on loopback for tests: an MLLP listener that records what it receives.

``ris`` (fixture) answers each message with the next code of ``Ris.answers`` (``AA`` when
the list is empty); ``None`` reads the message and never answers, like a stuck
interface engine.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

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


@pytest.fixture
def ris() -> Iterator[Ris]:
    """A RIS MLLP listener on a free loopback port, stopped after the test."""
    peer = Ris(port=free_port(), answers=[])

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
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
    yield peer
    server.shutdown()
    server.server_close()
