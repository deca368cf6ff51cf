"""Raw PDU attacks on the DICOM port, by class, each with the answers that are honest
(README, receiving: before a peer is admitted).

An attack returns its outcome: the first PDU the node sent (``AC``, ``RJ``, ``ABORT``,
``OTHER``) or ``closed`` (closed unanswered), each followed by ``+closed`` when the
node then closed the connection within the deadline, or ``open`` when it still held
it. A node that holds an attacking connection past its deadline fails the class.
"""

from __future__ import annotations

import random
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.raw_pdu import associate_rq

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT = "1.2.840.10008.1.2"
NAMES = {0x02: "AC", 0x03: "RJ", 0x07: "ABORT"}
# How long past its deadline (acse_timeout / network_timeout) a connection may stay.
GRACE = 3.0


@dataclass(frozen=True)
class Target:
    port: int
    called_ae: str
    acse_timeout: float
    network_timeout: float


@dataclass(frozen=True)
class PduCase:
    name: str
    allowed: frozenset[str]
    attack: Callable[[random.Random, Target, str], str]  # (rng, target, source address)


def _connect(target: Target, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", target.port), timeout=30,
                                    source_address=(source, 0))


def _outcome(sock: socket.socket, wait: float) -> str:
    """Read what the node sends within ``wait`` seconds: '<first PDU>+closed', 'closed',
    '<first PDU>+open' or 'open'."""
    received = b""
    deadline = time.monotonic() + wait
    closed = False
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], max(deadline - time.monotonic(), 0))
        if not readable:
            break
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            chunk = b""
        if not chunk:
            closed = True
            break
        received += chunk
    sock.close()
    first = NAMES.get(received[0], "OTHER") if received else ""
    end = "closed" if closed else "open"
    return f"{first}+{end}" if first else end


def _associated(target: Target, source: str) -> socket.socket:
    sock = _connect(target, source)
    sock.sendall(associate_rq(target.called_ae, "FUZZ", [(1, VERIFICATION, [IMPLICIT])]))
    header = sock.recv(6)
    if header[:1] != b"\x02":
        raise AssertionError(f"association not accepted: {header!r}")
    (length,) = struct.unpack(">L", header[2:6])
    while length:
        length -= len(sock.recv(length))
    return sock


def _send_then(pdu: bytes, *, associate: bool = False, close_after: bool = False,
               ) -> Callable[[random.Random, Target, str], str]:
    def attack(rng: random.Random, target: Target, source: str) -> str:
        sock = _associated(target, source) if associate else _connect(target, source)
        sock.sendall(pdu)
        if close_after:
            sock.close()
            return "sent"
        deadline = target.network_timeout if associate else target.acse_timeout
        return _outcome(sock, deadline + GRACE)
    return attack


def _generated(make: Callable[[random.Random, Target], bytes], *, associate: bool = False
               ) -> Callable[[random.Random, Target, str], str]:
    def attack(rng: random.Random, target: Target, source: str) -> str:
        return _send_then(make(rng, target), associate=associate)(rng, target, source)
    return attack


def _trickle(*, associate: bool) -> Callable[[random.Random, Target, str], str]:
    """One byte every half second of a valid PDU, until the node closes."""
    def attack(rng: random.Random, target: Target, source: str) -> str:
        sock = _associated(target, source) if associate else _connect(target, source)
        pdu = (struct.pack(">BBL", 0x04, 0, 4096) + bytes(4096) if associate else
               associate_rq(target.called_ae, "SLOW", [(1, VERIFICATION, [IMPLICIT])]))
        deadline = time.monotonic() + (target.network_timeout if associate
                                       else target.acse_timeout) + GRACE
        for byte in pdu:
            if time.monotonic() > deadline:
                break
            try:
                sock.send(bytes([byte]))
            except OSError:
                sock.close()
                return "closed"
            readable, _, _ = select.select([sock], [], [], 0.5)
            if readable:
                return _outcome(sock, GRACE)
        return _outcome(sock, 0.1)
    return attack


def _silent(rng: random.Random, target: Target, source: str) -> str:
    return _outcome(_connect(target, source), target.acse_timeout + GRACE)


def _crowd(rng: random.Random, target: Target, source: str) -> str:
    """More connections from one address than its share: the extra one is closed."""
    held = [_connect(target, source) for _ in range(4)]
    try:
        return _outcome(_connect(target, source), GRACE)
    finally:
        for sock in held:
            sock.close()


def _random_rq(rng: random.Random, target: Target) -> bytes:
    pdu = bytearray(associate_rq(target.called_ae, "FUZZ", [(1, VERIFICATION, [IMPLICIT])]))
    for _ in range(rng.randint(1, 12)):
        pdu[rng.randrange(6, len(pdu))] = rng.randrange(256)
    return bytes(pdu)


def _rq_with(contexts: list[tuple[int, str, list[str]]]
             ) -> Callable[[random.Random, Target], bytes]:
    return lambda rng, target: associate_rq(target.called_ae, "FUZZ", contexts)


def _run_in_parallel(attack: Callable[[random.Random, Target, str], str], count: int
                     ) -> Callable[[random.Random, Target, str], str]:
    """``count`` copies of ``attack`` at once, from as many addresses; the outcomes joined."""
    def attack_all(rng: random.Random, target: Target, source: str) -> str:
        outcomes: list[str] = [""] * count
        base = int(source.rsplit(".", 1)[1])

        def one(index: int) -> None:
            outcomes[index] = attack(random.Random(rng.random()), target,
                                     f"127.0.{1 + index // 4}.{base}")
        threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return "|".join(sorted(set(outcomes)))
    return attack_all


ABORTED = frozenset({"ABORT+closed"})
REFUSED = frozenset({"ABORT+closed", "RJ+closed", "closed"})
CASES: list[PduCase] = [
    PduCase("associate_rq_of_4_gib", ABORTED, _send_then(bytes.fromhex("0100FFFFFFFF"))),
    PduCase("associate_rq_of_4_gib_x8", ABORTED,
            _run_in_parallel(_send_then(bytes.fromhex("0100FFFFFFFF")), 8)),
    PduCase("p_data_of_4_gib_associated", ABORTED,
            _send_then(bytes.fromhex("0400FFFFFFFF") + bytes(64), associate=True)),
    PduCase("p_data_over_max_pdu_associated", ABORTED,
            _generated(lambda rng, t: struct.pack(">BBL", 4, 0, (1 << 20) + rng.randint(1, 1 << 20)
                                                  ), associate=True)),
    PduCase("release_rq_of_1_mib_associated", ABORTED,
            _send_then(struct.pack(">BBL", 5, 0, 1 << 20), associate=True)),
    PduCase("unknown_pdu_type", REFUSED,
            _generated(lambda rng, t: bytes([rng.choice([0x00, 0x08, 0x09, 0x7F, 0xFF]), 0])
                       + struct.pack(">L", rng.randint(0, 64)) + bytes(64))),
    PduCase("p_data_before_association", REFUSED,
            _send_then(struct.pack(">BBL", 4, 0, 16) + bytes(16))),
    PduCase("release_before_association", REFUSED, _send_then(bytes.fromhex("050000000004"
                                                                           "00000000"))),
    PduCase("random_bytes", REFUSED, _generated(lambda rng, t: rng.randbytes(rng.randint(1, 512)))),
    PduCase("mutated_associate_rq", frozenset({"AC+open", "AC+closed", "RJ+closed",
                                               "ABORT+closed", "closed"}),
            _generated(_random_rq)),
    PduCase("context_without_transfer_syntax", frozenset({"AC+open", "AC+closed"}),
            _generated(_rq_with([(1, VERIFICATION, [])]))),
    PduCase("context_id_zero", frozenset({"AC+open", "AC+closed", "RJ+closed",
                                          "ABORT+closed"}),
            _generated(_rq_with([(0, VERIFICATION, [IMPLICIT])]))),
    PduCase("wrong_called_ae", frozenset({"RJ+closed"}),
            lambda rng, t, source: _send_then(associate_rq("NOT-THE-NODE", "FUZZ", [
                (1, VERIFICATION, [IMPLICIT])]))(rng, t, source)),
    PduCase("associate_rq_cut_short", frozenset({"closed", "ABORT+closed"}),
            _generated(lambda rng, t: associate_rq(t.called_ae, "FUZZ", [
                (1, VERIFICATION, [IMPLICIT])])[:rng.randint(7, 60)])),
    PduCase("slowloris_before_association", frozenset({"closed", "ABORT+closed"}),
            _trickle(associate=False)),
    PduCase("slowloris_associated", frozenset({"closed", "ABORT+closed"}),
            _trickle(associate=True)),
    PduCase("slowloris_x8_from_two_addresses", frozenset({"closed", "ABORT+closed"}),
            _run_in_parallel(_trickle(associate=False), 8)),
    PduCase("silent_connection", frozenset({"closed", "ABORT+closed"}), _silent),
    PduCase("one_peer_crowding_the_port", frozenset({"closed"}), _crowd),
]
