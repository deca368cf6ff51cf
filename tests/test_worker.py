"""The worker: jobs in, results and their DICOM objects and deliveries out."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from ml.calibration import Calibration
from mmbcd_node.config import (
    DestinationConfig,
    DicomConfig,
    NodeConfig,
    ResultsConfig,
    StorageConfig,
    WorkerConfig,
)
from mmbcd_node.db import migrate
from mmbcd_node.db.audit import record_event
from mmbcd_node.db.models import Instance, Job, JobState, Priority, Series, Study, StudyState
from mmbcd_node.db.result_models import (
    Delivery,
    DeliveryState,
    OutputObject,
    Result,
    ResultState,
)
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction
from mmbcd_node.job_queue import enqueue_job
from mmbcd_node.send.sender import Sender
from mmbcd_node.work.withdrawal import withdraw_cancelled_results
from mmbcd_node.work.worker import Worker
from tests.support.mammo import make_mammogram, write_mammogram

FOUR_VIEWS = (("R", "CC"), ("R", "MLO"), ("L", "CC"), ("L", "MLO"))


@pytest.fixture(scope="module")
def pipeline():
    from ml.pipeline import Pipeline

    return Pipeline(device="cpu")


@pytest.fixture
def sessions(tmp_path: Path):
    # SQLite only: the model run dominates these tests; the queue and the end-to-end
    # tests cover PostgreSQL.
    url = f"sqlite:///{tmp_path / 'node.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


def node_config(tmp_path: Path, *destinations: DestinationConfig) -> NodeConfig:
    return NodeConfig(storage=StorageConfig(root=tmp_path / "storage"),
                      dicom=DicomConfig(ae_title="MMBCD", acse_timeout=5, dimse_timeout=10,
                                        network_timeout=10),
                      worker=WorkerConfig(batch_size=4, heartbeat_seconds=1.0),
                      destinations=list(destinations))


def add_study(sessions, config: NodeConfig, *, corrupt: str | None = None,
              study_uid: str | None = None,
              mutate: Callable[[pydicom.Dataset], None] | None = None) -> tuple[int, str]:
    """A queued 4-view study stored like the receiver stores one; ``corrupt`` = 'R-CC' breaks
    it, ``mutate`` changes every image."""
    study_uid = study_uid or generate_uid()
    with transaction(sessions) as session:
        study = Study(study_uid=study_uid, correlation_id=uuid.uuid4().hex, patient_id="P1",
                      accession_number="A1", state=StudyState.QUEUED)
        session.add(study)
        session.flush()
        for n, (laterality, view) in enumerate(FOUR_VIEWS):
            ds = make_mammogram(study_uid=study_uid, laterality=laterality, view=view, seed=n,
                                rows=320, cols=256)
            if corrupt == f"{laterality}-{view}":
                ds.PixelData = ds.PixelData[:1000]  # truncated: decoding must fail
            if mutate is not None:
                mutate(ds)
            relative = Path(study_uid) / f"{ds.SOPInstanceUID}.dcm"
            write_mammogram(config.storage.root / relative, ds)
            series = Series(study_id=study.id, series_uid=ds.SeriesInstanceUID, modality="MG",
                            laterality=laterality)
            session.add(series)
            session.flush()
            session.add(Instance(study_id=study.id, series_id=series.id,
                                 sop_instance_uid=ds.SOPInstanceUID, sop_class_uid=ds.SOPClassUID,
                                 transfer_syntax_uid=ds.file_meta.TransferSyntaxUID,
                                 laterality=laterality, view=view, path=str(relative),
                                 size_bytes=1, digest="blake3:" + "0" * 64,
                                 presentation_intent="FOR PRESENTATION"))
        enqueue_job(session, study.id, priority=Priority.URGENT)
        return study.id, study_uid


def job_of(sessions, study_id: int) -> Job:
    with sessions() as session:
        return session.execute(select(Job).where(Job.study_id == study_id)
                               .order_by(Job.id.desc()).limit(1)).scalar_one()


def outputs_of(sessions, study_id: int) -> list[OutputObject]:
    with sessions() as session:
        return list(session.execute(
            select(OutputObject).join(Result).where(Result.study_id == study_id)
            .order_by(OutputObject.id)).scalars())


def raw_score(calibration: Calibration, probability: float) -> float:
    """The raw score a (monotone) calibration maps to ``probability``, by bisection."""
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if calibration.one(middle) < probability else (low, middle)
    return (low + high) / 2


def test_job_stores_result_objects_and_deliveries_and_marks_study_done(
        sessions, tmp_path, pipeline) -> None:
    config = node_config(tmp_path, DestinationConfig(name="pacs", ae_title="PACS",
                                                     host="127.0.0.1", port=1))
    study_id, study_uid = add_study(sessions, config)
    assert Worker(config, sessions, pipeline=pipeline).run_once() == 1
    job = job_of(sessions, study_id)
    assert job.state == JobState.DONE
    assert job.bundle_digest == pipeline.bundle.digest[:64]
    with sessions() as session:
        result = session.execute(select(Result).where(Result.study_id == study_id)).scalar_one()
        assert session.get(Study, study_id).state == StudyState.DONE
        assert result.state == ResultState.ACTIVE
        assert 0.0 <= result.probability <= 1.0
        # Each level is its calibration of the highest raw view score beneath it.
        calibration = pipeline.bundle.calibration
        raw = {side: max(raw_score(calibration.view, view.probability)
                         for view in result.views if view.laterality == side)
               for side in ("R", "L")}
        assert result.right_probability == pytest.approx(calibration.breast.one(raw["R"]),
                                                         abs=1e-6)
        assert result.probability == pytest.approx(calibration.study.one(max(raw.values())),
                                                   abs=1e-6)
        assert len(result.views) == 4 and all(v.error is None for v in result.views)
        assert result.rois, "every view yields ranked ROIs"
        assert json.loads(result.history_sources) == [] and not result.history_used
        deliveries = session.execute(select(Delivery)).scalars().all()
    outputs = outputs_of(sessions, study_id)
    kinds = sorted(o.kind for o in outputs)
    assert kinds == sorted(["sr", "cad_sr"] + ["sc"] * 4 + ["gsps"] * 4)
    assert len(deliveries) == len(outputs)
    assert {d.state for d in deliveries} == {DeliveryState.PENDING}
    for output in outputs:
        ds = pydicom.dcmread(config.storage.root / output.path, stop_before_pixels=True)
        assert ds.SOPInstanceUID == output.sop_instance_uid
        assert ds.StudyInstanceUID == study_uid


def test_two_nodes_with_fresh_databases_never_issue_the_same_result_uid(
        tmp_path, pipeline) -> None:
    # The same study sent to two nodes with the default configuration: job 1 on each.
    study_uid = generate_uid()
    found = []
    for name in ("first", "second"):
        url = f"sqlite:///{tmp_path / name}.db"
        migrate.upgrade(url)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        config = node_config(tmp_path / name)
        study_id, _ = add_study(sessions, config, study_uid=study_uid)
        assert job_of(sessions, study_id).id == 1
        assert Worker(config, sessions, pipeline=pipeline).run_once() == 1
        uids = set()
        for output in outputs_of(sessions, study_id):
            ds = pydicom.dcmread(config.storage.root / output.path, stop_before_pixels=True)
            uids |= {ds.SOPInstanceUID, ds.SeriesInstanceUID}
        engine.dispose()
        found.append(uids)
    assert len(found[0]) == len(found[1]) > 10
    assert not found[0] & found[1]


def test_study_with_nothing_analysable_gets_a_not_attempted_cad_sr_and_oru_after_one_attempt(
        sessions, tmp_path, pipeline, ris) -> None:
    from hl7apy.parser import parse_message
    from pydicom.uid import DigitalMammographyXRayImageStorageForProcessing

    from mmbcd_node.config import Hl7Config, Hl7ResultsConfig
    from mmbcd_node.db.result_models import Hl7ResultMessage
    from mmbcd_node.results import cad_codes
    from tests.support.dicom_validation import assert_sr_template, dciodvfy_errors

    def for_processing(ds: pydicom.Dataset) -> None:
        ds.SOPClassUID = DigitalMammographyXRayImageStorageForProcessing
        ds.PresentationIntentType = "FOR PROCESSING"

    config = dataclasses.replace(
        node_config(tmp_path, DestinationConfig(name="pacs", ae_title="PACS",
                                                host="127.0.0.1", port=1)),
        hl7=Hl7Config(results=Hl7ResultsConfig(host="127.0.0.1", port=ris.port)))
    study_id, study_uid = add_study(sessions, config, mutate=for_processing)
    assert Worker(config, sessions, pipeline=pipeline).run_once() == 1
    job = job_of(sessions, study_id)
    assert (job.state, job.attempts) == (JobState.FAILED, 1)
    with sessions() as session:
        study = session.get(Study, study_id)
        assert study.state == StudyState.NOT_ANALYSABLE
        assert "For Processing" in study.state_reason
        result = session.execute(select(Result).where(Result.study_id == study_id)).scalar_one()
        assert result.probability is None and result.not_attempted_reason == study.state_reason
        assert not result.all_views_used and result.rois == []
        (oru,) = session.execute(select(Hl7ResultMessage)).scalars()
        assert session.execute(select(Delivery)).scalars().all() != []
    (output,) = outputs_of(sessions, study_id)
    assert output.kind == "cad_sr"
    path = config.storage.root / output.path
    cad = pydicom.dcmread(path)
    assert cad.StudyInstanceUID == study_uid
    summary = next(item for item in cad.ContentSequence
                   if item.ConceptNameCodeSequence[0].CodeValue == "111017")
    assert summary.ConceptCodeSequence[0].CodeValue == "111245"  # none succeeded
    statuses = [item.ConceptCodeSequence[0].CodeValue for item in cad.ContentSequence
                if item.ConceptNameCodeSequence[0].CodeValue in ("111064", "111065")]
    assert statuses == [cad_codes.NOT_ATTEMPTED.value] * 2
    library = next(item for item in cad.ContentSequence
                   if item.ConceptNameCodeSequence[0].CodeValue == "111028")
    assert len(library.ContentSequence) == 4  # every image, none analysed
    assert dciodvfy_errors(path) == []
    assert_sr_template(cad)
    rows = {obx.obx_3.obx_3_1.to_er7(): obx.obx_5.to_er7()
            for obx in parse_message(oru.message, find_groups=False).obx}
    assert "111047" not in rows and "For Processing" in rows["NOT-ATTEMPTED"]


def test_corrupt_view_fails_its_job_with_a_clear_error_and_other_studies_go_on(
        sessions, tmp_path, pipeline) -> None:
    config = node_config(tmp_path)
    broken_id, _ = add_study(sessions, config, corrupt="L-MLO")
    fine_id, _ = add_study(sessions, config)
    assert Worker(config, sessions, pipeline=pipeline).run_once() == 2
    broken = job_of(sessions, broken_id)
    assert broken.state == JobState.FAILED
    assert "L MLO" in broken.error and "PixelData" in broken.error
    assert broken.attempts == 1, "a corrupt file is not retried"
    assert job_of(sessions, fine_id).state == JobState.DONE
    with sessions() as session:
        assert session.get(Study, broken_id).state == StudyState.FAILED
        assert session.get(Study, broken_id).state_reason == broken.error
        assert session.get(Study, fine_id).state == StudyState.DONE
    assert outputs_of(sessions, broken_id) == []


def test_rerun_supersedes_the_delivered_result_and_withdraws_it_with_a_rejection_note(
        sessions, tmp_path, pipeline, storescp_factory, ris) -> None:
    from mmbcd_node.config import Hl7Config, Hl7ResultsConfig
    from mmbcd_node.send.hl7_result import Hl7ResultSender
    from tests.support.hl7_validation import field, segments, strict_message

    pacs = storescp_factory()
    config = dataclasses.replace(
        node_config(tmp_path, DestinationConfig(name="pacs", ae_title="PACS",
                                                host="127.0.0.1", port=pacs.port,
                                                kinds=["sr"])),
        hl7=Hl7Config(results=Hl7ResultsConfig(host="127.0.0.1", port=ris.port)))
    study_id, _ = add_study(sessions, config)
    worker = Worker(config, sessions, pipeline=pipeline)
    worker.run_once()
    Sender(config, sessions).send_due()
    assert Hl7ResultSender(config, sessions, "sender").send_due() == 1
    (first_sr,) = pacs.received()
    with transaction(sessions) as session:
        enqueue_job(session, study_id, priority=Priority.BACKGROUND, reason="rerun")
        session.get(Study, study_id).state = StudyState.QUEUED
    worker.run_once()
    Sender(config, sessions).send_due()
    assert Hl7ResultSender(config, sessions, "sender").send_due() == 1
    preliminary, correction = ris.received
    for oru in (preliminary, correction):
        strict_message(oru)
    (first,), (second,) = segments(preliminary, "OBR"), segments(correction, "OBR")
    assert (field(first, 25), field(second, 25)) == ("P", "C"), "the re-run corrects"
    assert field(second, 3) == field(first, 3) == f"MMBCD-{study_id}^MMBCD-NODE"
    assert segments(correction, "PID") == segments(preliminary, "PID") == [
        "PID|1||P1^^^HOSP||Test^Patient||19700101|F"], "no order: the images' patient"
    with sessions() as session:
        results = session.execute(select(Result).where(Result.study_id == study_id)
                                  .order_by(Result.id)).scalars().all()
        assert [r.state for r in results] == [ResultState.SUPERSEDED, ResultState.ACTIVE]
        assert results[1].predecessor_id == results[0].id
    received = {str(ds.SOPClassUID): ds for ds in pacs.received()
                if ds.SOPInstanceUID != first_sr.SOPInstanceUID}
    assert len(pacs.received()) == 3, "old SR, rejection note, new SR"
    note = received["1.2.840.10008.5.1.4.1.1.88.59"]  # Key Object Selection Document
    assert note.ConceptNameCodeSequence[0].CodeValue == "113001"
    rejected = [item.ReferencedSOPInstanceUID
                for series in note.CurrentRequestedProcedureEvidenceSequence[0]
                .ReferencedSeriesSequence for item in series.ReferencedSOPSequence]
    assert rejected == [first_sr.SOPInstanceUID]
    new_sr = next(ds for uid, ds in received.items() if uid != "1.2.840.10008.5.1.4.1.1.88.59")
    predecessor = new_sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert predecessor.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == \
        first_sr.SOPInstanceUID


def test_results_of_a_cancelled_order_are_withdrawn_once(sessions, tmp_path, pipeline,
                                                          storescp_factory) -> None:
    pacs = storescp_factory()
    config = node_config(tmp_path, DestinationConfig(name="pacs", ae_title="PACS",
                                                     host="127.0.0.1", port=pacs.port,
                                                     kinds=["sr", "gsps"]))
    study_id, study_uid = add_study(sessions, config)
    Worker(config, sessions, pipeline=pipeline).run_once()
    Sender(config, sessions).send_due()
    with transaction(sessions) as session:
        record_event(session, "results_withdrawal_requested", study_uid=study_uid,
                     detail={"reason": "order cancelled"})
    assert withdraw_cancelled_results(config, sessions) == 1
    assert withdraw_cancelled_results(config, sessions) == 0
    Sender(config, sessions).send_due()
    notes = [ds for ds in pacs.received() if ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.59"]
    assert len(notes) == 1
    assert notes[0].ConceptNameCodeSequence[0].CodeValue == "113038"
    with sessions() as session:
        (result,) = session.execute(select(Result).where(Result.study_id == study_id)).scalars()
        assert result.state == ResultState.WITHDRAWN


def test_each_destination_gets_the_sr_in_its_own_sr_class(sessions, tmp_path, pipeline) -> None:
    config = dataclasses.replace(
        node_config(tmp_path,
                    DestinationConfig(name="pacs", ae_title="PACS", host="127.0.0.1", port=1,
                                      kinds=["sr"]),
                    DestinationConfig(name="research", ae_title="RES", host="127.0.0.1",
                                      port=2, kinds=["sr"], sr_class="comprehensive3d")),
        results=ResultsConfig(kinds=["sr"]))
    study_id, _ = add_study(sessions, config)
    Worker(config, sessions, pipeline=pipeline).run_once()
    with sessions() as session:
        routed = dict(session.execute(
            select(Delivery.destination, OutputObject.sop_class_uid)
            .join(OutputObject, Delivery.output_id == OutputObject.id)).all())
    assert routed == {"pacs": "1.2.840.10008.5.1.4.1.1.88.33",
                      "research": "1.2.840.10008.5.1.4.1.1.88.34"}
    assert len({o.sop_instance_uid for o in outputs_of(sessions, study_id)}) == 2


class OrderCancelledMidRun:
    """The real pipeline, with the RIS cancelling the order while the model runs."""

    def __init__(self, pipeline, sessions, study_uid: str) -> None:
        self.real, self.sessions, self.study_uid = pipeline, sessions, study_uid
        self.bundle = pipeline.bundle

    def predict(self, studies):
        with transaction(self.sessions) as session:
            record_event(session, "results_withdrawal_requested", study_uid=self.study_uid,
                         detail={"reason": "order cancelled"})
        return self.real.predict(studies)


def test_order_cancelled_while_the_model_runs_leaves_no_result(sessions, tmp_path,
                                                              pipeline) -> None:
    config = node_config(tmp_path, DestinationConfig(name="pacs", ae_title="PACS",
                                                     host="127.0.0.1", port=1))
    study_id, study_uid = add_study(sessions, config)
    worker = Worker(config, sessions, pipeline=OrderCancelledMidRun(pipeline, sessions,
                                                                     study_uid))
    assert worker.run_once() == 1
    assert job_of(sessions, study_id).state == JobState.CANCELLED
    assert outputs_of(sessions, study_id) == []
    with sessions() as session:
        assert session.get(Study, study_id).state == StudyState.CANCELLED
        assert session.execute(select(Result)).first() is None


def test_job_of_a_study_cancelled_while_it_waited_is_cancelled_unrun(sessions, tmp_path,
                                                                     pipeline) -> None:
    config = node_config(tmp_path)
    study_id, _ = add_study(sessions, config)
    with transaction(sessions) as session:
        session.get(Study, study_id).state = StudyState.CANCELLED
    assert Worker(config, sessions, pipeline=pipeline).run_once() == 1
    assert job_of(sessions, study_id).state == JobState.CANCELLED
