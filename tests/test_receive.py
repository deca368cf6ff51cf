"""The DICOM receiver against real peers: dcmtk echoscu/storescu and a pynetdicom SCU.

One node per database kind (SQLite, and PostgreSQL when configured) serves the whole
module; each test sends objects with fresh UIDs and looks only at those.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import blake3
import numpy as np
import pydicom
import pytest
from pydicom.uid import HTJ2KLossless, generate_uid
from sqlalchemy import update

from mmbcd_node.db.models import AuditEvent, Instance, Series, Study
from mmbcd_node.db.session import make_engine
from tests.support.databases import DB_KINDS
from tests.support.dicom_peers import (
    STORESCU_SYNTAX_OPTIONS,
    db_rows,
    echoscu,
    module_node,
    pynetdicom_store,
    storescu,
)
from tests.support.mammo import (
    LOSSY_SYNTAXES,
    TRANSFER_SYNTAXES,
    make_mammogram,
    write_mammogram,
)
from tests.support.node import RunningNode


@pytest.fixture(scope="module", params=DB_KINDS)
def node(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    with module_node(request.param, tmp_path_factory.mktemp("receive")) as running:
        yield running


def files_of_study(root: Path, study_uid: str) -> list[Path]:
    return sorted(p for p in (root / study_uid).rglob("*") if p.is_file())


def audit_of(node: RunningNode, action: str, sop_uid: str) -> list[AuditEvent]:
    return db_rows(node.db_url, AuditEvent, AuditEvent.action == action,
                   AuditEvent.sop_instance_uid == sop_uid)


def test_echo_answers_success(node: RunningNode) -> None:
    result = echoscu(node.dicom_port)
    assert result.returncode == 0, result.stderr
    accepted = db_rows(node.db_url, AuditEvent, AuditEvent.action == "association_accepted",
                       AuditEvent.calling_ae == "ECHOSCU")
    assert accepted and accepted[-1].peer_address == "127.0.0.1"
    assert accepted[-1].called_ae == "MMBCD"


def test_every_transfer_syntax_is_stored_as_received_with_identical_pixels(
        node: RunningNode, tmp_path: Path) -> None:
    study_uid = generate_uid()
    original = make_mammogram(study_uid=study_uid, rows=128, cols=96, seed=3)
    expected = np.frombuffer(original.PixelData, np.uint16).reshape(128, 96)
    sent: dict[str, Path] = {}
    for index, syntax in enumerate(TRANSFER_SYNTAXES):
        ds = make_mammogram(study_uid=study_uid, rows=128, cols=96, seed=3,
                            InstanceNumber=index + 1)
        path = write_mammogram(tmp_path / "out" / f"{index}.dcm", ds, syntax)
        if syntax == HTJ2KLossless:
            assert pynetdicom_store(node.dicom_port, path) == 0x0000
        else:
            result = storescu(node.dicom_port, [path], options=STORESCU_SYNTAX_OPTIONS[syntax])
            assert result.returncode == 0, result.stderr
        sent[ds.SOPInstanceUID] = path

    instances = {i.sop_instance_uid: i for i in db_rows(
        node.db_url, Instance, Instance.sop_instance_uid.in_(sent))}
    assert set(instances) == set(sent)
    for sop_uid, path in sent.items():
        instance = instances[sop_uid]
        on_disk = node.storage_root / instance.path
        received = pydicom.dcmread(on_disk)
        original_file = pydicom.dcmread(path)
        syntax = original_file.file_meta.TransferSyntaxUID
        assert instance.transfer_syntax_uid == syntax
        assert received.file_meta.TransferSyntaxUID == syntax
        # Stored as received: the encoded pixel data is byte-identical to what was sent.
        assert received.PixelData == original_file.PixelData
        if syntax not in LOSSY_SYNTAXES:
            assert np.array_equal(received.pixel_array, expected), syntax.name
        assert instance.size_bytes == on_disk.stat().st_size
        assert (instance.laterality, instance.view) == ("L", "CC")
    assert [p for p in (node.storage_root / ".incoming").rglob("*") if p.is_file()] == []


def test_cstore_success_only_after_row_committed(node: RunningNode, tmp_path: Path) -> None:
    ds = make_mammogram(laterality="R", view="MLO", patient_id="PX9", accession="ACC9")
    path = write_mammogram(tmp_path / "r_mlo.dcm", ds)
    result = storescu(node.dicom_port, [path])
    assert result.returncode == 0 and "Received Store Response (Success)" in result.stderr
    # The moment storescu has its Success answer, row, file and audit event exist.
    (instance,) = db_rows(node.db_url, Instance,
                          Instance.sop_instance_uid == ds.SOPInstanceUID)
    (study,) = db_rows(node.db_url, Study, Study.study_uid == ds.StudyInstanceUID)
    (series,) = db_rows(node.db_url, Series, Series.study_id == study.id)
    assert (instance.laterality, instance.view, instance.presentation_intent) == (
        "R", "MLO", "FOR PRESENTATION")
    assert instance.calling_ae == "STORESCU" and instance.called_ae == "MMBCD"
    assert (study.study_uid, study.state, study.patient_id, study.accession_number) == (
        ds.StudyInstanceUID, "receiving", "PX9", "ACC9")
    assert series.series_uid == ds.SeriesInstanceUID and series.modality == "MG"
    on_disk = node.storage_root / instance.path
    assert pydicom.dcmread(on_disk).SOPInstanceUID == ds.SOPInstanceUID
    # Size and digest were taken from the bytes as they arrived; they match the file.
    assert instance.size_bytes == on_disk.stat().st_size
    assert instance.digest == "blake3:" + blake3.blake3(on_disk.read_bytes()).hexdigest()
    (event,) = audit_of(node, "instance_stored", ds.SOPInstanceUID)
    assert event.study_uid == ds.StudyInstanceUID and event.patient_id == "PX9"
    assert "Test^Patient" not in event.detail


def test_resent_identical_instance_is_a_noop_success(node: RunningNode, tmp_path: Path) -> None:
    ds = make_mammogram()
    path = write_mammogram(tmp_path / "a.dcm", ds)
    assert storescu(node.dicom_port, [path]).returncode == 0
    first = files_of_study(node.storage_root, ds.StudyInstanceUID)
    again = storescu(node.dicom_port, [path, path])
    assert again.returncode == 0 and again.stderr.count("Store Response (Success)") == 2
    assert len(db_rows(node.db_url, Instance,
                       Instance.sop_instance_uid == ds.SOPInstanceUID)) == 1
    assert files_of_study(node.storage_root, ds.StudyInstanceUID) == first
    duplicates = audit_of(node, "instance_duplicate", ds.SOPInstanceUID)
    assert len(duplicates) == 2 and all('"identical": true' in e.detail for e in duplicates)


def test_resend_is_compared_with_the_digest_algorithm_of_the_stored_row(
        node: RunningNode, tmp_path: Path) -> None:
    ds = make_mammogram()
    path = write_mammogram(tmp_path / "a.dcm", ds)
    assert storescu(node.dicom_port, [path]).returncode == 0
    (instance,) = db_rows(node.db_url, Instance, Instance.sop_instance_uid == ds.SOPInstanceUID)
    # A row stored before instances were digested with BLAKE3 carries a SHA-256.
    on_disk = (node.storage_root / instance.path).read_bytes()
    engine = make_engine(node.db_url)
    with engine.begin() as connection:
        connection.execute(update(Instance).where(Instance.id == instance.id).values(
            digest="sha256:" + hashlib.sha256(on_disk).hexdigest()))
    engine.dispose()
    changed = make_mammogram(study_uid=ds.StudyInstanceUID, seed=99,
                             SeriesInstanceUID=ds.SeriesInstanceUID,
                             SOPInstanceUID=ds.SOPInstanceUID)
    changed_path = write_mammogram(tmp_path / "b.dcm", changed)
    result = storescu(node.dicom_port, [path, changed_path])
    assert result.returncode == 0 and result.stderr.count("Store Response (Success)") == 2
    same, different = audit_of(node, "instance_duplicate", ds.SOPInstanceUID)
    assert '"identical": true' in same.detail and same.outcome == "success"
    assert '"identical": false' in different.detail and different.outcome == "warning"
    # The first copy stays.
    assert (node.storage_root / instance.path).read_bytes() == on_disk


def test_mg_secondary_capture_is_stored_as_a_mammogram(node: RunningNode, tmp_path: Path) -> None:
    film = make_mammogram(sop_class="1.2.840.10008.5.1.4.1.1.7", view="MLO",  # SC, MG
                          ConversionType="DF")
    path = write_mammogram(tmp_path / "film.dcm", film)
    assert storescu(node.dicom_port, [path]).returncode == 0
    (instance,) = db_rows(node.db_url, Instance,
                          Instance.sop_instance_uid == film.SOPInstanceUID)
    assert instance.sop_class_uid == "1.2.840.10008.5.1.4.1.1.7"
    assert instance.view == "MLO"


def test_non_mammography_image_is_acknowledged_and_audited_not_stored(
        node: RunningNode, tmp_path: Path) -> None:
    ct = make_mammogram(sop_class="1.2.840.10008.5.1.4.1.1.2", Modality="CT",  # CT Image
                        ViewCodeSequence=None)
    path = write_mammogram(tmp_path / "ct.dcm", ct)
    result = storescu(node.dicom_port, [path])
    assert result.returncode == 0 and "Store Response (Success)" in result.stderr
    assert db_rows(node.db_url, Study, Study.study_uid == ct.StudyInstanceUID) == []
    assert not (node.storage_root / ct.StudyInstanceUID).exists()
    (event,) = audit_of(node, "non_mammography_acknowledged", ct.SOPInstanceUID)
    assert event.study_uid == ct.StudyInstanceUID and event.calling_ae == "STORESCU"


def test_private_sop_class_gets_success_and_is_not_stored(node: RunningNode,
                                                         tmp_path: Path) -> None:
    private = make_mammogram(sop_class="1.3.6.1.4.1.99999.1.2.3", Modality="OT")
    path = write_mammogram(tmp_path / "private.dcm", private)
    assert pynetdicom_store(node.dicom_port, path) == 0x0000
    assert db_rows(node.db_url, Study, Study.study_uid == private.StudyInstanceUID) == []
    assert not (node.storage_root / private.StudyInstanceUID).exists()
    assert len(audit_of(node, "non_mammography_acknowledged", private.SOPInstanceUID)) == 1


def test_receive_log_lines_carry_the_study_correlation_id(node: RunningNode,
                                                          tmp_path: Path) -> None:
    first = make_mammogram()
    second = make_mammogram(study_uid=first.StudyInstanceUID, view="MLO")
    paths = [write_mammogram(tmp_path / "a.dcm", first),
             write_mammogram(tmp_path / "b.dcm", second)]
    assert storescu(node.dicom_port, paths).returncode == 0
    assert storescu(node.dicom_port, paths[:1]).returncode == 0  # a resend: duplicate
    (study,) = db_rows(node.db_url, Study, Study.study_uid == first.StudyInstanceUID)
    lines = node.log_path.read_text().splitlines()
    ours = [line for line in lines
            if ("event=instance_stored" in line or "event=instance_duplicate" in line)
            and (first.SOPInstanceUID in line or second.SOPInstanceUID in line)]
    assert len(ours) == 3, ours
    assert all(f"correlation_id={study.correlation_id}" in line for line in ours), ours


def test_image_spanning_many_pdus_is_stored_byte_for_byte_with_its_digest(
        node: RunningNode, tmp_path: Path) -> None:
    # 9.4 MB of pixels: storescu sends them in many P-DATA-TF PDUs (at most 128 KiB
    # each), most of which the receiver writes straight into the file; on disk they
    # make four whole 2 MiB blocks and a tail that is not a multiple of 4 KiB.
    pixels = np.random.default_rng(7).integers(0, 4096, (2049, 2300), dtype=np.uint16)
    first = make_mammogram(rows=8, cols=8, Rows=2049, Columns=2300,
                           PixelData=pixels.tobytes())
    second = make_mammogram(study_uid=first.StudyInstanceUID, view="MLO", rows=8, cols=8,
                            Rows=2049, Columns=2300, PixelData=pixels[::-1].tobytes())
    paths = [write_mammogram(tmp_path / "a.dcm", first),
             write_mammogram(tmp_path / "b.dcm", second)]
    for options in ([], ["--max-send-pdu", "16384"]):
        result = storescu(node.dicom_port, paths, options=options)
        assert result.returncode == 0 and result.stderr.count("(Success)") == 2
    for ds, path, expected in ((first, paths[0], pixels), (second, paths[1], pixels[::-1])):
        (instance,) = db_rows(node.db_url, Instance,
                              Instance.sop_instance_uid == ds.SOPInstanceUID)
        on_disk = node.storage_root / instance.path
        stored = on_disk.read_bytes()
        assert instance.digest == "blake3:" + blake3.blake3(stored).hexdigest()
        assert instance.size_bytes == len(stored)
        received = pydicom.dcmread(on_disk)
        assert received.PixelData == pydicom.dcmread(path).PixelData
        assert np.array_equal(received.pixel_array, expected)
    duplicates = audit_of(node, "instance_duplicate", first.SOPInstanceUID)
    assert len(duplicates) == 1 and '"identical": true' in duplicates[0].detail


def test_header_longer_than_the_receivers_head_is_read_from_the_whole_file(
        node: RunningNode, tmp_path: Path) -> None:
    # A vendor's private block of 300 KB before Pixel Data: the header does not end
    # within the first bytes the receiver reads while the object arrives.
    ds = make_mammogram(view="MLO")
    ds.add_new(0x00290010, "LO", "ACME 1.0")
    ds.add_new(0x00291010, "OB", bytes(range(256)) * 1200)
    path = write_mammogram(tmp_path / "long-header.dcm", ds)
    assert storescu(node.dicom_port, [path]).returncode == 0
    (instance,) = db_rows(node.db_url, Instance, Instance.sop_instance_uid == ds.SOPInstanceUID)
    assert (instance.view, instance.laterality) == ("MLO", ds.ImageLaterality)
    stored = pydicom.dcmread(node.storage_root / instance.path)
    assert stored[0x00291010].value == ds[0x00291010].value
    assert stored.PixelData == ds.PixelData
