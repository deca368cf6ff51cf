"""What the receiver refuses, with which answer, and that nothing is left behind.

Refusals of objects share one node per database kind; cases that need their own
settings (allow-list, free-space floor, association cap) start their own node on SQLite.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ComprehensiveSRStorage, generate_uid

from mmbcd_node import MANUFACTURER, MODEL_NAME
from mmbcd_node.db.models import AuditEvent, Instance, Study
from mmbcd_node.db.session import make_engine
from mmbcd_node.ops.storage_identity import MARKER
from mmbcd_node.receive.incoming import HEAD_BYTES
from mmbcd_node.receive.scp import receiver_name
from tests.support.databases import DB_KINDS
from tests.support.dicom_peers import (
    db_rows,
    echoscu,
    module_node,
    pynetdicom_store,
    storescu,
)
from tests.support.mammo import make_mammogram, write_mammogram
from tests.support.node import RunningNode
from tests.support.pacs import wait_until
from tests.support.raw_pdu import A_ASSOCIATE_AC, associate_rq, exchange

UID_ROOT = "1.2.826.0.1.3680043.10.1453."
SQLITE_ONLY = pytest.mark.parametrize("empty_db_url", ["sqlite"], indirect=True)
# Objects smaller than the receiver's head (HEAD_BYTES) have their header read from the
# complete file; larger ones while their pixel data still arrives. Both must refuse alike.
SIZES = pytest.mark.parametrize("size", ["small", "large"])


def sized_mammogram(size: str, **overrides: object) -> pydicom.Dataset:
    if size == "small":
        return make_mammogram(**overrides)
    side = 512  # 512 KiB native; about 400 KB as lossless JPEG 2000 of noise
    pixels = np.random.default_rng(5).integers(0, 4096, (side, side), dtype=np.uint16)
    return make_mammogram(rows=8, cols=8, Rows=side, Columns=side,
                          PixelData=pixels.tobytes(), **overrides)


@pytest.fixture(scope="module", params=DB_KINDS)
def node(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    with module_node(request.param, tmp_path_factory.mktemp("refusals")) as running:
        yield running


def audit(node: RunningNode, action: str, **match: str) -> list[AuditEvent]:
    criteria = [getattr(AuditEvent, key) == value for key, value in match.items()]
    return db_rows(node.db_url, AuditEvent, AuditEvent.action == action, *criteria)


def assert_nothing_kept(node: RunningNode) -> None:
    """Every refusal leaves no file (not even a partial one) and no row."""
    files = [p for p in node.storage_root.rglob("*") if p.is_file() and p.name != MARKER]
    assert files == []
    assert db_rows(node.db_url, Instance) == [] and db_rows(node.db_url, Study) == []


def test_wrong_called_ae_title_is_rejected_and_audited(node: RunningNode) -> None:
    result = echoscu(node.dicom_port, called_ae="NOTUS")
    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in result.stderr
    (event,) = audit(node, "association_rejected", called_ae="NOTUS")
    assert event.outcome == "failure" and event.calling_ae == "ECHOSCU"
    assert event.called_ae == "NOTUS" and "'NOTUS'" in event.detail


@SQLITE_ONLY
def test_calling_ae_outside_the_allow_list_is_rejected(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(roles=["dicom"], settings={"dicom": {
        "allowed_calling_aes": ["MODALITY", "PACS@127.0.0.1", "REMOTE@10.1.2.3"]}})
    assert echoscu(node.dicom_port, calling_ae="MODALITY").returncode == 0
    assert echoscu(node.dicom_port, calling_ae="PACS").returncode == 0
    unknown = echoscu(node.dicom_port, calling_ae="STRANGER")
    assert unknown.returncode != 0 and "Calling AE Title Not Recognized" in unknown.stderr
    # Listed, but only from another address.
    assert echoscu(node.dicom_port, calling_ae="REMOTE").returncode != 0
    reasons = {e.calling_ae: e.detail for e in audit(node, "association_rejected")}
    assert set(reasons) == {"STRANGER", "REMOTE"}
    assert "not in allowed_calling_aes" in reasons["STRANGER"]
    assert {e.calling_ae for e in audit(node, "association_accepted")} == {"MODALITY", "PACS"}


@SQLITE_ONLY
def test_below_free_space_floor_associations_are_rejected_as_transient(
        node_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(roles=["dicom"], settings={"dicom": {"min_free_bytes": 1 << 62}})
    path = write_mammogram(tmp_path / "a.dcm", make_mammogram())
    result = storescu(node.dicom_port, [path])
    assert result.returncode != 0
    assert "Rejected Transient" in result.stderr or "Temporary Congestion" in result.stderr, \
        result.stderr
    assert_nothing_kept(node)
    (event,) = audit(node, "association_rejected")
    assert "min_free_bytes" in event.detail


def test_missing_study_uid_gets_a900_and_nothing_is_kept(node: RunningNode,
                                                        tmp_path: Path) -> None:
    ds = make_mammogram(StudyInstanceUID=None)
    path = write_mammogram(tmp_path / "a.dcm", ds)
    assert pynetdicom_store(node.dicom_port, path) == 0xA900
    assert_nothing_kept(node)
    (event,) = audit(node, "instance_rejected", sop_instance_uid=ds.SOPInstanceUID)
    assert "Study Instance UID" in event.detail and "0xA900" in event.detail


def test_missing_series_uid_of_a_mammogram_gets_a900(
        node: RunningNode, tmp_path: Path) -> None:
    path = write_mammogram(tmp_path / "a.dcm", make_mammogram(SeriesInstanceUID=None))
    assert pynetdicom_store(node.dicom_port, path) == 0xA900
    assert_nothing_kept(node)


@SIZES
def test_sop_instance_uid_differing_from_request_gets_a900(
        node: RunningNode, tmp_path: Path, size: str) -> None:
    ds = sized_mammogram(size)
    path = write_mammogram(tmp_path / "a.dcm", ds)
    # The request carries the file meta UID; the data set says otherwise.
    changed = pydicom.dcmread(path)
    changed.SOPInstanceUID = generate_uid()
    changed.save_as(path, enforce_file_format=False)
    assert pydicom.dcmread(path).file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert pynetdicom_store(node.dicom_port, path) == 0xA900
    assert_nothing_kept(node)


def test_malformed_uid_gets_a900(
        node: RunningNode, tmp_path: Path) -> None:
    path = write_mammogram(tmp_path / "a.dcm", make_mammogram(StudyInstanceUID="1.2.abc.3"))
    assert pynetdicom_store(node.dicom_port, path) == 0xA900
    assert_nothing_kept(node)


def _truncate(path: Path, keep: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


@SIZES
def test_truncated_pixel_data_gets_c000_and_nothing_is_kept(node: RunningNode,
                                                            tmp_path: Path, size: str) -> None:
    ds = sized_mammogram(size)
    path = write_mammogram(tmp_path / "a.dcm", ds)
    _truncate(path, path.stat().st_size - 5000)
    assert pynetdicom_store(node.dicom_port, path) == 0xC000
    assert_nothing_kept(node)
    (event,) = audit(node, "instance_rejected", sop_instance_uid=ds.SOPInstanceUID)
    assert "truncated" in event.detail


@SIZES
def test_truncated_encapsulated_pixel_data_gets_c000(
        node: RunningNode, tmp_path: Path, size: str) -> None:
    path = write_mammogram(tmp_path / "a.dcm", sized_mammogram(size), "1.2.840.10008.1.2.4.90")
    assert (path.stat().st_size > HEAD_BYTES) == (size == "large")
    _truncate(path, path.stat().st_size - 100)
    assert pynetdicom_store(node.dicom_port, path) == 0xC000
    assert_nothing_kept(node)


def test_unparseable_header_gets_c000(
        node: RunningNode, tmp_path: Path) -> None:
    path = write_mammogram(tmp_path / "a.dcm", make_mammogram())
    data = bytearray(path.read_bytes())
    meta_end = 132 + 12 + struct.unpack("<L", data[140:144])[0]
    # Cut the data set in the middle of an element header, well before Pixel Data.
    path.write_bytes(bytes(data[:meta_end + 301]))
    assert pynetdicom_store(node.dicom_port, path) == 0xC000
    assert_nothing_kept(node)


@SQLITE_ONLY
def test_database_failure_gets_a700_and_removes_the_file(
        node_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(roles=["dicom"])
    engine = make_engine(node.db_url)
    with engine.begin() as conn:
        # The instance insert now fails; the study and series inserts still work.
        conn.exec_driver_sql("DROP TABLE instances")
    engine.dispose()
    path = write_mammogram(tmp_path / "a.dcm", make_mammogram())
    assert pynetdicom_store(node.dicom_port, path) == 0xA700
    files = [p for p in node.storage_root.rglob("*") if p.is_file() and p.name != MARKER]
    assert files == []
    assert audit(node, "instance_stored") == []


def test_own_structured_report_routed_back_is_not_stored(
        node: RunningNode, tmp_path: Path) -> None:
    # An SR this node made (our UID root), sent back by a PACS.
    sr = make_mammogram(sop_class=ComprehensiveSRStorage, Modality="SR",
                        SOPInstanceUID=UID_ROOT + "7.1", PixelData=None)
    path = write_mammogram(tmp_path / "sr.dcm", sr)
    assert pynetdicom_store(node.dicom_port, path) == 0x0000
    # A mammography-class object carrying our manufacturer (never ours to process).
    ours = make_mammogram(Manufacturer=MANUFACTURER, ManufacturerModelName=MODEL_NAME)
    path2 = write_mammogram(tmp_path / "ours.dcm", ours)
    assert storescu(node.dicom_port, [path2]).returncode == 0
    assert_nothing_kept(node)
    assert len(audit(node, "own_object_ignored", sop_instance_uid=UID_ROOT + "7.1")) == 1
    assert len(audit(node, "own_object_ignored", sop_instance_uid=ours.SOPInstanceUID)) == 1


@SQLITE_ONLY
def test_association_cap_rejects_the_extra_association(node_factory) -> None:  # type: ignore[no-untyped-def]
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    node = node_factory(roles=["dicom"], settings={"dicom": {"max_associations": 1,
                                                            "acse_timeout": 1.0}})
    ae = AE(ae_title="HOLDER")
    ae.add_requested_context(Verification)

    def hold() -> object:
        # The start-up port probe may still hold the one slot for a moment.
        association = ae.associate("127.0.0.1", node.dicom_port, ae_title="MMBCD")
        return association if association.is_established else None

    held = wait_until(hold, timeout=10, interval=0.1, message="the one association slot")
    try:
        extra = echoscu(node.dicom_port, calling_ae="EXTRA")
        assert extra.returncode != 0 and "Local Limit Exceeded" in extra.stderr
    finally:
        held.release()
    # pynetdicom rejects over the cap itself and reports it afterwards (EVT_REJECTED).
    wait_until(lambda: audit(node, "association_rejected"), timeout=10, interval=0.1,
               message="the rejected association in the audit trail")
    (event,) = audit(node, "association_rejected")
    assert event.calling_ae == "EXTRA" and "max_associations" in event.detail


@SQLITE_ONLY
def test_incoming_leftovers_are_removed_at_start(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(roles=["dicom"], start=False)
    incoming = node.storage_root / ".incoming" / receiver_name(node.dicom_port)
    other = node.storage_root / ".incoming" / "other-receiver-11112"
    for folder in (incoming, other):
        folder.mkdir(parents=True)
        (folder / "recv-partial.dcm").write_bytes(b"\0" * 1000)
    node.start()
    assert list(incoming.iterdir()) == []
    # Another receiver sharing the storage root may be receiving into its own folder.
    assert [p.name for p in other.iterdir()] == ["recv-partial.dcm"]


def test_big_endian_is_refused_at_negotiation_and_storescu_sends_little_endian(
        node_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian

    node = node_factory(roles=["dicom"])  # its own: the object is stored
    ds = make_mammogram()
    path = tmp_path / "be.dcm"
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.save_as(path, enforce_file_format=True, little_endian=False, implicit_vr=False)
    # Proposed alone, the syntax is refused: "transfer syntaxes not supported".
    answer = exchange(node.dicom_port, associate_rq("MMBCD", "OLDARCHIVE", [
        (1, "1.2.840.10008.1.1", [ExplicitVRLittleEndian]),
        (3, str(ds.SOPClassUID), [ExplicitVRBigEndian])]), timeout=10)
    assert answer.pdu_type == A_ASSOCIATE_AC and answer.context_results == {1: 0, 3: 4}
    # storescu proposing big endian first converts to the little endian accepted.
    run = storescu(node.dicom_port, [path], options=["-xb"], calling_ae="OLDARCHIVE")
    assert run.returncode == 0 and "(Success)" in run.stderr, run.stderr
    (instance,) = db_rows(node.db_url, Instance, Instance.sop_instance_uid == ds.SOPInstanceUID)
    assert instance.transfer_syntax_uid == ExplicitVRLittleEndian
    stored = pydicom.dcmread(node.storage_root / instance.path)
    sent = pydicom.dcmread(path)
    assert np.array_equal(stored.pixel_array, sent.pixel_array)
    assert stored.PatientID == sent.PatientID


def test_context_without_a_transfer_syntax_is_answered_not_supported(node: RunningNode) -> None:
    answer = exchange(node.dicom_port, associate_rq("MMBCD", "BROKEN", [
        (1, "1.2.840.10008.1.1", []),
        (3, "1.2.840.10008.5.1.4.1.1.1.2", ["1.2.840.10008.1.2.1"])]), timeout=10)
    assert answer.pdu_type == A_ASSOCIATE_AC and answer.context_results == {1: 4, 3: 0}


def _splice(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert data.count(old) == 1, old
    path.write_bytes(data.replace(old, new))


def _unparseable(kind: str, tmp_path: Path) -> tuple[pydicom.Dataset, Path]:
    """A mammogram whose header no parser (or database) can take: an IS value that
    overflows, sequences nested 1,000 deep, an element of an unknown VR, or a Patient ID
    holding a NUL byte (PostgreSQL refuses it, SQLite would keep it)."""
    ds = make_mammogram(InstanceNumber="123456")
    ds.add_new(0x0040A730, "SQ", [])  # Content Sequence, empty: the splice point
    path = write_mammogram(tmp_path / f"{kind}.dcm", ds)
    if kind == "overflowing_is":
        _splice(path, b"IS\x06\x00123456", b"IS\x06\x001e999 ")
    elif kind == "deep_nesting":
        depth = 1000
        opening = b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff"
        closing = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        _splice(path, b"\x40\x00\x30\xa7SQ\x00\x00\x00\x00\x00\x00",
                opening * depth + closing * depth)
    elif kind == "nul_in_patient_id":
        _splice(path, b"\x10\x00\x20\x00LO\x02\x00P1", b"\x10\x00\x20\x00LO\x02\x00\x00P")
    else:
        _splice(path, b"\x40\x00\x30\xa7SQ\x00\x00\x00\x00\x00\x00",
                b"\x40\x00\x30\xa7ZZ\x00\x00")
    return ds, path


@pytest.mark.parametrize("kind", ["overflowing_is", "deep_nesting", "unknown_vr",
                                  "nul_in_patient_id"])
def test_unparseable_content_gets_c000_and_nothing_is_left_behind(
        node: RunningNode, tmp_path: Path, kind: str) -> None:
    ds, path = _unparseable(kind, tmp_path)
    assert pynetdicom_store(node.dicom_port, path) == 0xC000
    assert_nothing_kept(node)
    (event,) = audit(node, "instance_rejected", sop_instance_uid=ds.SOPInstanceUID)
    assert "0xC000" in event.detail


def test_deflate_bomb_is_refused_without_inflating_it_in_memory(
        node: RunningNode, tmp_path: Path) -> None:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    # 96 MiB of zeros deflate to about 100 KB: far beyond any mammogram's ratio.
    side = 7168
    ds = make_mammogram(rows=8, cols=8, Rows=side, Columns=side, PixelData=bytes(2 * side * side))
    path = write_mammogram(tmp_path / "bomb.dcm", ds, DeflatedExplicitVRLittleEndian)
    assert path.stat().st_size < 1 << 20
    before = node.rss_bytes
    assert pynetdicom_store(node.dicom_port, path) == 0xC000
    assert node.rss_bytes - before < 48 << 20
    assert_nothing_kept(node)
    (event,) = audit(node, "instance_rejected", sop_instance_uid=ds.SOPInstanceUID)
    assert "inflates beyond" in event.detail

