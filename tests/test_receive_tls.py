"""DICOM over TLS (``[dicom.tls]``), with dcmtk ``storescu +tls`` as the peer."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from mmbcd_node.db.models import AuditEvent, Instance
from tests.support.dicom_peers import db_rows, echoscu, storescu
from tests.support.mammo import make_mammogram, write_mammogram

SQLITE_ONLY = pytest.mark.parametrize("empty_db_url", ["sqlite"], indirect=True)


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def issue(folder: Path, name: str, ca: Path, ca_key: Path) -> tuple[Path, Path]:
    """A key and a certificate for ``name`` signed by the test CA."""
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
            "-subj", f"/CN={name}")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", "2")
    return key, cert


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "pki"
    folder.mkdir()
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
            "-out", str(ca), "-days", "2", "-subj", "/CN=Test Hospital CA")
    node_key, node_cert = issue(folder, "localhost", ca, ca_key)
    client_key, client_cert = issue(folder, "modality", ca, ca_key)
    return {"ca": ca, "node_key": node_key, "node_cert": node_cert,
            "client_key": client_key, "client_cert": client_cert}


@SQLITE_ONLY
def test_storescu_over_tls_with_client_certificate(node_factory, pki: dict[str, Path],
                                                   tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(roles=["dicom"], settings={"dicom": {"tls": {
        "cert": str(pki["node_cert"]), "key": str(pki["node_key"]), "ca": str(pki["ca"]),
        "require_client_cert": True}}})
    ds = make_mammogram()
    path = write_mammogram(tmp_path / "a.dcm", ds)

    secure = storescu(node.dicom_port, [path], options=[
        "+tls", str(pki["client_key"]), str(pki["client_cert"]), "+cf", str(pki["ca"])])
    assert secure.returncode == 0, secure.stderr
    assert [i.sop_instance_uid for i in db_rows(node.db_url, Instance)] == [ds.SOPInstanceUID]

    other = write_mammogram(tmp_path / "b.dcm", make_mammogram())
    plain = storescu(node.dicom_port, [other])
    assert plain.returncode != 0
    anonymous = storescu(node.dicom_port, [other], options=["+tla", "+cf", str(pki["ca"])])
    assert anonymous.returncode != 0
    assert len(db_rows(node.db_url, Instance)) == 1


@SQLITE_ONLY
def test_failed_tls_handshakes_are_audited_and_never_hold_up_the_listener(
        node_factory, pki: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(roles=["dicom"], settings={"dicom": {"tls": {
        "cert": str(pki["node_cert"]), "key": str(pki["node_key"]), "ca": str(pki["ca"]),
        "require_client_cert": True}}})
    stranger_ca, stranger_ca_key = tmp_path / "other-ca.pem", tmp_path / "other-ca.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(stranger_ca_key),
            "-out", str(stranger_ca), "-days", "2", "-subj", "/CN=Elsewhere CA")
    stranger_key, stranger_cert = issue(tmp_path, "stranger", stranger_ca, stranger_ca_key)

    # A client that connects and stays silent must not block anyone else's handshake.
    with socket.create_connection(("127.0.0.1", node.dicom_port)):
        plain = echoscu(node.dicom_port, calling_ae="PLAIN")
        untrusted = echoscu(node.dicom_port, calling_ae="STRANGER", options=[
            "+tls", str(stranger_key), str(stranger_cert), "+cf", str(pki["ca"])])
        trusted = echoscu(node.dicom_port, calling_ae="MODALITY", options=[
            "+tls", str(pki["client_key"]), str(pki["client_cert"]), "+cf", str(pki["ca"])])
    assert plain.returncode != 0 and untrusted.returncode != 0
    assert trusted.returncode == 0, trusted.stderr

    # The peer may see the connection fail a moment before the audit row is committed.
    deadline = time.monotonic() + 15
    while len(failures := db_rows(node.db_url, AuditEvent,
                                  AuditEvent.action == "tls_failure")) < 2:
        assert time.monotonic() < deadline, [f.detail for f in failures]
        time.sleep(0.1)
    assert len(failures) == 2, [f.detail for f in failures]
    assert all(f.outcome == "failure" and f.peer_address == "127.0.0.1" for f in failures)
    details = [json.loads(f.detail) for f in failures]
    assert all(d["service"] == "dicom" and d["port"] == node.dicom_port for d in details)
    assert any("CERTIFICATE_VERIFY_FAILED" in d["error"].upper()
               or "certificate verify failed" in d["error"] for d in details), details
    accepted = db_rows(node.db_url, AuditEvent, AuditEvent.action == "association_accepted")
    assert [a.calling_ae for a in accepted] == ["MODALITY"]
