"""The worker: claim jobs, run the model, store results and their DICOM objects.

One pass (``Worker.run_once``) claims up to ``[worker] batch_size`` jobs, reads each
study's views and its clinical history (resolved now, so an order update that came
while the job waited is used), scores all the views of all the claimed studies in one
``Pipeline.predict`` call (batched across studies), builds the configured result
objects, writes them, and records result, objects and deliveries in the same
transaction that marks the job done, and only while the worker still holds the lease.
A re-run supersedes the study's previous result and withdraws its objects.

Before the model runs, every stored image of the study passes the input contract
(``source_image``) and the image selection (``select_images``): the model and the
result builders see the normalised images that the selection picked, and the outputs
list the images set aside and the missing views. A study with nothing analysable ends
``not_analysable`` with its reason; an image the contract rejects, or whose pixels
cannot be decoded, fails its job at once with a reason naming the image and the
attribute. Only transient failures (``failures.is_transient``) are retried; the other
studies of the batch go on.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pydicom
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ml.types import StudyInput, StudyPrediction, ViewInput
from mmbcd_node.config import NodeConfig
from mmbcd_node.db.audit import record_event
from mmbcd_node.db.installation import installation_uuid
from mmbcd_node.db.models import Instance, Job, JobState, Study, StudyState, utcnow
from mmbcd_node.db.order_models import Order
from mmbcd_node.db.result_models import OutputObject, Result
from mmbcd_node.db.session import transaction
from mmbcd_node.db.study_state import change_state
from mmbcd_node.images.image_selection import ImageSelection, select_images
from mmbcd_node.images.source_image import ImageRejected, SourceImage, source_image
from mmbcd_node.job_queue import (
    ClaimedJob,
    cancel_pending_jobs,
    claim_jobs,
    complete_job,
    fail_job,
    heartbeat,
    holds_lease,
)
from mmbcd_node.logs import get_logger
from mmbcd_node.ops.heartbeat import MODEL_LOADED
from mmbcd_node.orders.history import StudyHistory, history_for_study
from mmbcd_node.process import process_name, renewing
from mmbcd_node.receive.admission import unwritable
from mmbcd_node.results.outputs import ResultObject, build_outputs
from mmbcd_node.results.rejection_note import RejectionReason
from mmbcd_node.results.result_set import (
    BundleIdentity,
    HistoryProvenance,
    OrderContext,
    ResultError,
    ResultSet,
    result_set_for_node,
)
from mmbcd_node.send.deliveries import create_deliveries
from mmbcd_node.send.hl7_result import queue_result_message
from mmbcd_node.work.failures import is_transient, transient_message
from mmbcd_node.work.result_records import (
    active_result,
    object_references,
    record_output,
    record_result,
    write_object,
)
from mmbcd_node.work.withdrawal import (
    order_cancelled_since,
    withdraw_cancelled_results,
    withdraw_result,
)

log = get_logger(__name__)


class ViewUnreadable(ValueError):
    """A view of the study could not be read or scored; the message names it."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass
class _Work:
    """One claimed job with what was read for it at job start."""

    job: ClaimedJob
    study_uid: str
    selection: ImageSelection
    history: StudyHistory | None
    started_at: datetime
    error: str | None = None
    transient: bool = False  # the error may not happen again: retry
    cancelled: bool = False  # the study was cancelled while the job waited
    not_analysable: str | None = None  # why no image of the study can be analysed
    images: list[SourceImage] = dataclasses.field(default_factory=list)  # all, as read

    @property
    def views(self) -> list[SourceImage]:
        return self.selection.analysed


class Worker:
    """Runs claimed jobs through the model; ``pipeline`` loads on first use, once."""

    def __init__(self, config: NodeConfig, sessions: sessionmaker[Session],
                 owner: str | None = None, pipeline: object | None = None) -> None:
        self.config = config
        self.sessions = sessions
        self.owner = owner or process_name("worker")
        self._storage_refused = False
        self.policy = config.worker
        self._pipeline = pipeline
        self._installation: str | None = None

    @property
    def installation(self) -> str:
        """This database's identity (``db.installation``), the source of result UIDs."""
        if self._installation is None:
            with transaction(self.sessions) as session:
                self._installation = installation_uuid(session)
        return self._installation

    @property
    def pipeline(self):  # type: ignore[no-untyped-def]
        """The model (``ml.pipeline.Pipeline``) on the configured device, loaded once.

        Raises ``ml.manifest.BundleError`` for a missing or altered bundle.
        """
        if self._pipeline is None:
            from ml.pipeline import Pipeline

            model = self.config.model
            self._pipeline = Pipeline(model.bundle, device=model.device,
                                      batch_views=max(4, 4 * self.config.worker.batch_size))
            log.info("bundle_loaded", digest=self._pipeline.bundle.digest,
                     device=self._pipeline.device)
        return self._pipeline

    def run_once(self) -> int:
        """Claim and run one batch of jobs; return how many jobs were claimed.

        Nothing is claimed while this host cannot write the storage root: the other
        hosts' workers take the jobs instead of this one failing them.
        """
        root = Path(self.config.storage.root)
        problem = unwritable(root) if root.exists() else None
        if problem is not None:
            if not self._storage_refused:
                log.warning("worker_paused", reason=problem)
            self._storage_refused = True
            return 0
        if self._storage_refused:
            log.info("worker_resumed")
            self._storage_refused = False
        with transaction(self.sessions) as session:
            claimed = claim_jobs(session, self.owner, self.policy,
                                 limit=self.config.worker.batch_size)
        if not claimed:
            return 0
        with renewing(lambda: self._heartbeat(claimed), self.config.worker.heartbeat_seconds,
                      "job-heartbeat"):
            self._run(claimed)
        return len(claimed)

    def _heartbeat(self, jobs: list[ClaimedJob]) -> None:
        with transaction(self.sessions) as session:
            for job in jobs:
                if heartbeat(session, job.id, self.owner, self.policy):
                    continue
                state, owner = session.execute(
                    select(Job.state, Job.lease_owner).where(Job.id == job.id)).one()
                # Taken over or cancelled; a job this batch already ended is neither.
                if state in (JobState.RUNNING, JobState.CANCELLED):
                    log.warning("lease_lost", job=job.id, state=state, holder=owner)

    def _run(self, claimed: list[ClaimedJob]) -> None:
        work = [self._start(job) for job in claimed]
        runnable = [w for w in work if w.error is None and w.not_analysable is None]
        try:
            predictions = self.pipeline.predict([self._study_input(w) for w in runnable])
        except Exception as exc:  # the model failed as a whole
            log.exception("pipeline_failed", jobs=len(runnable))
            for item in runnable:
                self._fail(item, f"model run failed: {type(exc).__name__}: {exc}",
                           retry=is_transient(exc))
            predictions = []
            runnable = []
        for item in work:
            if item.cancelled:
                with transaction(self.sessions) as session:
                    cancel_pending_jobs(session, item.job.study_id, str(item.error))
            elif item.error is not None:
                self._fail(item, item.error, retry=item.transient)
            elif item.not_analysable is not None:
                try:
                    self._end_not_analysable(item, item.not_analysable)
                except Exception as exc:
                    log.exception("not_attempted_report_failed", job=item.job.id)
                    self._fail(item, f"{type(exc).__name__}: {exc}", retry=is_transient(exc))
        for item, prediction in zip(runnable, predictions, strict=True):
            try:
                self._finish(item, prediction)
            except ViewUnreadable as exc:
                self._fail(item, str(exc), retry=exc.transient)
            except ResultError as exc:
                self._fail(item, str(exc), retry=False)
            except Exception as exc:
                log.exception("job_finish_failed", job=item.job.id)
                self._fail(item, f"{type(exc).__name__}: {exc}", retry=is_transient(exc))

    def _start(self, job: ClaimedJob) -> _Work:
        started_at = utcnow()
        with transaction(self.sessions) as session:
            study = session.get(Study, job.study_id)
            assert study is not None
            change_state(session, study.id, StudyState.RUNNING)
            history = None if job.without_history else history_for_study(session, study.id)
            instances = session.execute(
                select(Instance).where(Instance.study_id == study.id,
                                       Instance.purged_at.is_(None))
                .order_by(Instance.received_at, Instance.id)).scalars().all()
        work = _Work(job=job, study_uid=study.study_uid, selection=ImageSelection(),
                     history=history, started_at=started_at)
        if study.state == StudyState.CANCELLED:
            work.cancelled = True
            work.error = f"study {study.study_uid} was cancelled"
            return work
        root = Path(self.config.storage.root)
        images: list[SourceImage] = []
        for instance in instances:
            label = f"{instance.laterality or '?'} {instance.view or '?'}"
            try:
                image = source_image(pydicom.dcmread(root / instance.path))
            except ImageRejected as exc:
                work.error = f"{exc} ({label})"
                return work
            except OSError as exc:  # storage briefly away: another attempt may read it
                work.error = f"image {instance.sop_instance_uid} ({label}): {exc}"
                work.transient = True
                return work
            except Exception as exc:  # the file does not parse: no retry can fix it
                work.error = (f"image {instance.sop_instance_uid} ({label}): the file cannot "
                              f"be read as DICOM: {type(exc).__name__}: {exc}")
                return work
            if image.defaults:
                log.info("image_defaults", sop_instance_uid=image.sop_instance_uid,
                         defaults="; ".join(image.defaults))
            images.append(image)
        work.images = images
        work.selection = select_images(
            images, allow_for_processing=self.pipeline.bundle.preprocess.allow_for_processing)
        if not work.selection.analysed:
            work.not_analysable = work.selection.nothing_reason()
        return work

    def _study_input(self, item: _Work) -> StudyInput:
        text = item.history.text if item.history else ""
        return StudyInput(study_uid=item.study_uid, history=text,
                          views=[ViewInput(image.dataset, image.sop_instance_uid)
                                 for image in item.views])

    def _finish(self, item: _Work, prediction: StudyPrediction) -> None:
        broken = [v for v in prediction.views if v.error is not None]
        if broken:
            first = broken[0]
            raise ViewUnreadable(
                f"image {first.sop_instance_uid} ({first.laterality or '?'} {first.view or '?'}"
                f"): PixelData could not be decoded or prepared: {first.error}",
                transient=transient_message(first.error or ""))
        bundle = self.pipeline.bundle
        history = _provenance(item.history)
        result_set = self._result_set(item, prediction, item.views)
        objects = build_outputs(result_set, self.config.results.kinds,
                                self.config.results.sr_class)
        # A destination may want the SR in another class ([[destinations]] sr_class):
        # the same report is built once per class asked for, each with its own UIDs.
        if "sr" in self.config.results.kinds:
            extra = {d.sr_class for d in self.config.destinations
                     if d.sr_class and "sr" in d.kinds} - {self.config.results.sr_class}
            for sr_class in sorted(extra):
                objects += build_outputs(
                    dataclasses.replace(result_set,
                                        uid_entropy=f"{result_set.uid_entropy}/{sr_class}"),
                    ["sr"], sr_class)
        written = self._write(objects)
        with transaction(self.sessions) as session:
            if not holds_lease(session, item.job.id, self.owner):
                log.warning("result_dropped", job=item.job.id, reason="lease_lost")
                return
            study = session.get(Study, item.job.study_id)
            assert study is not None
            if order_cancelled_since(session, study.study_uid, item.started_at):
                # The order went away while the model ran: nothing goes to the PACS.
                cancel_pending_jobs(session, study.id, "order cancelled while the job ran")
                change_state(session, study.id, StudyState.CANCELLED,
                             only_from={StudyState.RUNNING})
                log.info("result_dropped", job=item.job.id, reason="order_cancelled")
                return
            result, outputs, previous = self._replace_result(session, item, study, prediction,
                                                             written)
            complete_job(session, item.job.id, self.owner, bundle_digest=bundle.digest[:64])
            change_state(session, study.id, StudyState.DONE, rerun_requested=False)
            record_event(session, "results_created", actor=self.owner,
                         study_uid=study.study_uid, patient_id=study.patient_id,
                         accession_number=study.accession_number,
                         detail={"job_id": item.job.id, "result_id": result.id,
                                 "objects": len(outputs), "bundle_digest": bundle.digest,
                                 "history": history.statement(),
                                 "images": item.selection.statement(),
                                 "not_analysed": [dataclasses.asdict(n) for n in
                                                  item.selection.not_analysed],
                                 "predecessor_result_id": previous.id if previous else None})
        log.info("job_done", job=item.job.id, study_id=item.job.study_id,
                 probability=round(prediction.probability or 0.0, 4), objects=len(outputs))

    def _result_set(self, item: _Work, prediction: StudyPrediction,
                    views: list[SourceImage]) -> ResultSet:
        """The result set of ``item``'s job, replacing the study's active result."""
        bundle = self.pipeline.bundle
        with self.sessions() as session:
            previous = active_result(session, item.job.study_id)
            predecessors = (tuple(object_references(session, previous, item.study_uid))
                            if previous else ())
        return result_set_for_node(
            self.config, prediction=prediction, views=views,
            bundle=BundleIdentity(name=bundle.name, version=bundle.version, digest=bundle.digest,
                                  parameters={"threshold": bundle.threshold,
                                              "top_k": bundle.detector_params.k}),
            history=_provenance(item.history), order=_order_context(item.history),
            predecessors=predecessors, uid_entropy=f"{item.study_uid}/job-{item.job.id}",
            installation=self.installation,
            not_analysed=tuple(item.selection.not_analysed),
            missing_views=tuple(item.selection.missing))

    def _write(self, objects: list[ResultObject]) -> list[tuple[ResultObject, str]]:
        root = Path(self.config.storage.root)
        return [(obj, write_object(root, obj.dataset, obj.kind)) for obj in objects]

    def _replace_result(self, session: Session, item: _Work, study: Study,
                        prediction: StudyPrediction, written: list[tuple[ResultObject, str]],
                        not_attempted_reason: str | None = None,
                        ) -> tuple[Result, list[OutputObject], Result | None]:
        """Record the job's result in place of the study's active one (withdrawn as
        superseded), with its objects, their deliveries and its ORU; return the result,
        its outputs and the result it replaced."""
        bundle = self.pipeline.bundle
        previous = active_result(session, study.id)
        if previous is not None:
            withdraw_result(session, self.config, previous, study, RejectionReason.SUPERSEDED)
        result = record_result(session, job_id=item.job.id, study_id=study.id,
                               prediction=prediction,
                               model_version=f"{bundle.name} {bundle.version}",
                               history=_provenance(item.history), predecessor=previous,
                               not_attempted_reason=not_attempted_reason)
        return result, self._record_outputs(session, result, item, study, written), previous

    def _record_outputs(self, session: Session, result: Result, item: _Work, study: Study,
                        written: list[tuple[ResultObject, str]]) -> list[OutputObject]:
        """Record ``result``'s objects with their deliveries, and queue its ORU."""
        result.order_id = item.history.order_id if item.history else None
        outputs = [record_output(session, result.id, obj.kind, obj.dataset, path)
                   for obj, path in written]
        create_deliveries(session, outputs, self.config.destinations,
                          default_sr_class=self.config.results.sr_class)
        queue_result_message(session, self.config, result, study,
                             session.get(Order, result.order_id) if result.order_id else None)
        return outputs

    def _end_not_analysable(self, item: _Work, reason: str) -> None:
        """End the study ``not_analysable`` with ``reason``, after one attempt, and tell
        the reading workstation and the RIS: a not-attempted result (no probability)
        whose Mammography CAD SR, where configured, says "Not Attempted" over the
        study's images, and whose ORU carries the reason."""
        bundle = self.pipeline.bundle
        prediction = StudyPrediction(study_uid=item.study_uid, probability=None, breasts={},
                                     views=[], bundle_digest=bundle.digest,
                                     history_used=False, operating=bundle.operating)
        objects: list[ResultObject] = []
        if "cad_sr" in self.config.results.kinds and item.images:
            objects = build_outputs(self._result_set(item, prediction, item.images),
                                    ["cad_sr"])
        written = self._write(objects)
        with transaction(self.sessions) as session:
            if not self._end_attempt(session, item, reason, retry=False,
                                     study_state=StudyState.NOT_ANALYSABLE):
                return
            study = session.get(Study, item.job.study_id)
            assert study is not None
            self._replace_result(session, item, study, prediction, written,
                                 not_attempted_reason=reason[:4000])

    def _fail(self, item: _Work, error: str, *, retry: bool) -> None:
        """End the attempt: queued again (``retry`` and attempts left), else the study
        fails with ``error`` as its reason."""
        with transaction(self.sessions) as session:
            self._end_attempt(session, item, error, retry=retry, study_state=StudyState.FAILED)

    def _end_attempt(self, session: Session, item: _Work, error: str, *, retry: bool,
                     study_state: StudyState) -> bool:
        """Fail the job's attempt: queued again (``retry`` and attempts left), else the
        study goes to ``study_state`` with ``error`` as its reason. True when that was
        the last attempt; False also when the lease was lost."""
        state = fail_job(session, item.job.id, self.owner, error, self.policy, retry=retry)
        if state is None:
            return False
        final = state == "failed"
        change_state(session, item.job.study_id, study_state if final else StudyState.QUEUED,
                     only_from={StudyState.RUNNING},
                     state_reason=error[:4000] if final else None)
        if final:
            action = ("study_not_analysable" if study_state == StudyState.NOT_ANALYSABLE
                      else "job_failed")
            record_event(session, action, actor=self.owner, study_uid=item.study_uid,
                         outcome="failure", detail={"job_id": item.job.id, "error": error,
                                                    "retried": item.job.attempt > 1})
        return final


def _provenance(history: StudyHistory | None) -> HistoryProvenance:
    if history is None or not history.text.strip():
        return HistoryProvenance()
    return HistoryProvenance(text=history.text, source_fields=tuple(history.source_fields))


def _order_context(history: StudyHistory | None) -> OrderContext | None:
    if history is None:
        return None
    return OrderContext(accession_number=history.accession_number or "",
                        placer_order_number=history.placer_number or "",
                        filler_order_number=history.filler_number or "",
                        requested_procedure_id=history.requested_procedure_id or "",
                        requested_procedure_description=history.procedure or "",
                        reason_for_requested_procedure=history.reason or "",
                        accession_issuer=history.issuer_of_accession or "",
                        requested_procedure_code=(
                            (history.procedure_code.value, history.procedure_code.scheme,
                             history.procedure_code.meaning)
                            if history.procedure_code else None))


class WorkerRole:
    """``serve --role worker``: loads the bundle at start, then runs passes until stopped.

    Each idle poll also withdraws results whose order was cancelled. The process's
    heartbeat thread publishes the model status (``beat_facts``) every
    ``heartbeat_seconds``: what ``/healthz`` and ``status`` read, also while a long batch
    runs.
    """

    name = "worker"

    def __init__(self, config: NodeConfig, sessions: sessionmaker[Session]) -> None:
        self.config = config
        self.sessions = sessions
        self.worker = Worker(config, sessions)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker", daemon=True)

    def start(self) -> None:
        pipeline = self.worker.pipeline  # load the bundle once, before the first job
        self._status = f"{MODEL_LOADED} digest={pipeline.bundle.digest} device={pipeline.device}"
        self._digest = pipeline.bundle.digest
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def beat_facts(self) -> dict[str, object]:
        """What this role publishes with its heartbeat (``ops.heartbeat.RoleBeats``)."""
        return {"status": self._status, "bundle_digest": self._digest[:80]}

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = 0
            try:
                busy = self.worker.run_once()
                if not busy:
                    withdraw_cancelled_results(self.config, self.sessions)
            except Exception:  # keep the role alive; the next pass retries
                log.exception("worker_pass_failed")
            if not busy:
                self._stop.wait(self.config.worker.poll_seconds)
