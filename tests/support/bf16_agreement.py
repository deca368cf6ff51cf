"""bf16 autocast against float32 on the same views: the check of the test suite and of
``make bench-gpu``.

``agreement(bundle, device, studies)`` runs one bundle both ways on ``device`` and
returns per view the float32 and bf16 probabilities, whether the ROI sets (boxes and
detector scores) are identical, and whether the view had a confident detection.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom.uid import generate_uid

from ml.pipeline import Pipeline
from ml.types import StudyInput, ViewInput
from tests.support.mammo import make_mammogram

VIEWS = [("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")]
UNCONFIDENT = 0.01  # a view whose best detector score is below this has no confident ROI
TOLERANCE = 0.02  # in probability, per view


@dataclass(frozen=True)
class ViewAgreement:
    float32: float
    bf16: float
    same_rois: bool
    confident: bool

    @property
    def difference(self) -> float:
        return abs(self.bf16 - self.float32)


def synthetic_views(count: int, seed: int, rows: int = 640, cols: int = 512) -> list[StudyInput]:
    """``count`` views in 4-view studies; every other study has a history."""
    studies = []
    for s in range(count // len(VIEWS)):
        study_uid = generate_uid()
        views = [make_mammogram(study_uid=study_uid, laterality=laterality, view=view,
                                rows=rows, cols=cols, seed=seed + 10 * s + i)
                 for i, (laterality, view) in enumerate(VIEWS)]
        history = "palpable lump in the left breast" if s % 2 else ""
        studies.append(StudyInput(study_uid, [ViewInput(ds, ds.SOPInstanceUID)
                                              for ds in views], history))
    return studies


def agreement(bundle: Path, device: str, studies: list[StudyInput]) -> list[ViewAgreement]:
    exact = Pipeline(bundle, device=device, bf16=False)
    fast = Pipeline(exact.bundle, device=device, bf16=True)
    result = []
    for x, y in zip(exact.predict(studies), fast.predict(studies), strict=True):
        for a, b in zip(x.views, y.views, strict=True):
            if a.probability is None or b.probability is None:
                raise AssertionError(f"view {a.sop_instance_uid}: {a.error or b.error}")
            result.append(ViewAgreement(
                float32=a.probability, bf16=b.probability,
                same_rois=[(r.box, r.detector_score) for r in a.rois] ==
                          [(r.box, r.detector_score) for r in b.rois],
                confident=max((r.detector_score for r in a.rois), default=0.0) >= UNCONFIDENT))
    return result


def summary(name: str, views: list[ViewAgreement]) -> str:
    worst = max(v.difference for v in views)
    return (f"{name}: {len(views)} views ({sum(not v.confident for v in views)} without a "
            f"confident detection), max |bf16 - float32| {worst:.4f} (tolerance {TOLERANCE}), "
            f"ROI sets differ in {sum(not v.same_rois for v in views)}")
