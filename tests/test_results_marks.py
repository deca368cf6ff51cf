"""ROI marks on the images: the Secondary Capture's burned-in marks and the GSPS's.

Both show the marks ``roi_marks`` chooses, the most suspicious ROI emphasised, the most
attended one tagged ``Hx``, their labels readable, inside the image and never on each
other, checked on the geometry and on the pixels. The objects of a study pass
``dcentvfy`` together with their sources, and a presentation state shows a MONOCHROME1
view as dcmtk renders it the right way round, not in negative.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pydicom
import pytest
from PIL import Image

from ml.types import MarkOperatingPoint, RoiPrediction, ViewPrediction
from mmbcd_node.results.label_layout import Rect, leader, place_labels
from mmbcd_node.results.outputs import build_outputs
from mmbcd_node.results.presentation_state import build_presentation_states
from mmbcd_node.results.result_set import ResultSet
from mmbcd_node.results.roi_marks import HISTORY_TAG, RED, legend, roi_marks, score_text
from mmbcd_node.results.secondary_capture import (
    build_secondary_captures,
    layout_view,
    render_view,
)
from tests.support.dicom_validation import (
    dcentvfy_errors,
    dciodvfy_errors,
    dcmpschk_errors,
    render_with_presentation_state,
    write,
)
from tests.support.header_variants import _monochrome1_padding, study
from tests.support.predictions import make_result_set

ROWS, COLUMNS = 256, 208  # the synthetic views of tests.support.predictions

# Crowded views: boxes on the edges and corners, boxes on top of each other.
CROWDED = {
    "right_and_top_edges": [((150.0, 0.0, 208.0, 40.0), 0.9995, 0.1),
                            ((170.0, 0.0, 208.0, 30.0), 0.19, 0.5),
                            ((120.0, 10.0, 208.0, 60.0), 0.1901, 0.2),
                            ((188.0, 5.0, 208.0, 25.0), 0.6, 0.2)],
    "overlapping": [((80.0, 100.0, 140.0, 160.0), 0.8, 0.1),
                    ((85.0, 105.0, 135.0, 150.0), 0.7, 0.3),
                    ((90.0, 95.0, 145.0, 165.0), 0.65, 0.2),
                    ((95.0, 110.0, 125.0, 140.0), 0.3, 0.4)],
    "four_corners": [((0.0, 0.0, 30.0, 30.0), 0.5, 0.25),
                     ((178.0, 0.0, 208.0, 30.0), 0.6, 0.25),
                     ((0.0, 226.0, 30.0, 256.0), 0.7, 0.25),
                     ((178.0, 226.0, 208.0, 256.0), 0.8, 0.25)],
    "whole_image_and_small": [((0.0, 0.0, 208.0, 256.0), 0.4, 0.5),
                              ((100.0, 120.0, 104.0, 124.0), 0.9, 0.3),
                              ((103.0, 121.0, 107.0, 126.0), 0.2, 0.2)],
}


def with_rois(result: ResultSet, rois: list[tuple[tuple[float, float, float, float], float, float]],
              marks: MarkOperatingPoint | None = None) -> ResultSet:
    """``result`` with the first view's ROIs replaced (box, detector score, attention)."""
    view = result.prediction.views[0]
    view = dataclasses.replace(view, rois=[RoiPrediction(box, score, attention)
                                           for box, score, attention in rois])
    prediction = dataclasses.replace(result.prediction,
                                     views=[view, *result.prediction.views[1:]],
                                     marks=marks or result.prediction.marks)
    return dataclasses.replace(result, prediction=prediction)


def assert_apart_and_inside(labels: list[Rect], bounds: Rect) -> None:
    for label in labels:
        assert label.within(bounds), (label, bounds)
    for first, second in itertools.combinations(labels, 2):
        assert not first.intersects(second), (first, second)


# -- The labels -----------------------------------------------------------------------


def test_a_label_gives_the_rank_and_three_significant_figures_never_rounding_to_one():
    view = with_rois(make_result_set(), CROWDED["right_and_top_edges"]).prediction.views[0]
    labels = [mark.label for mark in roi_marks(view, MarkOperatingPoint())]
    assert labels == ["#1 >0.999", "#2 0.600", "#3 0.190", "#4 0.190"]
    assert [score_text(v) for v in (0.873, 0.1, 1.0, 0.0412)] == ["0.873", "0.100", "1.00",
                                                                   "0.0412"]


def test_place_labels_leaves_a_label_out_rather_than_overlap():
    # Room for one 45 x 20 label only: the first (most suspicious) gets it.
    boxes = [Rect(10, 10, 20, 20), Rect(30, 10, 40, 20), Rect(40, 5, 50, 25)]
    places = place_labels(boxes, [(45, 20)] * 3, Rect(0, 0, 60, 30), gap=2)
    assert places[0] is not None and places[0].within(Rect(0, 0, 60, 30))
    assert places[1:] == [None, None]


def test_a_label_away_from_its_box_is_joined_to_it_by_a_leader():
    box = Rect(100, 100, 120, 120)
    assert leader(Rect(60, 100, 97, 110), box, gap=2) is None  # beside
    x0, y0, x1, y1 = leader(Rect(0, 0, 40, 20), box, gap=2)
    assert (x0, y0) == (40, 20) and (x1, y1) == (100, 100)


# -- The Secondary Capture ------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CROWDED))
@pytest.mark.parametrize("size", [(ROWS, COLUMNS), (4096, 3328), (2294, 1914)])
def test_sc_labels_are_large_inside_the_picture_and_never_overlap(case, size):
    rows, columns = size
    scale = (columns / COLUMNS, rows / ROWS)
    rois = [((x0 * scale[0], y0 * scale[1], x1 * scale[0], y1 * scale[1]), score, attention)
            for (x0, y0, x1, y1), score, attention in CROWDED[case]]
    header = pydicom.Dataset()
    header.Rows, header.Columns = rows, columns
    view = ViewPrediction("1.2.3", "R", "CC", 0.5, [RoiPrediction(box, score, attention)
                                                    for box, score, attention in rois])
    layout = layout_view(header, view, 1024, MarkOperatingPoint(threshold=0.25,
                                                                max_per_image=4))
    labels = [drawn.label for drawn in layout.marks]
    assert len(labels) == len(rois) and all(label is not None for label in labels)
    assert_apart_and_inside([label for label in labels if label], layout.picture)
    sc_rows = layout.banner + layout.height
    assert layout.font_px >= 0.025 * sc_rows, "legible at fit-to-window"


@pytest.mark.parametrize("case", ["right_and_top_edges", "overlapping"])
def test_sc_labels_are_light_text_on_a_dark_box_outlined_in_the_mark_colour(case):
    result = with_rois(make_result_set(), CROWDED[case])
    view, source = result.prediction.views[0], result.datasets[0]
    layout = layout_view(source, view, 1024, result.prediction.marks)
    pixels = np.asarray(render_view(source, view, 1024, result.prediction.marks))
    for drawn in layout.marks:
        assert drawn.label is not None
        x0, y0, x1, y1 = (int(v) for v in (drawn.label.x0, drawn.label.y0,
                                           drawn.label.x1, drawn.label.y1))
        assert (pixels[y0, x0:x1] == drawn.mark.color).all(), "outline in the mark's colour"
        inside = pixels[y0 + 2:y1 - 2, x0 + 2:x1 - 2].reshape(-1, 3).astype(int)
        brightness = inside.sum(axis=1)
        assert (brightness == 0).mean() > 0.5, "dark backing box"
        assert (brightness > 600).any(), "light text"


def test_sc_emphasises_the_most_suspicious_roi_and_tags_the_most_attended_as_secondary():
    rois = [((20.0, 40.0, 70.0, 90.0), 0.62, 0.15),   # rank 2
            ((110.0, 60.0, 170.0, 120.0), 0.93, 0.15),  # rank 1: most suspicious
            ((40.0, 170.0, 100.0, 230.0), 0.41, 0.6),   # rank 3: most attended
            ((130.0, 180.0, 180.0, 240.0), 0.12, 0.1)]  # below the operating point
    result = with_rois(make_result_set(), rois)
    view, source = result.prediction.views[0], result.datasets[0]
    layout = layout_view(source, view, 1024, result.prediction.marks)
    pixels = np.asarray(render_view(source, view, 1024, result.prediction.marks))
    by_rank = {drawn.mark.rank: drawn for drawn in layout.marks}
    assert {rank: drawn.mark.roi.detector_score for rank, drawn in by_rank.items()} == \
        {1: 0.93, 2: 0.62, 3: 0.41, 4: 0.12}

    def outline_width(drawn) -> int:
        x = int((drawn.box.x0 + drawn.box.x1) / 2)
        column = pixels[int(drawn.box.y0):int(drawn.box.y1), x]
        return int((column == drawn.mark.color).all(axis=1)[:10].sum())

    top, second, attended, optional = (by_rank[rank] for rank in (1, 2, 3, 4))
    assert top.mark.color == RED and {m.mark.color for m in (second, attended)} != {RED}
    assert outline_width(top) > outline_width(second) > 0, "rank 1 drawn thicker"
    top_edge = pixels[int(optional.box.y0), int(optional.box.x0):int(optional.box.x1)]
    painted = (top_edge == optional.mark.color).all(axis=1)
    assert 0.2 < painted.mean() < 0.8, "a mark below the operating point is dashed"
    assert attended.mark.tagged_label == f"#3 0.410 {HISTORY_TAG}"
    assert HISTORY_TAG not in top.mark.tagged_label
    banner = " ".join(text for text, _ in layout.banner_lines)  # wrapped lines joined
    assert "#1 most suspicious (score 0.930)" in banner
    assert f"{HISTORY_TAG} #3 most attended by history (attention 0.600)" in banner
    assert "#4 optional" in banner


# -- The presentation state -----------------------------------------------------------


def _text_boxes(gsps: pydicom.Dataset, rows: int, columns: int) -> dict[str, list[Rect]]:
    """Every text object's bounding box in pixels, by layer (DISPLAY units scaled to the
    ``rows`` x ``columns`` image, shown whole)."""
    found: dict[str, list[Rect]] = {}
    for annotation in gsps.GraphicAnnotationSequence:
        for text in annotation.get("TextObjectSequence", []):
            (x0, y0), (x1, y1) = (text.BoundingBoxTopLeftHandCorner,
                                  text.BoundingBoxBottomRightHandCorner)
            if text.BoundingBoxAnnotationUnits == "DISPLAY":
                x0, x1, y0, y1 = x0 * columns, x1 * columns, y0 * rows, y1 * rows
            found.setdefault(annotation.GraphicLayer, []).append(Rect(x0, y0, x1, y1))
    return found


@pytest.mark.parametrize("case", sorted(CROWDED))
def test_presentation_state_labels_stay_inside_the_image_and_apart(tmp_path, case):
    result = with_rois(make_result_set(), CROWDED[case])
    gsps = build_presentation_states(result)[0]
    boxes = _text_boxes(gsps, ROWS, COLUMNS)
    assert_apart_and_inside([box for layer in boxes.values() for box in layer],
                            Rect(0, 0, COLUMNS, ROWS))
    marks = roi_marks(result.prediction.views[0], result.prediction.marks)
    assert sum(len(v) for layer, v in boxes.items() if layer != "MMBCD CAPTION") == len(marks)
    by_rank = {mark.label.split()[0]: Rect(*mark.box) for mark in marks}
    for annotation in gsps.GraphicAnnotationSequence:
        for text in annotation.get("TextObjectSequence", []):
            if text.BoundingBoxAnnotationUnits != "PIXEL":
                continue
            box = by_rank[text.UnformattedTextValue.split()[0]]
            label = Rect(*text.BoundingBoxTopLeftHandCorner,
                         *text.BoundingBoxBottomRightHandCorner)
            if "AnchorPoint" in text:  # placed away: the viewer draws a line to the box
                x, y = text.AnchorPoint
                assert box.x0 <= x <= box.x1 and box.y0 <= y <= box.y1
            else:
                assert label.distance(box) < label.height, "an unanchored label is beside"
    path = write(gsps, tmp_path, "pr.dcm")
    assert dciodvfy_errors(path) == [] and dcmpschk_errors(path) == []


@pytest.mark.parametrize("threshold, required, optional", [
    (0.3, ["#2 0.620", f"#3 0.410 {HISTORY_TAG}"], ["#4 0.120"]),
    # Nothing reaches the operating point: the most suspicious mark stays on its layer.
    (0.95, [], ["#2 0.620", f"#3 0.410 {HISTORY_TAG}", "#4 0.120"]),
])
def test_presentation_state_puts_required_and_optional_marks_on_their_own_layers(
        threshold, required, optional):
    rois = [((20.0, 40.0, 70.0, 90.0), 0.62, 0.15), ((110.0, 60.0, 170.0, 120.0), 0.93, 0.15),
            ((40.0, 170.0, 100.0, 230.0), 0.41, 0.6), ((130.0, 180.0, 180.0, 240.0), 0.12, 0.1),
            ((150.0, 10.0, 200.0, 50.0), 0.05, 0.0)]  # the fifth is past max_per_image
    result = with_rois(make_result_set(), rois, MarkOperatingPoint(threshold=threshold,
                                                                   max_per_image=4))
    gsps = build_presentation_states(result)[0]
    texts = {a.GraphicLayer: [t.UnformattedTextValue for t in a.get("TextObjectSequence", [])]
             for a in gsps.GraphicAnnotationSequence}
    assert texts["MMBCD TOP ROI"] == ["#1 0.930"]
    assert texts.get("MMBCD ROIS", []) == required
    assert texts["MMBCD OPTIONAL"] == optional
    order = {layer.GraphicLayer: layer.GraphicLayerOrder for layer in gsps.GraphicLayerSequence}
    drawn = [layer for layer in ("MMBCD OPTIONAL", "MMBCD ROIS", "MMBCD TOP ROI")
             if layer in order]
    assert sorted(drawn, key=order.__getitem__) == drawn, "the most suspicious mark on top"
    assert any("most suspicious (score 0.930)" in t for t in texts["MMBCD CAPTION"])


def _monochrome_pair() -> tuple[ResultSet, ResultSet]:
    """One study as MONOCHROME2 and as the header corpus's MONOCHROME1 variant (inverted
    stored values, a padded strip along the far edge); same pixels otherwise."""
    plain = [image.ds for image in study(7, rows=ROWS, cols=COLUMNS)]
    inverted = [image.ds for image in study(7, _monochrome1_padding, rows=ROWS, cols=COLUMNS)]
    return make_result_set(sources=plain), make_result_set(sources=inverted)


@pytest.mark.parametrize("monochrome", ["MONOCHROME1", "MONOCHROME2"])
def test_presentation_lut_follows_the_photometric_interpretation(tmp_path, monochrome):
    plain, inverted = _monochrome_pair()
    result = inverted if monochrome == "MONOCHROME1" else plain
    for number, (gsps, source) in enumerate(zip(build_presentation_states(result),
                                                result.datasets, strict=True)):
        assert source.PhotometricInterpretation == monochrome
        assert gsps.PresentationLUTShape == ("INVERSE" if monochrome == "MONOCHROME1"
                                             else "IDENTITY")
        path = write(gsps, tmp_path, f"pr{number}.dcm")
        assert dciodvfy_errors(path) == [] and dcmpschk_errors(path) == []


def test_monochrome1_view_under_its_presentation_state_is_not_shown_in_negative(tmp_path):
    shown = []
    for name, result in zip(("plain", "inverted"), _monochrome_pair(), strict=True):
        image = write(result.datasets[0], tmp_path, f"{name}.dcm")
        state = write(build_presentation_states(result)[0], tmp_path, f"{name}-pr.dcm")
        pgm = render_with_presentation_state(image, state, tmp_path / f"{name}.pgm")
        shown.append(np.asarray(Image.open(pgm), dtype=float)[:, :-12])  # padded strip
    plain, inverted = shown
    assert plain.std() > 20, "the view has contrast to compare"
    assert np.abs(plain - inverted).mean() < 2, "MONOCHROME1 displays like MONOCHROME2"


# -- A study's objects together ---------------------------------------------------------


def test_a_study_s_result_objects_and_sources_pass_dcentvfy(tmp_path):
    result = make_result_set(uid_entropy="job-1")
    objects = [o.dataset for o in build_outputs(result)]
    paths = [write(ds, tmp_path, f"out{n}.dcm") for n, ds in enumerate(objects)]
    paths += [write(ds, tmp_path, f"src{n}.dcm") for n, ds in enumerate(result.datasets)]
    assert dcentvfy_errors(paths) == []
    for path in paths[:len(objects)]:
        assert dciodvfy_errors(path) == [], path.name

    sources = {str(ds.SOPInstanceUID): ds for ds in result.datasets}
    captures = [ds for ds in objects if ds.Modality == "OT"]
    for sc in captures:
        source = sources[sc.SourceImageSequence[0].ReferencedSOPInstanceUID]
        assert sc.ImageLaterality == source.ImageLaterality and "Laterality" not in sc
        assert sc.ViewCodeSequence[0].CodeValue == source.ViewCodeSequence[0].CodeValue
    states = [ds for ds in objects if ds.Modality == "PR"]
    series: dict[str, set[str]] = {}
    for gsps in states:
        referenced = gsps.ReferencedSeriesSequence[0].ReferencedImageSequence[0]
        side = sources[referenced.ReferencedSOPInstanceUID].ImageLaterality
        assert gsps.Laterality == side and gsps.SeriesDescription.endswith(f"({side})")
        series.setdefault(gsps.SeriesInstanceUID, set()).add(side)
    assert sorted("".join(sorted(sides)) for sides in series.values()) == ["L", "R"], \
        "one presentation-state series per breast"
    again = [o.dataset.SeriesInstanceUID for o in build_outputs(
        dataclasses.replace(result, uid_entropy="job-1"))]
    assert again == [ds.SeriesInstanceUID for ds in objects], "series UIDs are rebuilt the same"


def test_sc_of_a_view_without_view_code_takes_the_code_of_its_view(tmp_path):
    result = make_result_set()
    source = result.datasets[0]
    del source.ViewCodeSequence  # the view is still known from View Position
    sc = build_secondary_captures(result)[0]
    (code,) = sc.ViewCodeSequence
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("399162004", "SCT")
    assert source.ViewPosition == "CC"
    assert dciodvfy_errors(write(sc, tmp_path, "sc.dcm")) == []


def test_a_view_below_the_view_operating_point_has_no_required_mark():
    rois = [RoiPrediction((10, 10, 40, 40), 0.9, 0.7), RoiPrediction((50, 50, 80, 80), 0.1, 0.3)]
    point = MarkOperatingPoint(threshold=0.25, max_per_image=4, view_threshold=0.5)
    below = ViewPrediction("1.2.3", "R", "CC", 0.3, rois)
    assert [mark.required for mark in roi_marks(below, point)] == [False, False]
    assert legend(roi_marks(below, point), point)[-1] == \
        "#1, #2 optional: view probability below 0.500"
    above = dataclasses.replace(below, probability=0.6)
    assert [mark.required for mark in roi_marks(above, point)] == [True, False]
    assert legend(roi_marks(above, point), point)[-1] == "#2 optional: score below 0.250"
    without = MarkOperatingPoint(threshold=0.25, max_per_image=4)  # a one-threshold bundle
    assert [mark.required for mark in roi_marks(below, without)] == [True, False]
