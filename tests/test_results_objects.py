"""The DICOM result objects: TID 1500 SR, Secondary Captures, GSPS and rejection notes.

Every object is written to a file and checked the way a PACS would meet it: dciodvfy
reports no IOD errors, SR documents read back with dcmtk's dsrdump and with highdicom,
and the content matches the prediction it was built from.
"""

from __future__ import annotations

import dataclasses

import highdicom as hd
import numpy as np
import pydicom
import pytest

import mmbcd_node
from mmbcd_node.results.errors import ResultError
from mmbcd_node.results.outputs import build_outputs
from mmbcd_node.results.presentation_state import build_presentation_states
from mmbcd_node.results.references import ObjectReference
from mmbcd_node.results.rejection_note import RejectionReason, build_rejection_note
from mmbcd_node.results.result_set import NOT_FOR_DIAGNOSIS, HistoryProvenance
from mmbcd_node.results.secondary_capture import build_secondary_captures
from mmbcd_node.results.structured_report import build_structured_report
from tests.support.dicom_validation import assert_sr_template, dciodvfy_errors, dsrdump, write
from tests.support.predictions import ORDER, ROIS, SERIES_NUMBERS, UID_ROOT, make_result_set

UID_PREFIX = UID_ROOT


def _text_items(ds: pydicom.Dataset) -> dict[str, list[str]]:
    """Every TEXT content item in the tree, by concept name meaning."""
    found: dict[str, list[str]] = {}

    def walk(items: pydicom.Sequence) -> None:
        for item in items:
            if item.ValueType == "TEXT":
                name = item.ConceptNameCodeSequence[0].CodeMeaning
                found.setdefault(name, []).append(item.TextValue)
            walk(item.get("ContentSequence", []))

    walk(ds.ContentSequence)
    return found


def _read_back(tmp_path, ds: pydicom.Dataset, name: str) -> pydicom.Dataset:
    path = write(ds, tmp_path, name)
    assert dciodvfy_errors(path) == [], f"{name} fails dciodvfy"
    return pydicom.dcmread(path)


# -- Structured report ---------------------------------------------------------------


@pytest.mark.parametrize("sr_class, sop_class", [
    ("comprehensive", "1.2.840.10008.5.1.4.1.1.88.33"),
    ("comprehensive3d", "1.2.840.10008.5.1.4.1.1.88.34"),
])
def test_structured_report_validates_and_reads_back_with_dsrdump(tmp_path, result_set,
                                                                 sr_class, sop_class):
    path = write(build_structured_report(result_set, sr_class), tmp_path, "sr.dcm")
    assert dciodvfy_errors(path) == []
    assert_sr_template(pydicom.dcmread(path), result_set.evidence)
    dump = dsrdump(path)
    assert "Imaging Measurement Report" in dump and "Probability of cancer" in dump
    assert pydicom.dcmread(path).SOPClassUID == sop_class


def _content(item: pydicom.Dataset, meaning: str) -> list[pydicom.Dataset]:
    return [child for child in item.get("ContentSequence", [])
            if "ConceptNameCodeSequence" in child
            and child.ConceptNameCodeSequence[0].CodeMeaning == meaning]


def _number(item: pydicom.Dataset) -> float:
    return float(item.MeasuredValueSequence[0].NumericValue)


def _group_region(group: pydicom.Dataset) -> tuple[str, tuple[float, ...]]:
    """The group-level region: its image and its box."""
    (region,) = [item for item in group.ContentSequence if item.ValueType == "SCOORD"]
    assert region.RelationshipType == "CONTAINS" and region.GraphicType == "POLYLINE"
    points = np.asarray(region.GraphicData, dtype=float).reshape(-1, 2)
    assert points.shape == (5, 2) and (points[0] == points[-1]).all()  # closed polyline
    box = (points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max())
    return region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID, box


def test_structured_report_groups_views_then_their_marks_by_suspicion_each_with_its_region(
        tmp_path, result_set):
    sr = _read_back(tmp_path, build_structured_report(result_set), "sr.dcm")
    (measurements,) = _content(sr, "Imaging Measurements")
    view_of = {v.sop_instance_uid: v for v in result_set.prediction.views}
    seen = []
    for group in measurements.ContentSequence:
        assert group.ContentTemplateSequence[0].TemplateIdentifier == "1501"
        (label,) = _content(group, "Tracking Identifier")
        (comment,) = _content(group, "Comment")
        assert comment.TextValue.startswith(label.TextValue + ": ")
        source, box = _group_region(group)
        view = view_of[source]
        values = {}
        for number in (item for item in group.ContentSequence if item.ValueType == "NUM"):
            # The region again under each value, where OHIF and dcmjs read it.
            (under,) = number.ContentSequence
            assert (under.RelationshipType, under.ValueType) == ("INFERRED FROM", "SCOORD")
            assert list(under.GraphicData) == list(
                next(i for i in group.ContentSequence if i.ValueType == "SCOORD").GraphicData)
            values[number.ConceptNameCodeSequence[0].CodeMeaning] = _number(number)
        if label.TextValue == f"{view.laterality} {view.view}":  # the view's own group
            assert values == {"Probability of cancer": pytest.approx(view.probability)}
            assert box == (0.0, 0.0, 208.0, 256.0)  # no breast region given: the image
            seen.append((view.probability, 2.0))
        else:
            roi = next(r for r in view.rois if tuple(float(c) for c in r.box) == box)
            assert values == {"ROI detector score": pytest.approx(roi.detector_score),
                              "Attention weight of ROI": pytest.approx(roi.attention)}
            assert label.TextValue.startswith(f"{view.laterality} {view.view} #")
            seen.append((view.probability, roi.detector_score))
    # Views by probability, each view's group first, then its marks by detector score.
    assert seen == sorted(seen, key=lambda pair: (-pair[0], -pair[1]))
    assert len(seen) == 4 + sum(min(len(rois), 4) for rois in ROIS.values()) == 11


def test_a_view_group_covers_the_breast_region_the_model_looked_at(tmp_path, result_set):
    views = [dataclasses.replace(v, breast_region=(10.0, 20.0, 150.0, 240.0))
             for v in result_set.prediction.views]
    result = dataclasses.replace(result_set, prediction=dataclasses.replace(
        result_set.prediction, views=views))
    sr = _read_back(tmp_path, build_structured_report(result), "sr.dcm")
    (measurements,) = _content(sr, "Imaging Measurements")
    regions = {_content(g, "Tracking Identifier")[0].TextValue: _group_region(g)[1]
               for g in measurements.ContentSequence}
    assert regions["R CC"] == (10.0, 20.0, 150.0, 240.0)


def test_structured_report_derives_breast_and_study_probabilities(tmp_path, result_set):
    sr = _read_back(tmp_path, build_structured_report(result_set), "sr.dcm")
    (derived,) = _content(sr, "Derived Imaging Measurements")
    found = []
    for number in derived.ContentSequence:
        assert number.ConceptNameCodeSequence[0].CodeValue == "111047"
        (site,) = _content(number, "Finding Site")
        side = {c.ConceptCodeSequence[0].CodeMeaning for c in _content(site, "Laterality")}
        (derivation,) = _content(number, "Derivation")
        assert derivation.ConceptCodeSequence[0].CodeMeaning == "Maximum"
        found.append((_number(number), "".join(side)))
    assert found == [(pytest.approx(0.81), "Right"), (pytest.approx(0.22), "Left"),
                     (pytest.approx(0.81), "")]  # right breast, left breast, the study


def test_structured_report_references_source_views_order_and_identity(tmp_path, result_set):
    sr = _read_back(tmp_path, build_structured_report(result_set), "sr.dcm")
    assert sr.StudyInstanceUID == result_set.prediction.study_uid
    assert sr.PatientID == "PAT-0001" and sr.AccessionNumber == "ACC20260001"
    evidence = {ref.ReferencedSOPInstanceUID
                for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence
                for ref in series.ReferencedSOPSequence}
    assert evidence == {str(v.SOPInstanceUID) for v in result_set.datasets}
    (request,) = sr.ReferencedRequestSequence
    assert (request.AccessionNumber, request.PlacerOrderNumberImagingServiceRequest,
            request.FillerOrderNumberImagingServiceRequest, request.RequestedProcedureID,
            request.ReasonForTheRequestedProcedure) == (
        "ACC20260001", "PL-778", "FI-991", "RP-12", "Palpable lump right breast")
    assert sr.Manufacturer == mmbcd_node.MANUFACTURER
    assert sr.ManufacturerModelName == mmbcd_node.MODEL_NAME
    assert result_set.bundle.digest in sr.SoftwareVersions
    assert f"mmbcd-node {mmbcd_node.__version__}" in sr.SoftwareVersions
    assert sr.SeriesNumber == SERIES_NUMBERS and NOT_FOR_DIAGNOSIS in sr.SeriesDescription
    assert sr.SOPInstanceUID.startswith(UID_PREFIX) and sr.SeriesInstanceUID.startswith(UID_PREFIX)
    (scheme,) = sr.CodingSchemeIdentificationSequence
    assert scheme.CodingSchemeDesignator == "99MMBCD"
    algorithm = _text_items(sr)
    assert algorithm["Algorithm Version"][0] == result_set.bundle.digest
    assert "threshold=0.5" in algorithm["Algorithm Parameters"]


def test_structured_report_states_history_fields_and_views_used(tmp_path, result_set):
    texts = _text_items(_read_back(tmp_path, build_structured_report(result_set), "sr.dcm"))
    assert texts["Clinical history source"] == ["clinical history from OBR-13, OBR-31"]
    assert texts["Clinical history used"] == [result_set.history.text]
    assert texts["Views used"] == ["all 4 views used"]
    assert texts["Calibration and operating point"] == [
        "calibrated (platt, validation split (96 studies)); flags at study >= 0.5000 "
        "(specificity:0.90), breast >= 0.4500 (specificity:0.90), view >= 0.4200 "
        "(specificity:0.90)"]


def test_order_values_too_long_for_their_vr_are_cut_with_a_marker_and_kept_whole(tmp_path):
    reason = ("Palpable lump right breast upper outer quadrant, growing over three months, "
              "with skin dimpling")
    order = dataclasses.replace(ORDER, reason_for_requested_procedure=reason,
                                placer_order_number="P" * 70, requested_procedure_id="RP-" * 7)
    result = make_result_set(order=order)
    path = write(build_structured_report(result), tmp_path, "sr.dcm")
    assert dciodvfy_errors(path) == []
    (request,) = pydicom.dcmread(path).ReferencedRequestSequence
    assert request.ReasonForTheRequestedProcedure == reason[:61].rstrip() + "..."
    assert request.PlacerOrderNumberImagingServiceRequest == "P" * 61 + "..."
    assert request.RequestedProcedureID == "RP-RP-RP-RP-R..."
    texts = _text_items(pydicom.dcmread(path))
    assert texts["Indications for Procedure"] == [reason]


def test_every_sr_container_is_separate_so_a_renderer_names_each_value(tmp_path, result_set):
    sr = _read_back(tmp_path, build_structured_report(result_set), "sr.dcm")

    def containers(items):
        for item in items:
            if item.ValueType == "CONTAINER":
                yield item
            yield from containers(item.get("ContentSequence", []))

    assert {item.ContinuityOfContent for item in containers(sr.ContentSequence)} == {"SEPARATE"}
    assert sr.ContinuityOfContent == "SEPARATE"


def test_report_without_order_or_history_says_no_history_available(tmp_path):
    result = make_result_set(order=None, history=HistoryProvenance())
    sr = _read_back(tmp_path, build_structured_report(result), "sr.dcm")
    assert "ReferencedRequestSequence" not in sr
    texts = _text_items(sr)
    assert texts["Clinical history source"] == ["no history available"]
    assert "Clinical history used" not in texts


def test_report_of_a_partial_result_names_the_unscored_view(tmp_path):
    result = make_result_set(failed_view=("L", "MLO"))
    sr = _read_back(tmp_path, build_structured_report(result), "sr.dcm")
    dsrdump(write(sr, tmp_path, "again.dcm"))
    texts = _text_items(sr)
    assert texts["Views used"] == ["3 of 4 views used"]
    (failed,) = texts["View not scored"]
    assert failed.startswith("L MLO") and "could not be decoded" in failed
    assert sr.CompletionFlag == "PARTIAL"
    assert len(hd.sr.srread(write(sr, tmp_path, "b.dcm")).content
               .get_image_measurement_groups()) == 3 + 6  # 3 scored views and their marks


def test_rerun_report_names_its_predecessor(tmp_path, result_set):
    first = build_structured_report(result_set)
    earlier = [first, *build_secondary_captures(result_set)]
    rerun = dataclasses.replace(result_set, predecessors=tuple(
        ObjectReference.from_dataset(ds) for ds in earlier))
    sr = _read_back(tmp_path, build_structured_report(rerun, "comprehensive3d"), "rerun.dcm")
    (study,) = sr.PredecessorDocumentsSequence
    (series,) = study.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == first.SeriesInstanceUID
    assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert sr.SOPInstanceUID != first.SOPInstanceUID


def test_unknown_sr_class_is_refused_naming_the_setting(result_set):
    with pytest.raises(ResultError, match="results.sr_class"):
        build_structured_report(result_set, "enhanced")


# -- Secondary captures ---------------------------------------------------------------


def test_secondary_captures_validate_and_reference_their_views(tmp_path, result_set):
    captures = build_secondary_captures(result_set)
    assert len(captures) == 4
    assert len({sc.SeriesInstanceUID for sc in captures}) == 1
    for number, (sc, view) in enumerate(zip(captures, result_set.datasets, strict=True), start=1):
        sc = _read_back(tmp_path, sc, f"sc{number}.dcm")
        assert sc.Modality == "OT" and sc.PhotometricInterpretation == "RGB"
        assert sc.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == view.SOPInstanceUID
        assert sc.StudyInstanceUID == view.StudyInstanceUID
        assert sc.ImageLaterality == view.ImageLaterality and "Laterality" not in sc
        assert sc.ViewCodeSequence[0].CodeValue == view.ViewCodeSequence[0].CodeValue
        assert sc.SeriesNumber == SERIES_NUMBERS + 2 and sc.InstanceNumber == number
        assert NOT_FOR_DIAGNOSIS in sc.SeriesDescription
        assert sc.Columns == view.Columns and sc.Rows > view.Rows  # banner on top
        assert result_set.bundle.digest in sc.SoftwareVersions


def test_secondary_capture_burns_most_suspicious_box_red_and_others_green(tmp_path, result_set):
    sc = _read_back(tmp_path, build_secondary_captures(result_set)[0], "sc.dcm")  # R CC
    pixels = sc.pixel_array
    banner = sc.Rows - int(result_set.datasets[0].Rows)  # no downscaling at this size
    (top_box, _, _), (other_box, _, _) = ROIS[("R", "CC")]
    x0, y0, x1, _ = (int(v) for v in top_box)
    top_edge = pixels[y0 + banner, x0 + 5:x1 - 5]
    assert (top_edge == [255, 0, 0]).all(), "most suspicious box edge is red"
    x0, y0, x1, _ = (int(v) for v in other_box)
    assert (pixels[y0 + banner, x0 + 5:x1 - 5] == [0, 200, 0]).all(), "other box is green"
    assert (pixels[y0 + banner + 5, x0 + 5] != [255, 0, 0]).any(), "box inside not painted"
    assert (pixels[:banner].sum(axis=2) > 0).any(), "banner text is drawn"


def test_large_view_is_downscaled_to_the_maximum_side(result_set):
    from mmbcd_node.results.secondary_capture import layout_view

    (sc,) = build_secondary_captures(
        dataclasses.replace(result_set, prediction=dataclasses.replace(
            result_set.prediction, views=result_set.prediction.views[:1])), max_side=128)
    layout = layout_view(result_set.datasets[0], result_set.prediction.views[0], 128)
    assert layout.height == 128 and sc.Columns == layout.width <= 128
    assert sc.Rows == layout.banner + layout.height


# -- Presentation states -------------------------------------------------------------


def test_presentation_states_draw_the_boxes_on_the_original_views(tmp_path, result_set):
    states = build_presentation_states(result_set)
    assert len(states) == 4
    for number, (gsps, view) in enumerate(zip(states, result_set.datasets, strict=True), start=1):
        gsps = _read_back(tmp_path, gsps, f"pr{number}.dcm")
        assert gsps.Laterality == view.ImageLaterality
        assert gsps.SeriesNumber == SERIES_NUMBERS + 3
        (series,) = gsps.ReferencedSeriesSequence
        assert series.ReferencedImageSequence[0].ReferencedSOPInstanceUID == view.SOPInstanceUID
        (voi,) = gsps.SoftcopyVOILUTSequence
        assert (float(voi.WindowCenter), float(voi.WindowWidth)) == (2048.0, 4096.0)
        layers = {a.GraphicLayer: a for a in gsps.GraphicAnnotationSequence}
        boxes = {layer: [tuple(g.GraphicData) for g in a.get("GraphicObjectSequence", [])]
                 for layer, a in layers.items()}
        expected = ROIS[(view.ImageLaterality, view.ViewPosition)]
        top = max(expected, key=lambda roi: roi[1])[0]  # the highest detector score
        x0, y0, x1, y1 = top
        assert boxes["MMBCD TOP ROI"] == [(x0, y0, x1, y0, x1, y1, x0, y1, x0, y0)]
        threshold = result_set.prediction.marks.threshold
        required = [roi for roi in expected if roi[1] >= threshold]
        assert len(boxes.get("MMBCD ROIS", [])) == len(required) - 1
        assert len(boxes.get("MMBCD OPTIONAL", [])) == len(expected) - len(required)
        labels = [t.UnformattedTextValue for a in layers.values()
                  for t in a.get("TextObjectSequence", [])]
        assert any(NOT_FOR_DIAGNOSIS in label for label in labels)
        assert f"#1 {max(r[1] for r in expected):.3f}" in " ".join(labels)
        colours = {layer.GraphicLayer: layer.GraphicLayerRecommendedDisplayCIELabValue
                   for layer in gsps.GraphicLayerSequence}
        assert all(colours["MMBCD TOP ROI"] != colour for layer, colour in colours.items()
                   if layer in ("MMBCD ROIS", "MMBCD OPTIONAL"))


# -- Rejection note ------------------------------------------------------------------


def test_rejection_note_withdraws_every_superseded_object(tmp_path, result_set):
    outputs = [build_structured_report(result_set), *build_secondary_captures(result_set),
               *build_presentation_states(result_set)]
    references = [ObjectReference.from_dataset(ds) for ds in outputs]
    note = build_rejection_note(result_set.study, references, uid_root=UID_ROOT,
                                series_numbers=SERIES_NUMBERS)
    path = write(note, tmp_path, "kos.dcm")
    assert dciodvfy_errors(path) == []
    assert "Rejected for Quality Reasons" in dsrdump(path)
    kos = pydicom.dcmread(path)
    assert kos.ConceptNameCodeSequence[0].CodeValue == "113001"
    assert kos.StudyInstanceUID == result_set.prediction.study_uid
    assert kos.PatientID == result_set.study.PatientID
    assert kos.SeriesNumber == SERIES_NUMBERS + 4
    listed = {item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
              for item in kos.ContentSequence if item.ValueType in ("IMAGE", "COMPOSITE")}
    assert listed == {ds.SOPInstanceUID for ds in outputs}
    evidence = {ref.ReferencedSOPInstanceUID
                for series in kos.CurrentRequestedProcedureEvidenceSequence[0]
                .ReferencedSeriesSequence for ref in series.ReferencedSOPSequence}
    assert evidence == listed


def test_rejection_note_for_cancelled_order_uses_worklist_title(tmp_path, result_set):
    sr = build_structured_report(result_set)
    note = build_rejection_note(result_set.study, [ObjectReference.from_dataset(sr)],
                                uid_root=UID_ROOT, series_numbers=SERIES_NUMBERS,
                                reason=RejectionReason.ORDER_CANCELLED)
    assert _read_back(tmp_path, note, "kos.dcm").ConceptNameCodeSequence[0].CodeValue == "113038"


def test_rejection_note_refuses_objects_of_another_study(result_set):
    other = ObjectReference("1.2.3.4", "1.2.3.4.1", "1.2.840.10008.5.1.4.1.1.88.33", "1.2.3.4.1.1")
    with pytest.raises(ResultError, match="belongs to study 1.2.3.4"):
        build_rejection_note(result_set.study, [other], uid_root=UID_ROOT,
                             series_numbers=SERIES_NUMBERS)


# -- The result set itself -------------------------------------------------------------


def test_same_uid_entropy_rebuilds_identical_uids(result_set):
    first = dataclasses.replace(result_set, uid_entropy="job-17")
    again = dataclasses.replace(result_set, uid_entropy="job-17")
    other = dataclasses.replace(result_set, uid_entropy="job-18")
    uids = [build_structured_report(r).SOPInstanceUID for r in (first, again, other)]
    assert uids[0] == uids[1] != uids[2]
    assert [sc.SOPInstanceUID for sc in build_secondary_captures(first)] == \
        [sc.SOPInstanceUID for sc in build_secondary_captures(again)]


def test_another_installation_never_issues_the_same_uids_for_the_same_job(result_set):
    # Two nodes with the default UID root and fresh databases: the same study and job
    # number on each. Every UID of every object differs, the observer device's too.
    here = dataclasses.replace(result_set, uid_entropy="1.2.3/job-1", installation="a" * 36)
    there = dataclasses.replace(here, installation="b" * 36)

    def uids(result):
        # The objects' own UIDs and those made inside them (tracking, observer device);
        # the evidence sequences name the source images, which both rightly share.
        found = set()
        for obj in build_outputs(result):
            ds = obj.dataset
            found |= {ds.SOPInstanceUID, ds.SeriesInstanceUID}
            found |= {str(element.value) for element in ds.iterall()
                      if element.keyword in ("UID", "DeviceObserverUID")}
        return found

    mine = uids(here)
    assert mine == uids(dataclasses.replace(here))  # rebuilding gives the same UIDs
    assert len(mine) > 8 and not mine & uids(there)


def test_box_outside_its_image_is_refused_naming_view_and_roi(result_set):
    view = result_set.prediction.views[0]
    roi = dataclasses.replace(view.rois[1], box=(100.0, 150.0, 300.0, 190.0))
    bad = dataclasses.replace(result_set.prediction, views=[
        dataclasses.replace(view, rois=[view.rois[0], roi]), *result_set.prediction.views[1:]])
    with pytest.raises(ResultError, match=f"ROI 2 of view {view.sop_instance_uid}"):
        dataclasses.replace(result_set, prediction=bad)


def test_prediction_for_a_view_not_supplied_is_refused(result_set):
    with pytest.raises(ResultError, match="has no source view"):
        dataclasses.replace(result_set, views=list(result_set.views[:3]))


@pytest.mark.parametrize("root", ["1.2.x.4", "1." + "2" * 45])
def test_unusable_uid_root_is_refused(result_set, root):
    with pytest.raises(ResultError, match="dicom.uid_root"):
        dataclasses.replace(result_set, uid_root=root)


def test_series_block_must_fit(result_set):
    with pytest.raises(ResultError, match="results.series_numbers"):
        dataclasses.replace(result_set, series_numbers=2**31 - 2)



# -- All outputs of a result set -----------------------------------------------------


def test_build_outputs_gives_each_kind_its_own_series_in_the_source_study(result_set):
    from mmbcd_node.results.outputs import build_outputs

    objects = build_outputs(result_set)
    assert [o.kind for o in objects] == ["sr", "cad_sr"] + ["sc"] * 4 + ["gsps"] * 4
    assert len({o.sop_instance_uid for o in objects}) == 10
    series = {}
    for o in objects:
        ds = o.dataset
        assert ds.StudyInstanceUID == result_set.prediction.study_uid
        assert ds.SOPInstanceUID.startswith(UID_PREFIX)
        assert ds.SeriesDescription.startswith(NOT_FOR_DIAGNOSIS)
        assert ds.Manufacturer == mmbcd_node.MANUFACTURER
        series.setdefault(o.kind, set()).add((ds.SeriesInstanceUID, int(ds.SeriesNumber)))
    assert {kind: {n for _, n in s} for kind, s in series.items()} == {
        "sr": {9900}, "cad_sr": {9901}, "sc": {9902}, "gsps": {9903}}
    # Presentation states state a series Laterality: one series per breast.
    assert {kind: len(s) for kind, s in series.items()} == {
        "sr": 1, "cad_sr": 1, "sc": 1, "gsps": 2}


def test_build_outputs_builds_only_configured_kinds_and_refuses_unknown_ones(result_set):
    from mmbcd_node.results.outputs import build_outputs

    assert [o.kind for o in build_outputs(result_set, kinds=["cad_sr"])] == ["cad_sr"]
    with pytest.raises(ResultError, match="results.kinds has unknown kind.*pdf"):
        build_outputs(result_set, kinds=["sr", "pdf"])


def test_views_missing_type2_patient_attributes_still_give_valid_objects(tmp_path, result_set):
    from mmbcd_node.results.outputs import build_outputs

    for view in result_set.datasets:
        for keyword in ("PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber",
                        "ReferringPhysicianName", "StudyTime"):
            del view[keyword]
    objects = [o.dataset for o in build_outputs(result_set)]
    note = build_rejection_note(result_set.datasets[0],
                                [ObjectReference.from_dataset(ds) for ds in objects],
                                uid_root=UID_ROOT, series_numbers=SERIES_NUMBERS)
    for number, ds in enumerate([*objects, note]):
        path = write(ds, tmp_path, f"{number}.dcm")
        assert dciodvfy_errors(path) == [], ds.SOPClassUID.name
        assert pydicom.dcmread(path).PatientBirthDate == ""


# -- Configuration -------------------------------------------------------------------


@pytest.mark.parametrize("line, key", [
    ('sr_class = "enhanced"', "results.sr_class"),
    ('kinds = ["sr", "pdf"]', "results.kinds"),
    ("series_numbers = 0", "results.series_numbers"),
])
def test_bad_results_settings_are_refused_naming_key_and_file(tmp_path, line, key):
    from mmbcd_node.config import ConfigError, load_config

    path = tmp_path / "node.toml"
    path.write_text(f"[results]\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"{path}.*{key}"):
        load_config(path, environ={})


def test_result_set_for_node_numbers_and_identifies_from_the_configuration(tmp_path,
                                                                             result_set):
    from mmbcd_node.config import load_config
    from mmbcd_node.results.result_set import result_set_for_node

    path = tmp_path / "node.toml"
    path.write_text('[dicom]\nae_title = "BREASTAI"\nuid_root = "1.2.826.0.1.3680043.10.99"\n'
                    "[results]\nseries_numbers = 7000\n", encoding="utf-8")
    result = result_set_for_node(load_config(path, environ={}), installation="c" * 36,
                                 prediction=result_set.prediction, views=result_set.views,
                                 bundle=result_set.bundle)
    sr = build_structured_report(result)
    assert sr.SeriesNumber == 7000 and sr.DeviceSerialNumber == "BREASTAI"
    assert sr.SOPInstanceUID.startswith("1.2.826.0.1.3680043.10.99.")


def test_monochrome1_view_is_shown_with_dark_background_like_monochrome2(result_set):
    from mmbcd_node.results.secondary_capture import render_view

    view, source = result_set.prediction.views[0], result_set.datasets[0]
    normal = np.asarray(render_view(source, view, 1024))
    inverted = source.copy()
    inverted.PhotometricInterpretation = "MONOCHROME1"
    inverted.PixelData = (4095 - source.pixel_array).astype(np.uint16).tobytes()
    flipped = np.asarray(render_view(inverted, view, 1024))
    corner = (normal.shape[0] - 2, normal.shape[1] - 2)  # background, outside the breast
    assert normal[corner].max() < 40
    assert abs(int(flipped[corner][0]) - int(normal[corner][0])) <= 1


def test_box_touching_the_image_border_is_drawn_and_valid(tmp_path, result_set):
    view, source = result_set.prediction.views[0], result_set.datasets[0]
    border = dataclasses.replace(view.rois[1],
                                 box=(0.0, 0.0, float(source.Columns), float(source.Rows)))
    result = dataclasses.replace(result_set, prediction=dataclasses.replace(
        result_set.prediction,
        views=[dataclasses.replace(view, rois=[view.rois[0], border]),
               *result_set.prediction.views[1:]]))
    for number, ds in enumerate([build_structured_report(result),
                                 build_presentation_states(result)[0],
                                 build_secondary_captures(result)[0]]):
        assert dciodvfy_errors(write(ds, tmp_path, f"{number}.dcm")) == []


def test_dciodvfy_check_catches_a_missing_required_attribute(tmp_path, result_set):
    gsps = build_presentation_states(result_set)[0]
    del gsps.Laterality  # required for a paired body part
    errors = dciodvfy_errors(write(gsps, tmp_path, "broken.dcm"))
    assert any("Laterality" in line for line in errors), errors
