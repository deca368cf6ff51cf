"""Results ready to be sent: a done study whose output files lie under the storage root."""

from __future__ import annotations

import uuid
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import RLELossless, generate_uid

from mmbcd_node.config import NodeConfig
from mmbcd_node.db.models import Job, JobState, Study, StudyState
from mmbcd_node.db.result_models import OutputObject, Result
from mmbcd_node.db.session import transaction
from mmbcd_node.send.deliveries import create_deliveries
from tests.support.mammo import make_mammogram, write_mammogram


def stored_outputs(sessions, config: NodeConfig,
                   kinds=("cad_sr", "sc", "gsps")) -> tuple[int, list]:
    """A done study with one result whose output files lie under the storage root."""
    with transaction(sessions) as session:
        study = Study(study_uid=generate_uid(), correlation_id=uuid.uuid4().hex,
                      state=StudyState.DONE)
        session.add(study)
        session.flush()
        job = Job(study_id=study.id, state=JobState.DONE)
        session.add(job)
        session.flush()
        result = Result(job_id=job.id, study_id=study.id, probability=0.5, bundle_digest="d" * 64)
        session.add(result)
        session.flush()
        outputs = []
        for n, kind in enumerate(kinds):
            ds = make_mammogram(study_uid=study.study_uid, seed=n, rows=64, cols=48)
            relative = Path(study.study_uid) / f"{kind}-{ds.SOPInstanceUID}.dcm"
            (config.storage.root / relative).parent.mkdir(parents=True, exist_ok=True)
            written = write_mammogram(config.storage.root / relative, ds,
                                      transfer_syntax=RLELossless if kind == "sc" else
                                      "1.2.840.10008.1.2.1")
            ds = dcmread(written, stop_before_pixels=True)  # compressing may renew the UID
            output = OutputObject(result_id=result.id, kind=kind, sop_class_uid=ds.SOPClassUID,
                                  sop_instance_uid=ds.SOPInstanceUID,
                                  series_instance_uid=ds.SeriesInstanceUID,
                                  path=str(relative))
            session.add(output)
            outputs.append(output)
        session.flush()
        create_deliveries(session, outputs, config.destinations)
        return study.id, [o.sop_instance_uid for o in outputs]
