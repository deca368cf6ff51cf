"""Which of a view's ROIs are shown to a reader, in which order, and what they say.

The Secondary Capture burns these marks into pixels, the presentation state draws them
as annotations and the SR documents report them; all take them from here so they never
disagree on which ROIs matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.types import MarkOperatingPoint, RoiPrediction, ViewPrediction

RED = (255, 0, 0)
GREEN = (0, 200, 0)
# Marks the ROI the clinical history drew the model to most ("Hx": history).
HISTORY_TAG = "Hx"


def score_text(value: float) -> str:
    """A probability or score to three significant figures (``0.873``, ``0.0412``); a
    value below 1 never reads as 1 (``>0.999``)."""
    text = f"{value:#.3g}"
    return ">0.999" if value < 1 and float(text) >= 1 else text


@dataclass(frozen=True)
class RoiMark:
    """One ROI shown to a reader: its rank by suspicion and whether it must be shown.

    ``rank`` 1 is the view's most suspicious ROI (highest detector score); ``required``
    says its score reaches the bundle's operating point for marks; ``most_attended`` is
    the ROI the clinical history weighted most, secondary information beside the score.
    """

    rank: int
    roi: RoiPrediction
    required: bool
    most_attended: bool

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.roi.box

    @property
    def score(self) -> float:
        return self.roi.detector_score

    @property
    def most_suspicious(self) -> bool:
        return self.rank == 1

    @property
    def label(self) -> str:
        """``#1 0.873``: the rank and the detector score to three significant figures."""
        return f"#{self.rank} {score_text(self.score)}"

    @property
    def tagged_label(self) -> str:
        """The label as drawn on the image: ``#2 0.352 Hx`` for the most attended ROI."""
        return f"{self.label} {HISTORY_TAG}" if self.most_attended else self.label

    @property
    def color(self) -> tuple[int, int, int]:
        return RED if self.most_suspicious else GREEN


def roi_marks(view: ViewPrediction, operating_point: MarkOperatingPoint) -> list[RoiMark]:
    """The view's marks, most suspicious first: its detected ROIs (a whole-breast region
    is not a finding) ranked by detector score, at most ``operating_point.max_per_image``
    of them, each required when its score reaches ``operating_point.threshold`` and the
    view's probability reaches the view operating threshold (where the bundle has one).

    Ties keep the model's order, so the ranking is the same every time.
    """
    detected = [roi for roi in view.rois if not roi.whole_breast]
    if not detected:
        return []
    attended = max(detected, key=lambda roi: roi.attention)
    ranked = sorted(detected, key=lambda roi: -roi.detector_score)
    view_flagged = (operating_point.view_threshold is None
                    or (view.probability or 0.0) >= operating_point.view_threshold)
    return [RoiMark(rank=rank, roi=roi, most_attended=roi is attended,
                    required=view_flagged and roi.detector_score >= operating_point.threshold)
            for rank, roi in enumerate(ranked[:operating_point.max_per_image], start=1)]


def box_polyline(box: tuple[float, float, float, float]) -> np.ndarray:
    """The box as a closed polyline of 5 (column, row) points, first point repeated."""
    x0, y0, x1, y1 = box
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=float)


def view_caption(view: ViewPrediction) -> str:
    """The view's probability line, e.g. ``R CC  P(malignancy) 0.810``."""
    name = f"{view.laterality or '?'} {view.view or '?'}"
    if view.probability is None:
        return f"{name}  not scored: {view.error or 'no result'}"
    return f"{name}  P(malignancy) {score_text(view.probability)}"


def legend(marks: list[RoiMark], operating_point: MarkOperatingPoint) -> list[str]:
    """What the marks of a view mean, one line each (empty without marks): the most
    suspicious ROI with its score, the most attended one with its attention weight, and
    which marks fall below the operating point (a reader may hide those)."""
    if not marks:
        return []
    top = marks[0]
    lines = [f"red #{top.rank} most suspicious (score {score_text(top.score)})"]
    lines += [f"{HISTORY_TAG} #{mark.rank} most attended by history "
              f"(attention {score_text(mark.roi.attention)})"
              for mark in marks if mark.most_attended]
    optional = [f"#{mark.rank}" for mark in marks if not mark.required]
    view_below = (operating_point.view_threshold is not None
                  and any(mark.score >= operating_point.threshold for mark in marks
                          if not mark.required))
    if view_below:
        lines.append(f"{', '.join(optional)} optional: view probability below "
                     f"{score_text(operating_point.view_threshold or 0.0)}")
    elif optional:
        lines.append(f"{', '.join(optional)} optional: score below "
                     f"{score_text(operating_point.threshold)}")
    return lines
