"""A-ASSOCIATE-RQ PDUs written byte by byte (PS3.8 9.3.2), for what no DICOM toolkit
will send: contexts without a transfer syntax, context ID 0."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"
A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ABORT = 0x02, 0x03, 0x07


def _item(kind: int, value: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(value)) + value


def associate_rq(called: str, calling: str,
                 contexts: list[tuple[int, str, list[str]]]) -> bytes:
    """An A-ASSOCIATE-RQ proposing ``contexts`` as (ID, abstract syntax, transfer syntaxes)."""
    items = _item(0x10, APPLICATION_CONTEXT)
    for context_id, abstract, syntaxes in contexts:
        sub = _item(0x30, abstract.encode()) + b"".join(_item(0x40, ts.encode())
                                                          for ts in syntaxes)
        items += _item(0x20, struct.pack(">BBBB", context_id, 0, 0, 0) + sub)
    items += _item(0x50, _item(0x51, struct.pack(">L", 16384)))
    body = (struct.pack(">HH", 1, 0) + called.encode().ljust(16) + calling.encode().ljust(16)
            + bytes(32) + items)
    return struct.pack(">BBL", 0x01, 0, len(body)) + body


@dataclass
class Answer:
    pdu_type: int | None  # None: the connection closed without an answer
    context_results: dict[int, int]  # A-ASSOCIATE-AC: context ID -> result


def exchange(port: int, pdu: bytes, timeout: float) -> Answer:
    """Send ``pdu`` and read the answer PDU, waiting at most ``timeout`` seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(pdu)
        header = _read(sock, 6)
        if len(header) < 6:
            return Answer(None, {})
        pdu_type, _, length = struct.unpack(">BBL", header)
        body = _read(sock, length)
    results: dict[int, int] = {}
    if pdu_type == A_ASSOCIATE_AC:
        offset = 68
        while offset + 4 <= len(body):
            kind, _, size = struct.unpack_from(">BBH", body, offset)
            if kind == 0x21:
                results[body[offset + 4]] = body[offset + 6]
            offset += 4 + size
    return Answer(pdu_type, results)


def _read(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data
