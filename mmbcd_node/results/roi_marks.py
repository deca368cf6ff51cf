"""How a view's ROIs are marked for the eye: which box is highlighted and what it says.

The Secondary Capture burns these marks into pixels and the presentation state draws
them as annotations; both take them from here so the two never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.types import ViewPrediction

RED = (255, 0, 0)
GREEN = (0, 200, 0)


@dataclass(frozen=True)
class RoiMark:
    """One box to draw: stored-pixel coordinates, its label, whether it is most attended."""

    box: tuple[float, float, float, float]
    label: str
    most_attended: bool

    @property
    def color(self) -> tuple[int, int, int]:
        return RED if self.most_attended else GREEN


def roi_marks(view: ViewPrediction) -> list[RoiMark]:
    """The view's ROIs in prediction order; the highest attention weight is highlighted.

    A tie goes to the first ROI, so exactly one box is red whenever there is a box.
    """
    if not view.rois:
        return []
    top = max(range(len(view.rois)), key=lambda i: (view.rois[i].attention, -i))
    return [RoiMark(box=roi.box, label=f"{i + 1} att {roi.attention:.2f}", most_attended=i == top)
            for i, roi in enumerate(view.rois)]


def box_polyline(box: tuple[float, float, float, float]) -> np.ndarray:
    """The box as a closed polyline of 5 (column, row) points, first point repeated."""
    x0, y0, x1, y1 = box
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=float)


def view_caption(view: ViewPrediction) -> str:
    """The view's probability line, e.g. ``R CC  P(malignancy) 0.81``."""
    name = f"{view.laterality or '?'} {view.view or '?'}"
    if view.probability is None:
        return f"{name}  not scored: {view.error or 'no result'}"
    return f"{name}  P(malignancy) {view.probability:.2f}"
