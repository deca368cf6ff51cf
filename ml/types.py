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
    probability: float | None  # None when the view could not be scored (see error)
    rois: list[RoiPrediction] = field(default_factory=list)
    error: str | None = None
    # The breast region the model looked at, (x0, y0, x1, y1) in stored pixels; None when
    # the view could not be prepared.
    breast_region: tuple[float, float, float, float] | None = None


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


@dataclass(frozen=True)
class StudyPrediction:
    study_uid: str
    probability: float | None  # max over breasts
    breasts: dict[str, float]  # "R"/"L" -> max over that breast's views
    views: list[ViewPrediction]
    bundle_digest: str
    history_used: bool
    threshold: float  # the bundle's operating threshold
    marks: MarkOperatingPoint = field(default_factory=MarkOperatingPoint)
