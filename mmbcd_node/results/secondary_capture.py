"""Secondary Capture images: each view with its ROI boxes burned in, for any viewer.

One SC per scored view (PS3.3 A.8.1, built with highdicom's ``SCImage``), all in one
new series. Modality OT, so no mammography hanging protocol takes it for an image to
read. The image is the view under its own windowing, downscaled so the longest side is
at most ``max_side`` pixels, with a banner strip above it stating that this is an AI
result and the view probability; the most-attended box is red, the others green, each
with its attention weight. RGB, RLE lossless (exact colours, no codec plug-in needed).
"""

from __future__ import annotations

import numpy as np
from highdicom.sc import SCImage
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import RLELossless

import mmbcd_node
from ml.types import MarkOperatingPoint, ViewPrediction
from mmbcd_node.results.result_set import NOT_FOR_DIAGNOSIS, OutputKind, ResultError, ResultSet
from mmbcd_node.results.roi_marks import roi_marks, view_caption

DEFAULT_MAX_SIDE = 1024
_SOURCE_IMAGE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")


def build_secondary_captures(result: ResultSet, max_side: int = DEFAULT_MAX_SIDE) -> list[Dataset]:
    """One burned-in Secondary Capture per scored view of ``result``, in view order.

    ``max_side`` bounds the longest side of the picture (the banner comes on top).
    Raises ``ResultError`` naming the view when its pixels cannot be read.
    """
    kind = OutputKind.SECONDARY_CAPTURE
    series_uid = result.new_uid(kind.config_name, "series")
    captures: list[Dataset] = []
    for number, view in enumerate(result.scored_views, start=1):
        picture = render_view(result.source_of(view), view, max_side, result.prediction.marks)
        source = result.header_of(view)
        sc = SCImage.from_ref_dataset(
            ref_dataset=source,
            pixel_array=np.asarray(picture, dtype=np.uint8),
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            # Replaced below by the source's own value, which may be e.g. "A\FR" for an
            # MLO view: highdicom accepts single-letter orientations only.
            patient_orientation=("A", "R"),
            laterality=view.laterality,
            series_instance_uid=series_uid,
            series_number=result.series_number(kind),
            sop_instance_uid=result.new_uid(kind.config_name, view.sop_instance_uid),
            instance_number=number,
            manufacturer=mmbcd_node.MANUFACTURER,
            transfer_syntax_uid=RLELossless,
            series_description=result.series_description(kind),
        )
        sc.PatientOrientation = source.get("PatientOrientation", "")
        result.stamp_identity(sc)
        sc.BurnedInAnnotation = "NO"  # boxes and scores only: nothing identifies the patient
        sc.ImageComments = f"{NOT_FOR_DIAGNOSIS}. {view_caption(view)}"
        sc.DerivationDescription = "View with ROI boxes and attention weights burned in"
        sc.SourceImageSequence = [_source_image_item(source)]
        captures.append(sc)
    return captures


def render_view(source: Dataset, view: ViewPrediction, max_side: int,
                operating_point: MarkOperatingPoint = MarkOperatingPoint()) -> Image.Image:
    """The view as an RGB picture: windowed, downscaled, banner on top, boxes burned in."""
    height, width = int(source.Rows), int(source.Columns)
    scale = min(1.0, max_side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.fromarray(_display_pixels(source, view, size))
    font = _font_fitting(NOT_FOR_DIAGNOSIS, size[0])
    line = round(font.getbbox("Ag")[3]) + 4
    banner = int(2 * line + 4)
    canvas = Image.new("RGB", (size[0], size[1] + banner), (0, 0, 0))
    canvas.paste(image.convert("RGB"), (0, banner))
    draw = ImageDraw.Draw(canvas)
    draw.text((3, 2), NOT_FOR_DIAGNOSIS, fill=(255, 255, 0), font=font)
    draw.text((3, 2 + line), view_caption(view), fill=(255, 255, 255), font=font)
    stroke = max(1, round(size[0] / 400))
    for mark in roi_marks(view, operating_point):
        x0, y0, x1, y1 = (round(c * scale) for c in mark.box)
        box = (x0, y0 + banner, max(x0, x1 - 1), max(y0, y1 - 1) + banner)
        draw.rectangle(box, outline=mark.color, width=stroke)
        # The label sits above the box, or inside it when the box touches the banner.
        label_y = box[1] - line if box[1] - line >= banner else box[1] + stroke + 1
        draw.text((box[0] + stroke + 1, label_y), mark.label, fill=mark.color, font=font)
    return canvas


def _display_pixels(source: Dataset, view: ViewPrediction, size: tuple[int, int]) -> np.ndarray:
    """Stored pixels resized to ``size`` (width, height), through the modality and VOI
    LUTs as stored, as 8-bit gray."""
    try:
        stored = source.pixel_array
    except Exception as exc:  # pydicom raises many types for undecodable pixel data
        raise ResultError(f"view {view.sop_instance_uid}: pixel data cannot be read "
                          f"for the secondary capture ({exc})") from exc
    if stored.ndim != 2:
        raise ResultError(f"view {view.sop_instance_uid}: a secondary capture is made of "
                          f"single-frame grayscale views only, not of shape {stored.shape}")
    if size != (stored.shape[1], stored.shape[0]):
        # Area-average the stored values first: the LUTs then run on a thumbnail, not on
        # a 10-megapixel mammogram. Rounding back keeps table lookups (VOI LUT) valid.
        resized = Image.fromarray(stored.astype(np.float32)).resize(size, Image.Resampling.BOX)
        stored = np.round(np.asarray(resized)).astype(stored.dtype)
    values = apply_voi_lut(apply_modality_lut(stored, source), source).astype(np.float32)
    if "WindowCenter" in source or "VOILUTSequence" in source:
        # After windowing pydicom's output spans the stored range, not the image's.
        bits = int(source.get("BitsStored", 8))
        low, high = (0.0, 2.0**bits - 1) if int(source.get("PixelRepresentation", 0)) == 0 \
            else (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1)
    else:
        low, high = float(values.min()), float(values.max())
    gray = np.clip((values - low) / max(high - low, 1e-9), 0.0, 1.0)
    if source.get("PhotometricInterpretation") == "MONOCHROME1":
        gray = 1.0 - gray
    return np.round(gray * 255).astype(np.uint8)


def _font_fitting(text: str, width: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # load_default(size) is Pillow's bundled scalable font; nothing is read from the system.
    """Pillow's built-in font at the largest size (8..24 px) whose ``text`` fits ``width``."""
    size = max(8, min(24, width // 40))
    font = ImageFont.load_default(size)
    while size > 8 and font.getlength(text) > width - 6:
        size -= 1
        font = ImageFont.load_default(size)
    return font


def _source_image_item(source: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = _SOURCE_IMAGE_PURPOSE
    item.PurposeOfReferenceCodeSequence = [purpose]
    return item
