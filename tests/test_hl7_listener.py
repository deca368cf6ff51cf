"""The MLLP listener of a running node, with real clients: ``mllp_send`` and our own.

Each test starts the node as a subprocess (``serve --role hl7 ...``) on free ports,
against SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mmbcd_node.db.models import AuditEvent, Job, Priority, Study, StudyState
from mmbcd_node.db.order_models import Hl7Message, Order
from mmbcd_node.db.session import make_engine, make_sessionmaker
from tests.support.certificates import self_signed_certificate
from tests.support.dicom_peers import storescu
from tests.support.hl7_client import (
    EB,
    SB,
    MllpConnection,
    mllp_send_file,
    order_message,
    send_one,
)
from tests.support.mammo import make_mammogram, write_mammogram
from tests.support.node import NodeFactory, RunningNode


def orders_listed(node: RunningNode) -> list[dict[str, object]]:
    """The orders in the node's database, as committed (read with a fresh engine)."""
    engine = make_engine(node.db_url)
    try:
        with make_sessionmaker(engine)() as session:
            return [{"accession_number": o.accession_number, "placer_number": o.placer_number}
                    for o in session.execute(select(Order).order_by(Order.id)).scalars()]
    finally:
        engine.dispose()


def test_mllp_send_delivers_several_messages_on_one_connection(
        node_factory: NodeFactory, tmp_path: Path) -> None:
    node = node_factory(roles=["hl7"])
    messages = [order_message(f"MS-{i}", placer=f"PL{i}", accession=f"ACC{i}")
                for i in range(3)]
    path = tmp_path / "orders.hl7"
    path.write_text("\n".join(m.replace("\r", "\n") for m in messages))
    acks = mllp_send_file(node.hl7_port, path)
    assert [(a.code, a.control_id) for a in acks] == [("AA", f"MS-{i}") for i in range(3)]
    assert sorted(o["accession_number"] for o in orders_listed(node)) == ["ACC0", "ACC1", "ACC2"]


def test_many_messages_per_connection_and_concurrent_connections(
        node_factory: NodeFactory) -> None:
    node = node_factory(roles=["hl7"])

    def one_connection(worker: int) -> list[str]:
        with MllpConnection(node.hl7_port) as connection:
            return [connection.send(order_message(f"C{worker}-{i}", placer=f"P{worker}-{i}"))
                    .code for i in range(5)]

    with ThreadPoolExecutor(4) as pool:
        codes = [code for result in pool.map(one_connection, range(4)) for code in result]
    assert codes == ["AA"] * 20
    engine = make_engine(node.db_url)
    with make_sessionmaker(engine)() as session:
        assert session.execute(select(func.count()).select_from(Order)).scalar_one() == 20
        assert session.execute(select(func.count()).select_from(Hl7Message)).scalar_one() == 20
    engine.dispose()


def test_oversized_and_garbage_frames_are_answered_and_connection_stays_usable(
        node_factory: NodeFactory) -> None:
    node = node_factory(roles=["hl7"], settings={"hl7": {"max_message_bytes": 4000}})
    with MllpConnection(node.hl7_port) as connection:
        big = connection.send(order_message("BIG", notes=("x" * 200,) * 40))
        assert (big.code, big.control_id) == ("AE", "BIG")
        assert "4000" in big.error_text
        garbage = connection.send(b"\x00\x01\x02\xff binary \x9c")
        assert (garbage.code, garbage.error_code) == ("AE", "100")
        # Noise between frames is skipped.
        connection.send_raw(b"\r\n")
        assert connection.send(order_message("OK-1")).code == "AA"
    assert [o["placer_number"] for o in orders_listed(node)] == ["PL1"]


def test_order_acknowledged_aa_survives_kill_9(node_factory: NodeFactory) -> None:
    node = node_factory(roles=["hl7"])
    ack = send_one(node.hl7_port, order_message("KILL-1", accession="ACC-K"))
    assert ack.code == "AA"
    node.kill()
    node.start()
    assert [o["accession_number"] for o in orders_listed(node)] == ["ACC-K"]
    # The resent message after a restart is still recognised as a duplicate.
    assert send_one(node.hl7_port, order_message("KILL-1", accession="ACC-K")).code == "AA"
    assert len(orders_listed(node)) == 1


def test_tls_listener_accepts_orders(node_factory: NodeFactory, tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path, "node")
    node = node_factory(roles=["hl7"], settings={"hl7": {"tls": {"cert": str(cert),
                                                                 "key": str(key)}}})
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    with MllpConnection(node.hl7_port, tls=context) as connection:
        assert connection.send(order_message("TLS-1")).code == "AA"
        assert connection.send(order_message("TLS-2", placer="PL2")).code == "AA"
    assert len(orders_listed(node)) == 2


def test_plain_client_on_tls_listener_is_refused_and_audited_as_tls_failure(
        node_factory: NodeFactory, tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path, "node")
    node = node_factory(roles=["hl7"], settings={"hl7": {"tls": {"cert": str(cert),
                                                                 "key": str(key)}}})
    with MllpConnection(node.hl7_port) as plain:
        plain.send_raw(SB + order_message("PLAIN-1").encode("ascii") + EB)
        try:
            ack = plain.receive()
        except OSError:
            ack = None
    assert ack is None
    assert orders_listed(node) == []
    failures = tls_failures(node)
    assert len(failures) == 1, [f.detail for f in failures]
    assert failures[0].outcome == "failure" and failures[0].peer_address == "127.0.0.1"
    assert '"service": "hl7"' in failures[0].detail


def tls_failures(node: RunningNode, timeout: float = 15.0) -> list[AuditEvent]:
    """The ``tls_failure`` audit rows, waiting briefly for the first to be committed."""
    deadline = time.monotonic() + timeout
    while True:
        engine = make_engine(node.db_url)
        try:
            with make_sessionmaker(engine)() as session:
                rows = list(session.execute(select(AuditEvent).where(
                    AuditEvent.action == "tls_failure")).scalars())
        finally:
            engine.dispose()
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_stat_order_then_four_views_over_dicom_queue_an_urgent_job(
        node_factory: NodeFactory, tmp_path: Path) -> None:
    node = node_factory(roles=["dicom", "hl7", "scheduler"])
    ack = send_one(node.hl7_port, order_message(
        "E2E-1", patient_id="P-E2E", patient_issuer="HOSP", accession="A-E2E", priority="S",
        clinical="lump left breast 2 months"))
    assert ack.code == "AA"
    study_uid = "1.2.826.0.1.3680043.10.9999.1"
    files = []
    for laterality in ("L", "R"):
        for view in ("CC", "MLO"):
            path = tmp_path / f"{laterality}{view}.dcm"
            write_mammogram(path, make_mammogram(study_uid=study_uid, patient_id="P-E2E",
                                                 accession="A-E2E", laterality=laterality,
                                                 view=view))
            files.append(path)
    sent = storescu(node.dicom_port, files)
    assert sent.returncode == 0, sent.stderr
    engine = make_engine(node.db_url)
    sessions = make_sessionmaker(engine)
    deadline = time.monotonic() + 30
    state = None
    while time.monotonic() < deadline:
        with sessions() as session:
            study = session.execute(select(Study).where(Study.study_uid == study_uid)
                                    ).scalar_one_or_none()
            state = study.state if study else None
            if state == StudyState.QUEUED:
                job = session.execute(select(Job).where(Job.study_id == study.id)).scalar_one()
                break
        time.sleep(0.2)
    engine.dispose()
    assert state == StudyState.QUEUED, node.log_text()[-3000:]
    assert job.priority == Priority.URGENT and not job.without_history


def local_non_loopback_address() -> str | None:
    """An address of this machine that is not loopback, to connect from; None if none."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        infos = []
    for *_, sockaddr in infos:
        if not ipaddress.ip_address(sockaddr[0]).is_loopback:
            return str(sockaddr[0])
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        address = str(probe.getsockname()[0])
        if not ipaddress.ip_address(address).is_loopback:
            return address
    return None


def rejection_of(node: RunningNode, peer: str, timeout: float = 15.0) -> AuditEvent:
    """The ``hl7_connection_rejected`` audit row of the connection from ``peer``
    (address:port), waiting briefly for it to be committed."""
    deadline = time.monotonic() + timeout
    while True:
        engine = make_engine(node.db_url)
        try:
            with make_sessionmaker(engine)() as session:
                rows = [row for row in session.execute(select(AuditEvent).where(
                    AuditEvent.action == "hl7_connection_rejected")).scalars()
                    if f'"peer": "{peer}"' in row.detail]
        finally:
            engine.dispose()
        if rows or time.monotonic() > deadline:
            assert len(rows) == 1, f"no single rejection audited for {peer}"
            return rows[0]
        time.sleep(0.1)


def refused(connection: MllpConnection, control_id: str) -> bool:
    """True when the listener closes ``connection`` instead of acknowledging a message."""
    try:
        connection.send(order_message(control_id))
    except OSError:
        return True
    return False


@pytest.mark.parametrize(("allowed", "served"), [
    ([], False), (["10.20.0.0/16"], False), (["{remote}/24"], True)],
    ids=["none-listed", "other-network", "its-network"])
def test_remote_senders_are_served_only_from_allowed_senders(
        node_factory: NodeFactory, allowed: list[str], served: bool) -> None:
    remote = local_non_loopback_address()
    if remote is None:
        pytest.skip("this machine has no non-loopback address to connect from")
    node = node_factory(roles=["hl7"], settings={"hl7": {
        "host": "0.0.0.0", "allowed_senders": [a.format(remote=remote) for a in allowed]}})
    with MllpConnection(node.hl7_port, host=remote) as sender:
        peer = f"{remote}:{sender.sock.getsockname()[1]}"
        assert refused(sender, "REMOTE-1") is not served
    if not served:
        rejection = rejection_of(node, peer)
        assert rejection.outcome == "failure" and rejection.peer_address == remote
        assert ("only loopback peers" if not allowed else "is not in allowed_senders") \
            in rejection.detail
    # Loopback (the node's own status and doctor) is served whatever the list says.
    with MllpConnection(node.hl7_port) as local:
        assert local.send(order_message("LOCAL-1", placer="PL2")).code == "AA"
    assert len(orders_listed(node)) == (2 if served else 1)


def test_connections_beyond_max_connections_are_refused_until_one_closes(
        node_factory: NodeFactory) -> None:
    node = node_factory(roles=["hl7"], settings={"hl7": {"max_connections": 2}})
    first = admitted_connection(node, "CAP-1", placer="P1")
    second = admitted_connection(node, "CAP-2", placer="P2")
    with MllpConnection(node.hl7_port) as third:
        peer = f"127.0.0.1:{third.sock.getsockname()[1]}"
        assert refused(third, "CAP-3")
    assert "max_connections (2)" in rejection_of(node, peer).detail
    first.close()
    admitted_connection(node, "CAP-4", placer="P4").close()
    second.close()
    assert sorted(o["placer_number"] for o in orders_listed(node)) == ["P1", "P2", "P4"]


def admitted_connection(node: RunningNode, control_id: str, *, placer: str,
                        timeout: float = 15.0) -> MllpConnection:
    """A connection whose order was acknowledged AA, retried while the listener still
    counts a connection that has just closed (it notices when it reads the end of
    the stream: the harness's readiness probe, or one the test closed)."""
    deadline = time.monotonic() + timeout
    while True:
        connection = MllpConnection(node.hl7_port)
        try:
            ack = connection.send(order_message(control_id, placer=placer))
        except OSError:
            connection.close()
            assert time.monotonic() < deadline, f"{control_id} never admitted"
            time.sleep(0.1)
            continue
        assert ack.code == "AA", ack
        return connection
