"""DICOM mammogram -> the float image the model sees, and boxes back to stored pixels.

Order of operations (PS3.3 C.11): stored values -> Modality LUT / Rescale -> VOI LUT or
window (the bundle says which) -> presentation (MONOCHROME1 inverted) -> [0, 1]. The
output range comes from pushing every value Bits Stored allows through the same
transforms, never from the array dtype, so a 12-bit image in a 16-bit array is not
squashed into a sixteenth of the range; the transforms are applied as one lookup table
over that range. The image is then cropped to the breast region and, if asked, flipped so
the chest wall is on the left. ``PreparedView.to_stored`` undoes crop and flip exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut, apply_windowing
from scipy import ndimage

from ml.views import laterality_of, view_of

DIGITAL_MAMMOGRAPHY_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
Box = tuple[float, float, float, float]


class PreprocessError(ValueError):
    """The image cannot be prepared for the model; the message names the attribute."""


@dataclass(frozen=True)
class PreprocessParams:
    """How a bundle was trained to see images (stored in its manifest)."""

    voi: Literal["window", "voi_lut", "none"] = "window"  # which VOI transform to apply
    allow_for_processing: bool = False  # accept Presentation Intent FOR PROCESSING
    breast_threshold: float = 0.05  # normalised intensity above which a pixel is breast
    region_margin: int = 16  # pixels added around the breast region (stored grid)
    orient: Literal["chest_wall_left", "none"] = "chest_wall_left"


@dataclass(frozen=True)
class PreparedView:
    """A view ready for the detector: ``image`` (H, W) float32 in [0, 1], breast-cropped."""

    image: Any  # np.ndarray, or a torch tensor when the pipeline prepared it on a GPU
    region: tuple[int, int, int, int]  # (x0, y0, x1, y1) of the crop in the stored grid
    flipped: bool  # mirrored left-right after cropping
    laterality: str | None
    view: str | None

    def to_stored(self, box: Box) -> Box:
        """Map a box (x0, y0, x1, y1) on ``image`` to the stored pixel grid of the file."""
        x0, y0, x1, y1 = box
        if self.flipped:  # column c <-> W - 1 - c, so continuous x <-> W - x
            width = self.region[2] - self.region[0]
            x0, x1 = width - x1, width - x0
        return (x0 + self.region[0], y0 + self.region[1],
                x1 + self.region[0], y1 + self.region[1])


def read_dataset(source: Path | str | pydicom.Dataset) -> pydicom.Dataset:
    """The dataset itself, or the file read with pydicom (``InvalidDicomError`` if not DICOM)."""
    if isinstance(source, pydicom.Dataset):
        return source
    return pydicom.dcmread(source)


def check_presentation_intent(ds: pydicom.Dataset, params: PreprocessParams) -> None:
    """Refuse FOR PROCESSING images unless the bundle was trained on them."""
    intent = str(getattr(ds, "PresentationIntentType", "") or "").upper()
    sop_class = str(getattr(ds, "SOPClassUID", ""))
    if (intent == "FOR PROCESSING" or sop_class == DIGITAL_MAMMOGRAPHY_FOR_PROCESSING) \
            and not params.allow_for_processing:
        raise PreprocessError("PresentationIntentType is FOR PROCESSING and this bundle "
                              "was trained on FOR PRESENTATION images only")


def display_lut(ds: pydicom.Dataset, voi: str) -> tuple[np.ndarray, int]:
    """Lookup table from stored value to [0, 1] display value, and the first stored value.

    The table covers every value ``BitsStored`` and ``PixelRepresentation`` allow.
    """
    bits = int(getattr(ds, "BitsStored", 0) or 0)
    if not 1 <= bits <= 16:
        raise PreprocessError(f"BitsStored {bits} is not supported (1..16)")
    signed = int(getattr(ds, "PixelRepresentation", 0) or 0) == 1
    low = -(1 << (bits - 1)) if signed else 0
    stored = np.arange(low, low + (1 << bits), dtype=np.int32)
    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    # The output range is the VOI transform's own (LUT Descriptor bits, or the window's
    # asymptotes), so a window wider than the data keeps its contrast; without a VOI
    # transform it is the modality output of the full stored range.
    if voi == "voi_lut" and "VOILUTSequence" in ds:
        indices = np.round(values).astype(np.int64)  # a LUT is indexed by integer values
        values = np.asarray(apply_voi_lut(indices, ds, prefer_lut=True), dtype=np.float64)
        out_bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        lo, hi = 0.0, float((1 << out_bits) - 1)
    elif voi != "none" and "WindowCenter" in ds and "WindowWidth" in ds:
        values = np.asarray(apply_windowing(values, ds), dtype=np.float64)
        lo, hi = (float(v) for v in apply_windowing(np.array([-1e12, 1e12]), ds))
    else:
        lo, hi = float(values.min()), float(values.max())
    span = hi - lo
    if span <= 0:
        raise PreprocessError("the modality/VOI transform maps every stored value to one value")
    lut = np.clip((values - lo) / span, 0.0, 1.0)
    photometric = str(getattr(ds, "PhotometricInterpretation", "")).upper()
    if photometric == "MONOCHROME1":  # low values are white: invert so breast is bright
        lut = 1.0 - lut
    elif photometric != "MONOCHROME2":
        raise PreprocessError(f"PhotometricInterpretation {photometric or '(missing)'} "
                              "is not MONOCHROME1 or MONOCHROME2")
    padding = _padding_values(ds, low, len(lut))
    if padding is not None:  # padding is outside the image: background, whatever its value
        lut[padding] = 0.0
    return lut.astype(np.float32), low


def _padding_values(ds: pydicom.Dataset, low: int, size: int) -> slice | None:
    """LUT indices of Pixel Padding Value (to Pixel Padding Range Limit), or None."""
    if "PixelPaddingValue" not in ds:
        return None
    first = int(ds.PixelPaddingValue)
    last = int(ds.get("PixelPaddingRangeLimit", first))
    start, stop = sorted((first, last))
    start, stop = max(start - low, 0), min(stop - low + 1, size)
    return slice(start, stop) if start < stop else None


def breast_region(sample: np.ndarray, step: int, shape: tuple[int, int], threshold: float,
                  margin: int) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1) in the full grid of ``shape`` of the largest component
    above ``threshold`` in ``sample`` (every ``step``-th pixel), plus a margin; the whole
    image when nothing is above the threshold."""
    height, width = shape
    bright = sample > threshold
    labels, count = ndimage.label(bright)
    if count == 0:
        return 0, 0, width, height
    sizes = ndimage.sum_labels(bright, labels, index=np.arange(1, count + 1))
    rows, cols = ndimage.find_objects(labels)[int(np.argmax(sizes))]
    x0 = max(0, cols.start * step - margin)
    y0 = max(0, rows.start * step - margin)
    x1 = min(width, cols.stop * step + margin)
    y1 = min(height, rows.stop * step + margin)
    return x0, y0, x1, y1


@dataclass(frozen=True)
class ViewPlan:
    """Everything about a view except its full-resolution display image.

    ``display(stored, lut, low)`` (on the CPU here, or the same gather on a GPU) turns
    ``stored`` into the image; ``region`` and ``flipped`` were decided on a sample.
    """

    stored: np.ndarray  # (h, w) stored values inside the breast region (not flipped)
    lut: np.ndarray  # stored value - low -> display value in [0, 1]
    low: int  # smallest stored value Bits Stored / Pixel Representation allow
    region: tuple[int, int, int, int]
    flipped: bool
    laterality: str | None
    view: str | None


def plan_view(source: Path | str | pydicom.Dataset, params: PreprocessParams) -> ViewPlan:
    """Read one mammogram, check it, and find its breast region and orientation.

    Raises ``PreprocessError`` (FOR PROCESSING refused, unsupported photometric
    interpretation or bit depth, multi-frame image) or pydicom's errors for unreadable
    files or pixel data.
    """
    ds = read_dataset(source)
    check_presentation_intent(ds, params)
    if int(getattr(ds, "NumberOfFrames", 1) or 1) != 1:
        raise PreprocessError(f"NumberOfFrames is {ds.NumberOfFrames}; only single-frame "
                              "mammograms are scored")
    if int(getattr(ds, "SamplesPerPixel", 1) or 1) != 1:
        raise PreprocessError("SamplesPerPixel is not 1; a mammogram is grayscale")
    lut, low = display_lut(ds, params.voi)
    stored = ds.pixel_array
    if stored.ndim != 2:
        raise PreprocessError(f"pixel data has shape {stored.shape}, expected rows x columns")
    # Geometry from a sample about 512 px across: cheap even on a 4096 x 3328 image.
    step = max(1, max(stored.shape) // 512)
    sample = display(stored[::step, ::step], lut, low)
    x0, y0, x1, y1 = breast_region(sample, step, stored.shape, params.breast_threshold,
                                   params.region_margin)
    flipped = False
    if params.orient == "chest_wall_left":  # the brighter half holds the chest wall
        inside = sample[y0 // step:-(-y1 // step), x0 // step:-(-x1 // step)]
        half = inside.shape[1] // 2
        flipped = bool(inside[:, half:].sum() > inside[:, :half].sum())
    return ViewPlan(stored=stored[y0:y1, x0:x1], lut=lut, low=low, region=(x0, y0, x1, y1),
                    flipped=flipped, laterality=laterality_of(ds), view=view_of(ds))


def display(stored: np.ndarray, lut: np.ndarray, low: int) -> np.ndarray:
    """Stored values -> display values in [0, 1] through ``lut``; stray high bits clip."""
    index = stored if low == 0 else stored.astype(np.int32) - low
    return np.take(lut, index, mode="clip")


def prepare_view(source: Path | str | pydicom.Dataset, params: PreprocessParams) -> PreparedView:
    """Read, transform, crop and orient one mammogram on the CPU (errors: ``plan_view``)."""
    plan = plan_view(source, params)
    image = display(plan.stored, plan.lut, plan.low)  # (H, W) float32 in [0, 1]
    if plan.flipped:
        image = image[:, ::-1]
    return PreparedView(image=np.ascontiguousarray(image), region=plan.region,
                        flipped=plan.flipped, laterality=plan.laterality, view=plan.view)
