"""Result rows and output files: what a finished job leaves in SQL and under the storage root.

Output files are written before the transaction that records them (temp file, fsync,
rename), so a committed ``OutputObject`` always has its file; a file whose transaction
never committed (the worker died) is overwritten by the next attempt, whose UIDs are
the same because they derive from the job id.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pydicom
from sqlalchemy import select
from sqlalchemy.orm import Session

from ml.types import StudyPrediction
from mmbcd_node.db.result_models import (
    OutputObject,
    Result,
    ResultRoi,
    ResultState,
    ResultView,
)
from mmbcd_node.results.references import ObjectReference
from mmbcd_node.results.result_set import HistoryProvenance

RESULTS_DIR = "results"


def write_object(storage_root: Path, ds: pydicom.Dataset, kind: str) -> str:
    """Write ``ds`` durably under ``<root>/results/<study>/``; return the path relative to root."""
    relative = Path(RESULTS_DIR) / str(ds.StudyInstanceUID) / f"{kind}-{ds.SOPInstanceUID}.dcm"
    target = storage_root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".part")
    ds.save_as(temporary, enforce_file_format=True)
    with temporary.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    return str(relative)


def active_result(session: Session, study_id: int) -> Result | None:
    """The study's current (active) result, if any."""
    return session.execute(
        select(Result).where(Result.study_id == study_id, Result.state == ResultState.ACTIVE)
        .order_by(Result.id.desc()).limit(1)).scalar_one_or_none()


def object_references(session: Session, result: Result, study_uid: str) -> list[ObjectReference]:
    """References to the result's own objects not yet withdrawn (rejection notes excluded)."""
    outputs = session.execute(
        select(OutputObject).where(OutputObject.result_id == result.id,
                                   OutputObject.kind != "ko",
                                   OutputObject.withdrawn_at.is_(None))
        .order_by(OutputObject.id)).scalars().all()
    return [ObjectReference(study_uid, o.series_instance_uid, o.sop_class_uid,
                            o.sop_instance_uid) for o in outputs]


def record_result(session: Session, *, job_id: int, study_id: int,
                  prediction: StudyPrediction, model_version: str,
                  history: HistoryProvenance, predecessor: Result | None,
                  not_attempted_reason: str | None = None) -> Result:
    """Insert the result of one job with its views and ROIs (ranked by attention per view).

    A not-attempted result (``not_attempted_reason``: nothing in the study could be
    analysed) has a prediction without views and no probability.
    """
    result = Result(
        job_id=job_id, study_id=study_id, state=ResultState.ACTIVE,
        predecessor_id=predecessor.id if predecessor else None,
        probability=prediction.probability,
        not_attempted_reason=not_attempted_reason,
        right_probability=prediction.breasts.get("R"),
        left_probability=prediction.breasts.get("L"),
        bundle_digest=prediction.bundle_digest[:64], model_version=model_version[:64],
        operating_threshold=prediction.threshold,
        breast_threshold=prediction.operating.breast.threshold,
        operating_point=prediction.operating.statement(),
        history_used=prediction.history_used and history.available,
        history_sources=json.dumps(list(history.source_fields) if history.available else []),
        all_views_used=bool(prediction.views) and all(v.error is None
                                                      for v in prediction.views))
    session.add(result)
    session.flush()
    for view in prediction.views:
        session.add(ResultView(result_id=result.id, sop_instance_uid=view.sop_instance_uid,
                               laterality=view.laterality, view=view.view,
                               probability=view.probability, error=view.error))
        ranked = sorted(view.rois, key=lambda roi: roi.attention, reverse=True)
        for rank, roi in enumerate(ranked, start=1):
            x0, y0, x1, y1 = roi.box
            session.add(ResultRoi(result_id=result.id, view_sop_instance_uid=view.sop_instance_uid,
                                  laterality=view.laterality, rank=rank, x0=x0, y0=y0, x1=x1,
                                  y1=y1, detector_score=roi.detector_score,
                                  attention=roi.attention))
    session.flush()
    return result


def record_output(session: Session, result_id: int, kind: str, ds: pydicom.Dataset,
                  path: str) -> OutputObject:
    """Insert the row of one output object written at ``path``."""
    output = OutputObject(result_id=result_id, kind=kind, sop_class_uid=str(ds.SOPClassUID),
                          sop_instance_uid=str(ds.SOPInstanceUID),
                          series_instance_uid=str(ds.SeriesInstanceUID), path=path)
    session.add(output)
    session.flush()
    return output
