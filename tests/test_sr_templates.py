"""PS3.16 template checkers (tests/sr_templates): TID 4000 and TID 1500 content trees.

Each document is built by hand with highdicom content items (pydicom for by-reference
items): a minimal valid one and variants that each break one row of the tables.
"""

from __future__ import annotations

import numpy as np
import pytest
from highdicom.sr import (
    AlgorithmIdentification,
    CodeContentItem,
    CodedConcept,
    Comprehensive3DSR,
    ContainerContentItem,
    DateContentItem,
    DeviceObserverIdentifyingAttributes,
    FindingSite,
    GraphicTypeValues,
    ImageContentItem,
    ImageRegion,
    LanguageOfContentItemAndDescendants,
    Measurement,
    MeasurementReport,
    NumContentItem,
    ObservationContext,
    ObserverContext,
    PlanarROIMeasurementsAndQualitativeEvaluations,
    QualitativeEvaluation,
    RelationshipTypeValues,
    ScoordContentItem,
    SourceImageForRegion,
    TextContentItem,
    TimeContentItem,
    TrackingIdentifier,
)
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes

from tests.sr_templates import (
    TEMPLATES,
    Finding,
    TemplateConformanceError,
    assert_conforms,
    check,
    cid_members,
    describe,
    errors,
)

CONTAINS = RelationshipTypeValues.CONTAINS
HAS_PROPERTIES = RelationshipTypeValues.HAS_PROPERTIES
HAS_CONCEPT_MOD = RelationshipTypeValues.HAS_CONCEPT_MOD
HAS_ACQ_CONTEXT = RelationshipTypeValues.HAS_ACQ_CONTEXT
INFERRED_FROM = RelationshipTypeValues.INFERRED_FROM

MG_STORAGE = "1.2.840.10008.5.1.4.1.1.1.2"
IMAGE_UID = "1.2.826.0.1.3680043.8.498.10001"


def dcm(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, "DCM", meaning)


def sct(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, "SCT", meaning)


PERCENT = CodedConcept("%", "UCUM", "Percent")
RANGE_0_100 = CodedConcept("{0:100}", "UCUM", "range: 0:100")
MILLIMETRE = CodedConcept("mm", "UCUM", "millimeter")
BREAST_DENSITY = sct("129793001", "Mammography breast density")  # in CID 6014
MASS = sct("4147007", "Mass")  # not in CID 6014
SUCCEEDED = dcm("111222", "Succeeded")
PRESENTATION_REQUIRED = dcm("111150", "Presentation Required: Rendering device is expected "
                                      "to present")


def tree(item: Dataset, *children: Dataset) -> Dataset:
    """``item`` (as a plain pydicom Dataset) with ``children`` as its Content Sequence.

    Plain, because highdicom's Content Sequence accepts no by-reference items."""
    node = Dataset()
    for element in item:
        if element.keyword != "ContentSequence":
            node.add(element)
    node.ContentSequence = Sequence(list(children))
    return node


def by_reference(relationship: str, path: tuple[int, ...]) -> Dataset:
    item = Dataset()
    item.RelationshipType = relationship
    item.ReferencedContentItemIdentifier = list(path)
    return item


def image_header(**drop: bool) -> Dataset:
    """The attributes of the mammogram the image library describes (TID 4020 conditions)."""
    ds = Dataset()
    ds.SOPClassUID = MG_STORAGE
    ds.SOPInstanceUID = IMAGE_UID
    ds.ImageLaterality = "L"
    view = Dataset()
    view.CodeValue, view.CodingSchemeDesignator, view.CodeMeaning = (
        "399162004", "SCT", "cranio-caudal")
    ds.ViewCodeSequence = [view]
    ds.PatientOrientation = ["P", "L"]
    ds.StudyDate, ds.StudyTime = "20240105", "101010"
    ds.ContentDate, ds.ContentTime = "20240105", "101500"
    ds.ImagerPixelSpacing = [0.1, 0.1]
    for keyword in drop:
        delattr(ds, keyword)
    return ds


def algorithm(relationship: RelationshipTypeValues) -> list[Dataset]:
    """TID 4019 rows 1 and 2."""
    return [TextContentItem(dcm("111001", "Algorithm Name"), "mmbcd-detector", relationship),
            TextContentItem(dcm("111003", "Algorithm Version"), "1.4.0", relationship)]


def mammography_cad(*, language: bool = True, swap_summaries: bool = False,
                    finding: CodedConcept = BREAST_DENSITY, certainty_unit=PERCENT,
                    algorithm_relationship=HAS_PROPERTIES, content_date: bool = True,
                    center_reference: tuple[int, ...] | None = None,
                    center_by_value: bool = False, extra_in_finding: Dataset | None = None,
                    extra_in_library_entry: Dataset | None = None,
                    rendering_intents: int = 1, with_finding: bool = True,
                    detections_status: CodedConcept = SUCCEEDED) -> Dataset:
    """A minimal Mammography CAD SR content tree (TID 4000), valid unless told otherwise.

    1      CONTAINER Mammography CAD Report
    1.1    > HAS CONCEPT MOD CODE Language (TID 1204)
    1.2    > CONTAINS CONTAINER Image Library
    1.2.1  >> CONTAINS IMAGE (TID 4020) with its acquisition context
    1.3    > CONTAINS CODE CAD Processing and Findings Summary (TID 4001)
    1.3.1  >> INFERRED FROM CONTAINER Individual Impression/Recommendation (TID 4003)
    1.3.1.2 >>> CONTAINS CODE Single Image Finding (TID 4006) with Center/Outline (TID 4021)
    1.4    > CONTAINS CODE Summary of Detections = Succeeded (TID 4015/4017)
    1.5    > CONTAINS CODE Summary of Analyses = Not Attempted
    """
    library_index = 2 if language else 1
    image_path = (1, library_index, 1)
    acquisition = [
        CodeContentItem(dcm("111027", "Image Laterality"), sct("80248007", "Left breast"),
                        HAS_ACQ_CONTEXT),
        CodeContentItem(dcm("111031", "Image View"), sct("399162004", "cranio-caudal"),
                        HAS_ACQ_CONTEXT),
        TextContentItem(dcm("111044", "Patient Orientation Row"), "P", HAS_ACQ_CONTEXT),
        TextContentItem(dcm("111043", "Patient Orientation Column"), "L", HAS_ACQ_CONTEXT),
        DateContentItem(dcm("111060", "Study Date"), "20240105", HAS_ACQ_CONTEXT),
        TimeContentItem(dcm("111061", "Study Time"), "101010", HAS_ACQ_CONTEXT),
        DateContentItem(dcm("111018", "Content Date"), "20240105", HAS_ACQ_CONTEXT)
        if content_date else None,
        TimeContentItem(dcm("111019", "Content Time"), "101500", HAS_ACQ_CONTEXT),
        NumContentItem(dcm("111026", "Horizontal Pixel Spacing"), 0.1, MILLIMETRE,
                       relationship_type=HAS_ACQ_CONTEXT),
        NumContentItem(dcm("111066", "Vertical Pixel Spacing"), 0.1, MILLIMETRE,
                       relationship_type=HAS_ACQ_CONTEXT),
        extra_in_library_entry,
    ]
    entry = tree(ImageContentItem(sct("260753009", "Source"), MG_STORAGE, IMAGE_UID,
                                  relationship_type=CONTAINS),
                 *(item for item in acquisition if item is not None))
    library = tree(ContainerContentItem(dcm("111028", "Image Library"),
                                        relationship_type=CONTAINS), entry)

    def selected_from() -> Dataset:
        if center_by_value:
            return ImageContentItem(sct("260753009", "Source"), MG_STORAGE, IMAGE_UID,
                                    relationship_type=RelationshipTypeValues.SELECTED_FROM)
        return by_reference("SELECTED FROM", center_reference or image_path)

    center = tree(ScoordContentItem(dcm("111010", "Center"), GraphicTypeValues.POINT,
                                    np.array([[120.0, 240.0]]),
                                    relationship_type=HAS_PROPERTIES), selected_from())
    outline = tree(ScoordContentItem(dcm("111041", "Outline"), GraphicTypeValues.POLYLINE,
                                     np.array([[100.0, 220.0], [140.0, 220.0], [140.0, 260.0],
                                               [100.0, 260.0], [100.0, 220.0]]),
                                     relationship_type=HAS_PROPERTIES),
                   by_reference("SELECTED FROM", image_path))
    finding_items = [
        *(CodeContentItem(dcm("111056", "Rendering Intent"), PRESENTATION_REQUIRED,
                          HAS_CONCEPT_MOD) for _ in range(rendering_intents)),
        *algorithm(algorithm_relationship),
        NumContentItem(dcm("111012", "Certainty of Finding"), 87.0, certainty_unit,
                       relationship_type=HAS_PROPERTIES),
        NumContentItem(dcm("111047", "Probability of cancer"), 40.0, PERCENT,
                       relationship_type=HAS_PROPERTIES),
        center, outline, extra_in_finding,
    ]
    single_image_finding = tree(
        CodeContentItem(dcm("111059", "Single Image Finding"), finding, CONTAINS),
        *(item for item in finding_items if item is not None))
    impression = tree(
        ContainerContentItem(dcm("111034", "Individual Impression/Recommendation"),
                             relationship_type=INFERRED_FROM),
        CodeContentItem(dcm("111056", "Rendering Intent"), PRESENTATION_REQUIRED,
                        HAS_CONCEPT_MOD),
        *([single_image_finding] if with_finding else []))
    summary = tree(CodeContentItem(dcm("111017", "CAD Processing and Findings Summary"),
                                   dcm("111242", "All algorithms succeeded; with findings"),
                                   CONTAINS), impression)
    detections_name = dcm("111064", "Summary of Detections")
    analyses_name = dcm("111065", "Summary of Analyses")
    if swap_summaries:
        detections_name, analyses_name = (dcm("111065", "Summary of Detections"),
                                          dcm("111064", "Summary of Analyses"))
    detections = tree(
        CodeContentItem(detections_name, detections_status, CONTAINS),
        tree(ContainerContentItem(dcm("111063", "Successful Detections"),
                                  relationship_type=INFERRED_FROM),
             tree(CodeContentItem(dcm("111022", "Detection Performed"), BREAST_DENSITY,
                                  CONTAINS),
                  *algorithm(HAS_PROPERTIES), by_reference("HAS PROPERTIES", image_path))))
    analyses = CodeContentItem(analyses_name, dcm("111225", "Not Attempted"), CONTAINS)
    children = [library, summary, detections, analyses]
    if language:
        children.insert(0, CodeContentItem(
            dcm("121049", "Language of Content Item and Descendants"),
            CodedConcept("en-US", "RFC5646", "English (United States)"), HAS_CONCEPT_MOD))
    root = ContainerContentItem(dcm("111036", "Mammography CAD Report"), template_id="4000")
    return tree(root, *children)


IMAGES = {IMAGE_UID: image_header()}


def at(findings: list[Finding], severity: str, path: str, tid: int,
       row: str | None) -> list[Finding]:
    return [f for f in findings
            if (f.severity, f.path, f.tid, f.row) == (severity, path, tid, row)]


# -- the tables -------------------------------------------------------------------------


def test_every_include_names_an_encoded_template_and_every_template_its_source():
    for tpl in TEMPLATES.values():
        assert tpl.source_url.startswith("https://dicom.nema.org/"), tpl.tid
        assert tpl.edition == "2026a", tpl.tid
        for r in tpl.rows:
            if r.vt == "INCLUDE":
                assert r.include in TEMPLATES, f"TID {tpl.tid} row {r.row} -> {r.include}"


def test_tid_4000_rows_are_the_ones_the_standard_lists():
    tpl = TEMPLATES[4000]
    assert (tpl.extensible, tpl.order_significant, tpl.root) == (False, True, True)
    shape = [(r.row, r.nl, r.rel_text, r.vt, r.include or str(r.concept), r.vm_text, r.req)
             for r in tpl.rows]
    assert shape == [
        ("1", 0, "", "CONTAINER", 'EV (111036, DCM, "Mammography CAD Report")', "1", "M"),
        ("2", 1, "HAS CONCEPT MOD", "INCLUDE", 1204, "1", "M"),
        ("3", 1, "CONTAINS", "CONTAINER", 'EV (111028, DCM, "Image Library")', "1", "M"),
        ("4", 2, "CONTAINS", "INCLUDE", 4020, "1-n", "M"),
        ("5", 1, "CONTAINS", "INCLUDE", 4001, "1", "M"),
        ("6", 1, "CONTAINS", "CODE", 'EV (111064, DCM, "Summary of Detections")', "1", "M"),
        ("7", 2, "INFERRED FROM", "INCLUDE", 4015, "1", "MC"),
        ("8", 1, "CONTAINS", "CODE", 'EV (111065, DCM, "Summary of Analyses")', "1", "M"),
        ("9", 2, "INFERRED FROM", "INCLUDE", 4016, "1", "MC"),
    ]
    assert dict(tpl.row("4").params)["ImageView"].cid == 4014
    assert dict(tpl.row("7").params)["DetectionCode"].cid == 6014
    assert tpl.row("6").value.cid == 6042
    assert TEMPLATES[4006].row("6").units[0].codes[0].key == ("UCUM", "%")
    assert "DTID 4020 VM 1-n M" in describe(4000)
    # meanings keep their parentheses; units and by-reference rows parse
    assert TEMPLATES[4020].row("18").concept.codes[0].meaning == "Image Position (Patient) X"
    assert TEMPLATES[4021].row("2").by_ref and TEMPLATES[4021].row("2").rel == "SELECTED FROM"
    assert [u.codes[0].value for u in TEMPLATES[4020].row("11").units] == ["um", "mm"]


def test_context_groups_come_from_pydicom_and_missing_ones_are_open():
    assert ("SCT", "129793001") in cid_members(6014)
    assert ("SCT", "4147007") not in cid_members(6014)
    assert cid_members(5000) is None


# -- TID 4000 -------------------------------------------------------------------------


def test_a_minimal_mammography_cad_report_conforms_to_tid_4000():
    findings = assert_conforms(mammography_cad(), 4000, images=IMAGES)
    assert not [f for f in findings if f.severity == "warning"], findings
    # what the tree cannot tell: the language is an open value set (CID 5000 is not in
    # pydicom) and whether the finding came from another report (TID 4006 row 26)
    unchecked = {(f.tid, f.row) for f in findings if f.severity == "unchecked"}
    assert unchecked == {(1204, "1"), (4006, "26")}, findings


def test_summary_codes_swapped_are_reported():
    found = errors(check(mammography_cad(swap_summaries=True), 4000, images=IMAGES))
    # (111065) now heads the detections: its Successful Detections is no row of TID 4000 ...
    assert at(found, "error", "1.4.1", 4000, None), found
    # ... and TID 4016's Successful Analyses is missing although the status is Succeeded
    assert at(found, "error", "1.4", 4016, "1"), found
    assert any("111063" in f.message for f in found)


def test_single_image_finding_outside_cid_6014_is_reported():
    found = errors(check(mammography_cad(finding=MASS), 4000, images=IMAGES))
    assert [f.location for f in found] == ["1.3.1.2 TID 4006 row 1"], found
    assert "4147007" in found[0].message and "DCID 6014" in found[0].message


def test_certainty_of_finding_in_range_units_is_reported():
    found = errors(check(mammography_cad(certainty_unit=RANGE_0_100), 4000, images=IMAGES))
    assert [f.location for f in found] == ["1.3.1.2.4 TID 4006 row 6"], found
    assert "{0:100}" in found[0].message and '"Percent"' in found[0].message


def test_algorithm_identification_under_has_concept_mod_is_reported():
    found = errors(check(mammography_cad(algorithm_relationship=HAS_CONCEPT_MOD), 4000,
                         images=IMAGES))
    assert [f.location for f in found] == ["1.3.1.2.2 TID 4019 row 1",
                                           "1.3.1.2.3 TID 4019 row 2"], found
    assert all("HAS CONCEPT MOD" in f.message and "HAS PROPERTIES" in f.message
               for f in found)


def test_missing_language_is_reported():
    found = errors(check(mammography_cad(language=False), 4000, images=IMAGES))
    assert [f.location for f in found] == ["1 TID 1204 row 1"], found
    assert "missing mandatory" in found[0].message


def test_image_library_entry_without_content_date_is_reported_given_the_image():
    document = mammography_cad(content_date=False)
    found = errors(check(document, 4000, images=IMAGES))
    assert [f.location for f in found] == ["1.2.1 TID 4020 row 9"], found
    # an image without Content Date needs none
    quiet = check(document, 4000, images={IMAGE_UID: image_header(ContentDate=True)})
    assert not errors(quiet)
    # without the image the condition cannot be evaluated: reported, not an error
    blind = check(document, 4000)
    assert not errors(blind)
    assert at(blind, "unchecked", "1.2.1", 4020, "9")


def test_assert_conforms_lists_every_error():
    document = mammography_cad(finding=MASS, certainty_unit=RANGE_0_100, language=False)
    with pytest.raises(TemplateConformanceError) as raised:
        assert_conforms(document, 4000, images=IMAGES)
    text = str(raised.value)
    assert "3 deviation(s) from TID 4000" in text
    for location in ("1 TID 1204 row 1", "TID 4006 row 1", "TID 4006 row 6"):
        assert location in text


def test_by_reference_targets_must_exist_and_be_images_in_the_library():
    missing = errors(check(mammography_cad(center_reference=(1, 2, 9)), 4000, images=IMAGES))
    assert any(f.path == "1.3.1.2.6.1" and "does not exist" in f.message for f in missing)
    container = errors(check(mammography_cad(center_reference=(1, 2)), 4000, images=IMAGES))
    assert any(f.location == "1.3.1.2.6.1 TID 4021 row 2" and "CONTAINER" in f.message
               for f in container), container
    by_value = errors(check(mammography_cad(center_by_value=True), 4000, images=IMAGES))
    assert [f.location for f in by_value] == ["1.3.1.2.6.1 TID 4021 row 2"], by_value
    assert "by-reference" in by_value[0].message


def test_vm_and_extensibility():
    twice = errors(check(mammography_cad(rendering_intents=2), 4000, images=IMAGES))
    assert [f.location for f in twice] == ["1.3.1.2 TID 4006 row 2"], twice
    assert "VM is 1" in twice[0].message
    weight = NumContentItem(CodedConcept("ATTN", "99MMBCD", "Attention weight"), 0.3,
                            CodedConcept("1", "UCUM", "no units"),
                            relationship_type=HAS_PROPERTIES)
    not_allowed = errors(check(mammography_cad(extra_in_finding=weight), 4000, images=IMAGES))
    assert [f.location for f in not_allowed] == ["1.3.1.2.8 TID 4006"], not_allowed
    # TID 4020 is extensible: an extra acquisition context item is only noted
    extra = TextContentItem(dcm("121013", "Device Observer Name"), "MG1", HAS_ACQ_CONTEXT)
    noted = check(mammography_cad(extra_in_library_entry=extra), 4000, images=IMAGES)
    assert not errors(noted)
    assert at(noted, "info", "1.2.1.11", 4020, None)


def test_conditions_on_the_value_of_the_parent_are_evaluated():
    # Successful Detections (TID 4015 row 1) only if the summary is (Partially) Succeeded
    not_attempted = errors(check(mammography_cad(
        detections_status=dcm("111225", "Not Attempted")), 4000, images=IMAGES))
    assert [f.location for f in not_attempted] == ["1.4 TID 4015 row 1"], not_attempted
    assert "may only be" in not_attempted[0].message
    # a failed run needs its Failed Detections (TID 4015 row 3)
    failed = errors(check(mammography_cad(detections_status=dcm("111224", "Failed")), 4000,
                          images=IMAGES))
    assert {f.location for f in failed} == {"1.4 TID 4015 row 1", "1.4 TID 4015 row 3"}


def test_an_impression_needs_a_finding_or_a_composite_feature():
    found = errors(check(mammography_cad(with_finding=False), 4000, images=IMAGES))
    assert [f.location for f in found] == ["1.3.1 TID 4003 row 4"], found
    assert "At least one of Rows 4, 5" in found[0].message


def test_detection_performed_images_by_value_are_flagged_for_mammography_cad():
    document = mammography_cad()
    performed = document.ContentSequence[3].ContentSequence[0].ContentSequence[0]
    performed.ContentSequence[2] = ImageContentItem(
        sct("260753009", "Source"), MG_STORAGE, IMAGE_UID, relationship_type=HAS_PROPERTIES)
    findings = check(document, 4000, images=IMAGES)
    assert not errors(findings)
    assert at(findings, "warning", "1.4.1.1.3", 4017, "3")


# -- TID 1500 -------------------------------------------------------------------------


def _mg_image() -> Dataset:
    ds = image_header()
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.10002"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.10003"
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "P1", "Doe^J", "", "F"
    ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = "A1", "1", ""
    ds.Modality = "MG"
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = (
        1, "MONOCHROME2", 0)
    return ds


def measurement_report(*, qualitative: bool = True) -> Comprehensive3DSR:
    """A minimal Imaging Measurement Report (TID 1500) with one planar ROI group (TID 1410).

    1        CONTAINER Imaging Measurement Report
    1.1      > HAS CONCEPT MOD Language; 1.2-1.4 > HAS OBS CONTEXT device observer
    1.5      > HAS CONCEPT MOD Procedure reported
    1.6      > CONTAINS CONTAINER Imaging Measurements
    1.6.1    >> CONTAINS CONTAINER Measurement Group (TID 1410): tracking, Finding, Finding
             Site, algorithm, Diameter (TID 1419), a qualitative evaluation, Image Region
    """
    image = _mg_image()
    observer = ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid="1.2.826.0.1.3680043.8.498.10004", name="mmbcd"))
    region = ImageRegion(graphic_type=GraphicTypeValues.POLYLINE,
                         graphic_data=np.array([[1.0, 1.0], [10.0, 1.0], [10.0, 10.0],
                                                [1.0, 1.0]]),
                         source_image=SourceImageForRegion.from_source_image(image))
    group = PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid="1.2.826.0.1.3680043.8.498.10005",
                                               identifier="lesion 1"),
        referenced_region=region,
        finding_type=codes.SCT.Mass,
        finding_sites=[FindingSite(anatomic_location=codes.SCT.Breast,
                                   laterality=codes.SCT.Left)],
        measurements=[Measurement(name=codes.SCT.Diameter, value=12.0,
                                  unit=codes.UCUM.Millimeter)],
        qualitative_evaluations=[QualitativeEvaluation(dcm("111042", "Pathology"),
                                                       sct("35917007", "Carcinoma in situ"))]
        if qualitative else None,
        algorithm_id=AlgorithmIdentification(name="mmbcd-detector", version="1.4.0"),
    )
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=observer),
        procedure_reported=sct("363679005", "Imaging procedure"),
        imaging_measurements=[group],
        title=codes.DCM.ImagingMeasurementReport,
        language_of_content_item_and_descendants=LanguageOfContentItemAndDescendants(
            CodedConcept("en-US", "RFC5646", "English (United States)")))
    return Comprehensive3DSR(
        evidence=[image], content=report, series_number=1,
        series_instance_uid="1.2.826.0.1.3680043.8.498.10006",
        sop_instance_uid="1.2.826.0.1.3680043.8.498.10007", instance_number=1,
        manufacturer="mmbcd")


def _item(ds: Dataset, value: str) -> Dataset:
    """The first content item (depth first) whose concept name code value is ``value``."""
    for child in ds.get("ContentSequence", []):
        if "ConceptNameCodeSequence" in child and \
                child.ConceptNameCodeSequence[0].CodeValue == value:
            return child
        found = _item(child, value)
        if found is not None:
            return found
    return None


def test_a_highdicom_measurement_report_conforms_to_tid_1500():
    sr = measurement_report()
    findings = assert_conforms(sr, 1500)
    assert not [f for f in findings if f.severity == "warning"], findings
    # the Measurement Group matched TID 1410 (planar), not TID 1411 or 1501
    assert not [f for f in findings if f.tid in (1411, 1501)], findings
    # the observation context rows whose conditions are about inheritance
    assert {(f.tid, f.row) for f in findings if f.severity == "unchecked"} == {
        (1001, "2"), (1001, "3"), (1204, "1")}, findings


def test_measurement_report_deviations_are_reported():
    sr = measurement_report()
    sr.ContentSequence[0].RelationshipType = "HAS PROPERTIES"  # Language
    group = _item(sr, "125007")
    uid = _item(group, "112040")  # Tracking Unique Identifier: UIDREF -> TEXT
    uid.ValueType = "TEXT"
    del uid.UID
    uid.TextValue = "not a UID"
    _item(group, "111030").GraphicType = "MULTIPOINT"
    found = errors(check(sr, 1500))
    messages = {f.location: f.message for f in found}
    assert "relationship HAS PROPERTIES" in messages["1.1 TID 1204 row 1"]
    assert "value type TEXT" in messages["1.6.1.2 TID 1410 row 3"]
    assert "MULTIPOINT" in messages["1.6.1.9 TID 1410 row 5"]
    assert len(found) == 3, found


def test_measurement_report_without_measurement_containers_is_reported():
    sr = measurement_report()
    sr.ContentSequence = Sequence([item for item in sr.ContentSequence
                                   if item.ConceptNameCodeSequence[0].CodeValue != "126010"])
    found = errors(check(sr, 1500))
    assert [f.location for f in found] == ["1 TID 1500 row 6", "1 TID 1500 row 10",
                                           "1 TID 1500 row 12"], found
    assert all(f.message.startswith("missing CONTAINS CONTAINER") for f in found)
    assert "126010" in found[0].message and "C0034375" in found[2].message
