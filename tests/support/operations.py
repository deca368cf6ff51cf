"""Studies as the stages leave them in SQL and on disk, for the operations tests.

``seed_study`` writes what receiving leaves behind (study, series, instance rows with
files under the storage root, audit events) plus a job; tests then move the study
through the states they need. End-to-end tests fill the database by real receiving.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import blake3
from pydicom.uid import generate_uid
from sqlalchemy.orm import Session

from mmbcd_node.db.audit import record_event
from mmbcd_node.db.models import Instance, Job, JobState, Series, Study, StudyState, utcnow
from mmbcd_node.db.result_models import Delivery, OutputObject, Result

VIEWS = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))


def seed_study(session: Session, storage_root: Path, *, patient_id: str = "P1",
               accession: str = "A1", state: str = StudyState.DONE,
               received_at: datetime | None = None, calling_ae: str = "MODALITY",
               job_state: str | None = JobState.DONE, size: int = 1000,
               delivery_state: str | None = None, destination: str = "pacs") -> Study:
    """A four-view study received ``received_at`` (default: now), its files and audit events.

    With a done job the study gets a result 12 s after receipt; with ``delivery_state``
    also an SR output and one delivery of it to ``destination`` in that state.
    """
    at = received_at or utcnow()
    study_uid = generate_uid()
    study = Study(study_uid=study_uid, patient_id=patient_id, accession_number=accession,
                  state=state, first_received_at=at, last_received_at=at, state_changed_at=at,
                  completed_at=at + timedelta(seconds=5), completed_by="expected_views",
                  correlation_id=study_uid[-12:])
    session.add(study)
    session.flush()
    series = Series(study_id=study.id, series_uid=generate_uid(), modality="MG")
    session.add(series)
    session.flush()
    record_event(session, "association_accepted", calling_ae=calling_ae, called_ae="MMBCD",
                 peer_address="127.0.0.1")
    for index, (laterality, view) in enumerate(VIEWS):
        sop_uid = generate_uid()
        relative = Path(study_uid) / series.series_uid / f"{sop_uid}.dcm"
        path = storage_root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        body = bytes([index]) * size
        path.write_bytes(body)
        session.add(Instance(
            study_id=study.id, series_id=series.id, sop_instance_uid=sop_uid,
            sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2", transfer_syntax_uid="1.2.840.10008.1.2.1",
            patient_id=patient_id, accession_number=accession, laterality=laterality, view=view,
            path=str(relative), size_bytes=size, digest="blake3:" + blake3.blake3(body).hexdigest(),
            calling_ae=calling_ae, called_ae="MMBCD", peer_address="127.0.0.1",
            received_at=at + timedelta(seconds=index)))
        record_event(session, "instance_stored", calling_ae=calling_ae, called_ae="MMBCD",
                     patient_id=patient_id, study_uid=study_uid, sop_instance_uid=sop_uid,
                     accession_number=accession)
    if job_state is not None:
        job = Job(study_id=study.id, state=job_state, attempts=1, created_at=at,
                  not_before=at, started_at=at + timedelta(seconds=10),
                  finished_at=(at + timedelta(seconds=12)
                               if job_state in (JobState.DONE, JobState.FAILED) else None),
                  bundle_digest="sha256:demo" if job_state == JobState.DONE else None)
        session.add(job)
        session.flush()
        if job_state == JobState.DONE:
            _add_result(session, study, job, at + timedelta(seconds=12), delivery_state,
                        destination)
    session.flush()
    return study


def _add_result(session: Session, study: Study, job: Job, at: datetime,
                delivery_state: str | None, destination: str) -> None:
    result = Result(job_id=job.id, study_id=study.id, probability=0.42,
                    bundle_digest="sha256:demo", created_at=at)
    session.add(result)
    session.flush()
    if delivery_state is None:
        return
    output = OutputObject(result_id=result.id, kind="sr",
                          sop_class_uid="1.2.840.10008.5.1.4.1.1.88.33",
                          sop_instance_uid=generate_uid(), series_instance_uid=generate_uid(),
                          path=f"results/{result.id}.dcm", created_at=at)
    session.add(output)
    session.flush()
    delivered = delivery_state in ("sent", "committed")
    session.add(Delivery(output_id=output.id, destination=destination, state=delivery_state,
                         attempts=1, created_at=at,
                         sent_at=at + timedelta(seconds=1) if delivered else None,
                         committed_at=(at + timedelta(seconds=2)
                                       if delivery_state == "committed" else None)))
