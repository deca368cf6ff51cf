"""The DICOM receiver against real peers: dcmtk echoscu/storescu and a pynetdicom SCU.

Each test starts the real node (``python -m mmbcd_node serve --role dicom``) on the
test's database (SQLite, and PostgreSQL when configured).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import HTJ2KLossless, generate_uid
from sqlalchemy import select

from mmbcd_node.db.models import AuditEvent, Instance, Series, Study
from mmbcd_node.db.session import make_engine, make_sessionmaker
from tests.support.dicom_peers import (
    STORESCU_SYNTAX_OPTIONS,
    echoscu,
    pynetdicom_store,
    storescu,
)
from tests.support.mammo import (
    LOSSY_SYNTAXES,
    TRANSFER_SYNTAXES,
    make_mammogram,
    write_mammogram,
)


def rows(node, model):  # type: ignore[no-untyped-def]
    engine = make_engine(node.db_url)
    try:
        with make_sessionmaker(engine)() as session:
            return session.execute(select(model).order_by(model.id)).scalars().all()
    finally:
        engine.dispose()


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and ".incoming" not in p.parts)


def test_echo_answers_success(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(roles=["dicom"])
    result = echoscu(node.dicom_port)
    assert result.returncode == 0, result.stderr
    accepted = [e for e in rows(node, AuditEvent) if e.action == "association_accepted"]
    assert accepted and accepted[0].calling_ae == "ECHOSCU"
    assert accepted[0].peer_address == "127.0.0.1"


def test_every_transfer_syntax_is_stored_as_received_with_identical_pixels(
        node_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(roles=["dicom"])
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

    instances = {i.sop_instance_uid: i for i in rows(node, Instance)}
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
    assert not list((node.storage_root / ".incoming").iterdir())


def test_cstore_success_only_after_row_committed(node_factory,
                                                 tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(roles=["dicom"])
    ds = make_mammogram(laterality="R", view="MLO", patient_id="PX9", accession="ACC9")
    path = write_mammogram(tmp_path / "r_mlo.dcm", ds)
    result = storescu(node.dicom_port, [path])
    assert result.returncode == 0 and "Received Store Response (Success)" in result.stderr
    # The moment storescu has its Success answer, row, file and audit event exist.
    (instance,) = rows(node, Instance)
    (study,) = rows(node, Study)
    (series,) = rows(node, Series)
    assert instance.sop_instance_uid == ds.SOPInstanceUID
    assert (instance.laterality, instance.view, instance.presentation_intent) == (
        "R", "MLO", "FOR PRESENTATION")
    assert instance.calling_ae == "STORESCU" and instance.called_ae == "MMBCD"
    assert (study.study_uid, study.state, study.patient_id, study.accession_number) == (
        ds.StudyInstanceUID, "receiving", "PX9", "ACC9")
    assert series.series_uid == ds.SeriesInstanceUID and series.modality == "MG"
    stored = pydicom.dcmread(node.storage_root / instance.path)
    assert stored.SOPInstanceUID == ds.SOPInstanceUID
    events = [e for e in rows(node, AuditEvent) if e.action == "instance_stored"]
    assert [e.sop_instance_uid for e in events] == [ds.SOPInstanceUID]
    assert "Test^Patient" not in events[0].detail


def test_resent_identical_instance_is_a_noop_success(node_factory,
                                                     tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(roles=["dicom"])
    path = write_mammogram(tmp_path / "a.dcm", make_mammogram())
    assert storescu(node.dicom_port, [path]).returncode == 0
    first = stored_files(node.storage_root)
    again = storescu(node.dicom_port, [path, path])
    assert again.returncode == 0 and again.stderr.count("Store Response (Success)") == 2
    assert len(rows(node, Instance)) == 1
    assert stored_files(node.storage_root) == first
    duplicates = [e for e in rows(node, AuditEvent) if e.action == "instance_duplicate"]
    assert len(duplicates) == 2 and all('"identical": true' in e.detail for e in duplicates)


def test_mg_secondary_capture_is_stored_as_a_mammogram(node_factory,
                                                       tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(roles=["dicom"])
    film = make_mammogram(sop_class="1.2.840.10008.5.1.4.1.1.7", view="MLO",  # SC, MG
                          ConversionType="DF")
    path = write_mammogram(tmp_path / "film.dcm", film)
    assert storescu(node.dicom_port, [path]).returncode == 0
    (instance,) = rows(node, Instance)
    assert instance.sop_class_uid == "1.2.840.10008.5.1.4.1.1.7"
    assert instance.view == "MLO"


def test_non_mammography_image_is_acknowledged_and_audited_not_stored(
        node_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(roles=["dicom"])
    ct = make_mammogram(sop_class="1.2.840.10008.5.1.4.1.1.2", Modality="CT",  # CT Image
                        ViewCodeSequence=None)
    path = write_mammogram(tmp_path / "ct.dcm", ct)
    result = storescu(node.dicom_port, [path])
    assert result.returncode == 0 and "Store Response (Success)" in result.stderr
    assert rows(node, Instance) == [] and rows(node, Study) == []
    assert stored_files(node.storage_root) == []
    (event,) = [e for e in rows(node, AuditEvent) if e.action == "non_mammography_acknowledged"]
    assert event.sop_instance_uid == ct.SOPInstanceUID and event.study_uid == ct.StudyInstanceUID


def test_private_sop_class_gets_success_and_is_not_stored(node_factory,
                                                         tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(roles=["dicom"])
    private = make_mammogram(sop_class="1.3.6.1.4.1.99999.1.2.3", Modality="OT")
    path = write_mammogram(tmp_path / "private.dcm", private)
    assert pynetdicom_store(node.dicom_port, path) == 0x0000
    assert rows(node, Instance) == []
    assert stored_files(node.storage_root) == []
    assert [e.action for e in rows(node, AuditEvent)].count("non_mammography_acknowledged") == 1
