"""The interface between the model library and whoever runs it (the node's worker).

``Pipeline.predict(list[StudyInput]) -> list[StudyPrediction]``. Coordinates are in
the stored pixel grid of the source image: x = column, y = row, in pixels, with
(0, 0) the top-left corner of the top-left pixel; boxes are (x0, y0, x1, y1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pydicom


@dataclass(frozen=True)
class ViewInput:
    """One image of a study: a DICOM file path or an already-read dataset."""

    source: Path | pydicom.Dataset
    sop_instance_uid: str


@dataclass(frozen=True)
class StudyInput:
    study_uid: str
    views: list[ViewInput]
    history: str = ""  # clinical history text; "" when no order supplied one


@dataclass(frozen=True)
class RoiPrediction:
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1) in stored pixels
    detector_score: float
    attention: float  # softmax weight from the text query; sums to 1 over a view's ROIs
    whole_breast: bool = False  # True when no box was detected and the breast region was used


@dataclass(frozen=True)
class ViewPrediction:
    sop_instance_uid: str
    laterality: str | None  # "R" | "L" | None
    view: str | None  # "CC" | "MLO" | ... | None
    probability: float | None  # calibrated; None when the view could not be scored (error)
    rois: list[RoiPrediction] = field(default_factory=list)
    error: str | None = None
    # The breast region the model looked at, (x0, y0, x1, y1) in stored pixels; None when
    # the view could not be prepared.
    breast_region: tuple[float, float, float, float] | None = None
    score: float | None = None  # the model's raw output, before the view calibration


@dataclass(frozen=True)
class MarkOperatingPoint:
    """Which ROIs a reader is shown: the bundle's operating point for marks.

    A ROI whose detector score is at or above ``threshold`` is a mark a workstation must
    present; the others may be shown on request. At most ``max_per_image`` ROIs of a view
    become marks, the highest detector scores first. The defaults stand where a bundle
    names none: 0.25 is Ultralytics' default prediction confidence.
    """

    threshold: float = 0.25
    max_per_image: int = 4
    # With per-level operating points, marks are required only on a view whose
    # probability reaches the view operating threshold; None: no view condition.
    view_threshold: float | None = None


@dataclass(frozen=True)
class LevelOperatingPoint:
    """The threshold of one level, the target it was chosen at and what it reached."""

    threshold: float
    target: str = ""  # "specificity:0.90", "sensitivity:0.85", "youden"
    reached: str = ""  # "specificity 0.90, sensitivity 0.84 on 96 validation cases"


@dataclass(frozen=True)
class OperatingPoints:
    """Where a probability becomes a flag, per level. The study threshold sets the HL7
    abnormal flag, the breast threshold the SR and CAD SR impressions, the view threshold
    which views' ROIs are required marks. ``calibration`` says how the probabilities were
    calibrated ("" when they are the model's raw, class-balanced scores)."""

    view: LevelOperatingPoint
    breast: LevelOperatingPoint
    study: LevelOperatingPoint
    calibration: str = ""

    @classmethod
    def single(cls, threshold: float) -> OperatingPoints:
        """A bundle of one threshold for every level, chosen on validation views."""
        point = LevelOperatingPoint(threshold, "one threshold")
        return cls(point, point, point)

    @property
    def calibrated(self) -> bool:
        return bool(self.calibration)

    def statement(self) -> str:
        """One line (under 200 characters) for the SR, the CAD SR, the ORU and ``results``:
        ``calibrated (platt, validation split (96 studies)); flags at study >= 0.5123
        (specificity:0.90), breast >= ..., view >= ...``."""
        scores = (f"calibrated ({self.calibration})" if self.calibrated
                  else "not calibrated (raw model scores)")
        flags = ", ".join(f"{name} >= {point.threshold:.4f} ({point.target})"
                          for name, point in (("study", self.study), ("breast", self.breast),
                                              ("view", self.view)))
        return f"{scores}; flags at {flags}"


@dataclass(frozen=True)
class StudyPrediction:
    study_uid: str
    probability: float | None  # the study calibration of the highest view score
    breasts: dict[str, float]  # "R"/"L" -> the breast calibration of its highest view score
    views: list[ViewPrediction]
    bundle_digest: str
    history_used: bool
    operating: OperatingPoints
    marks: MarkOperatingPoint = field(default_factory=MarkOperatingPoint)

    @property
    def threshold(self) -> float:
        """The study operating threshold: where the study is flagged abnormal."""
        return self.operating.study.threshold
