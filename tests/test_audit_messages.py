"""DICOM audit messages (PS3.15 A.5) reach a syslog collector, and none is lost."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from mmbcd_node.config import SyslogConfig
from mmbcd_node.db.audit import record_event
from mmbcd_node.db.models import AuditEvent
from mmbcd_node.db.ops_models import AuditForwardCursor
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction
from mmbcd_node.ops.audit_forwarder import forward_pending
from mmbcd_node.ops.audit_messages import NodeIdentity, messages_for
from mmbcd_node.ops.syslog import SyslogSender
from tests.support.atna import schema_errors, valid_audit_message
from tests.support.certificates import issue, make_ca
from tests.support.mammo import make_mammogram, write_mammogram
from tests.support.node import free_port
from tests.support.pacs import wait_until

RFC5424 = re.compile(rb"^<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) - \xef\xbb\xbf(.*)$", re.S)
IDENTITY = NodeIdentity("MMBCD", "node.example")


class SyslogCollector:
    """A syslog server for one test: UDP datagrams or TCP with octet counting."""

    def __init__(self, transport: str, port: int | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.transport = transport
        self.tls = tls
        self.port = port or free_port()
        self.frames: list[bytes] = []
        self.streams_ended = threading.Semaphore(0)  # released when a sender hangs up
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        if transport != "udp":
            self.sock.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            if self.transport == "udp":
                while True:
                    self.frames.append(self.sock.recv(65535))
            while True:
                connection, _ = self.sock.accept()
                threading.Thread(target=self._read_stream, args=(connection,), daemon=True).start()
        except OSError:
            return

    def _read_stream(self, connection: socket.socket) -> None:
        buffer = b""
        if self.tls is not None:
            try:
                connection = self.tls.wrap_socket(connection, server_side=True)
            except (ssl.SSLError, OSError):
                connection.close()  # the client did not trust us, or we not it
                self.streams_ended.release()
                return
        with connection:
            while chunk := connection.recv(65536):
                buffer += chunk
                while b" " in buffer:
                    length, _, rest = buffer.partition(b" ")
                    if len(rest) < int(length):
                        break
                    self.frames.append(rest[:int(length)])
                    buffer = rest[int(length):]
        self.streams_ended.release()

    def messages(self) -> list[ET.Element]:
        """Every received frame checked as RFC 5424, its MSG validated against the DICOM audit
        schema (PS3.15 A.5.1) and parsed as an AuditMessage."""
        parsed = []
        for frame in self.frames:
            match = RFC5424.match(frame)
            assert match, frame[:200]
            assert match[1] == b"85" and match[4] == b"mmbcd-node" and match[6] == b"DICOM+RFC3881"
            parsed.append(ET.fromstring(valid_audit_message(match[7])))
        return parsed

    def wait_for(self, predicate, timeout: float = 20.0) -> list[ET.Element]:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = self.messages()
            if predicate(messages):
                return messages
            time.sleep(0.1)
        raise AssertionError(f"collector got {[event_name(m) for m in self.messages()]}")

    def close(self) -> None:
        self.sock.close()


def event_name(message: ET.Element) -> str:
    event = message.find("EventIdentification")
    assert event is not None
    name = event.find("EventID").get("originalText")  # type: ignore[union-attr]
    kind = event.find("EventTypeCode")
    return f"{name}/{kind.get('originalText')}" if kind is not None else str(name)


def objects(message: ET.Element) -> dict[str, ET.Element]:
    return {o.find("ParticipantObjectIDTypeCode").get("originalText"): o  # type: ignore[union-attr]
            for o in message.findall("ParticipantObjectIdentification")}


def _event(action: str, outcome: str = "success", detail: dict | None = None,
           **columns: str) -> AuditEvent:
    return AuditEvent(action=action, outcome=outcome, detail=json.dumps(detail or {}),
                      occurred_at=datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC), **columns)


#: One audit event of every action that has an audit message, as the node records them.
EVERY_KIND = [
    _event("application_start", actor="root"),
    _event("application_stop", actor="root"),
    _event("instance_stored", calling_ae="MODALITY", called_ae="MMBCD", peer_address="10.0.0.7",
           study_uid="1.2.3.4", patient_id="P1", accession_number="ACC1",
           detail={"sop_class_uid": "1.2.840.10008.5.1.4.1.1.1.2"}),
    _event("instance_stored", calling_ae="MODALITY", called_ae="MMBCD", peer_address="10.0.0.7",
           study_uid="1.2.3.4", patient_id="P1", accession_number="ACC1",
           detail={"sop_class_uid": "1.2.840.10008.5.1.4.1.1.1.2.1"}),
    _event("results_sent", called_ae="PACS", peer_address="pacs.example", study_uid="1.2.3.4",
           patient_id="P1", accession_number="ACC1", detail={"destination": "pacs"}),
    _event("order_received", patient_id="P1", accession_number="ACC1", study_uid="1.2.3.4",
           detail={"control": "NW", "new_order": True}),
    _event("order_received", patient_id="P1", accession_number="ACC1",
           detail={"control": "XO", "new_order": False}),
    _event("order_cancelled", study_uid="1.2.3.4", accession_number="ACC1", actor="matcher"),
    _event("association_rejected", outcome="failure", calling_ae="STRANGER",
           called_ae="MMBCD", peer_address="10.0.0.9"),
    _event("tls_failure", outcome="failure", peer_address="10.0.0.10"),
    _event("study_purged", actor="retention", study_uid="1.2.3.4", patient_id="P1",
           detail={"files": 2}),
]


def test_every_kind_of_audit_message_validates_against_the_dicom_schema() -> None:
    messages = messages_for(EVERY_KIND, IDENTITY)
    for message in messages:
        valid_audit_message(message)
    parsed = [ET.fromstring(message) for message in messages]
    assert [event_name(m) for m in parsed] == [
        "Application Activity/Application Start", "Application Activity/Application Stop",
        "DICOM Instances Transferred", "Order Record", "Order Record", "Order Record",
        "Security Alert/Node Authentication", "Security Alert/Node Authentication",
        "DICOM Study Deleted",
        "DICOM Instances Transferred"]  # both stored images in one message, last
    received = parsed[-1]  # grouped received images come last
    study = objects(received)["Study Instance UID"]
    assert [child.tag for child in study] == [
        "ParticipantObjectIDTypeCode", "ParticipantObjectName", "ParticipantObjectDescription"]
    description = study.find("ParticipantObjectDescription")
    assert [child.tag for child in description] == [  # type: ignore[union-attr]
        "Accession", "SOPClass", "SOPClass"]
    assert study.findtext("ParticipantObjectName") == "1.2.3.4"
    patient = objects(received)["Patient Number"]
    assert patient.findtext("ParticipantObjectName") == "P1"  # the trail keeps no names
    assert patient.find("ParticipantObjectDescription") is None


def test_the_schema_refuses_the_message_layout_the_node_used_to_send() -> None:
    """The DICOM extensions straight under ParticipantObjectIdentification, no name."""
    old = (b'<AuditMessage><EventIdentification EventActionCode="C" '
           b'EventDateTime="2025-03-04T05:06:07.000+00:00" EventOutcomeIndicator="0">'
           b'<EventID csd-code="110104" codeSystemName="DCM" '
           b'originalText="DICOM Instances Transferred"/></EventIdentification>'
           b'<ActiveParticipant UserID="MODALITY" UserIsRequestor="true"/>'
           b'<AuditSourceIdentification AuditSourceID="MMBCD@node"/>'
           b'<ParticipantObjectIdentification ParticipantObjectID="1.2.3.4" '
           b'ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="3">'
           b'<ParticipantObjectIDTypeCode csd-code="110180" codeSystemName="DCM" '
           b'originalText="Study Instance UID"/>'
           b'<SOPClass UID="1.2.840.10008.5.1.4.1.1.1.2" NumberOfInstances="2"/>'
           b'</ParticipantObjectIdentification></AuditMessage>')
    errors = schema_errors(old)
    assert any("SOPClass" in error for error in errors), errors
    fixed = old.replace(b'<SOPClass', b'<ParticipantObjectName>1.2.3.4</ParticipantObjectName>'
                        b'<ParticipantObjectDescription><SOPClass').replace(
        b'</ParticipantObjectIdentification>',
        b'</ParticipantObjectDescription></ParticipantObjectIdentification>')
    assert schema_errors(fixed) == []
    assert schema_errors(fixed.replace(b'EventOutcomeIndicator="0"',
                                       b'EventOutcomeIndicator="1"')) != []


def test_node_sends_application_activity_transfers_and_security_alerts_over_udp(
        node_factory, tmp_path: Path) -> None:
    collector = SyslogCollector("udp")
    node = node_factory(roles=["dicom", "http", "audit"], settings={
        "audit": {"syslog": {"host": "127.0.0.1", "port": collector.port, "transport": "udp"}}})
    files = []
    for index, (laterality, view) in enumerate([("R", "CC"), ("L", "CC")]):
        ds = make_mammogram(laterality=laterality, view=view, seed=index, study_uid="1.2.3.55",
                            patient_id="PAT55")
        write_mammogram(tmp_path / f"{index}.dcm", ds)
        files.append(tmp_path / f"{index}.dcm")
    base = ["storescu", "-aet", "MODALITY", "127.0.0.1", str(node.dicom_port)]
    assert subprocess.run([*base[:3], "-aec", "MMBCD", *base[3:], *map(str, files)],
                          capture_output=True, timeout=60).returncode == 0
    assert subprocess.run([*base[:3], "-aec", "WRONG", *base[3:], str(files[0])],
                          capture_output=True, timeout=60).returncode != 0
    collector.wait_for(lambda ms: "Security Alert/Node Authentication" in map(event_name, ms))
    node.stop()
    messages = collector.wait_for(
        lambda ms: "Application Activity/Application Stop" in map(event_name, ms))
    names = [event_name(m) for m in messages]
    assert names[0] == "Application Activity/Application Start"
    transfers = [m for m in messages if event_name(m) == "DICOM Instances Transferred"]
    assert len(transfers) == 1  # both images of the association in one message
    transfer = transfers[0]
    assert transfer.find("EventIdentification").get("EventActionCode") == "C"  # type: ignore[union-attr]
    study = objects(transfer)["Study Instance UID"]
    assert study.get("ParticipantObjectID") == "1.2.3.55"
    sop_class = study.find("ParticipantObjectDescription/SOPClass")
    assert sop_class.get("NumberOfInstances") == "2"  # type: ignore[union-attr]
    assert objects(transfer)["Patient Number"].get("ParticipantObjectID") == "PAT55"
    source = [p for p in transfer.findall("ActiveParticipant")
              if p.find("RoleIDCode").get("originalText") == "Source Role ID"]  # type: ignore[union-attr]
    assert source[0].get("UserID") == "MODALITY" and source[0].get("UserIsRequestor") == "true"
    alert = next(m for m in messages if event_name(m).startswith("Security Alert"))
    assert alert.find("EventIdentification").get("EventOutcomeIndicator") == "4"  # type: ignore[union-attr]
    subject = str(objects(alert)["URI"].get("ParticipantObjectID"))
    assert subject.startswith("dicom://") and subject.endswith("@127.0.0.1")
    collector.close()


def test_forwarding_waits_for_a_tcp_collector_that_is_down_and_loses_nothing(
        db_url: str) -> None:
    sessions = make_sessionmaker(make_engine(db_url))
    with transaction(sessions) as session:
        record_event(session, "order_received", patient_id="P9", accession_number="ACC9",
                     study_uid="1.2.3.9", detail={"control": "NW", "new_order": True})
        record_event(session, "order_cancelled", study_uid="1.2.3.9", accession_number="ACC9",
                     actor="matcher")
        record_event(session, "study_purged", actor="retention", study_uid="1.2.3.9",
                     patient_id="P9", detail={"files": 4})
        record_event(session, "study_completed", study_uid="1.2.3.9")  # no audit message
    port = free_port()
    sender = SyslogSender(SyslogConfig(host="127.0.0.1", port=port, transport="tcp"), timeout=2)
    with pytest.raises(OSError):
        forward_pending(sessions, sender, IDENTITY)
    with sessions() as session:
        assert session.get(AuditForwardCursor, "syslog").last_event_id == 0  # type: ignore[union-attr]
    collector = SyslogCollector("tcp", port)
    assert forward_pending(sessions, sender, IDENTITY) == 4
    assert forward_pending(sessions, sender, IDENTITY) == 0
    messages = collector.wait_for(lambda ms: len(ms) == 3)
    sender.close()
    assert [event_name(m) for m in messages] == ["Order Record", "Order Record",
                                                 "DICOM Study Deleted"]
    actions = [m.find("EventIdentification").get("EventActionCode") for m in messages]  # type: ignore[union-attr]
    assert actions == ["C", "D", "D"]
    deleted = objects(messages[2])["Study Instance UID"]
    assert deleted.get("ParticipantObjectDataLifeCycle") == "14"
    with sessions() as session:
        cursor = session.get(AuditForwardCursor, "syslog")
        assert cursor is not None and cursor.last_event_id == 4
    # The stream has ended: every frame the sender wrote has been read.
    assert collector.streams_ended.acquire(timeout=20)
    assert len(collector.frames) == 3  # nothing sent twice
    collector.close()


@pytest.fixture(scope="module")
def syslog_pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """The audit repository's CA, its certificate for 127.0.0.1 and the node's."""
    folder = tmp_path_factory.mktemp("syslog-tls")
    ca = make_ca(folder)
    return {"ca": ca, "collector": issue(folder, "collector", ca),
            "node": issue(folder, "node", ca)}


def audit_repository_context(pki: dict[str, tuple[Path, Path]]) -> ssl.SSLContext:
    """An ATNA audit repository's TLS: its certificate, and the node's required."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*pki["collector"])
    server.load_verify_locations(cafile=str(pki["ca"][0]))
    server.verify_mode = ssl.CERT_REQUIRED
    return server


def test_tls_collector_gets_messages_and_a_tls_failure_becomes_a_security_alert(
        db_url: str, syslog_pki: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    from mmbcd_node.config import load_config
    from mmbcd_node.db.models import AuditEvent
    from mmbcd_node.ops.audit_forwarder import AuditForwarderRole

    node_cert, node_key = syslog_pki["node"]
    collector = SyslogCollector("tls", tls=audit_repository_context(syslog_pki))
    sessions = make_sessionmaker(make_engine(db_url))
    untrusted = load_config(environ={
        "MMBCD_NODE__AUDIT__SYSLOG__HOST": "127.0.0.1",
        "MMBCD_NODE__AUDIT__SYSLOG__PORT": str(collector.port),
        "MMBCD_NODE__AUDIT__SYSLOG__TRANSPORT": "tls",
        "MMBCD_NODE__AUDIT__SYSLOG__CERT": str(node_cert),
        "MMBCD_NODE__AUDIT__SYSLOG__KEY": str(node_key)})
    role = AuditForwarderRole(untrusted, sessions, interval=0.1)
    role.start()  # the collector's certificate is not signed by a CA the node trusts
    try:
        def tls_failures() -> list[AuditEvent]:
            with sessions() as session:
                return list(session.execute(select(AuditEvent).where(
                    AuditEvent.action == "tls_failure")).scalars())

        wait_until(tls_failures, timeout=20, interval=0.1, message="a tls_failure event")
        failures = tls_failures()
        assert len(failures) == 1 and failures[0].outcome == "failure"
    finally:
        role.stop()
    assert collector.frames == []
    trusted = SyslogSender(SyslogConfig(host="127.0.0.1", port=collector.port, transport="tls",
                                        ca=syslog_pki["ca"][0], cert=node_cert, key=node_key))
    while forward_pending(sessions, trusted, IDENTITY):
        pass
    trusted.close()
    messages = collector.wait_for(lambda ms: len(ms) >= 3)
    names = [event_name(m) for m in messages]
    assert names[0] == "Application Activity/Application Start"
    assert "Security Alert/Node Authentication" in names
    assert names[-1] == "Application Activity/Application Stop"
    collector.close()


def test_a_node_without_its_certificate_is_refused_by_the_audit_repository(
        syslog_pki: dict[str, tuple[Path, Path]]) -> None:
    from mmbcd_node.config import ConfigError, load_config

    # The configuration refuses TLS without the node's certificate ...
    with pytest.raises(ConfigError, match=r"audit\.syslog.*transport tls needs cert"):
        load_config(environ={"MMBCD_NODE__AUDIT__SYSLOG__TRANSPORT": "tls"})
    # ... and a certificate from another CA gets no connection.
    collector = SyslogCollector("tls", tls=audit_repository_context(syslog_pki))
    folder = syslog_pki["ca"][0].parent / "elsewhere"
    stranger = issue(folder, "stranger", make_ca(folder, "Another CA"))
    sender = SyslogSender(SyslogConfig(host="127.0.0.1", port=collector.port, transport="tls",
                                       ca=syslog_pki["ca"][0], cert=stranger[0],
                                       key=stranger[1]))
    with pytest.raises(OSError):
        sender.send([b"<85>1 - - - - - - probe"])  # TLS 1.3: the handshake may pass here
        assert collector.streams_ended.acquire(timeout=20)  # the repository hung up
        sender.send([b"<85>1 - - - - - - probe"])
        sender.send([b"<85>1 - - - - - - probe"])
    collector.close()
    assert collector.frames == []


def test_one_forwarder_at_a_time_holds_the_lease_and_another_takes_over_when_it_ends(
        db_url: str) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from mmbcd_node.db.models import utcnow
    from mmbcd_node.ops.audit_forwarder import release_lease

    sessions = make_sessionmaker(make_engine(db_url))
    collector = SyslogCollector("tcp")
    sender = SyslogSender(SyslogConfig(host="127.0.0.1", port=collector.port, transport="tcp"))

    def add_order(n: int) -> None:
        with transaction(sessions) as session:
            record_event(session, "order_received", accession_number=f"A{n}",
                         detail={"new_order": True})

    add_order(1)
    assert forward_pending(sessions, sender, IDENTITY, owner="audit@a:1") == 1
    add_order(2)
    assert forward_pending(sessions, sender, IDENTITY, owner="audit@b:2") == 0  # a holds it
    assert forward_pending(sessions, sender, IDENTITY, owner="audit@a:1") == 1
    add_order(3)
    with transaction(sessions) as session:  # a dies: its lease runs out
        session.execute(update(AuditForwardCursor).values(
            lease_expires_at=utcnow() - timedelta(seconds=1)))
    assert forward_pending(sessions, sender, IDENTITY, owner="audit@b:2") == 1
    add_order(4)
    release_lease(sessions, "audit@b:2")  # b stops cleanly: a may go on at once
    assert forward_pending(sessions, sender, IDENTITY, owner="audit@a:1") == 1
    messages = collector.wait_for(lambda ms: len(ms) == 4)
    sender.close()
    accessions = [objects(m) for m in messages]
    assert len(accessions) == 4 and len(collector.frames) == 4  # each event sent once
    collector.close()
