"""Breast silhouette, compressed-thickness profile and pectoral muscle of one view.

Everything is drawn in a *canonical* frame with the chest wall at column 0 and the
nipple pointing to the right; the DICOM writer flips right-breast images so that the
stored image follows the usual hanging (RCC ``P\\L``, LCC ``A\\R``). A breast is one
set of physical dimensions shared by its CC and MLO views, so a finding placed in
breast coordinates lands at a plausible, consistent position on both views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Detector field of a full-field digital mammography unit at 0.07 mm pixels
# (4096 x 3328 pixels); smaller sizes cover the same field with larger pixels.
FULL_FIELD_ROWS = 4096
FULL_FIELD_PIXEL_MM = 0.07
# Smooth fields (outline, muscle, tissue texture) are computed on at most this many rows
# and interpolated: a 4096-row image then costs little more than a 1024-row one, and
# the finest scales, which carry almost no energy under a 1/f^3 spectrum, come from
# the quantum noise and the findings drawn at full resolution.
COARSE_ROWS = 1024


def pixel_spacing_mm(rows: int) -> float:
    """Pixel spacing (mm) of an image of ``rows`` rows covering the full detector field."""
    return FULL_FIELD_PIXEL_MM * FULL_FIELD_ROWS / rows


@dataclass(frozen=True)
class Breast:
    """Physical shape of one compressed breast (mm), shared by its CC and MLO views."""

    depth_mm: float  # chest wall to nipple on the CC view
    half_height_mm: float  # half the chest-wall extent on the CC view
    shape_harmonics: tuple[tuple[float, float], ...]  # (amplitude, phase) of outline wobble
    pectoral_width_mm: float  # MLO: pectoral muscle extent along the top edge
    pectoral_height_mm: float  # MLO: pectoral muscle extent along the chest wall
    density: float  # 0 (fatty) .. 1 (extremely dense)

    @staticmethod
    def sample(rng: np.random.Generator) -> Breast:
        depth = float(rng.uniform(70.0, 150.0))
        return Breast(
            depth_mm=depth,
            half_height_mm=float(rng.uniform(0.85, 1.15) * (50.0 + 0.5 * depth)),
            shape_harmonics=tuple((float(rng.uniform(0.0, 0.035)), float(rng.uniform(0, 6.283)))
                                  for _ in range(3)),
            pectoral_width_mm=float(rng.uniform(0.30, 0.55) * depth),
            pectoral_height_mm=float(rng.uniform(90.0, 170.0)),
            density=float(rng.beta(2.0, 2.6)),
        )


@dataclass(frozen=True)
class ViewAnatomy:
    """The drawn anatomy of one view in canonical orientation (chest wall at column 0).

    ``mask`` (full resolution) is the breast and (MLO) pectoral muscle. The smooth
    fields live on the coarse grid the tissue texture is made on (at most COARSE_ROWS
    rows, corners on the image's corner pixels): ``radius`` is the normalised
    elliptical radius (1 at the outline), ``thickness`` falls from 1 inside to 0 at the
    skin line where the compressed breast rolls off, ``pectoral`` is the muscle.
    """

    view: str
    rows: int
    cols: int
    spacing_mm: float
    nipple: tuple[float, float]  # (x, y) pixels
    depth_px: float  # chest wall to nipple
    half_up_px: float  # outline extent above the nipple line at the chest wall
    half_down_px: float  # outline extent below the nipple line at the chest wall
    mask: np.ndarray  # bool (rows, cols)
    coarse_x: np.ndarray  # image column of each coarse column
    radius: np.ndarray  # float32, coarse grid
    thickness: np.ndarray  # float32 in [0, 1], coarse grid
    pectoral: np.ndarray  # float32 in [0, 1], coarse grid; zeros on CC

    def at(self, field: np.ndarray, x: float, y: float) -> float:
        """Value of a coarse ``field`` at image pixel (x, y) (nearest coarse sample)."""
        rows, cols = field.shape
        row = round(y * (rows - 1) / max(self.rows - 1, 1))
        col = round(x * (cols - 1) / max(self.cols - 1, 1))
        return float(field[min(max(row, 0), rows - 1), min(max(col, 0), cols - 1)])

    def half_extent_at(self, x: float, upward: bool) -> float:
        """Distance (px) from the nipple line to the outline at column ``x``."""
        half = self.half_up_px if upward else self.half_down_px
        u = min(max(x / self.depth_px, 0.0), 1.0)
        return half * math.sqrt(max(1.0 - u * u, 0.0))

    def place(self, depth: float, offset: float) -> tuple[float, float]:
        """Pixel position of a point at fractional ``depth`` behind the nipple (0 nipple,
        1 chest wall) and fractional ``offset`` from the nipple line (+ up, - down)."""
        x = self.depth_px * (1.0 - depth)
        half = self.half_extent_at(x, upward=offset > 0)
        return x, self.nipple[1] - offset * half


def draw_view(breast: Breast, view: str, rows: int, cols: int) -> ViewAnatomy:
    """Draw the silhouette of ``breast`` as seen on ``view`` ("CC" or "MLO").

    The breast is scaled down if it would not fit the field, so every size from a
    thumbnail to 4096 x 3328 shows the whole breast.
    """
    spacing = pixel_spacing_mm(rows)
    field_w, field_h = cols * spacing, rows * spacing
    if view == "CC":
        depth = breast.depth_mm
        up = down = breast.half_height_mm
        nipple_y = 0.5 * field_h
    else:  # MLO: deeper (the pectoral muscle is pulled in), taller, axillary tail at the top
        depth = breast.depth_mm * 1.08
        down = breast.half_height_mm * 0.95
        nipple_y = min(0.56 * field_h, 0.5 * field_h + 0.3 * down)
        up = nipple_y * 1.08  # reaches past the top edge: the axillary tail
    scale = min(1.0, 0.82 * field_w / depth, 0.47 * field_h / max(down, 1.0))
    depth, up, down = depth * scale, up * min(scale * 1.0, 1.0), down * scale
    if view == "MLO":
        up = max(up, nipple_y * 1.02)
    to_px = 1.0 / spacing
    depth_px, up_px, down_px, ny = depth * to_px, up * to_px, down * to_px, nipple_y * to_px

    # Outline and muscle are smooth: they are evaluated on a grid of at most
    # COARSE_ROWS rows whose corners coincide with the image's, and interpolated.
    step = max(1, math.ceil(rows / COARSE_ROWS))
    coarse_rows, coarse_cols = math.ceil(rows / step), math.ceil(cols / step)
    xs = np.linspace(0, cols - 1, coarse_cols, dtype=np.float32)
    ys = np.linspace(0, rows - 1, coarse_rows, dtype=np.float32)
    x, y = xs[None, :], ys[:, None]
    dy = ny - y
    half = np.where(dy > 0, up_px, down_px).astype(np.float32)
    rho = np.sqrt((x / depth_px) ** 2 + (dy / half) ** 2)
    phi = np.arctan2(dy / half, x / depth_px)
    wobble = np.zeros_like(rho)
    for k, (amp, phase) in enumerate(breast.shape_harmonics, start=2):
        wobble += amp * np.cos(k * phi + phase)
    rho = rho / (1.0 + wobble)
    # The nipple in profile: a small bump on the outline at the end of the nipple line.
    nipple_r = 6.0 * to_px
    rho -= 0.045 * np.exp(-((x - depth_px) ** 2 + dy ** 2) / (2 * nipple_r ** 2))
    rho = rho.astype(np.float32)
    pectoral = np.zeros_like(rho)
    if view == "MLO":
        pw = breast.pectoral_width_mm * scale * to_px
        ph = min(breast.pectoral_height_mm * scale * to_px, 0.85 * ny)
        # Slightly convex front edge, soft over a few pixels.
        edge = (x / pw) ** 1.15 + (y / ph) ** 0.95
        pectoral = np.clip((1.0 - edge) * min(pw, ph) / 6.0, 0.0, 1.0).astype(np.float32)
    mask = (rho <= 1.0) | (pectoral > 0)
    if step > 1:
        mask = (upsample(rho, rows, cols) <= 1.0) | (upsample(pectoral, rows, cols) > 0)
    # Compressed breasts keep their thickness except in the last ~12 % to the skin.
    thickness = np.sqrt(np.clip((1.0 - rho) / 0.12, 0.0, 1.0))
    thickness = np.maximum(thickness, np.minimum(pectoral * 4.0, 1.0)).astype(np.float32)
    return ViewAnatomy(view=view, rows=rows, cols=cols, spacing_mm=spacing, nipple=(depth_px, ny),
                       depth_px=depth_px, half_up_px=up_px, half_down_px=down_px, mask=mask,
                       coarse_x=xs, radius=rho, thickness=thickness, pectoral=pectoral)


def _linear_weights(size: int, coarse: int) -> tuple[np.ndarray, np.ndarray]:
    position = np.linspace(0, coarse - 1, size, dtype=np.float32)
    left = np.minimum(position.astype(np.int64), coarse - 2)
    return left, (position - left).astype(np.float32)


def upsample(field: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Bilinear interpolation of a coarse field whose corner samples sit on the corner
    pixels of a (rows, cols) image (float32 out)."""
    if field.shape == (rows, cols):
        return field.astype(np.float32, copy=False)
    top, wy = _linear_weights(rows, field.shape[0])
    tall = field[top] * (1.0 - wy)[:, None] + field[top + 1] * wy[:, None]
    left, wx = _linear_weights(cols, field.shape[1])
    out = tall[:, left] * (1.0 - wx)
    out += tall[:, left + 1] * wx
    return out.astype(np.float32, copy=False)
