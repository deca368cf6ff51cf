"""DICOM over TLS (``[dicom.tls]``), with dcmtk ``storescu +tls`` as the peer."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mmbcd_node.db.models import Instance
from tests.support.dicom_peers import db_rows, storescu
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
