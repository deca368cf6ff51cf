"""The Mammography CAD SR (TID 4000): the result as mammography reading workstations read it.

highdicom has no document class for Mammography CAD SR Storage
(1.2.840.10008.5.1.4.1.1.88.50), so the document is highdicom's generic SR document
(the same base its Comprehensive SR uses) around a content tree assembled from
highdicom's content item classes, following PS3.16:

- root "Mammography CAD Report" (DCM 111036), template 4000, device observer context;
- Image Library (TID 4020): every source view with laterality, view, orientation,
  study date/time and pixel spacing;
- CAD Processing and Findings Summary (DCM 111017) with its CID 6047 value, stated
  honestly: "Not all algorithms succeeded" when a view could not be read; inferred from
  one Individual Impression/Recommendation (TID 4001/4003) carrying the case probability,
  with one Composite Feature per breast (TID 4004: the breast probability) inferred from
  that breast's Single Image Findings (TID 4006);
- each Single Image Finding: finding type Mass (SCT 4147007), Rendering Intent, algorithm
  identification (TID 4019), Certainty of Finding (DCM 111012, 0-100, the ROI detector
  score), the attention weight, Center (DCM 111010) as a point and Outline (DCM 111041) as
  a closed polyline on the source image;
- Summary of Detections / Summary of Analyses (CID 6042) inferred from the successful and
  failed detections and analyses (TID 4015/4016), each naming the images it covers.

A not-attempted result (nothing in the study could be analysed: a result set whose
prediction has no views, its ``views`` the study's images) gives the same document with
"No algorithms succeeded; without findings", both summaries "Not Attempted"
(DCM 111225), and the image library listing the images that were not analysed.

Rendering Intent (CID 6034) follows the bundle's operating threshold: a finding, breast
or case whose malignancy probability (for a finding: its view's) is at or above the
threshold is "Presentation Required", the rest "Presentation Optional", so a workstation
shows the marks of flagged views and may hide the others. A whole-breast region (no box
detected) is not a finding and is left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

import numpy as np
from highdicom.sr import (
    CodeContentItem,
    CodedConcept,
    ContainerContentItem,
    ContentItem,
    ContentSequence,
    DateContentItem,
    GraphicTypeValues,
    ImageContentItem,
    NumContentItem,
    RelationshipTypeValues,
    ScoordContentItem,
    TextContentItem,
    TimeContentItem,
)
from highdicom.sr.sop import _SR  # highdicom's generic SR document, base of ComprehensiveSR
from highdicom.sr.templates import AlgorithmIdentification
from pydicom import Dataset

import mmbcd_node
from ml.types import RoiPrediction, ViewPrediction
from mmbcd_node.results import codes
from mmbcd_node.results.result_set import OutputKind, ResultError, ResultSet
from mmbcd_node.results.roi_marks import box_polyline
from mmbcd_node.results.sr_document import document_arguments, observation_context

MAMMOGRAPHY_CAD_SR = "1.2.840.10008.5.1.4.1.1.88.50"
ItemT = TypeVar("ItemT", bound=ContentItem)

CONTAINS = RelationshipTypeValues.CONTAINS
HAS_CONCEPT_MOD = RelationshipTypeValues.HAS_CONCEPT_MOD
HAS_PROPERTIES = RelationshipTypeValues.HAS_PROPERTIES
HAS_ACQ_CONTEXT = RelationshipTypeValues.HAS_ACQ_CONTEXT
INFERRED_FROM = RelationshipTypeValues.INFERRED_FROM
SELECTED_FROM = RelationshipTypeValues.SELECTED_FROM


def _dcm(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, "DCM", meaning)


MAMMOGRAPHY_CAD_REPORT = _dcm("111036", "Mammography CAD Report")
IMAGE_LIBRARY = _dcm("111028", "Image Library")
FINDINGS_SUMMARY = _dcm("111017", "CAD Processing and Findings Summary")
INDIVIDUAL_IMPRESSION = _dcm("111034", "Individual Impression/Recommendation")
COMPOSITE_FEATURE = _dcm("111015", "Composite Feature")
SINGLE_IMAGE_FINDING = _dcm("111059", "Single Image Finding")
RENDERING_INTENT = _dcm("111056", "Rendering Intent")
PRESENTATION_REQUIRED = _dcm("111150", "Presentation Required: Rendering device is expected "
                                       "to present")
PRESENTATION_OPTIONAL = _dcm("111151", "Presentation Optional: Rendering device may present")
CERTAINTY_OF_FINDING = _dcm("111012", "Certainty of Finding")
CENTER = _dcm("111010", "Center")
OUTLINE = _dcm("111041", "Outline")
SUMMARY_OF_DETECTIONS = _dcm("111065", "Summary of Detections")
SUMMARY_OF_ANALYSES = _dcm("111064", "Summary of Analyses")
SUCCESSFUL_DETECTIONS = _dcm("111063", "Successful Detections")
FAILED_DETECTIONS = _dcm("111025", "Failed Detections")
SUCCESSFUL_ANALYSES = _dcm("111062", "Successful Analyses")
FAILED_ANALYSES = _dcm("111024", "Failed Analyses")
DETECTION_PERFORMED = _dcm("111022", "Detection Performed")
ANALYSIS_PERFORMED = _dcm("111004", "Analysis Performed")
MASS = CodedConcept("4147007", "SCT", "Mass")
LATERALITY_CONCEPT = CodedConcept("272741003", "SCT", "Laterality")
SCALE_0_100 = CodedConcept("{0:100}", "UCUM", "range: 0:100")

# CID 6042 Status of Results.
SUCCEEDED = _dcm("111222", "Succeeded")
PARTIALLY_SUCCEEDED = _dcm("111223", "Partially Succeeded")
FAILED = _dcm("111224", "Failed")
NOT_ATTEMPTED = _dcm("111225", "Not Attempted")

# CID 6047 CAD Processing and Findings Summary.
ALL_SUCCEEDED_WITHOUT_FINDINGS = _dcm("111241", "All algorithms succeeded; without findings")
ALL_SUCCEEDED_WITH_FINDINGS = _dcm("111242", "All algorithms succeeded; with findings")
NOT_ALL_SUCCEEDED_WITHOUT_FINDINGS = _dcm("111243",
                                          "Not all algorithms succeeded; without findings")
NOT_ALL_SUCCEEDED_WITH_FINDINGS = _dcm("111244", "Not all algorithms succeeded; with findings")
NONE_SUCCEEDED = _dcm("111245", "No algorithms succeeded; without findings")

# Image library descriptors (TID 4020).
IMAGE_LATERALITY = _dcm("111027", "Image Laterality")
IMAGE_VIEW = _dcm("111031", "Image View")
ORIENTATION_ROW = _dcm("111044", "Patient Orientation Row")
ORIENTATION_COLUMN = _dcm("111043", "Patient Orientation Column")
STUDY_DATE = _dcm("111060", "Study Date")
STUDY_TIME = _dcm("111061", "Study Time")
HORIZONTAL_SPACING = _dcm("111026", "Horizontal Pixel Spacing")
VERTICAL_SPACING = _dcm("111066", "Vertical Pixel Spacing")
MILLIMETRE = CodedConcept("mm", "UCUM", "millimeter")


class MammographyCADSR(_SR):
    """Mammography CAD SR Storage document (PS3.3 A.35.5) around a TID 4000 content tree."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(sop_class_uid=MAMMOGRAPHY_CAD_SR, **kwargs)  # type: ignore[arg-type]


def build_mammography_cad_report(result: ResultSet) -> Dataset:
    """The Mammography CAD SR of ``result``, one per result set, in its own series.

    Returns the document ready to be written. Raises ``ResultError`` when the study has
    no source view the image library can describe.
    """
    algorithm = _algorithm(result)
    findings = {view.sop_instance_uid: _single_image_findings(result, view, algorithm)
                for view in result.scored_views}
    root = ContainerContentItem(name=MAMMOGRAPHY_CAD_REPORT, template_id="4000")
    root.ContentTemplateSequence[0].MappingResource = "DCMR"
    root.ContentSequence = ContentSequence([
        *observation_context(result),
        _image_library(result),
        _findings_summary(result, findings),
        *_performed(result, algorithm),
    ])
    sr = MammographyCADSR(content=root, **document_arguments(
        result, OutputKind.CAD_REPORT, frozenset({MAMMOGRAPHY_CAD_SR})))
    result.stamp_identity(sr, private_codes=True)
    return sr


def rendering_intent(probability: float | None, threshold: float) -> CodedConcept:
    """Presentation Required at or above the operating threshold, else Optional."""
    if probability is not None and probability >= threshold:
        return PRESENTATION_REQUIRED
    return PRESENTATION_OPTIONAL


def findings_summary(result: ResultSet) -> CodedConcept:
    """The CID 6047 value: did every view get processed, and was anything found."""
    found = any(not roi.whole_breast for view in result.scored_views for roi in view.rois)
    if not result.scored_views:
        return NONE_SUCCEEDED
    if result.all_views_used:
        return ALL_SUCCEEDED_WITH_FINDINGS if found else ALL_SUCCEEDED_WITHOUT_FINDINGS
    return NOT_ALL_SUCCEEDED_WITH_FINDINGS if found else NOT_ALL_SUCCEEDED_WITHOUT_FINDINGS


# -- content tree ---------------------------------------------------------------------


def _algorithm(result: ResultSet) -> AlgorithmIdentification:
    # Provenance travels as algorithm parameters, the place TID 4019 gives to what
    # conditioned the run: model version, history fields (or none), views used.
    return AlgorithmIdentification(
        name=result.bundle.name, version=result.bundle.digest,
        parameters=[f"bundle_version={result.bundle.version}",
                    *result.bundle.parameter_lines(),
                    f"history={result.history.statement()}",
                    f"views={result.views_statement()}",
                    *(f"input={line}" for line in result.input_statements())],
        manufacturer=mmbcd_node.MANUFACTURER)


def _with(item: ItemT, children: Iterable[ContentItem | None]) -> ItemT:
    """``item`` with ``children`` (None entries skipped) as its Content Sequence."""
    present = [child for child in children if child is not None]
    if present:  # an empty Content Sequence is an error; a leaf has none
        item.ContentSequence = ContentSequence(present)
    return item


def _image(ds: Dataset, relationship: RelationshipTypeValues) -> ImageContentItem:
    return ImageContentItem(name=codes.SOURCE_IMAGE, referenced_sop_class_uid=ds.SOPClassUID,
                            referenced_sop_instance_uid=ds.SOPInstanceUID,
                            relationship_type=relationship)


def _image_library(result: ResultSet) -> ContainerContentItem:
    entries = []
    for ds, image in zip(result.evidence, result.views, strict=True):
        descriptors: list = []
        if image.laterality in codes.LATERALITY:
            descriptors.append(CodeContentItem(IMAGE_LATERALITY,
                                               codes.LATERALITY[image.laterality],
                                               HAS_ACQ_CONTEXT))
        for view_code in ds.get("ViewCodeSequence", [])[:1]:
            descriptors.append(CodeContentItem(
                IMAGE_VIEW, CodedConcept(view_code.CodeValue, view_code.CodingSchemeDesignator,
                                         view_code.CodeMeaning), HAS_ACQ_CONTEXT))
        if image.orientation is not None:
            row, column = image.orientation
            descriptors += [TextContentItem(ORIENTATION_ROW, row, HAS_ACQ_CONTEXT),
                            TextContentItem(ORIENTATION_COLUMN, column, HAS_ACQ_CONTEXT)]
        if ds.get("StudyDate"):
            descriptors.append(DateContentItem(STUDY_DATE, ds.StudyDate, HAS_ACQ_CONTEXT))
        if ds.get("StudyTime"):
            descriptors.append(TimeContentItem(STUDY_TIME, ds.StudyTime, HAS_ACQ_CONTEXT))
        if image.spacing is not None:  # unknown spacing: none, coordinates are pixels
            descriptors += [NumContentItem(HORIZONTAL_SPACING, image.spacing.column,
                                           MILLIMETRE, relationship_type=HAS_ACQ_CONTEXT),
                            NumContentItem(VERTICAL_SPACING, image.spacing.row, MILLIMETRE,
                                           relationship_type=HAS_ACQ_CONTEXT)]
        entries.append(_with(_image(ds, CONTAINS), descriptors))
    if not entries:
        raise ResultError("the image library needs at least one source view")
    return _with(ContainerContentItem(IMAGE_LIBRARY, relationship_type=CONTAINS), entries)


def _findings_summary(result: ResultSet,
                      findings: dict[str, list[CodeContentItem]]) -> CodeContentItem:
    prediction, threshold = result.prediction, result.prediction.threshold
    impression_children: list = [
        CodeContentItem(RENDERING_INTENT, rendering_intent(prediction.probability, threshold),
                        HAS_CONCEPT_MOD)]
    if prediction.probability is not None:
        impression_children.append(NumContentItem(
            codes.PROBABILITY_OF_CANCER, round(prediction.probability, 6), codes.NO_UNITS,
            relationship_type=CONTAINS))
    for side, probability in sorted(prediction.breasts.items()):
        side_findings = [item for view in result.scored_views if view.laterality == side
                         for item in findings[view.sop_instance_uid]]
        impression_children.append(_composite_feature(side, probability, threshold,
                                                      side_findings))
    impression = _with(ContainerContentItem(INDIVIDUAL_IMPRESSION,
                                            relationship_type=INFERRED_FROM),
                       impression_children)
    summary = CodeContentItem(FINDINGS_SUMMARY, findings_summary(result), CONTAINS)
    return _with(summary, [impression] if result.scored_views else [])


def _composite_feature(side: str, probability: float, threshold: float,
                       findings: list[CodeContentItem]) -> CodeContentItem:
    feature = CodeContentItem(COMPOSITE_FEATURE, MASS, CONTAINS)
    return _with(feature, [
        CodeContentItem(RENDERING_INTENT, rendering_intent(probability, threshold),
                        HAS_CONCEPT_MOD),
        CodeContentItem(LATERALITY_CONCEPT, codes.LATERALITY[side], HAS_PROPERTIES)
        if side in codes.LATERALITY else None,
        NumContentItem(codes.PROBABILITY_OF_CANCER, round(probability, 6), codes.NO_UNITS,
                       relationship_type=HAS_PROPERTIES),
        *findings,
    ])


def _single_image_findings(result: ResultSet, view: ViewPrediction,
                           algorithm: AlgorithmIdentification) -> list[CodeContentItem]:
    source = result.header_of(view)
    intent = rendering_intent(view.probability, result.prediction.threshold)
    return [_single_image_finding(source, roi, intent, algorithm)
            for roi in view.rois if not roi.whole_breast]


def _single_image_finding(source: Dataset, roi: RoiPrediction, intent: CodedConcept,
                          algorithm: AlgorithmIdentification) -> CodeContentItem:
    x0, y0, x1, y1 = roi.box
    center = ScoordContentItem(CENTER, GraphicTypeValues.POINT,
                               np.array([[(x0 + x1) / 2, (y0 + y1) / 2]]),
                               relationship_type=HAS_PROPERTIES)
    outline = ScoordContentItem(OUTLINE, GraphicTypeValues.POLYLINE, box_polyline(roi.box),
                                relationship_type=HAS_PROPERTIES)
    finding = CodeContentItem(SINGLE_IMAGE_FINDING, MASS, INFERRED_FROM)
    return _with(finding, [
        CodeContentItem(RENDERING_INTENT, intent, HAS_CONCEPT_MOD),
        *algorithm,
        NumContentItem(CERTAINTY_OF_FINDING, round(100 * roi.detector_score, 3), SCALE_0_100,
                       relationship_type=HAS_PROPERTIES),
        NumContentItem(codes.ATTENTION_WEIGHT, round(roi.attention, 6), codes.NO_UNITS,
                       relationship_type=HAS_PROPERTIES),
        _with(center, [_image(source, SELECTED_FROM)]),
        _with(outline, [_image(source, SELECTED_FROM)]),
    ])


def _performed(result: ResultSet, algorithm: AlgorithmIdentification) -> list[CodeContentItem]:
    """Summary of Detections and Summary of Analyses with what succeeded and failed."""
    scored = [result.header_of(v) for v in result.scored_views]
    failed = [result.header_of(v) for v in result.failed_views]
    if not result.prediction.views:
        status = NOT_ATTEMPTED
    else:
        status = SUCCEEDED if not failed else PARTIALLY_SUCCEEDED if scored else FAILED
    summaries = []
    for name, performed, success, failure, what in (
            (SUMMARY_OF_DETECTIONS, DETECTION_PERFORMED, SUCCESSFUL_DETECTIONS,
             FAILED_DETECTIONS, MASS),
            (SUMMARY_OF_ANALYSES, ANALYSIS_PERFORMED, SUCCESSFUL_ANALYSES, FAILED_ANALYSES,
             codes.PROBABILITY_OF_CANCER)):
        groups = []
        for container, images in ((success, scored), (failure, failed)):
            if images:
                item = _with(CodeContentItem(performed, what, CONTAINS),
                             [*algorithm, *(_image(ds, INFERRED_FROM) for ds in images)])
                groups.append(_with(ContainerContentItem(container,
                                                         relationship_type=INFERRED_FROM),
                                    [item]))
        summaries.append(_with(CodeContentItem(name, status, CONTAINS), groups))
    return summaries
