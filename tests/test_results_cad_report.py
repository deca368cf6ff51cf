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

from ml.types import LevelOperatingPoint, MarkOperatingPoint
from mmbcd_node.results.cad_report import MAMMOGRAPHY_CAD_SR, build_mammography_cad_report
from mmbcd_node.results.result_set import ResultSet
from tests.support.dicom_validation import assert_sr_template, dciodvfy_errors, dsrdump, write
from tests.support.predictions import (
    OPERATING,
    PIXEL_SPACING,
    SERIES_NUMBERS,
    make_result_set,
)

REQUIRED, OPTIONAL = "111150", "111151"
BREAST_SIDE = {"R": "73056007", "L": "80248007"}  # CID 6022 Right breast / Left breast


def _name(item: pydicom.Dataset) -> str:
    return item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item \
        else ""


def _children(item: pydicom.Dataset, meaning: str) -> list[pydicom.Dataset]:
    return [child for child in item.get("ContentSequence", []) if _name(child) == meaning]


def _child(item: pydicom.Dataset, meaning: str) -> pydicom.Dataset:
    (found,) = _children(item, meaning)
    return found


def _code(item: pydicom.Dataset) -> tuple[str, str]:
    concept = item.ConceptCodeSequence[0]
    return concept.CodeValue, concept.CodingSchemeDesignator


def _number(item: pydicom.Dataset) -> tuple[float, str]:
    value = item.MeasuredValueSequence[0]
    return float(value.NumericValue), value.MeasurementUnitsCodeSequence[0].CodeValue


def _cad_report(tmp_path, result: ResultSet, name: str = "cad.dcm") -> pydicom.Dataset:
    path = write(build_mammography_cad_report(result), tmp_path, name)
    assert dciodvfy_errors(path) == []
    assert "Mammography CAD Report" in dsrdump(path)
    cad = pydicom.dcmread(path)
    assert_sr_template(cad, result.evidence)
    return cad


def _by_position(cad: pydicom.Dataset) -> dict[tuple[int, ...], pydicom.Dataset]:
    """Every content item by its position (root = (1,)), as by-reference items name them."""
    found: dict[tuple[int, ...], pydicom.Dataset] = {}

    def walk(items, prefix):
        for number, item in enumerate(items, start=1):
            found[(*prefix, number)] = item
            walk(item.get("ContentSequence", []), (*prefix, number))

    walk(cad.ContentSequence, (1,))
    return found


def _referenced_image(cad: pydicom.Dataset, reference: pydicom.Dataset) -> str:
    """The SOP Instance UID of the library entry a by-reference item points to."""
    target = _by_position(cad)[tuple(reference.ReferencedContentItemIdentifier)]
    assert target.ValueType == "IMAGE"
    return target.ReferencedSOPSequence[0].ReferencedSOPInstanceUID


def _impressions(cad: pydicom.Dataset) -> list[pydicom.Dataset]:
    summary = _child(cad, "CAD Processing and Findings Summary")
    return _children(summary, "Individual Impression/Recommendation")


def _findings(cad: pydicom.Dataset) -> list[pydicom.Dataset]:
    return [finding for impression in _impressions(cad)
            for feature in _children(impression, "Composite Feature")
            for finding in _children(feature, "Single Image Finding")]


def _source_of(cad: pydicom.Dataset, finding: pydicom.Dataset) -> str:
    (reference,) = _child(finding, "Outline").ContentSequence
    return _referenced_image(cad, reference)


def test_cad_report_is_a_valid_mammography_cad_sr(tmp_path, result_set):
    cad = _cad_report(tmp_path, result_set)
    assert cad.SOPClassUID == MAMMOGRAPHY_CAD_SR
    assert cad.ConceptNameCodeSequence[0].CodeValue == "111036"
    assert cad.ContentTemplateSequence[0].TemplateIdentifier == "4000"
    assert cad.SeriesNumber == SERIES_NUMBERS + 1
    assert cad.StudyInstanceUID == result_set.prediction.study_uid
    assert cad.ReferencedRequestSequence[0].AccessionNumber == "ACC20260001"


def test_root_holds_the_tid_4000_rows_in_order_and_no_observer_context(tmp_path, result_set):
    cad = _cad_report(tmp_path, result_set)
    rows = [(item.RelationshipType, item.ConceptNameCodeSequence[0].CodeValue)
            for item in cad.ContentSequence]
    assert rows == [("HAS CONCEPT MOD", "121049"),  # Language (TID 1204)
                    ("CONTAINS", "111028"),  # Image Library
                    ("CONTAINS", "111017"),  # CAD Processing and Findings Summary
                    ("CONTAINS", "111064"),  # Summary of Detections
                    ("CONTAINS", "111065")]  # Summary of Analyses
    assert _code(cad.ContentSequence[0]) == ("en-US", "RFC5646")


def test_image_library_lists_every_view_with_tid_4020_descriptors(tmp_path, result_set):
    library = _child(_cad_report(tmp_path, result_set), "Image Library")
    entries = {item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID: item
               for item in library.ContentSequence}
    assert set(entries) == {str(ds.SOPInstanceUID) for ds in result_set.datasets}
    for ds in result_set.datasets:
        entry = entries[str(ds.SOPInstanceUID)]
        assert _code(_child(entry, "Image Laterality")) == (BREAST_SIDE[ds.ImageLaterality],
                                                           "SCT")
        assert _code(_child(entry, "Image View"))[0] == ds.ViewCodeSequence[0].CodeValue
        assert _number(_child(entry, "Horizontal Pixel Spacing")) == (PIXEL_SPACING, "mm")
        assert _child(entry, "Content Date").Date == ds.ContentDate
        assert _child(entry, "Content Time").Time == ds.ContentTime
        assert _child(entry, "Study Date").Date == ds.StudyDate


def test_findings_are_densities_with_percent_certainty_and_coordinates_on_library_entries(
        tmp_path, result_set):
    cad = _cad_report(tmp_path, result_set)
    expected = {(view.sop_instance_uid, roi.box): roi
                for view in result_set.prediction.views for roi in view.rois}
    findings = _findings(cad)
    assert len(findings) == len(expected)  # no view has more ROIs than the cap
    for finding in findings:
        assert _code(finding) == ("129793001", "SCT")  # CID 6014 Mammography breast density
        outline, center = _child(finding, "Outline"), _child(finding, "Center")
        assert outline.GraphicType == "POLYLINE" and center.GraphicType == "POINT"
        points = [float(v) for v in outline.GraphicData]
        box = (points[0], points[1], points[4], points[5])
        source = _source_of(cad, finding)
        assert _referenced_image(cad, center.ContentSequence[0]) == source
        assert outline.ContentSequence[0].RelationshipType == "SELECTED FROM"
        roi = expected.pop((source, box))
        assert points[:2] == points[-2:] and len(points) == 10
        assert [float(v) for v in center.GraphicData] == [(box[0] + box[2]) / 2,
                                                          (box[1] + box[3]) / 2]
        certainty, unit = _number(_child(finding, "Certainty of Finding"))
        assert (certainty, unit) == (pytest.approx(100 * roi.detector_score), "%")
        version = _child(finding, "Algorithm Version")
        assert version.RelationshipType == "HAS PROPERTIES"
        assert version.TextValue == result_set.bundle.digest
        assert _children(finding, "Attention weight of ROI") == []
    assert expected == {}


def test_each_mark_is_required_only_at_or_above_the_operating_point_for_marks(tmp_path,
                                                                             result_set):
    operating_point = MarkOperatingPoint(threshold=0.35, max_per_image=2)
    result = dataclasses.replace(result_set, prediction=dataclasses.replace(
        result_set.prediction, marks=operating_point))
    cad = _cad_report(tmp_path, result)
    by_view: dict[str, list[tuple[float, str]]] = {}
    for finding in _findings(cad):
        score = _number(_child(finding, "Certainty of Finding"))[0] / 100
        intent = _code(_child(finding, "Rendering Intent"))[0]
        by_view.setdefault(_source_of(cad, finding), []).append((round(score, 4), intent))
    uid = {(v.laterality, v.view): v.sop_instance_uid for v in result.prediction.views}
    # R MLO has 3 ROIs (0.88, 0.20, 0.15): the cap keeps the two highest scores.
    assert sorted(by_view[uid[("R", "MLO")]]) == [(0.20, OPTIONAL), (0.88, REQUIRED)]
    assert sorted(by_view[uid[("R", "CC")]]) == [(0.35, REQUIRED), (0.91, REQUIRED)]
    assert by_view[uid[("L", "CC")]] == [(0.40, REQUIRED)]
    assert by_view[uid[("L", "MLO")]] == [(0.30, OPTIONAL)]
    assert _child(_child(cad, "Summary of Detections"), "Successful Detections")


def test_each_breast_is_a_composite_feature_with_tid_4005_body_and_percent_probability(
        tmp_path, result_set):
    cad = _cad_report(tmp_path, result_set)
    by_side = {}
    for impression in _impressions(cad):
        assert [item.ValueType for item in impression.ContentSequence] == ["CODE", "CODE"]
        (feature,) = _children(impression, "Composite Feature")
        assert _code(feature) == ("111099", "DCM")  # CID 6016 Selected region
        assert _children(feature, "Laterality") == []
        assert _code(_child(feature, "Composite type")) == ("111154", "DCM")
        assert _code(_child(feature, "Scope of Feature")) == ("111158", "DCM")  # 2 images
        assert _child(feature, "Algorithm Name").RelationshipType == "HAS PROPERTIES"
        probability, unit = _number(_child(feature, "Probability of cancer"))
        assert unit == "%" and 0 <= probability <= 100
        sides = {_code(_child(_by_position(cad)[tuple(
            _child(f, "Outline").ContentSequence[0].ReferencedContentItemIdentifier)],
            "Image Laterality"))[0] for f in _children(feature, "Single Image Finding")}
        (side,) = sides
        by_side[side] = (_code(_child(impression, "Rendering Intent"))[0],
                         _code(_child(feature, "Rendering Intent"))[0], probability)
    assert by_side == {BREAST_SIDE["R"]: (REQUIRED, REQUIRED, pytest.approx(81.0)),
                       BREAST_SIDE["L"]: (OPTIONAL, OPTIONAL, pytest.approx(22.0))}


def test_summaries_are_in_the_right_codes_with_their_context_group_values(tmp_path,
                                                                          result_set):
    cad = _cad_report(tmp_path, result_set)
    assert _code(_child(cad, "CAD Processing and Findings Summary")) == ("111242", "DCM")
    detections, analyses = _child(cad, "Summary of Detections"), _child(cad, "Summary of Analyses")
    assert detections.ConceptNameCodeSequence[0].CodeValue == "111064"
    assert analyses.ConceptNameCodeSequence[0].CodeValue == "111065"
    assert _code(detections) == _code(analyses) == ("111222", "DCM")  # Succeeded
    performed = _child(_child(detections, "Successful Detections"), "Detection Performed")
    assert _code(performed) == ("129793001", "SCT")
    analysis = _child(_child(analyses, "Successful Analyses"), "Analysis Performed")
    assert _code(analysis) == ("111233", "DCM")  # CID 6043
    for item in (performed, analysis):
        images = {_referenced_image(cad, ref) for ref in item.ContentSequence
                  if "ReferencedContentItemIdentifier" in ref}
        assert images == {str(ds.SOPInstanceUID) for ds in result_set.datasets}
    assert cad.CompletionFlag == "COMPLETE"


def test_legacy_snomed_view_codes_become_snomed_ct_in_both_image_libraries(tmp_path):
    from mmbcd_node.results.structured_report import build_structured_report
    from tests.support.predictions import make_study

    legacy = {"CC": ("R-10242", "cranio-caudal"), "MLO": ("R-10226", "medio-lateral oblique")}
    sources = make_study()
    for ds in sources:  # as an older unit writes them
        code = ds.ViewCodeSequence[0]
        code.CodeValue, code.CodeMeaning = legacy[str(ds.ViewPosition)]
        code.CodingSchemeDesignator = "SNM3"
    result = make_result_set(sources=sources)
    library = _child(_cad_report(tmp_path, result), "Image Library")
    current = {"CC": "399162004", "MLO": "399368009"}
    by_uid = {str(ds.SOPInstanceUID): str(ds.ViewPosition) for ds in sources}
    for entry in library.ContentSequence:
        view = by_uid[entry.ReferencedSOPSequence[0].ReferencedSOPInstanceUID]
        assert _code(_child(entry, "Image View")) == (current[view], "SCT")
    sr = build_structured_report(result)
    assert_sr_template(sr, result.evidence)
    assert current["CC"] in str(sr) and "R-10242" not in str(sr)


def test_a_breast_with_one_mark_states_its_probability_on_that_finding(tmp_path):
    result = make_result_set(failed_view=("L", "MLO"))  # the left breast keeps one ROI
    cad = _cad_report(tmp_path, result)
    by_intent = {len(_children(i, "Composite Feature")): i for i in _impressions(cad)}
    assert set(by_intent) == {0, 1}
    (finding,) = _children(by_intent[0], "Single Image Finding")
    assert finding.RelationshipType == "CONTAINS"
    assert _number(_child(finding, "Probability of cancer")) == (pytest.approx(22.0), "%")
    assert _number(_child(finding, "Certainty of Finding")) == (pytest.approx(40.0), "%")


def test_unreadable_view_gives_partial_success_summary(tmp_path):
    result = make_result_set(failed_view=("L", "MLO"))
    failed_uid = next(v.sop_instance_uid for v in result.prediction.views if v.error)
    cad = _cad_report(tmp_path, result)
    assert _code(_child(cad, "CAD Processing and Findings Summary"))[0] == "111244"
    detections = _child(cad, "Summary of Detections")
    assert _code(detections)[0] == "111223"  # Partially Succeeded
    failed = _child(_child(detections, "Failed Detections"), "Detection Performed")
    assert [_referenced_image(cad, ref) for ref in failed.ContentSequence
            if "ReferencedContentItemIdentifier" in ref] == [failed_uid]
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
    assert _code(_child(cad, "CAD Processing and Findings Summary"))[0] == "111241"
    assert _impressions(cad) == []


def test_dsrdump_rejects_a_tree_breaking_the_cad_sr_constraints(tmp_path, result_set):
    cad = build_mammography_cad_report(result_set)
    library = _child(cad, "Image Library")
    library.ContentSequence[0].ContentSequence[0].RelationshipType = "CONTAINS"
    with pytest.raises(AssertionError, match="dsrdump"):
        dsrdump(write(cad, tmp_path, "broken.dcm"))


def test_rerun_cad_report_names_the_earlier_cad_report_only(tmp_path, result_set):
    from mmbcd_node.results.references import ObjectReference
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
    assert _code(_child(cad, "CAD Processing and Findings Summary"))[0] == "111245"
    assert _code(_child(cad, "Summary of Detections"))[0] == "111224"  # Failed
    with pytest.raises(ResultError, match="no view could be scored"):
        build_structured_report(result)


def test_breast_impressions_follow_the_breast_operating_point_not_the_studys(tmp_path,
                                                                            result_set):
    operating = dataclasses.replace(
        OPERATING, breast=LevelOperatingPoint(0.2, "sensitivity:0.95"),
        study=LevelOperatingPoint(0.9, "specificity:0.95"))
    result = dataclasses.replace(result_set, prediction=dataclasses.replace(
        result_set.prediction, operating=operating))
    cad = _cad_report(tmp_path, result)
    intents = sorted(_code(_child(i, "Rendering Intent"))[0] for i in _impressions(cad))
    assert intents == [REQUIRED, REQUIRED]  # breasts 0.81 and 0.22, both >= 0.2
    parameters = [item.TextValue for item in _children(
        _child(cad, "Summary of Detections"), "Algorithm Parameters")] or [
        item.TextValue for item in _all(cad) if _name(item) == "Algorithm Parameters"]
    assert any(text.startswith("operating_point=calibrated (platt") and
               "breast >= 0.2000 (sensitivity:0.95)" in text for text in parameters)


def _all(item: pydicom.Dataset) -> list[pydicom.Dataset]:
    found = []
    for child in getattr(item, "ContentSequence", []):
        found += [child, *_all(child)]
    return found
