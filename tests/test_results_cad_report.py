"""The Mammography CAD SR (TID 4000) as a reading workstation receives it.

Each document is written to a file, passes dciodvfy with no errors and reads back with
dcmtk's dsrdump, which enforces the Mammography CAD SR relationship constraints; the
findings, coordinates, certainty, rendering intents and summary are checked against the
prediction.
"""

from __future__ import annotations

import dataclasses

import pydicom
import pytest

from mmbcd_node.results.cad_report import MAMMOGRAPHY_CAD_SR, build_mammography_cad_report
from mmbcd_node.results.result_set import ResultSet
from tests.support.dicom_validation import dciodvfy_errors, dsrdump, write
from tests.support.predictions import (
    PIXEL_SPACING,
    ROIS,
    SERIES_NUMBERS,
    VIEW_PROBABILITY,
    make_result_set,
)

REQUIRED, OPTIONAL = "111150", "111151"


def _children(item: pydicom.Dataset, meaning: str) -> list[pydicom.Dataset]:
    return [child for child in item.get("ContentSequence", [])
            if child.ConceptNameCodeSequence[0].CodeMeaning == meaning]


def _child(item: pydicom.Dataset, meaning: str) -> pydicom.Dataset:
    (found,) = _children(item, meaning)
    return found


def _code(item: pydicom.Dataset) -> str:
    return item.ConceptCodeSequence[0].CodeValue


def _number(item: pydicom.Dataset) -> float:
    return float(item.MeasuredValueSequence[0].NumericValue)


def _cad_report(tmp_path, result: ResultSet, name: str = "cad.dcm") -> pydicom.Dataset:
    path = write(build_mammography_cad_report(result), tmp_path, name)
    assert dciodvfy_errors(path) == []
    assert "Mammography CAD Report" in dsrdump(path)
    return pydicom.dcmread(path)


def _impression(cad: pydicom.Dataset) -> pydicom.Dataset:
    summary = _child(cad, "CAD Processing and Findings Summary")
    return _child(summary, "Individual Impression/Recommendation")


def test_cad_report_is_a_valid_mammography_cad_sr(tmp_path, result_set):
    cad = _cad_report(tmp_path, result_set)
    assert cad.SOPClassUID == MAMMOGRAPHY_CAD_SR
    assert cad.ConceptNameCodeSequence[0].CodeValue == "111036"
    assert cad.ContentTemplateSequence[0].TemplateIdentifier == "4000"
    assert cad.SeriesNumber == SERIES_NUMBERS + 1
    assert cad.StudyInstanceUID == result_set.prediction.study_uid
    assert cad.ReferencedRequestSequence[0].AccessionNumber == "ACC20260001"


def test_image_library_lists_every_view_with_laterality_view_and_spacing(tmp_path, result_set):
    library = _child(_cad_report(tmp_path, result_set), "Image Library")
    entries = {item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID: item
               for item in library.ContentSequence}
    assert set(entries) == {str(ds.SOPInstanceUID) for ds in result_set.datasets}
    for ds in result_set.datasets:
        entry = entries[str(ds.SOPInstanceUID)]
        laterality = _code(_child(entry, "Image Laterality"))
        assert laterality == {"R": "24028007", "L": "7771000"}[ds.ImageLaterality]
        assert _code(_child(entry, "Image View")) == ds.ViewCodeSequence[0].CodeValue
        assert _number(_child(entry, "Horizontal Pixel Spacing")) == PIXEL_SPACING


def test_findings_carry_center_outline_certainty_and_attention(tmp_path, result_set):
    cad = _cad_report(tmp_path, result_set)
    impression = _impression(cad)
    expected = {}
    for view in result_set.prediction.views:
        for roi in view.rois:
            expected[(view.sop_instance_uid, roi.box)] = roi
    findings = [finding for feature in _children(impression, "Composite Feature")
                for finding in _children(feature, "Single Image Finding")]
    assert len(findings) == sum(len(rois) for rois in ROIS.values())
    for finding in findings:
        assert _code(finding) == "4147007"  # Mass
        outline = _child(finding, "Outline")
        center = _child(finding, "Center")
        assert outline.GraphicType == "POLYLINE" and center.GraphicType == "POINT"
        points = [float(v) for v in outline.GraphicData]
        box = (points[0], points[1], points[4], points[5])
        source = outline.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        assert center.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID \
            == source
        roi = expected.pop((source, box))
        assert points[:2] == points[-2:] and len(points) == 10
        assert [float(v) for v in center.GraphicData] == [(box[0] + box[2]) / 2,
                                                          (box[1] + box[3]) / 2]
        assert _number(_child(finding, "Certainty of Finding")) == pytest.approx(
            100 * roi.detector_score)
        assert _number(_child(finding, "Attention weight of ROI")) == pytest.approx(roi.attention)
        assert _child(finding, "Algorithm Version").TextValue == result_set.bundle.digest
    assert expected == {}


def test_rendering_intent_follows_the_operating_threshold(tmp_path, result_set):
    impression = _impression(_cad_report(tmp_path, result_set))
    assert _code(_child(impression, "Rendering Intent")) == REQUIRED  # case 0.81 >= 0.5
    assert _number(_child(impression, "Probability of cancer")) == pytest.approx(0.81)
    by_side = {}
    for feature in _children(impression, "Composite Feature"):
        side = _code(_child(feature, "Laterality"))
        by_side[side] = (_code(_child(feature, "Rendering Intent")),
                         _number(_child(feature, "Probability of cancer")))
        for finding in _children(feature, "Single Image Finding"):
            source = (_child(finding, "Outline").ContentSequence[0]
                      .ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
            view = next(v for v in result_set.prediction.views if v.sop_instance_uid == source)
            assert _code(_child(finding, "Rendering Intent")) == (
                REQUIRED if VIEW_PROBABILITY[(view.laterality, view.view)] >= 0.5 else OPTIONAL)
    assert by_side == {"24028007": (REQUIRED, pytest.approx(0.81)),
                       "7771000": (OPTIONAL, pytest.approx(0.22))}


def test_higher_threshold_makes_every_mark_optional(tmp_path, result_set):
    strict = dataclasses.replace(result_set, prediction=dataclasses.replace(
        result_set.prediction, threshold=0.9))
    cad = _cad_report(tmp_path, strict)
    intents = set()

    def walk(items):
        for item in items:
            if item.ConceptNameCodeSequence[0].CodeMeaning == "Rendering Intent":
                intents.add(_code(item))
            walk(item.get("ContentSequence", []))

    walk(cad.ContentSequence)
    assert intents == {OPTIONAL}


def test_summary_says_all_succeeded_with_findings(tmp_path, result_set):
    cad = _cad_report(tmp_path, result_set)
    assert _code(_child(cad, "CAD Processing and Findings Summary")) == "111242"
    assert _code(_child(cad, "Summary of Detections")) == "111222"  # Succeeded
    assert _code(_child(cad, "Summary of Analyses")) == "111222"
    assert cad.CompletionFlag == "COMPLETE"


def test_unreadable_view_gives_partial_success_summary(tmp_path):
    result = make_result_set(failed_view=("L", "MLO"))
    failed_uid = next(v.sop_instance_uid for v in result.prediction.views if v.error)
    cad = _cad_report(tmp_path, result)
    assert _code(_child(cad, "CAD Processing and Findings Summary")) == "111244"
    detections = _child(cad, "Summary of Detections")
    assert _code(detections) == "111223"  # Partially Succeeded
    failed = _child(_child(detections, "Failed Detections"), "Detection Performed")
    assert [item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
            for item in _children(failed, "Source")] == [failed_uid]
    assert cad.CompletionFlag == "PARTIAL"
    parameters = [item.TextValue for item in _children(failed, "Algorithm Parameters")]
    assert "views=3 of 4 views used" in parameters
    assert "history=clinical history from OBR-13, OBR-31" in parameters


def test_only_whole_breast_regions_means_without_findings(tmp_path, result_set):
    views = [dataclasses.replace(v, rois=[dataclasses.replace(r, whole_breast=True)
                                          for r in v.rois[:1]])
             for v in result_set.prediction.views]
    result = dataclasses.replace(result_set, prediction=dataclasses.replace(
        result_set.prediction, views=views))
    cad = _cad_report(tmp_path, result)
    assert _code(_child(cad, "CAD Processing and Findings Summary")) == "111241"
    features = _children(_impression(cad), "Composite Feature")
    assert [_children(f, "Single Image Finding") for f in features] == [[], []]


def test_dsrdump_rejects_a_tree_breaking_the_cad_sr_constraints(tmp_path, result_set):
    cad = build_mammography_cad_report(result_set)
    library = _child(cad, "Image Library")
    library.ContentSequence[0].ContentSequence[0].RelationshipType = "CONTAINS"
    with pytest.raises(AssertionError, match="dsrdump"):
        dsrdump(write(cad, tmp_path, "broken.dcm"))


def test_rerun_cad_report_names_the_earlier_cad_report_only(tmp_path, result_set):
    from mmbcd_node.results.result_set import ObjectReference
    from mmbcd_node.results.structured_report import build_structured_report

    earlier = [build_mammography_cad_report(result_set), build_structured_report(result_set)]
    rerun = dataclasses.replace(result_set, predecessors=tuple(
        ObjectReference.from_dataset(ds) for ds in earlier))
    cad = _cad_report(tmp_path, rerun)
    (study,) = cad.PredecessorDocumentsSequence
    (series,) = study.ReferencedSeriesSequence
    assert [ref.ReferencedSOPInstanceUID for ref in series.ReferencedSOPSequence] == \
        [earlier[0].SOPInstanceUID]


def test_no_readable_view_gives_no_algorithms_succeeded(tmp_path, result_set):
    from mmbcd_node.results.result_set import ResultError
    from mmbcd_node.results.structured_report import build_structured_report

    views = [dataclasses.replace(v, probability=None, rois=[], error="unreadable")
             for v in result_set.prediction.views]
    result = dataclasses.replace(result_set, prediction=dataclasses.replace(
        result_set.prediction, views=views, probability=None, breasts={}))
    cad = _cad_report(tmp_path, result)
    assert _code(_child(cad, "CAD Processing and Findings Summary")) == "111245"
    assert _code(_child(cad, "Summary of Detections")) == "111224"  # Failed
    with pytest.raises(ResultError, match="no view could be scored"):
        build_structured_report(result)
