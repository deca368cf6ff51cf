"""The input contract: a received mammogram as the model and the result builders need it.

Modalities and archives write headers in many ways; this module is the one place that
reads a received image's header, checks it and normalises it. After
``source_image(ds)`` the pipeline (``ml``) and every result builder read the returned
``SourceImage`` and its normalised dataset, never the raw header.

What is checked, and what a missing or malformed attribute becomes (the README's
"What the node accepts" lists the same rules for administrators):

- Mandatory (the image is rejected, ``ImageRejected`` names the image and the
  attribute): SOP Instance UID, SOP Class UID, Study Instance UID, Rows, Columns,
  Bits Allocated (8 or 16), Bits Stored (8..16, at most Bits Allocated), Pixel Data
  (native pixel data at least Rows x Columns samples), one sample per pixel, and a
  Photometric Interpretation of MONOCHROME1 or MONOCHROME2.
- Defaults: a missing Photometric Interpretation is MONOCHROME2, a missing Bits Stored
  is Bits Allocated, High Bit is Bits Stored - 1, a missing Pixel Representation is 0
  (unsigned). A Rescale Slope/Intercept that is not a number, or a zero slope, is
  dropped (identity). A window whose centre or width is not a number, or whose width is
  below 1, is dropped; a VOI LUT whose descriptor and data disagree is dropped; LUT Data
  written with VR US is rewritten as OW (both encodings are valid DICOM). A Pixel
  Padding Value that is not an integer is dropped. Each default applied is listed in
  ``SourceImage.defaults``.
- Geometry: pixel spacing from Imager Pixel Spacing, else Pixel Spacing, else Nominal
  Scanned Pixel Spacing (two positive numbers), else unknown. Patient Orientation is
  kept only when it has two values of the PS3.3 C.7.6.1.1.1 letters; else unknown.
  Laterality and view come from ``ml.views`` (Image Laterality, series Laterality,
  View Code Sequence, View Position, Patient Orientation, Series Description).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom import Dataset
from pydicom.uid import BreastTomosynthesisImageStorage

from ml.views import laterality_of, view_of

FOR_PROCESSING_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray, For Processing
    "1.2.840.10008.5.1.4.1.1.13.1.5",  # Breast Projection X-Ray, For Processing
})
_SPACING_SOURCES = ("ImagerPixelSpacing", "PixelSpacing", "NominalScannedPixelSpacing")
_ORIENTATION = re.compile(r"^[APRLHF]{1,3}$")
# CID 4015 View Modifier for Mammography, the codes that make a view a work-up view.
_MODIFIER_CODES = {
    "399055006": "spot compression", "R-102D2": "spot compression",
    "399163009": "magnification", "R-102D6": "magnification",
    "399209000": "implant displaced", "R-102D3": "implant displaced",
}
_MODIFIER_WORDS = {"SPOT": "spot compression", "MAG": "magnification",
                   "ID": "implant displaced", "EKLUND": "implant displaced"}
IMPLANT_DISPLACED = "implant displaced"


class ImageRejected(ValueError):
    """An image the model cannot use, whatever is retried; names the image and attribute."""

    def __init__(self, sop_instance_uid: str, attribute: str, problem: str) -> None:
        super().__init__(f"image {sop_instance_uid}: {attribute} {problem}")
        self.sop_instance_uid = sop_instance_uid
        self.attribute = attribute


@dataclass(frozen=True)
class PixelSpacing:
    """Physical size of a pixel, in mm: between rows, between columns, and where it came from."""

    row: float
    column: float
    source: str  # the attribute keyword it was read from


@dataclass(frozen=True)
class SourceImage:
    """A received mammogram, checked and normalised (``dataset`` is the normalised one)."""

    dataset: Dataset
    sop_instance_uid: str
    laterality: str | None  # "R" | "L"
    view: str | None  # "CC", "MLO", "ML", "XCCL", ...
    modifiers: frozenset[str]  # CID 4015 modifiers: "spot compression", ...
    orientation: tuple[str, str] | None
    spacing: PixelSpacing | None
    frames: int
    for_processing: bool
    tomosynthesis: bool
    defaults: tuple[str, ...] = ()  # the defaults applied, one line each

    @property
    def label(self) -> str:
        """Laterality and view for messages: ``R CC``, ``? MLO``."""
        return f"{self.laterality or '?'} {self.view or '?'}"

    @property
    def acquired(self) -> str:
        """Acquisition (else content) date and time, for ordering retakes."""
        ds = self.dataset
        for date, time in (("AcquisitionDate", "AcquisitionTime"),
                           ("ContentDate", "ContentTime")):
            if ds.get(date):
                return f"{ds.get(date)}{str(ds.get(time) or '').ljust(6, '0')}"
        return ""


def source_image(ds: Dataset) -> SourceImage:
    """Check ``ds`` (a received mammogram, pixels included) and normalise it in place.

    Returns the ``SourceImage``; raises ``ImageRejected`` for an image no default can
    make usable. Reads the header only: pixel data is decoded later, by the model.
    """
    uid = _text(ds, "SOPInstanceUID") or "(no SOP Instance UID)"
    for keyword in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID"):
        if not _text(ds, keyword):
            raise ImageRejected(uid, keyword, "is missing")
    defaults: list[str] = []
    frames = _pixel_module(ds, uid, defaults)
    _rescale(ds, defaults)
    _window(ds, defaults)
    _voi_lut(ds, defaults)
    _padding(ds, defaults)
    orientation = _orientation(ds)
    if orientation is None and "PatientOrientation" in ds:
        defaults.append("Patient Orientation malformed: treated as unknown")
    if orientation is None:
        ds.PatientOrientation = ""
    laterality = laterality_of(ds)
    if laterality and not _text(ds, "ImageLaterality"):
        ds.ImageLaterality = laterality
        defaults.append(f"Image Laterality missing: {laterality} from the series header")
    sop_class = _text(ds, "SOPClassUID")
    intent = _text(ds, "PresentationIntentType").upper()
    return SourceImage(
        dataset=ds, sop_instance_uid=uid, laterality=laterality, view=view_of(ds),
        modifiers=_modifiers(ds), orientation=orientation, spacing=pixel_spacing(ds),
        frames=frames,
        for_processing=intent == "FOR PROCESSING" or sop_class in FOR_PROCESSING_CLASSES,
        tomosynthesis=sop_class == BreastTomosynthesisImageStorage,
        defaults=tuple(defaults))


def pixel_spacing(ds: Dataset) -> PixelSpacing | None:
    """Imager Pixel Spacing, else Pixel Spacing, else Nominal Scanned Pixel Spacing; each
    only if it is two positive numbers. None when no source gives a usable value."""
    for keyword in _SPACING_SOURCES:
        values = _numbers(ds, keyword)
        if values is not None and len(values) == 2 and all(v > 0 for v in values):
            return PixelSpacing(row=values[0], column=values[1], source=keyword)
    return None


# -- the checks, one per module of the image -------------------------------------------


def _pixel_module(ds: Dataset, uid: str, defaults: list[str]) -> int:
    """Image Pixel module (PS3.3 C.7.6.3); returns the number of frames."""
    for keyword in ("Rows", "Columns", "BitsAllocated"):
        if _integer(ds, keyword) is None or _integer(ds, keyword) <= 0:  # type: ignore[operator]
            raise ImageRejected(uid, keyword, "is missing or not a positive integer")
    if "PixelData" not in ds:
        raise ImageRejected(uid, "PixelData", "is missing")
    photometric = _text(ds, "PhotometricInterpretation").upper()
    if not photometric:
        ds.PhotometricInterpretation = "MONOCHROME2"
        defaults.append("Photometric Interpretation missing: MONOCHROME2 assumed")
    elif photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageRejected(uid, "PhotometricInterpretation",
                            f"is {photometric}; only MONOCHROME1 and MONOCHROME2 are analysed")
    samples = _integer(ds, "SamplesPerPixel")
    if samples not in (None, 1):
        raise ImageRejected(uid, "SamplesPerPixel", f"is {samples}; a mammogram is grayscale")
    allocated = int(ds.BitsAllocated)
    if allocated not in (8, 16):
        raise ImageRejected(uid, "BitsAllocated", f"is {allocated}; 8 or 16 are supported")
    stored = _integer(ds, "BitsStored")
    if stored is None:
        stored = allocated
        ds.BitsStored = stored
        defaults.append(f"Bits Stored missing: {stored} (Bits Allocated) assumed")
    if not 8 <= stored <= allocated:
        raise ImageRejected(uid, "BitsStored", f"is {stored}; 8..{allocated} are supported")
    if _integer(ds, "HighBit") != stored - 1:
        ds.HighBit = stored - 1
        defaults.append(f"High Bit set to {stored - 1} (Bits Stored - 1)")
    if _integer(ds, "PixelRepresentation") not in (0, 1):
        ds.PixelRepresentation = 0
        defaults.append("Pixel Representation missing: unsigned assumed")
    ds.SamplesPerPixel = 1
    frames = _integer(ds, "NumberOfFrames") or 1
    if not ds.file_meta.get("TransferSyntaxUID", None) or \
            not ds.file_meta.TransferSyntaxUID.is_compressed:
        needed = int(ds.Rows) * int(ds.Columns) * frames * (allocated // 8)
        length = len(ds.PixelData)
        if length < needed:
            raise ImageRejected(uid, "PixelData",
                                f"holds {length} bytes; {ds.Rows} x {ds.Columns} x {frames} "
                                f"frame(s) of {allocated}-bit samples need {needed}")
    return frames


def _rescale(ds: Dataset, defaults: list[str]) -> None:
    slope, intercept = _numbers(ds, "RescaleSlope"), _numbers(ds, "RescaleIntercept")
    present = "RescaleSlope" in ds or "RescaleIntercept" in ds
    if present and (slope is None or intercept is None or len(slope) != 1
                    or len(intercept) != 1 or slope[0] == 0):
        for keyword in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
            if keyword in ds:
                del ds[keyword]
        defaults.append("Rescale Slope/Intercept malformed: identity used")


def _window(ds: Dataset, defaults: list[str]) -> None:
    if "WindowCenter" not in ds and "WindowWidth" not in ds:
        return
    centres, widths = _numbers(ds, "WindowCenter"), _numbers(ds, "WindowWidth")
    if not centres or not widths or widths[0] < 1:
        for keyword in ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation",
                        "VOILUTFunction"):
            if keyword in ds:
                del ds[keyword]
        defaults.append("Window Center/Width malformed: window dropped")
        return
    # The first window is the default one (PS3.3 C.11.2.1.2); keep it alone, so every
    # reader (pydicom, highdicom, a viewer) applies the same one.
    ds.WindowCenter, ds.WindowWidth = centres[0], widths[0]
    if "WindowCenterWidthExplanation" in ds:
        explanation = ds.WindowCenterWidthExplanation
        ds.WindowCenterWidthExplanation = (explanation if isinstance(explanation, str)
                                           else str(explanation[0]))
    function = _text(ds, "VOILUTFunction").upper()
    if function and function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        del ds["VOILUTFunction"]
        defaults.append(f"VOI LUT Function {function} unknown: LINEAR used")


def _voi_lut(ds: Dataset, defaults: list[str]) -> None:
    if "VOILUTSequence" not in ds:
        return
    if "WindowCenter" in ds:
        # Both, as some units write them (PS3.3 C.11.2 leaves the choice to the
        # reader): the first window, the unit's default, is used and the LUT dropped,
        # so every output presents the image one way.
        del ds["VOILUTSequence"]
        defaults.append("VOI LUT Sequence beside a window: the window is used")
        return
    items = list(ds.VOILUTSequence or [])
    problem = _voi_lut_problem(items[0]) if items else "is empty"
    if problem:
        del ds["VOILUTSequence"]
        defaults.append(f"VOI LUT Sequence {problem}: dropped")
        return
    first = items[0]
    bits = int(first.LUTDescriptor[2])
    raw = first["LUTData"].value
    values = (np.frombuffer(raw, dtype="<u2") if isinstance(raw, bytes | bytearray)
              else np.asarray(list(raw) if not isinstance(raw, int) else [raw], dtype=np.uint16))
    first["LUTData"].VR = "OW"
    first.LUTData = values.astype("<u2").tobytes()
    if bits > 8:
        first.LUTDescriptor = [int(first.LUTDescriptor[0]), int(first.LUTDescriptor[1]), bits]
    ds.VOILUTSequence = [first]  # the first LUT is the default one, as for windows


def _voi_lut_problem(item: Dataset) -> str | None:
    descriptor = item.get("LUTDescriptor")
    if descriptor is None or "LUTData" not in item:
        return "has no LUT Descriptor or LUT Data"
    try:
        entries, _, bits = (int(v) for v in descriptor)
    except (TypeError, ValueError):
        return "has a malformed LUT Descriptor"
    entries = entries or 65536
    if not 10 <= bits <= 16:
        return f"has {bits}-bit entries (10..16 are used)"
    raw = item["LUTData"].value
    count = (len(raw) // 2 if isinstance(raw, bytes | bytearray)
             else 1 if isinstance(raw, int) else len(raw))
    if count != entries:
        return f"has {count} entries where its descriptor says {entries}"
    return None


def _padding(ds: Dataset, defaults: list[str]) -> None:
    for keyword in ("PixelPaddingValue", "PixelPaddingRangeLimit"):
        if keyword in ds and _integer(ds, keyword) is None:
            del ds[keyword]
            defaults.append(f"{keyword} is not an integer: dropped")


def _orientation(ds: Dataset) -> tuple[str, str] | None:
    raw: Any = ds.get("PatientOrientation")
    values = [str(v).strip().upper() for v in (raw if isinstance(raw, list | tuple) or
                                               hasattr(raw, "__iter__") and
                                               not isinstance(raw, str) else [raw])
              if v is not None]
    if len(values) == 2 and all(_ORIENTATION.match(v) for v in values):
        return values[0], values[1]
    return None


def _modifiers(ds: Dataset) -> frozenset[str]:
    found = set()
    for view in ds.get("ViewCodeSequence") or []:
        for modifier in view.get("ViewModifierCodeSequence") or []:
            name = _MODIFIER_CODES.get(str(modifier.get("CodeValue", "")).strip())
            if name:
                found.add(name)
    for keyword in ("ViewPosition", "SeriesDescription", "AcquisitionDeviceProcessingDescription"):
        for word in re.findall(r"[A-Z]+", _text(ds, keyword).upper()):
            if word in _MODIFIER_WORDS:
                found.add(_MODIFIER_WORDS[word])
    return frozenset(found)


# -- reading values without trusting them ----------------------------------------------


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # a value pydicom cannot even convert counts as absent
        return ""
    return str(value).strip() if value is not None else ""


def _numbers(ds: Dataset, keyword: str) -> list[float] | None:
    """The element's values as finite floats; None when absent, empty or not numbers."""
    try:
        raw: Any = ds.get(keyword)
        if raw is None or raw == "":
            return None
        values = [float(v) for v in (raw if hasattr(raw, "__iter__") and
                                     not isinstance(raw, str | bytes) else [raw])]
    except (TypeError, ValueError, OverflowError):
        return None
    return values if values and all(math.isfinite(v) for v in values) else None


def _integer(ds: Dataset, keyword: str) -> int | None:
    values = _numbers(ds, keyword)
    if values is None or len(values) != 1 or values[0] != int(values[0]):
        return None
    return int(values[0])
