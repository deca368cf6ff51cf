"""Findings placed in a breast and drawn on each of its views.

Malignant: spiculated mass, ill-defined mass, clustered fine (pleomorphic)
calcifications, architectural distortion, and the circumscribed carcinoma (mucinous or
medullary) that looks much like a fibroadenoma. Benign look-alikes: circumscribed round
or oval mass (fibroadenoma, cyst), scattered coarse calcifications, intramammary /
axillary lymph node, and the post-surgical scar that looks much like a distortion. The
two close pairs differ in detail only (a microlobulated margin against a smooth one; a
linear scar with a lucent centre against lines radiating from a point), and the history
often tells them apart (a known fibroadenoma, a previous excision), which is what the
image/text fusion is for.

A finding lives in breast coordinates (fractional depth behind the nipple, lateral and
superior offsets), so the CC and MLO views of a breast show it at consistent places:
the same distance from the nipple on both, lateral findings high on CC, upper-outer
findings high on MLO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ml.synth.anatomy import ViewAnatomy

MALIGNANT_KINDS = ("spiculated_mass", "ill_defined_mass", "fine_calcifications",
                   "architectural_distortion", "circumscribed_carcinoma")
BENIGN_KINDS = ("circumscribed_mass", "coarse_calcifications", "lymph_node",
                "post_surgical_scar")
VISIBILITIES = ("obvious", "subtle", "occult")
# Gains on the contrast: an obvious finding stands out of dense tissue, a subtle one is
# about as strong as the glandular texture around it.
_VISIBILITY_GAIN = {"obvious": (1.3, 1.7), "subtle": (0.8, 1.05), "occult": (0.0, 0.0)}

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Finding:
    """One finding of one breast; ``shape_seed`` fixes its shape on both views."""

    kind: str
    depth: float  # 0 at the nipple .. 1 at the chest wall
    lateral: float  # -1 medial .. +1 lateral
    superior: float  # -1 inferior .. +1 superior
    size_mm: float  # radius of the mass / cluster / distortion
    contrast: float  # added attenuation at full visibility
    visibility: str  # "obvious" | "subtle" | "occult"
    shape_seed: int
    hidden_on: str | None = None  # a view the finding is out of the field / obscured on
    points_mm: tuple[tuple[float, float, float], ...] = field(default=())  # calcs: dx, dy, r

    @property
    def malignant(self) -> bool:
        return self.kind in MALIGNANT_KINDS


def sample_finding(kind: str, rng: np.random.Generator, visibility: str = "obvious") -> Finding:
    """A finding of ``kind`` at a random plausible position and size."""
    depth = float(rng.uniform(0.2, 0.85))
    lateral = float(rng.uniform(-0.75, 0.75))
    superior = float(rng.uniform(-0.75, 0.75))
    points: tuple[tuple[float, float, float], ...] = ()
    if kind == "spiculated_mass":
        size, contrast = rng.uniform(3.5, 9.0), rng.uniform(0.15, 0.24)
    elif kind == "ill_defined_mass":
        size, contrast = rng.uniform(5.0, 12.0), rng.uniform(0.17, 0.25)
    elif kind == "architectural_distortion":
        size, contrast = rng.uniform(9.0, 18.0), rng.uniform(0.18, 0.26)
    elif kind == "post_surgical_scar":
        size, contrast = rng.uniform(9.0, 18.0), rng.uniform(0.09, 0.14)
    elif kind == "fine_calcifications":
        size, contrast = rng.uniform(3.5, 8.0), rng.uniform(0.6, 0.8)
        n = int(rng.integers(20, 36))
        points = tuple((float(r * math.cos(a)), float(r * math.sin(a)),
                        float(rng.uniform(0.15, 0.35)))
                       for r, a in zip(size * np.sqrt(rng.uniform(0, 1, n)),
                                       rng.uniform(0, 2 * math.pi, n), strict=True))
    elif kind == "circumscribed_mass":
        size, contrast = rng.uniform(4.0, 12.0), rng.uniform(0.13, 0.21)
    elif kind == "circumscribed_carcinoma":  # denser than a fibroadenoma of its size
        size, contrast = rng.uniform(4.0, 12.0), rng.uniform(0.17, 0.25)
    elif kind == "coarse_calcifications":
        size, contrast = 0.0, rng.uniform(0.3, 0.55)
        n = int(rng.integers(2, 9))
        # Scattered over the breast: offsets in mm from the nominal position.
        points = tuple((float(rng.uniform(-35, 35)), float(rng.uniform(-30, 30)),
                        float(rng.uniform(0.6, 2.0))) for _ in range(n))
    elif kind == "lymph_node":
        # Upper outer quadrant / axillary tail, near the pectoral edge on MLO.
        depth, lateral, superior = (float(rng.uniform(0.7, 0.9)), float(rng.uniform(0.4, 0.8)),
                                    float(rng.uniform(0.5, 0.9)))
        size, contrast = rng.uniform(3.0, 6.5), rng.uniform(0.12, 0.18)
    else:
        raise ValueError(f"unknown finding kind {kind!r}")
    return Finding(kind=kind, depth=depth, lateral=lateral, superior=superior,
                   size_mm=float(size), contrast=float(contrast), visibility=visibility,
                   shape_seed=int(rng.integers(0, 2**31)), points_mm=points)


def position_on(finding: Finding, anatomy: ViewAnatomy) -> tuple[float, float]:
    """Canonical pixel position of the finding's centre on ``anatomy``'s view, inside
    the breast and off the pectoral muscle."""
    if anatomy.view == "CC":
        offset = finding.lateral  # lateral is at the top of CC images of both breasts
    else:
        offset = float(np.clip((finding.superior + finding.lateral) / math.sqrt(2), -0.85, 0.85))
    depth = finding.depth
    for _ in range(40):
        x, y = anatomy.place(depth, offset)
        col, row = int(round(x)), int(round(y))
        inside = 0 <= row < anatomy.rows and 0 <= col < anatomy.cols and \
            anatomy.mask[row, col] and anatomy.at(anatomy.pectoral, x, y) == 0 and \
            anatomy.at(anatomy.thickness, x, y) > 0.6
        if inside:
            return x, y
        depth, offset = depth * 0.95, offset * 0.9
    return anatomy.place(0.3, 0.0)


def draw(image: np.ndarray, finding: Finding, anatomy: ViewAnatomy,
         rng: np.random.Generator) -> Box | None:
    """Add ``finding`` to the canonical attenuation ``image`` in place.

    Returns its box (x0, y0, x1, y1) in canonical pixels, or None when the finding is
    not visible on this view (occult, or hidden on it).
    """
    if finding.visibility == "occult" or finding.hidden_on == anatomy.view:
        return None
    low, high = _VISIBILITY_GAIN[finding.visibility]
    contrast = finding.contrast * float(rng.uniform(low, high))
    shape = np.random.default_rng(finding.shape_seed)  # same shape on both views
    turn = float(rng.uniform(-0.3, 0.3))  # the projection differs a little per view
    cx, cy = position_on(finding, anatomy)
    mm = 1.0 / anatomy.spacing_mm
    drawer = _DRAWERS[finding.kind]
    box = drawer(image, cx, cy, finding, contrast, mm, shape, turn)
    x0, y0, x1, y1 = box
    return (max(0.0, x0), max(0.0, y0), min(float(anatomy.cols), x1), min(float(anatomy.rows), y1))


def _patch(image: np.ndarray, cx: float, cy: float, radius: float):
    rows, cols = image.shape
    # Empty (not negative) ranges for a part that falls outside the image.
    r0 = min(rows, max(0, int(cy - radius) - 1))
    r1 = max(r0, min(rows, int(cy + radius) + 2))
    c0 = min(cols, max(0, int(cx - radius) - 1))
    c1 = max(c0, min(cols, int(cx + radius) + 2))
    y, x = np.mgrid[r0:r1, c0:c1].astype(np.float32)
    return (slice(r0, r1), slice(c0, c1)), x - cx, y - cy


def _spicules(dx, dy, count, length, width, shape, turn):
    """Sum of thin lines radiating from the origin, fading towards their tips."""
    out = np.zeros_like(dx)
    for angle in shape.uniform(0, 2 * math.pi, count) + turn:
        ux, uy = math.cos(angle), math.sin(angle)
        reach = length * float(shape.uniform(0.6, 1.0))
        t = np.clip(dx * ux + dy * uy, 0.0, reach)
        dist2 = (dx - t * ux) ** 2 + (dy - t * uy) ** 2
        out += np.exp(-dist2 / (2 * width ** 2)) * (1.0 - t / reach)
    return out


def _spiculated(image, cx, cy, finding, contrast, mm, shape, turn) -> Box:
    core = finding.size_mm * mm
    length = core * float(shape.uniform(2.0, 3.2))
    where, dx, dy = _patch(image, cx, cy, core + length)
    r = np.sqrt(dx ** 2 + dy ** 2) / core
    angle = np.arctan2(dy, dx)
    bumps = 1.0 + 0.15 * np.cos(5 * angle + shape.uniform(0, 6)) + 0.1 * np.cos(
        3 * angle + shape.uniform(0, 6))
    mass = np.clip(1.0 - (r / bumps) ** 2, 0.0, 1.0) ** 0.7
    # Spicules at least a pixel wide and as strong as the core's edge, so they survive
    # the detector's and the crops' downsampling.
    lines = _spicules(dx, dy, int(shape.integers(10, 22)), length, max(1.0, 0.45 * mm), shape,
                      turn)
    image[where] += contrast * (mass + 0.7 * np.minimum(lines, 1.5))
    half = core * 1.7
    return cx - half, cy - half, cx + half, cy + half


def _ill_defined(image, cx, cy, finding, contrast, mm, shape, turn) -> Box:
    radius = finding.size_mm * mm
    where, dx, dy = _patch(image, cx, cy, radius * 2.2)
    angle = np.arctan2(dy, dx) + turn
    outline = radius * (1.0 + sum(float(shape.uniform(0.05, 0.18)) * np.cos(
        k * angle + float(shape.uniform(0, 6))) for k in (2, 3, 5)))
    r = np.sqrt(dx ** 2 + dy ** 2)
    # Blurred margin: the edge fades over a third of the radius.
    image[where] += contrast / (1.0 + np.exp((r - outline) / (0.18 * radius)))
    half = radius * 1.2
    return cx - half, cy - half, cx + half, cy + half


def _distortion(image, cx, cy, finding, contrast, mm, shape, turn) -> Box:
    length = finding.size_mm * mm
    where, dx, dy = _patch(image, cx, cy, length)
    lines = _spicules(dx, dy, int(shape.integers(12, 24)), length, max(0.7, 0.3 * mm), shape,
                      turn)
    r2 = (dx ** 2 + dy ** 2) / (0.15 * length) ** 2
    image[where] += contrast * (np.minimum(lines, 2.0) - 0.5 * np.exp(-r2))
    half = length * 0.7
    return cx - half, cy - half, cx + half, cy + half


def _dots(image, cx, cy, points, contrast, mm, turn) -> Box:
    c, s = math.cos(turn), math.sin(turn)
    xs, ys = [], []
    for px, py, radius in points:
        x, y = cx + (c * px - s * py) * mm, cy + (s * px + c * py) * mm
        r = radius * mm
        sigma = max(r * 0.6, 0.5)
        where, dx, dy = _patch(image, x, y, 3 * sigma + 1)
        # Keep the integrated attenuation of a sub-pixel calcification at coarse sizes.
        # A calcification smaller than a pixel still shows as a bright dot, as it does on
        # a detector whose pixels are larger than the calcification.
        gain = contrast * min(1.0, max(0.6, (r / sigma) ** 2 / 1.4))
        image[where] += gain * np.exp(-(dx ** 2 + dy ** 2) / (2 * sigma ** 2))
        xs += [x - r, x + r]
        ys += [y - r, y + r]
    margin = 1.0 * mm
    return min(xs) - margin, min(ys) - margin, max(xs) + margin, max(ys) + margin


def _scar(image, cx, cy, finding, contrast, mm, shape, turn) -> Box:
    """A surgical scar: a few long strands along the incision, a lucent (fat) centre."""
    length = finding.size_mm * mm
    where, dx, dy = _patch(image, cx, cy, length)
    axis = float(shape.uniform(0, math.pi)) + turn
    ux, uy = math.cos(axis), math.sin(axis)
    along, across = dx * ux + dy * uy, -dx * uy + dy * ux
    strands = np.zeros_like(dx)
    for _ in range(int(shape.integers(3, 6))):
        offset, tilt = float(shape.uniform(-0.25, 0.25)) * length, float(shape.uniform(-0.2, 0.2))
        distance = across - offset - tilt * along
        strands += np.exp(-distance ** 2 / (2 * max(0.8, 0.35 * mm) ** 2))
    fade = np.clip(1.0 - np.abs(along) / length, 0.0, 1.0)
    centre = np.exp(-(along ** 2 / (0.35 * length) ** 2 + across ** 2 / (0.12 * length) ** 2))
    image[where] += contrast * (np.minimum(strands, 2.0) * fade - 0.8 * centre)
    half = length * 0.75
    return cx - half, cy - half, cx + half, cy + half


def _fine_calcifications(image, cx, cy, finding, contrast, mm, shape, turn) -> Box:
    return _dots(image, cx, cy, finding.points_mm, contrast, mm, turn)


def _coarse_calcifications(image, cx, cy, finding, contrast, mm, shape, turn) -> Box:
    rows, cols = image.shape
    inside = [(px, py, r) for px, py, r in finding.points_mm
              if 0 <= cx + px * mm < cols and 0 <= cy + py * mm < rows
              and image[int(cy + py * mm), int(cx + px * mm)] > 0.2]
    return _dots(image, cx, cy, inside or finding.points_mm[:1], contrast, mm, turn)


def _circumscribed(image, cx, cy, finding, contrast, mm, shape, turn) -> Box:
    a = finding.size_mm * mm
    b = a * float(shape.uniform(0.7, 1.0))  # round to oval
    where, dx, dy = _patch(image, cx, cy, a * 1.1)
    angle = turn + float(shape.uniform(0, math.pi))
    c, s = math.cos(angle), math.sin(angle)
    u, v = (c * dx + s * dy) / a, (-s * dx + c * dy) / b
    rho = np.sqrt(u ** 2 + v ** 2)
    # Projection of a smooth ellipsoid: sharp margin, dome profile.
    image[where] += contrast * np.sqrt(np.clip(1.0 - rho ** 2, 0.0, 1.0)) ** 0.6
    return cx - a * 1.05, cy - a * 1.05, cx + a * 1.05, cy + a * 1.05


def _microlobulated(image, cx, cy, finding, contrast, mm, shape, turn) -> Box:
    """A circumscribed carcinoma: round to oval like a fibroadenoma, but denser towards
    its centre and with a finely lobulated, partly blurred margin."""
    a = finding.size_mm * mm
    where, dx, dy = _patch(image, cx, cy, a * 1.3)
    angle = np.arctan2(dy, dx) + turn
    outline = a * (1.0 + 0.12 * np.cos(int(shape.integers(7, 11)) * angle
                                       + float(shape.uniform(0, 6)))
                   + 0.05 * np.cos(int(shape.integers(4, 6)) * angle + float(shape.uniform(0, 6))))
    rho = np.sqrt(dx ** 2 + dy ** 2) / outline
    blur = 0.04 + 0.16 * (np.cos(angle - float(shape.uniform(0, 6))) > 0.3)  # one hazy sector
    edge = 1.0 / (1.0 + np.exp((rho - 1.0) / blur))
    image[where] += contrast * edge * (0.7 + 0.6 * np.clip(1.0 - rho ** 2, 0.0, 1.0))
    return cx - a * 1.15, cy - a * 1.15, cx + a * 1.15, cy + a * 1.15


def _lymph_node(image, cx, cy, finding, contrast, mm, shape, turn) -> Box:
    a = finding.size_mm * mm
    b = a * 0.6
    where, dx, dy = _patch(image, cx, cy, a * 1.1)
    angle = turn + float(shape.uniform(-0.6, 0.6))
    c, s = math.cos(angle), math.sin(angle)
    u, v = (c * dx + s * dy) / a, (-s * dx + c * dy) / b
    node = np.sqrt(np.clip(1.0 - u ** 2 - v ** 2, 0.0, 1.0))
    hilum = np.clip(1.0 - ((u - 0.0) / 0.35) ** 2 - ((v - 0.75) / 0.45) ** 2, 0.0, 1.0)
    image[where] += contrast * np.clip(node - 1.2 * hilum, 0.0, 1.0)  # fatty hilum
    return cx - a * 1.05, cy - a * 1.05, cx + a * 1.05, cy + a * 1.05


_DRAWERS = {
    "spiculated_mass": _spiculated,
    "ill_defined_mass": _ill_defined,
    "architectural_distortion": _distortion,
    "post_surgical_scar": _scar,
    "circumscribed_carcinoma": _microlobulated,
    "fine_calcifications": _fine_calcifications,
    "circumscribed_mass": _circumscribed,
    "coarse_calcifications": _coarse_calcifications,
    "lymph_node": _lymph_node,
}
