"""The Mammography CAD SR (TID 4000): the result as mammography reading workstations read it.

highdicom has no document class for Mammography CAD SR Storage
(1.2.840.10008.5.1.4.1.1.88.50), so the document is highdicom's generic SR document
(the same base its Comprehensive SR uses) around a content tree built row by row from
the PS3.16 tables (codes in ``cad_codes``):

- root "Mammography CAD Report" (DCM 111036), template 4000, with its Language (TID 1204);
  the observer is the device in the document header and the algorithm identification;
- Image Library (TID 4020, ``cad_library``): every image the report mentions;
- CAD Processing and Findings Summary (TID 4001, CID 6047), stated honestly: "Not all
  algorithms succeeded" when a view could not be read. It is inferred from one
  Individual Impression/Recommendation (TID 4003) per breast with marks, each holding
  one Composite Feature (TID 4004/4005: the breast region, its ROIs related spatially,
  the scope of images they were found on, the algorithm and the breast's Probability of
  cancer in percent) inferred from the breast's Single Image Findings (TID 4006);
- each Single Image Finding is a density (CID 6014) with its Rendering Intent, the
  algorithm (TID 4019, HAS PROPERTIES), Certainty of Finding in percent (the ROI detector
  score), Center (a point) and Outline (a closed polyline), each selected from its image
  library entry by reference;
- Summary of Detections (111064) and Summary of Analyses (111065), CID 6042, inferred
  from the successful and failed detections (TID 4015/4017: density detection) and
  analyses (TID 4016/4018: individual impression analysis), each naming by reference the
  library entries it covers; left without either when nothing was attempted.

The marks are the view's ``roi_marks``: at most the bundle's ``max_per_image`` ROIs, most
suspicious first. A mark whose detector score reaches the bundle's operating point for
marks is "Presentation Required", the others "Presentation Optional"; a breast's
impression and feature are Required when its probability reaches the operating
threshold. A whole-breast region (no box detected) is not a finding and is left out.

A not-attempted result (nothing in the study could be analysed: a result set whose
prediction has no views, its ``views`` the study's images) gives "No algorithms
succeeded; without findings", both summaries "Not Attempted" (DCM 111225), and the image
library listing the images that were not analysed.
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
    GraphicTypeValues,
    NumContentItem,
    RelationshipTypeValues,
    ScoordContentItem,
    TextContentItem,
)
from highdicom.sr.sop import _SR  # highdicom's generic SR document, base of ComprehensiveSR
from pydicom import Dataset

from ml.types import ViewPrediction
from mmbcd_node.output_kinds import OutputKind
from mmbcd_node.results import cad_codes as cad
from mmbcd_node.results.cad_library import cad_image_library, library_image, refer_to_library
from mmbcd_node.results.result_set import ResultSet
from mmbcd_node.results.roi_marks import RoiMark, box_polyline, roi_marks
from mmbcd_node.results.sr_document import document_arguments

MAMMOGRAPHY_CAD_SR = "1.2.840.10008.5.1.4.1.1.88.50"
ItemT = TypeVar("ItemT", bound=ContentItem)

CONTAINS = RelationshipTypeValues.CONTAINS
HAS_CONCEPT_MOD = RelationshipTypeValues.HAS_CONCEPT_MOD
HAS_PROPERTIES = RelationshipTypeValues.HAS_PROPERTIES
INFERRED_FROM = RelationshipTypeValues.INFERRED_FROM
SELECTED_FROM = RelationshipTypeValues.SELECTED_FROM


class MammographyCADSR(_SR):
    """Mammography CAD SR Storage document (PS3.3 A.35.5) around a TID 4000 content tree."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(sop_class_uid=MAMMOGRAPHY_CAD_SR, **kwargs)  # type: ignore[arg-type]


def build_mammography_cad_report(result: ResultSet) -> Dataset:
    """The Mammography CAD SR of ``result``, one per result set, in its own series.

    Returns the document ready to be written. Raises ``ResultError`` when the study has
    no source view the image library can describe.
    """
    root = ContainerContentItem(name=cad.MAMMOGRAPHY_CAD_REPORT, template_id="4000")
    root.ContentTemplateSequence[0].MappingResource = "DCMR"
    root.ContentSequence = ContentSequence([
        CodeContentItem(cad.LANGUAGE, cad.ENGLISH, HAS_CONCEPT_MOD),
        cad_image_library(result.views, result.evidence),
        _findings_summary(result),
        *_performed(result),
    ])
    sr = MammographyCADSR(content=root, **document_arguments(
        result, OutputKind.CAD_SR, frozenset({MAMMOGRAPHY_CAD_SR})))
    refer_to_library(sr)
    result.stamp_identity(sr)
    return sr


def rendering_intent(required: bool) -> CodedConcept:
    """CID 6034: Presentation Required, or Optional."""
    return cad.PRESENTATION_REQUIRED if required else cad.PRESENTATION_OPTIONAL


def findings_summary(result: ResultSet) -> CodedConcept:
    """The CID 6047 value: did every view get processed, and was anything found."""
    found = any(_marks(result, view) for view in result.scored_views)
    if not result.scored_views:
        return cad.NONE_SUCCEEDED
    if result.all_views_used:
        return cad.ALL_SUCCEEDED_WITH_FINDINGS if found else cad.ALL_SUCCEEDED_WITHOUT_FINDINGS
    return (cad.NOT_ALL_SUCCEEDED_WITH_FINDINGS if found
            else cad.NOT_ALL_SUCCEEDED_WITHOUT_FINDINGS)


# -- content tree ---------------------------------------------------------------------


def _marks(result: ResultSet, view: ViewPrediction) -> list[RoiMark]:
    return roi_marks(view, result.prediction.marks)


def _algorithm(result: ResultSet, parameters: bool = False) -> list[TextContentItem]:
    """TID 4019 as HAS PROPERTIES rows: bundle name and version = bundle digest; with
    ``parameters``, what conditioned the run (model version, history fields, views used).

    The parameters go once into each algorithm summary, not into every finding, so a
    renderer lists them once.
    """
    lines = [] if not parameters else [
        f"bundle_version={result.bundle.version}", *result.bundle.parameter_lines(),
        f"mark_threshold={result.prediction.marks.threshold}",
        f"operating_point={result.prediction.operating.statement()}",
        f"max_marks_per_image={result.prediction.marks.max_per_image}",
        f"history={result.history.statement()}", f"views={result.views_statement()}",
        *(f"input={line}" for line in result.input_statements())]
    return [TextContentItem(cad.ALGORITHM_NAME, result.bundle.name[:1024], HAS_PROPERTIES),
            TextContentItem(cad.ALGORITHM_VERSION, result.bundle.digest, HAS_PROPERTIES),
            *(TextContentItem(cad.ALGORITHM_PARAMETERS, line[:1024], HAS_PROPERTIES)
              for line in lines)]


def _with(item: ItemT, children: Iterable[ContentItem | None]) -> ItemT:
    """``item`` with ``children`` (None entries skipped) as its Content Sequence."""
    present = [child for child in children if child is not None]
    if present:  # an empty Content Sequence is an error; a leaf has none
        item.ContentSequence = ContentSequence(present)
    return item


def _percent(concept: CodedConcept, fraction: float) -> NumContentItem:
    return NumContentItem(concept, round(100 * float(fraction), 4), cad.PERCENT,
                          relationship_type=HAS_PROPERTIES)


def _findings_summary(result: ResultSet) -> CodeContentItem:
    """TID 4001: the summary code, inferred from one impression per breast with marks."""
    algorithm = _algorithm(result)
    impressions = []
    for side, probability in sorted(result.prediction.breasts.items()):
        views = [view for view in result.scored_views if view.laterality == side]
        marks = [(view, mark) for view in views for mark in _marks(result, view)]
        if marks:
            impressions.append(_impression(result, probability, views, marks, algorithm))
    summary = CodeContentItem(cad.FINDINGS_SUMMARY, findings_summary(result), CONTAINS)
    return _with(summary, impressions)


def _impression(result: ResultSet, probability: float, views: list[ViewPrediction],
                marks: list[tuple[ViewPrediction, RoiMark]],
                algorithm: list[TextContentItem]) -> ContainerContentItem:
    """TID 4003 for one breast. Two marks or more make up a Composite Feature (TID 4004,
    body TID 4005) with the breast's probability of cancer; a single mark is the
    impression's finding itself and carries that probability (TID 4006 row 7), since a
    composite is inferred from at least two findings."""
    intent = rendering_intent(probability >= result.prediction.operating.breast.threshold)
    impression = ContainerContentItem(cad.INDIVIDUAL_IMPRESSION, relationship_type=INFERRED_FROM)
    if len(marks) == 1:
        ((view, mark),) = marks
        finding = _single_image_finding(result, view, mark, algorithm, CONTAINS,
                                        probability=probability)
        return _with(impression, [CodeContentItem(cad.RENDERING_INTENT, intent,
                                                  HAS_CONCEPT_MOD), finding])
    marked_views = {view.sop_instance_uid for view, _ in marks}
    if len(views) == 1:
        scope = cad.ON_THE_ONLY_IMAGE
    else:
        scope = cad.ON_MULTIPLE_IMAGES if len(marked_views) > 1 else cad.ON_ONE_OF_THE_IMAGES
    feature = _with(CodeContentItem(cad.COMPOSITE_FEATURE, cad.BREAST_REGION, CONTAINS), [
        CodeContentItem(cad.RENDERING_INTENT, intent, HAS_CONCEPT_MOD),
        CodeContentItem(cad.COMPOSITE_TYPE, cad.RELATED_SPATIALLY, HAS_PROPERTIES),
        CodeContentItem(cad.SCOPE_OF_FEATURE, scope, HAS_PROPERTIES),
        *algorithm,
        _percent(cad.PROBABILITY_OF_CANCER, probability),
        *(_single_image_finding(result, view, mark, algorithm, INFERRED_FROM)
          for view, mark in marks),
    ])
    return _with(impression, [CodeContentItem(cad.RENDERING_INTENT, intent, HAS_CONCEPT_MOD),
                              feature])


def _single_image_finding(result: ResultSet, view: ViewPrediction, mark: RoiMark,
                          algorithm: list[TextContentItem],
                          relationship: RelationshipTypeValues,
                          probability: float | None = None) -> CodeContentItem:
    """TID 4006 for one mark, its coordinates (TID 4021) selected from its library entry."""
    source = result.header_of(view)
    x0, y0, x1, y1 = mark.box
    center = ScoordContentItem(cad.CENTER, GraphicTypeValues.POINT,
                               np.array([[(x0 + x1) / 2, (y0 + y1) / 2]]),
                               relationship_type=HAS_PROPERTIES)
    outline = ScoordContentItem(cad.OUTLINE, GraphicTypeValues.POLYLINE, box_polyline(mark.box),
                                relationship_type=HAS_PROPERTIES)
    return _with(CodeContentItem(cad.SINGLE_IMAGE_FINDING, cad.DENSITY, relationship), [
        CodeContentItem(cad.RENDERING_INTENT, rendering_intent(mark.required), HAS_CONCEPT_MOD),
        *algorithm,
        _percent(cad.CERTAINTY_OF_FINDING, mark.score),
        None if probability is None else _percent(cad.PROBABILITY_OF_CANCER, probability),
        _with(center, [library_image(source, SELECTED_FROM)]),
        _with(outline, [library_image(source, SELECTED_FROM)]),
    ])


def _performed(result: ResultSet) -> list[CodeContentItem]:
    """Summary of Detections and Summary of Analyses with what succeeded and failed
    (TID 4015-4018); nothing below them when nothing was attempted."""
    scored = [result.header_of(v) for v in result.scored_views]
    failed = [result.header_of(v) for v in result.failed_views]
    if not result.prediction.views:
        status = cad.NOT_ATTEMPTED
    else:
        status = cad.SUCCEEDED if not failed else \
            cad.PARTIALLY_SUCCEEDED if scored else cad.FAILED
    algorithm = _algorithm(result, parameters=True)
    summaries = []
    for name, performed, success, failure, what in (
            (cad.SUMMARY_OF_DETECTIONS, cad.DETECTION_PERFORMED, cad.SUCCESSFUL_DETECTIONS,
             cad.FAILED_DETECTIONS, cad.DENSITY),
            (cad.SUMMARY_OF_ANALYSES, cad.ANALYSIS_PERFORMED, cad.SUCCESSFUL_ANALYSES,
             cad.FAILED_ANALYSES, cad.IMPRESSION_ANALYSIS)):
        groups = []
        for container, images in ((success, scored), (failure, failed)):
            if images:
                item = _with(CodeContentItem(performed, what, CONTAINS),
                             [*algorithm, *(library_image(ds, HAS_PROPERTIES) for ds in images)])
                groups.append(_with(ContainerContentItem(container,
                                                         relationship_type=INFERRED_FROM),
                                    [item]))
        summaries.append(_with(CodeContentItem(name, status, CONTAINS), groups))
    return summaries
