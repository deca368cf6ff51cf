"""Where ROI labels go: large enough to read at fit-to-window, inside the image, apart.

The Secondary Capture and the presentation state both size and place their labels
here, in their own pixel grid. A label's text is ``label_font_px`` high (2.7 % of the
image height, at least 12 pixels) in DejaVu Sans, on a backing box ``label_size`` wide
and high. ``place_labels`` puts each label beside its box when it can, else at the
nearest free place in the image (joined to its box by a ``leader`` line), and never on
another label or off the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

import ml

FONT_PATH = Path(ml.__file__).parent / "fonts" / "DejaVuSans.ttf"
LABEL_HEIGHT = 0.027  # text height as a fraction of the image height
MIN_FONT_PX = 12


@dataclass(frozen=True)
class Rect:
    """An axis-aligned rectangle in pixels: ``x0 <= x < x1``, ``y0 <= y < y1``."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def intersects(self, other: Rect, margin: float = 0.0) -> bool:
        """Whether the rectangles share area, or come closer than ``margin``."""
        return (self.x0 < other.x1 + margin and other.x0 < self.x1 + margin
                and self.y0 < other.y1 + margin and other.y0 < self.y1 + margin)

    def within(self, other: Rect) -> bool:
        return (other.x0 <= self.x0 and self.x1 <= other.x1
                and other.y0 <= self.y0 and self.y1 <= other.y1)

    def distance(self, other: Rect) -> float:
        """The gap between the rectangles, 0 where they touch or overlap."""
        dx = max(other.x0 - self.x1, self.x0 - other.x1, 0.0)
        dy = max(other.y0 - self.y1, self.y0 - other.y1, 0.0)
        return math.hypot(dx, dy)

    def shifted(self, dx: float, dy: float) -> Rect:
        return Rect(self.x0 + dx, self.y0 + dy, self.x1 + dx, self.y1 + dy)


def label_font_px(image_height: int) -> int:
    """The label text height for an image ``image_height`` pixels high."""
    return max(MIN_FONT_PX, math.ceil(LABEL_HEIGHT * image_height))


@lru_cache(maxsize=32)
def label_font(px: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans (shipped with the ``ml`` package) at ``px`` pixels."""
    return ImageFont.truetype(str(FONT_PATH), px)


def label_padding(px: int) -> int:
    """The margin between a label's text and the edge of its backing box."""
    return max(2, px // 5)


def label_size(text: str, px: int) -> tuple[int, int]:
    """Width and height of the backing box of ``text`` at ``px``, padding included."""
    font = label_font(px)
    ascent, descent = font.getmetrics()
    pad = label_padding(px)
    return math.ceil(font.getlength(text)) + 2 * pad, ascent + descent + 2 * pad


def place_labels(boxes: Sequence[Rect], sizes: Sequence[tuple[float, float]],
                 bounds: Rect, *, reserved: Sequence[Rect] = (),
                 gap: float = 2.0) -> list[Rect | None]:
    """A place for the label of each box, in the order given (the first gets the best).

    Every place lies within ``bounds``, at least ``gap`` away from the other labels and
    off the ``reserved`` areas (captions). Beside its own box is preferred (above, then
    below, right, left, inside its top edge), then the nearest free place; lying on
    another box costs twice the label's height in distance, on its own box once. None
    for a label that finds no place at all (larger than the image, or the image full).
    """
    taken: list[Rect] = list(reserved)
    places: list[Rect | None] = []
    for index, (box, (width, height)) in enumerate(zip(boxes, sizes, strict=True)):
        others = [other for number, other in enumerate(boxes) if number != index]
        candidates = [*_beside(box, width, height, gap), *_scan(box, width, height, bounds)]
        best: tuple[float, int, Rect] | None = None
        for order, candidate in enumerate(candidates):
            place = _clamped(candidate, bounds)
            if place is None or any(place.intersects(t, gap) for t in taken):
                continue
            cost = (max(place.distance(box) - gap, 0.0)
                    + 2 * height * sum(place.intersects(other) for other in others)
                    + height * place.intersects(box))
            if best is None or (cost, order) < best[:2]:
                best = (cost, order, place)
        places.append(best[2] if best else None)
        if best:
            taken.append(best[2])
    return places


def leader(label: Rect, box: Rect, gap: float) -> tuple[float, float, float, float] | None:
    """The line joining a label placed away from its box (more than two gaps off): from
    the label's edge to the nearest point of the box, ``(x0, y0, x1, y1)``; None for a
    label beside its box."""
    if label.distance(box) <= 2 * gap:
        return None
    lx, ly = _nearest(label, (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)
    bx, by = _nearest(box, lx, ly)
    return lx, ly, bx, by


def _nearest(rect: Rect, x: float, y: float) -> tuple[float, float]:
    return min(max(x, rect.x0), rect.x1), min(max(y, rect.y0), rect.y1)


def _beside(box: Rect, width: float, height: float, gap: float) -> list[Rect]:
    above, below = box.y0 - gap - height, box.y1 + gap
    right, left = box.x1 + gap, box.x0 - gap - width
    return [Rect(x, y, x + width, y + height) for x, y in (
        (box.x0, above), (box.x1 - width, above), (box.x0, below), (box.x1 - width, below),
        (right, box.y0), (left, box.y0), (box.x0 + gap, box.y0 + gap))]


def _scan(box: Rect, width: float, height: float, bounds: Rect) -> list[Rect]:
    """Every place on a grid of half a label's height, nearest to the box first."""
    step = max(1.0, height / 2)
    columns = max(1, math.floor((bounds.width - width) / step) + 1)
    rows = max(1, math.floor((bounds.height - height) / step) + 1)
    grid = [Rect(bounds.x0 + c * step, bounds.y0 + r * step,
                 bounds.x0 + c * step + width, bounds.y0 + r * step + height)
            for r in range(rows + 1) for c in range(columns + 1)]
    return sorted(grid, key=lambda place: place.distance(box))


def _clamped(place: Rect, bounds: Rect) -> Rect | None:
    """``place`` moved the least to lie within ``bounds``; None if it cannot fit."""
    if place.width > bounds.width or place.height > bounds.height:
        return None
    dx = max(bounds.x0 - place.x0, 0.0) - max(place.x1 - bounds.x1, 0.0)
    dy = max(bounds.y0 - place.y0, 0.0) - max(place.y1 - bounds.y1, 0.0)
    return place.shifted(dx, dy)

