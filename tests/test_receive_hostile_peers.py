"""Peers that announce huge PDUs, trickle bytes or crowd the port cannot take the
receiver out: memory follows what is sent, every PDU has a deadline, and connections
not yet associated have a cap of their own, per peer address too.

The attacking sockets come from other loopback addresses (127.0.0.2, ...), so the
legitimate modality on 127.0.0.1 is a peer of its own, as on a real network.
"""

from __future__ import annotations

import select
import socket
import threading
import time

import pytest

from mmbcd_node.receive.transport import ConnectionGate
from tests.support.dicom_peers import echoscu
from tests.support.pacs import wait_until
from tests.support.raw_pdu import associate_rq

SQLITE_ONLY = pytest.mark.parametrize("empty_db_url", ["sqlite"], indirect=True)
A_ASSOCIATE_AC, A_ABORT = 0x02, 0x07


def attacker(port: int, source: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30,
                                    source_address=(source, 0))
    return sock


def closed_by_peer(sock: socket.socket, timeout: float) -> bytes | None:
    """What the node sent before closing ``sock`` (None: still open after ``timeout``)."""
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], deadline - time.monotonic())
        if not readable:
            break
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    return None


def read_pdu(sock: socket.socket) -> bytes:
    """One whole PDU from ``sock``."""
    data = b""
    while len(data) < 6 or len(data) < 6 + int.from_bytes(data[2:6], "big"):
        chunk = sock.recv(65536)
        assert chunk, "closed within a PDU"
        data += chunk
    return data


@SQLITE_ONLY
def test_huge_pdu_announced_before_association_is_aborted_before_any_allocation(
        node_factory) -> None:
    node = node_factory(roles=["dicom"])  # acse_timeout 30 s
    before = node.rss_bytes
    # Three rounds of eight, one after the other: an aborted connection frees its
    # thread and slot at once, not after acse_timeout (24 lingering threads would be
    # over the 18 pynetdicom admits, and the modality would be rejected).
    for _ in range(3):
        socks = [attacker(node.dicom_port, f"127.0.0.{2 + n // 4}") for n in range(8)]
        for sock in socks:
            sock.sendall(bytes.fromhex("0100FFFFFFFF"))  # A-ASSOCIATE-RQ of 4 GiB
        answers = [closed_by_peer(sock, timeout=20) for sock in socks]
        peak = node.rss_bytes
        for sock in socks:
            sock.close()
        assert all(answer is not None and answer[:1] == bytes([A_ABORT])
                   for answer in answers), answers
        assert peak - before < 64 << 20, f"RSS grew by {(peak - before) >> 20} MiB"
    assert echoscu(node.dicom_port).returncode == 0


@SQLITE_ONLY
def test_trickling_peers_are_dropped_at_their_deadline_and_never_block_a_modality(
        node_factory) -> None:
    node = node_factory(roles=["dicom"], settings={"dicom": {
        "acse_timeout": 2.0, "max_unauthenticated": 8, "max_unauthenticated_per_peer": 4}})
    request = associate_rq("MMBCD", "SLOW", [(1, "1.2.840.10008.1.1",
                                              ["1.2.840.10008.1.2"])])
    sent = [0] * 4
    closed = [threading.Event() for _ in sent]
    socks = [attacker(node.dicom_port, "127.0.0.2") for _ in sent]

    def trickle(index: int) -> None:
        for byte in request:
            try:
                socks[index].send(bytes([byte]))
            except OSError:
                break
            sent[index] += 1
            if closed[index].wait(0.25):  # one byte every 0.25 s until the node closes
                break

    threads = [threading.Thread(target=trickle, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    # A fifth connection from the same peer is over its share: closed at once, unanswered.
    extra = attacker(node.dicom_port, "127.0.0.2")
    assert closed_by_peer(extra, timeout=10) == b""
    extra.close()
    assert "event=connection_refused address=127.0.0.2" in node.log_text()
    # The modality is served while the four trickle.
    assert echoscu(node.dicom_port).returncode == 0
    for index, sock in enumerate(socks):
        assert closed_by_peer(sock, timeout=30) is not None, (index, sent)
        closed[index].set()
    for thread in threads:
        thread.join()
    for sock in socks:
        sock.close()
    assert all(count < len(request) for count in sent), (sent, len(request))
    assert "association_connection_lost" in node.log_text()


@SQLITE_ONLY
def test_huge_pdu_announced_by_an_associated_peer_is_aborted_within_the_budget(
        node_factory) -> None:
    node = node_factory(roles=["dicom"])
    before = node.rss_bytes
    request = associate_rq("MMBCD", "BIGPDU", [(1, "1.2.840.10008.1.1",
                                                ["1.2.840.10008.1.2"])])
    socks = [attacker(node.dicom_port, f"127.0.0.{2 + n // 4}") for n in range(8)]
    for sock in socks:
        sock.sendall(request)
        assert read_pdu(sock)[0] == A_ASSOCIATE_AC
    for sock in socks:
        # P-DATA-TF of 4 GiB, one PDV item of a command fragment, then a trickle.
        sock.sendall(bytes.fromhex("0400FFFFFFFF" "FFFFFFFB" "0103") + bytes(4096))
    answers = [closed_by_peer(sock, timeout=20) for sock in socks]
    peak = node.rss_bytes
    for sock in socks:
        sock.close()
    assert all(answer is not None and answer[:1] == bytes([A_ABORT]) for answer in answers), \
        answers
    assert peak - before < 64 << 20, f"RSS grew by {(peak - before) >> 20} MiB"
    assert echoscu(node.dicom_port).returncode == 0
    assert "over the 1048576 allowed" in node.log_text()


def test_the_gate_gives_the_longest_silent_connection_s_place_to_a_new_one() -> None:
    now = [0.0]
    gate = ConnectionGate(total=2, per_peer=2, clock=lambda: now[0])
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        assert gate.enter(("10.0.0.1", 1), pairs[0][0])
        now[0] = 0.2
        assert gate.enter(("10.0.0.2", 1), pairs[1][0])
        now[0] = 0.9
        assert not gate.enter(("10.0.0.3", 1)), "nobody has waited a second yet"
        assert not gate.enter(("10.0.0.1", 2)), "over its peer's share"
        now[0] = 1.1
        assert gate.enter(("10.0.0.3", 1), pairs[2][0])
        assert gate.waiting == 2
        pairs[0][1].settimeout(5)
        assert pairs[0][1].recv(1) == b"", "the oldest was shut down"
        pairs[1][1].setblocking(False)
        with pytest.raises(BlockingIOError):
            pairs[1][1].recv(1)  # the younger one stays open
    finally:
        for a, b in pairs:
            a.close()
            b.close()


@SQLITE_ONLY
def test_trickling_peers_from_several_addresses_cannot_keep_a_modality_out(
        node_factory) -> None:
    node = node_factory(roles=["dicom"])  # acse_timeout 30 s, 8 waiting at most
    request = associate_rq("MMBCD", "SLOW", [(1, "1.2.840.10008.1.1",
                                              ["1.2.840.10008.1.2"])])
    socks = [attacker(node.dicom_port, f"127.0.0.{2 + n // 4}") for n in range(8)]
    stop = threading.Event()

    def trickle(sock: socket.socket) -> None:
        for byte in request:
            if stop.wait(0.25):
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return

    threads = [threading.Thread(target=trickle, args=(s,), daemon=True) for s in socks]
    for thread in threads:
        thread.start()
    try:
        # The gate is full; once the tricklers have waited a second, a modality's
        # connection takes the place of the one that waited longest (well before
        # acse_timeout would free one).
        wait_until(lambda: echoscu(node.dicom_port).returncode == 0, timeout=10,
                   message="a C-ECHO served while eight connections trickle")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for sock in socks:
            sock.close()
    assert "event=connection_evicted" in node.log_text()
