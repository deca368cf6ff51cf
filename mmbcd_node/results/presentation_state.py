"""Grayscale Softcopy Presentation States: the ROI boxes drawn over the original views.

One GSPS per scored view (PS3.3 A.33.1, built with highdicom's
``GrayscaleSoftcopyPresentationState``), all in one new series. The boxes and labels are
those of the Secondary Capture (``roi_marks``) as graphic annotations in stored-pixel
coordinates: the most-attended box on a red layer, the others on a green one, and the
AI disclaimer with the view probability on a text layer. The source image's windowing is
carried over (highdicom copies it when no VOI transformation is given), and the series
Laterality is the view's, as the IOD requires for a paired body part.
"""

from __future__ import annotations

import numpy as np
from highdicom.color import CIELabColor
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
from mmbcd_node.results.result_set import NOT_FOR_DIAGNOSIS, OutputKind, ResultSet
from mmbcd_node.results.roi_marks import (
    GREEN,
    RED,
    RoiMark,
    box_polyline,
    roi_marks,
    view_caption,
)

CONTENT_LABEL = "MMBCD_ROIS"


def build_presentation_states(result: ResultSet) -> list[Dataset]:
    """One GSPS per scored view of ``result``, in view order, referencing that view.

    Raises ``ValueError`` from highdicom when the source view lacks the image attributes
    a presentation state must reference (rows, columns, photometric interpretation).
    """
    kind = OutputKind.PRESENTATION_STATE
    series_uid = result.new_uid(kind.config_name, "series")
    states: list[Dataset] = []
    for number, view in enumerate(result.scored_views, start=1):
        source = result.header_of(view)
        layers, annotations = _annotations(source, view, result.prediction.marks)
        gsps = GrayscaleSoftcopyPresentationState(
            referenced_images=[source],
            series_instance_uid=series_uid,
            series_number=result.series_number(kind),
            sop_instance_uid=result.new_uid(kind.config_name, view.sop_instance_uid),
            instance_number=number,
            manufacturer=mmbcd_node.MANUFACTURER,
            manufacturer_model_name=mmbcd_node.MODEL_NAME,
            software_versions=result.software_versions[0],  # all of them are set below
            device_serial_number=result.device_serial_number,
            content_label=CONTENT_LABEL,
            content_description=NOT_FOR_DIAGNOSIS,
            graphic_annotations=annotations,
            graphic_layers=layers,
            series_description=result.series_description(kind),
        )
        result.stamp_identity(gsps)
        gsps.Laterality = view.laterality or source.get("ImageLaterality", "")
        _full_range_lut(gsps, source)
        states.append(gsps)
    return states


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
    """Layers and annotations for one view: top box, other boxes, caption text."""
    marks = roi_marks(view, operating_point)
    top = GraphicLayer("MMBCD TOP ROI", order=1, description="Most suspicious ROI",
                       display_color=CIELabColor.from_rgb(*RED))
    others = GraphicLayer("MMBCD ROIS", order=2, description="Other ROIs",
                          display_color=CIELabColor.from_rgb(*GREEN))
    caption = GraphicLayer("MMBCD CAPTION", order=3, description=NOT_FOR_DIAGNOSIS,
                           display_color=CIELabColor.from_rgb(255, 255, 0))
    rows, columns = int(source.Rows), int(source.Columns)
    annotations = [GraphicAnnotation(
        referenced_images=[source], graphic_layer=caption,
        text_objects=[TextObject(f"{NOT_FOR_DIAGNOSIS} | {view_caption(view)}",
                                 units=AnnotationUnitsValues.DISPLAY,
                                 bounding_box=(0.01, 0.01, 0.99, 0.05),
                                 text_justification=TextJustificationValues.LEFT)])]
    for layer, chosen in ((top, [m for m in marks if m.most_suspicious]),
                          (others, [m for m in marks if not m.most_suspicious])):
        if not chosen:
            continue
        annotations.append(GraphicAnnotation(
            referenced_images=[source], graphic_layer=layer,
            graphic_objects=[GraphicObject(GraphicTypeValues.POLYLINE, box_polyline(m.box),
                                           units=AnnotationUnitsValues.PIXEL)
                             for m in chosen],
            text_objects=[_label(m, rows, columns) for m in chosen]))
    layers = [top, others, caption] if len(annotations) > 1 else [caption]
    used = {a.GraphicLayer for a in annotations}
    return [layer for layer in layers if layer.GraphicLayer in used], annotations


def _label(mark: RoiMark, rows: int, columns: int) -> TextObject:
    """The mark's label in a box just above it (inside its top edge at the image top)."""
    x0, y0, _, _ = mark.box
    height = max(8.0, rows / 40)
    width = min(columns - x0, len(mark.label) * height * 0.6)
    top = y0 - height if y0 - height >= 0 else y0
    bounding_box = (x0, top, x0 + max(width, 1.0), min(float(rows), top + height))
    return TextObject(mark.label, units=AnnotationUnitsValues.PIXEL, bounding_box=bounding_box,
                      text_justification=TextJustificationValues.LEFT)
