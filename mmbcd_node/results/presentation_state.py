"""Grayscale Softcopy Presentation States: the ROI marks drawn over the original views.

One GSPS per scored view (PS3.3 A.33.1, built with highdicom's
``GrayscaleSoftcopyPresentationState``), in one series per breast (``breast_series``,
series Laterality the view's, as the IOD requires for a paired body part). The marks
are those of the Secondary Capture (``roi_marks``) as graphic annotations in
stored-pixel coordinates: the most suspicious ROI on its own red layer, as in the
Secondary Capture, and the others by Rendering Intent, those reaching the operating
point for marks on a green layer (presentation required) and those below it on a layer
of their own (presentation optional: a reader may hide it). Each mark has its label
(``#1 0.873``, ``Hx`` on the most attended one) placed by ``label_layout``; the AI
disclaimer, the view probability and the legend are a caption layer along the top.
The source image's windowing is carried over (highdicom copies it when no VOI
transformation is given), and the Presentation LUT follows the source's photometric
interpretation: a presentation state replaces it (PS3.4 N.2.1.4), so a MONOCHROME1
view gets INVERSE, not IDENTITY, and is not shown in negative.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from highdicom import PresentationLUTTransformation
from highdicom.color import CIELabColor
from highdicom.enum import PresentationLUTShapeValues
from highdicom.pr import (
    AnnotationUnitsValues,
    GraphicAnnotation,
    GraphicLayer,
    GraphicObject,
    GraphicTypeValues,
    GrayscaleSoftcopyPresentationState,
    TextJustificationValues,
    TextObject,
)
from pydicom import Dataset

import mmbcd_node
from ml.types import MarkOperatingPoint, ViewPrediction
from mmbcd_node.output_kinds import OutputKind
from mmbcd_node.results.breast_series import breast_series, series_of
from mmbcd_node.results.label_layout import (
    Rect,
    label_font_px,
    label_size,
    leader,
    place_labels,
)
from mmbcd_node.results.result_set import NOT_FOR_DIAGNOSIS, ResultSet
from mmbcd_node.results.roi_marks import (
    GREEN,
    RED,
    RoiMark,
    box_polyline,
    legend,
    roi_marks,
    view_caption,
)

CONTENT_LABEL = "MMBCD_ROIS"
# The caption lines' boxes, in DISPLAY units (fractions of the displayed image): each
# 3 % of the height, one below the other.
_CAPTION_TOP, _CAPTION_LINE, _CAPTION_HEIGHT, _CAPTION_MARGIN = 0.01, 0.035, 0.03, 0.01


def build_presentation_states(result: ResultSet) -> list[Dataset]:
    """One GSPS per scored view of ``result``, in view order, referencing that view.

    Raises ``ValueError`` from highdicom when the source view lacks the image attributes
    a presentation state must reference (rows, columns, photometric interpretation).
    """
    kind = OutputKind.GSPS
    series = breast_series(result, kind)
    states: list[Dataset] = []
    for view in result.scored_views:
        source = result.header_of(view)
        breast = series_of(series, result, view)
        layers, annotations = _annotations(source, view, result.prediction.marks)
        gsps = GrayscaleSoftcopyPresentationState(
            referenced_images=[source],
            series_instance_uid=breast.uid,
            series_number=breast.number,
            sop_instance_uid=result.new_uid(kind.value, view.sop_instance_uid),
            instance_number=breast.instance_number(view),
            manufacturer=mmbcd_node.MANUFACTURER,
            manufacturer_model_name=mmbcd_node.MODEL_NAME,
            software_versions=result.software_versions[0],  # all of them are set below
            device_serial_number=result.device_serial_number,
            content_label=CONTENT_LABEL,
            content_description=NOT_FOR_DIAGNOSIS,
            graphic_annotations=annotations,
            graphic_layers=layers,
            presentation_lut_transformation=presentation_lut(source),
            series_description=breast.description,
        )
        result.stamp_identity(gsps)
        gsps.Laterality = breast.laterality
        _full_range_lut(gsps, source)
        states.append(gsps)
    return states


def presentation_lut(source: Dataset) -> PresentationLUTTransformation:
    """INVERSE for a MONOCHROME1 source (low values white), IDENTITY otherwise."""
    inverse = str(source.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1"
    return PresentationLUTTransformation(presentation_lut_shape=(
        PresentationLUTShapeValues.INVERSE if inverse else PresentationLUTShapeValues.IDENTITY))


def _full_range_lut(gsps: Dataset, source: Dataset) -> None:
    """Rescale a copied VOI LUT of fewer than 16 bits to the 16-bit output range.

    A presentation state's LUT entries are 8 or 16 bits (PS3.3 C.11.8); highdicom copies
    a 12-bit source LUT's data under a 16-bit descriptor, which leaves it a sixteenth of
    the range. Scaling the entries to 16 bits keeps what the viewer shows: the output
    range is what the presentation LUT maps to the display.
    """
    if "VOILUTSequence" not in source:
        return
    bits = int(source.VOILUTSequence[0].LUTDescriptor[2])
    if bits in (8, 16):
        return
    scale = 65535.0 / ((1 << bits) - 1)
    for transformation in gsps.get("SoftcopyVOILUTSequence", []):
        for lut in transformation.get("VOILUTSequence", []):
            data = np.frombuffer(lut.LUTData, dtype="<u2").astype(np.float64)
            lut.LUTData = np.round(np.clip(data * scale, 0, 65535)).astype("<u2").tobytes()
            lut.LUTDescriptor = [*list(lut.LUTDescriptor)[:2], 16]


def _annotations(source: Dataset, view: ViewPrediction, operating_point: MarkOperatingPoint,
                 ) -> tuple[list[GraphicLayer], list[GraphicAnnotation]]:
    """Layers and annotations for one view: the most suspicious mark, the others by
    rendering intent, then the caption."""
    marks = roi_marks(view, operating_point)
    top = GraphicLayer("MMBCD TOP ROI", order=3, description="Most suspicious ROI",
                       display_color=CIELabColor.from_rgb(*RED))
    required = GraphicLayer("MMBCD ROIS", order=2,
                            description="Other ROIs at the marks' operating point "
                                        "(required)",
                            display_color=CIELabColor.from_rgb(*GREEN))
    optional = GraphicLayer("MMBCD OPTIONAL", order=1,
                            description="ROIs below the marks' operating point "
                                        "(optional)",
                            display_color=CIELabColor.from_rgb(*GREEN))
    caption = GraphicLayer("MMBCD CAPTION", order=4, description=NOT_FOR_DIAGNOSIS,
                           display_color=CIELabColor.from_rgb(255, 255, 0))
    rows, columns = int(source.Rows), int(source.Columns)
    lines = [f"{NOT_FOR_DIAGNOSIS} | {view_caption(view)}", *legend(marks, operating_point)]
    boxes = [_caption_box(number) for number in range(len(lines))]
    annotations = [GraphicAnnotation(
        referenced_images=[source], graphic_layer=caption,
        text_objects=[TextObject(line, units=AnnotationUnitsValues.DISPLAY, bounding_box=box,
                                 text_justification=TextJustificationValues.LEFT)
                      for line, box in zip(lines, boxes, strict=True)])]
    gap = max(2.0, label_font_px(rows) / 6)  # between a label and its box or another label
    places = _label_places(marks, rows, columns, boxes, gap)
    for layer, chosen in (
            (top, [m for m in marks if m.most_suspicious]),
            (required, [m for m in marks if m.required and not m.most_suspicious]),
            (optional, [m for m in marks if not m.required and not m.most_suspicious])):
        if not chosen:
            continue
        annotations.append(GraphicAnnotation(
            referenced_images=[source], graphic_layer=layer,
            graphic_objects=[GraphicObject(GraphicTypeValues.POLYLINE, box_polyline(m.box),
                                           units=AnnotationUnitsValues.PIXEL)
                             for m in chosen],
            text_objects=[_label(m, places[m.rank], gap) for m in chosen
                          if m.rank in places]))
    used = {a.GraphicLayer for a in annotations}
    return [layer for layer in (top, required, optional, caption)
            if layer.GraphicLayer in used], annotations


def _label(mark: RoiMark, place: Rect, gap: float) -> TextObject:
    """The mark's label in its place; away from its box, anchored to it (a viewer draws
    the line from the box to the label)."""
    line = leader(place, Rect(*mark.box), gap)
    return TextObject(mark.tagged_label, units=AnnotationUnitsValues.PIXEL,
                      bounding_box=(place.x0, place.y0, place.x1, place.y1),
                      anchor_point=None if line is None else line[2:],
                      text_justification=TextJustificationValues.LEFT)


def _caption_box(line: int) -> tuple[float, float, float, float]:
    """The DISPLAY-unit box of caption line ``line`` (0 on top)."""
    top = _CAPTION_TOP + line * _CAPTION_LINE
    return (_CAPTION_MARGIN, top, 1 - _CAPTION_MARGIN, top + _CAPTION_HEIGHT)


def _label_places(marks: list[RoiMark], rows: int, columns: int,
                  caption: Sequence[tuple[float, float, float, float]],
                  gap: float) -> dict[int, Rect]:
    """Each mark's label box in pixels, by rank: inside the image, apart from the other
    labels and from the caption (its display boxes span the image shown to fit). A mark
    whose label finds no room is left out."""
    px = label_font_px(rows)
    reserved = [Rect(x0 * columns, y0 * rows, x1 * columns, y1 * rows)
                for x0, y0, x1, y1 in caption]
    places = place_labels([Rect(*m.box) for m in marks],
                          [label_size(m.tagged_label, px) for m in marks],
                          Rect(0, 0, columns, rows), reserved=reserved, gap=gap)
    return {m.rank: place for m, place in zip(marks, places, strict=True) if place is not None}
