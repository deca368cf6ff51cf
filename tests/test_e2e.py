"""End to end: a modality and a RIS feed the running node; a real PACS receives the results.

The node runs as a subprocess (``mmbcd-node serve``); images go in with dcmtk
``storescu``, orders over MLLP, and the results come out at dcmtk ``storescp`` or
Orthanc. Each received object is validated with dciodvfy (and the SRs with dsrdump).
These tests use SQLite; ``test_e2e_scaleout.py`` runs two workers on PostgreSQL.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from mmbcd_node.db import migrate
from mmbcd_node.db.models import Job, JobState, Study
from mmbcd_node.db.ops_models import NodeHeartbeat
from mmbcd_node.db.result_models import (
    CommitmentState,
    Delivery,
    DeliveryState,
    Result,
    ResultRoi,
    ResultState,
)
from tests.support.dicom_peers import db_rows
from tests.support.dicom_validation import (
    assert_sr_template,
    dcentvfy_errors,
    dciodvfy_errors,
    dsrdump,
)
from tests.support.e2e import make_study, push_study, send_order, settled
from tests.support.hl7_validation import strict_message
from tests.support.mammo import make_mammogram, write_mammogram
from tests.support.pacs import wait_until

pytestmark = pytest.mark.slow

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
CAD_SR = "1.2.840.10008.5.1.4.1.1.88.50"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"
ALL_ROLES = ["dicom", "hl7", "scheduler", "worker", "sender"]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only here: the model run dominates, and the scale-out test covers PostgreSQL."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    migrate.upgrade(url)
    return url


def settings(pacs_port: int, *, kinds: list[str] | None = None, commitment: bool = False,
             ae_title: str = "PACS", lease_seconds: float = 30.0) -> dict:
    destination = {"name": "pacs", "ae_title": ae_title, "host": "127.0.0.1", "port": pacs_port,
                   "backoff_seconds": 0.5, "storage_commitment": commitment}
    if kinds:
        destination["kinds"] = kinds
    return {
        "worker": {"lease_seconds": lease_seconds, "heartbeat_seconds": 1.0, "poll_seconds": 0.2,
                   "backoff_seconds": 0.5},
        "model": {"device": "cpu"},
        "results": {"kinds": kinds or ["sr", "cad_sr", "gsps", "sc"]},
        "destinations": [destination],
    }


def sr_items(ds: pydicom.Dataset):
    """Every content item of an SR tree, depth first."""
    for item in ds.get("ContentSequence", []):
        yield item
        yield from sr_items(item)


def probability_in(sr: pydicom.Dataset) -> float:
    """The study's Probability of cancer: the last one, after the views' and breasts'."""
    values = [float(item.MeasuredValueSequence[0].NumericValue) for item in sr_items(sr)
              if item.get("ValueType") == "NUM"
              and item.ConceptNameCodeSequence[0].CodeValue == "111047"]
    if not values:
        raise AssertionError("no Probability of cancer (DCM 111047) in the SR")
    return values[-1]


def active_result(db_url: str, study_uid: str) -> Result:
    (study,) = db_rows(db_url, Study, Study.study_uid == study_uid)
    (result,) = db_rows(db_url, Result, Result.study_id == study.id,
                        Result.state == ResultState.ACTIVE)
    return result


def test_study_and_order_reach_the_pacs_as_valid_sr_cad_sr_sc_and_gsps_in_either_order(
        node_factory, storescp_factory, ris, tmp_path: Path, db_url: str) -> None:
    pacs = storescp_factory()
    node = node_factory(roles=ALL_ROLES, settings={
        **settings(pacs.port), "hl7": {"results": {"host": "127.0.0.1", "port": ris.port}}})
    # Same pixels and history: the result must not depend on which came first.
    images_first = make_study(tmp_path / "in", 1, seed=7)
    order_first = make_study(tmp_path / "in", 2, seed=7)
    push_study(node.dicom_port, images_first.files)
    send_order(node.hl7_port, order_first)
    send_order(node.hl7_port, images_first)
    push_study(node.dicom_port, order_first.files)

    wait_until(lambda: len(pacs.files()) >= 20, timeout=300,
               message=f"20 result objects at the PACS; node log:\n{node.log_text()[-3000:]}")
    wait_until(lambda: settled(db_url), timeout=60, message="every job and delivery settled")
    by_study: dict[str, list[tuple[Path, pydicom.Dataset]]] = defaultdict(list)
    for path in pacs.files():
        ds = pydicom.dcmread(path)
        by_study[str(ds.StudyInstanceUID)].append((path, ds))
    assert set(by_study) == {images_first.study_uid, order_first.study_uid}
    probabilities = {}
    for study in (images_first, order_first):
        objects = by_study[study.study_uid]
        classes = Counter(str(ds.SOPClassUID) for _, ds in objects)
        sc = sum(n for uid, n in classes.items() if uid.startswith("1.2.840.10008.5.1.4.1.1.7"))
        assert (classes[COMPREHENSIVE_SR], classes[CAD_SR], sc, classes[GSPS]) == (1, 1, 4, 4), \
            classes
        assert len({str(ds.SOPInstanceUID) for _, ds in objects}) == 10, "nothing sent twice"
        for path, _ in objects:
            assert dciodvfy_errors(path) == [], path.name
        # The study's entities agree across the sources and every result object.
        assert dcentvfy_errors([*study.files, *(path for path, _ in objects)]) == []
        sources = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
                   for f in study.files}
        (sr_path, sr), = [(p, ds) for p, ds in objects if ds.SOPClassUID == COMPREHENSIVE_SR]
        dsrdump(sr_path)
        dsrdump(next(p for p, ds in objects if ds.SOPClassUID == CAD_SR))
        headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in study.files]
        for _, ds in objects:
            if ds.SOPClassUID in (COMPREHENSIVE_SR, CAD_SR):
                assert_sr_template(ds, headers)
        result = active_result(db_url, study.study_uid)
        assert probability_in(sr) == pytest.approx(result.probability, abs=1e-4)
        rois = db_rows(db_url, ResultRoi, ResultRoi.result_id == result.id)
        # A whole-breast region (score 0: nothing detected) is not a mark.
        per_view = Counter(roi.view_sop_instance_uid for roi in rois if roi.detector_score > 0)
        regions = [i for i in sr_items(sr) if i.get("ValueType") == "SCOORD"]
        labels = [i.TextValue for i in sr_items(sr)
                  if i.get("ValueType") == "TEXT"
                  and i.ConceptNameCodeSequence[0].CodeMeaning == "Tracking Identifier"]
        # One group per view and per mark (at most 4 ROIs a view).
        assert sum("#" in label for label in labels) == \
            sum(min(n, 4) for n in per_view.values()) > 0
        assert len(labels) - sum("#" in label for label in labels) == 4
        assert {str(i.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
                for i in regions} <= sources
        request = sr.ReferencedRequestSequence[0]
        assert request.AccessionNumber == study.accession
        (code,) = request.RequestedProcedureCodeSequence  # OBR-4 of the order
        assert (code.CodeValue, code.CodingSchemeDesignator) == ("MAMMO", "99RIS")
        assert request.PlacerOrderNumberImagingServiceRequest == f"PL{study.accession}"
        for _, ds in objects:
            if str(ds.SOPClassUID).startswith("1.2.840.10008.5.1.4.1.1.7"):
                assert str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID) in sources
                assert ds.Modality == "OT"
        assert result.history_used
        probabilities[study.study_uid] = result.probability
    assert probabilities[images_first.study_uid] == pytest.approx(
        probabilities[order_first.study_uid], abs=1e-6)
    deliveries = db_rows(db_url, Delivery)
    assert len(deliveries) == 20 and {d.state for d in deliveries} == {DeliveryState.SENT}
    (worker_beat,) = db_rows(db_url, NodeHeartbeat, NodeHeartbeat.role == "worker")
    assert worker_beat.status.startswith("model_loaded digest="), "what /healthz reads"
    # The RIS gets one preliminary ORU per study once its objects are at the PACS.
    wait_until(lambda: len(ris.received) == 2, timeout=60, message="two ORU^R01 at the RIS")
    for study in (images_first, order_first):
        (oru,) = [m for m in ris.received if study.study_uid in m]
        assert f"|{study.accession}|" in oru and "\rOBX|1|NM|111047^" in oru
        strict_message(oru)
        assert "clinical history from OBR-13" in oru


def test_worker_killed_mid_job_is_reclaimed_after_its_lease_and_one_result_set_arrives(
        node_factory, storescp_factory, tmp_path: Path, db_url: str) -> None:
    pacs = storescp_factory()
    config = settings(pacs.port, kinds=["sr", "gsps"], lease_seconds=5.0)
    node = node_factory(roles=["dicom", "hl7", "scheduler", "sender"], settings=config)
    doomed = node_factory(roles=["worker"], settings=config)
    # The model is loaded before the worker claims anything; wait for it to be ready.
    wait_until(lambda: "role_started role=worker" in doomed.log_text(), timeout=120,
               message="the worker to start")
    study = make_study(tmp_path / "in", 3)
    push_study(node.dicom_port, study.files)
    send_order(node.hl7_port, study)
    wait_until(lambda: any(j.state == JobState.RUNNING for j in db_rows(db_url, Job)),
               timeout=120, interval=0.02, message="the job to be claimed")
    doomed.kill()
    (job,) = db_rows(db_url, Job)
    assert job.state == JobState.RUNNING and job.attempts == 1, "killed mid-job"
    rescuer = node_factory(roles=["worker"], settings=config)
    wait_until(lambda: len(pacs.files()) >= 5, timeout=240,
               message=f"the result set at the PACS; rescuer log:\n{rescuer.log_text()[-3000:]}")
    wait_until(lambda: settled(db_url), timeout=120, message="every job and delivery settled")
    uids = pacs.received_uids()
    assert len(uids) == len(set(uids)) == 5, "one SR and four GSPS, each once"
    (job,) = db_rows(db_url, Job)
    assert (job.state, job.attempts) == (JobState.DONE, 2)
    assert len(db_rows(db_url, Result)) == 1


def test_late_image_sends_a_new_sr_naming_its_predecessor_and_a_rejection_note_committed(
        node_factory, orthanc_factory, tmp_path: Path, db_url: str) -> None:
    orthanc = orthanc_factory(node_ae="MMBCD", node_port=0, start=False)
    node = node_factory(roles=ALL_ROLES, start=False,
                        settings=settings(orthanc.port, kinds=["sr"], commitment=True,
                                          ae_title="ORTHANC"))
    orthanc.node_port = node.dicom_port
    orthanc.start()
    node.start()
    study = make_study(tmp_path / "in", 4)
    push_study(node.dicom_port, study.files)
    send_order(node.hl7_port, study)
    (first_sr,) = wait_until(orthanc.sop_instance_uids, timeout=240,
                             message="the first SR at Orthanc")
    wait_until(lambda: {d.commitment_state for d in db_rows(db_url, Delivery)}
               == {CommitmentState.COMMITTED}, timeout=60, message="commitment of the first SR")

    late = make_mammogram(study_uid=study.study_uid, patient_id=study.patient_id,
                          accession=study.accession, laterality="R", view="CC", seed=99,
                          rows=320, cols=256, SOPInstanceUID=generate_uid())
    push_study(node.dicom_port, [write_mammogram(tmp_path / "late.dcm", late)])
    wait_until(lambda: len(orthanc.sop_instance_uids()) >= 3, timeout=240,
               message=f"new SR and rejection note; node log:\n{node.log_text()[-3000:]}")
    received = {uid: orthanc.dataset(uid) for uid in orthanc.sop_instance_uids() - {first_sr}}
    (note,) = [ds for ds in received.values() if ds.SOPClassUID == KEY_OBJECT_SELECTION]
    (new_sr,) = [ds for ds in received.values() if ds.SOPClassUID == COMPREHENSIVE_SR]
    assert note.ConceptNameCodeSequence[0].CodeValue == "113001"
    rejected = [item.ReferencedSOPInstanceUID
                for series in note.CurrentRequestedProcedureEvidenceSequence[0]
                .ReferencedSeriesSequence for item in series.ReferencedSOPSequence]
    assert rejected == [first_sr]
    named = new_sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert named.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first_sr
    assert_sr_template(new_sr, [pydicom.dcmread(f, stop_before_pixels=True)
                                for f in [*study.files, tmp_path / "late.dcm"]])
    for name, ds in (("new-sr.dcm", new_sr), ("rejection-note.dcm", note)):  # as received
        ds.save_as(tmp_path / name, enforce_file_format=True)
        assert dciodvfy_errors(tmp_path / name) == [], name
    results = db_rows(db_url, Result)
    assert [r.state for r in results] == [ResultState.SUPERSEDED, ResultState.ACTIVE]
    wait_until(lambda: {d.state for d in db_rows(db_url, Delivery)} == {DeliveryState.COMMITTED},
               timeout=60, message="every delivery committed by Orthanc")


def test_demo_sends_synthetic_studies_and_orders_and_prints_their_results(
        node_factory, storescp_factory, db_url: str) -> None:
    pacs = storescp_factory()
    node = node_factory(roles=ALL_ROLES, settings=settings(pacs.port, kinds=["sr"]))
    run = node.cli("demo", "--studies", "2", "--size", "512x416", "--seed", "5",
                   "--timeout", "240", timeout=300)
    assert "Demo results" in run.stdout
    results = db_rows(db_url, Result)
    assert len(results) == 2 and all(r.history_used for r in results)
    for result in results:
        assert f"{result.probability:.3f}" in run.stdout
    wait_until(lambda: len(pacs.files()) == 2, timeout=60, message="both SRs at the PACS")
