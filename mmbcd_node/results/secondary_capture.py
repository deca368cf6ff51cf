"""Secondary Capture images: each view with its ROI marks burned in, for any viewer.

One SC per scored view (PS3.3 A.8.1, built with highdicom's ``SCImage``), all in one new
series. Each instance states its view's Image Laterality and View Code Sequence; the
series has no Laterality, which is what the IOD asks when the image states its own
(and a series of both breasts has no one side). Modality OT, so no mammography hanging
protocol takes it for an image to read. The image is the view under its own windowing,
downscaled so the longest side is at most ``max_side`` pixels, with a banner strip
above it: the AI disclaimer, the view probability and a legend of the marks.

The marks are ``roi_marks``: the most suspicious ROI (rank 1) red with a thick outline,
the others green; a mark whose detector score reaches the operating point for marks is
drawn solid, one below it dashed and thinner. Each is labelled with its rank and score
(``#1 0.873``), the ROI the clinical history weighted most with ``Hx``; labels are white
on a black box outlined in the mark's colour, sized and placed by ``label_layout``
(never on each other, never off the picture, a leader line when away from the box; a
label with no room left in the picture is left out, its box still drawn).
RGB, RLE lossless (exact colours, no codec plug-in needed).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from highdicom.sc import SCImage
from PIL import Image, ImageDraw
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import RLELossless

import mmbcd_node
from ml.types import MarkOperatingPoint, ViewPrediction
from mmbcd_node.output_kinds import OutputKind
from mmbcd_node.results import codes
from mmbcd_node.results.breast_series import laterality_of_view
from mmbcd_node.results.label_layout import (
    Rect,
    label_font,
    label_font_px,
    label_padding,
    label_size,
    leader,
    place_labels,
)
from mmbcd_node.results.result_set import NOT_FOR_DIAGNOSIS, ResultError, ResultSet
from mmbcd_node.results.roi_marks import RED, RoiMark, legend, roi_marks, view_caption

DEFAULT_MAX_SIDE = 1024
_SOURCE_IMAGE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")
_YELLOW, _WHITE, _BLACK = (255, 255, 0), (255, 255, 255), (0, 0, 0)
_GAP = 2  # pixels between a label and its box, and between labels
# Patient and study attributes highdicom does not copy from the source; a PACS compares
# them across the study's instances.
_STUDY_KEYWORDS = ("IssuerOfPatientID", "StudyDescription")

Colour = tuple[int, int, int]


def build_secondary_captures(result: ResultSet, max_side: int = DEFAULT_MAX_SIDE) -> list[Dataset]:
    """One burned-in Secondary Capture per scored view of ``result``, in view order.

    ``max_side`` bounds the longest side of the picture (the banner comes on top).
    Raises ``ResultError`` naming the view when its pixels cannot be read.
    """
    kind = OutputKind.SC
    series_uid = result.new_uid(kind.value, "series")
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
            series_instance_uid=series_uid,
            series_number=result.series_number(kind),
            sop_instance_uid=result.new_uid(kind.value, view.sop_instance_uid),
            instance_number=number,
            manufacturer=mmbcd_node.MANUFACTURER,
            transfer_syntax_uid=RLELossless,
            series_description=result.series_description(kind),
        )
        sc.PatientOrientation = source.get("PatientOrientation", "")
        for keyword in _STUDY_KEYWORDS:
            if keyword in source and keyword not in sc:
                setattr(sc, keyword, source.get(keyword))
        sc.ImageLaterality = laterality_of_view(result, view) or "U"
        sc.ViewCodeSequence = _view_codes(source, view)
        result.stamp_identity(sc)
        sc.BurnedInAnnotation = "NO"  # marks and scores only: nothing identifies the patient
        lines = [view_caption(view), *legend(roi_marks(view, result.prediction.marks),
                                             result.prediction.marks)]
        sc.ImageComments = f"{NOT_FOR_DIAGNOSIS}. " + "; ".join(lines)
        sc.DerivationDescription = "View with ROI marks, ranks and detector scores burned in"
        sc.SourceImageSequence = [_source_image_item(source)]
        captures.append(sc)
    return captures


@dataclass(frozen=True)
class DrawnMark:
    """A mark as burned in: its box and its label's backing box, in SC pixels."""

    mark: RoiMark
    box: Rect
    label: Rect | None  # None only when the picture has no room left for it

    @property
    def stroke_scale(self) -> int:
        """Outline width in strokes: 3 for rank 1, 2 for another required mark, 1 for
        one below the operating point."""
        return 3 if self.mark.most_suspicious else 2 if self.mark.required else 1


@dataclass(frozen=True)
class ViewLayout:
    """Where everything goes on one view's Secondary Capture (pixels, banner on top)."""

    width: int
    height: int  # the picture's, without the banner
    banner: int
    scale: float  # SC pixels per source pixel
    font_px: int  # the labels' text height
    banner_px: int  # the banner's text height
    banner_lines: tuple[tuple[str, Colour], ...]
    marks: tuple[DrawnMark, ...]

    @property
    def picture(self) -> Rect:
        return Rect(0, self.banner, self.width, self.banner + self.height)

    @property
    def stroke(self) -> int:
        """The outline width unit: about 1/600 of the longer side, 1 at least."""
        return max(1, round(max(self.width, self.height) / 600))


def layout_view(source: Dataset, view: ViewPrediction, max_side: int,
                operating_point: MarkOperatingPoint = MarkOperatingPoint()) -> ViewLayout:
    """The geometry of a view's Secondary Capture: size, banner, boxes and labels."""
    height, width = int(source.Rows), int(source.Columns)
    scale = min(1.0, max_side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    marks = roi_marks(view, operating_point)
    lines: list[tuple[str, Colour]] = [(NOT_FOR_DIAGNOSIS, _YELLOW), (view_caption(view), _WHITE)]
    lines += [(line, RED if number == 0 else _WHITE)
              for number, line in enumerate(legend(marks, operating_point))]
    banner_px = label_font_px(size[1])
    wrapped = tuple((part, colour) for line, colour in lines
                    for part in _wrap(line, banner_px, size[0] - 2 * label_padding(banner_px)))
    banner = len(wrapped) * _line_height(banner_px) + 2 * label_padding(banner_px)
    px = label_font_px(banner + size[1])  # the labels scale with the whole SC
    boxes = [_scaled(mark.box, scale, banner) for mark in marks]
    picture = Rect(0, banner, size[0], banner + size[1])
    labels = place_labels(boxes, [label_size(mark.tagged_label, px) for mark in marks],
                          picture, gap=_GAP)
    return ViewLayout(width=size[0], height=size[1], banner=banner, scale=scale, font_px=px,
                      banner_px=banner_px, banner_lines=wrapped,
                      marks=tuple(DrawnMark(mark, box, label)
                                  for mark, box, label in zip(marks, boxes, labels, strict=True)))


def render_view(source: Dataset, view: ViewPrediction, max_side: int,
                operating_point: MarkOperatingPoint = MarkOperatingPoint()) -> Image.Image:
    """The view as an RGB picture: windowed, downscaled, banner on top, marks burned in."""
    layout = layout_view(source, view, max_side, operating_point)
    image = Image.fromarray(_display_pixels(source, view, (layout.width, layout.height)))
    canvas = Image.new("RGB", (layout.width, layout.banner + layout.height), _BLACK)
    canvas.paste(image.convert("RGB"), (0, layout.banner))
    draw = ImageDraw.Draw(canvas)
    font, pad = label_font(layout.banner_px), label_padding(layout.banner_px)
    for number, (text, colour) in enumerate(layout.banner_lines):
        draw.text((pad, pad + number * _line_height(layout.banner_px)), text, fill=colour,
                  font=font, anchor="la")
    font, pad = label_font(layout.font_px), label_padding(layout.font_px)
    # Optional marks first, the most suspicious last: it is never covered.
    order = sorted(layout.marks, key=lambda m: (m.mark.required, -m.mark.rank))
    for drawn in order:
        width = layout.stroke * drawn.stroke_scale
        if drawn.mark.required:
            draw.rectangle(_inclusive(drawn.box), outline=drawn.mark.color, width=width)
        else:
            _dashed_rectangle(draw, drawn.box, drawn.mark.color, width)
        line = None if drawn.label is None else leader(drawn.label, drawn.box, _GAP)
        if line is not None:
            draw.line(line, fill=drawn.mark.color, width=max(1, layout.stroke))
    for drawn in order:
        if drawn.label is None:
            continue
        draw.rectangle(_inclusive(drawn.label), fill=_BLACK, outline=drawn.mark.color,
                       width=max(1, layout.font_px // 12))
        draw.text((drawn.label.x0 + pad, drawn.label.y0 + pad), drawn.mark.tagged_label,
                  fill=_WHITE, font=font, anchor="la")
    return canvas


def _line_height(px: int) -> int:
    ascent, descent = label_font(px).getmetrics()
    return ascent + descent + max(1, px // 6)


def _wrap(text: str, px: int, width: int) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width`` where words allow."""
    font = label_font(px)
    lines: list[str] = []
    for word in text.split(" "):
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _scaled(box: tuple[float, float, float, float], scale: float, banner: int) -> Rect:
    """A source box in SC pixels: scaled, below the banner, one pixel wide at least."""
    x0, y0, x1, y1 = (round(c * scale) for c in box)
    return Rect(x0, y0 + banner, max(x1, x0 + 1), max(y1, y0 + 1) + banner)


def _inclusive(rect: Rect) -> tuple[int, int, int, int]:
    """PIL's rectangle corners: the last column and row inside ``rect``."""
    return (int(rect.x0), int(rect.y0), max(int(rect.x0), int(rect.x1) - 1),
            max(int(rect.y0), int(rect.y1) - 1))


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: Rect, colour: Colour, width: int) -> None:
    """The outline of ``box``, ``width`` pixels inwards, in dashes of three widths."""
    x0, y0, x1, y1 = _inclusive(box)
    dash = 3 * width + 3
    for start in range(x0, x1 + 1, 2 * dash):
        end = min(start + dash - 1, x1)
        draw.rectangle((start, y0, end, min(y0 + width - 1, y1)), fill=colour)
        draw.rectangle((start, max(y1 - width + 1, y0), end, y1), fill=colour)
    for start in range(y0, y1 + 1, 2 * dash):
        end = min(start + dash - 1, y1)
        draw.rectangle((x0, start, min(x0 + width - 1, x1), end), fill=colour)
        draw.rectangle((max(x1 - width + 1, x0), start, x1, end), fill=colour)


def _view_codes(source: Dataset, view: ViewPrediction) -> list[Dataset]:
    """The source's View Code Sequence, else the code of the view the header named.

    An empty View Modifier Code Sequence (Type 2 in a mammogram) is left out: in a
    Secondary Capture it is optional and must have an item when present.
    """
    if source.get("ViewCodeSequence"):
        items = [copy.deepcopy(item) for item in source.ViewCodeSequence]
        for item in items:
            if "ViewModifierCodeSequence" in item and not item.ViewModifierCodeSequence:
                del item.ViewModifierCodeSequence
        return items
    concept = codes.MAMMOGRAPHY_VIEW.get(view.view or "")
    if concept is None:
        return []
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = (
        concept.value, concept.scheme_designator, concept.meaning)
    return [item]


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


def _source_image_item(source: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = _SOURCE_IMAGE_PURPOSE
    item.PurposeOfReferenceCodeSequence = [purpose]
    return item
