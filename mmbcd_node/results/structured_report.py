"""The TID 1500 Measurement Report: the model's result as a Comprehensive (3D) SR.

Content (PS3.16 TID 1500, built with highdicom's templates), in the order a viewer that
reads TID 1500 (OHIF, say) opens it:

- Language (TID 1204), the node as the device observer (TID 1004), procedure reported;
- image library (TID 1600): every analysed view;
- Imaging Measurements: measurement groups (TID 1501), ordered by suspicion: views by
  malignancy probability, each view's group followed by its marks' groups. A view's
  group ("R CC") holds its Probability of cancer over the breast region the model
  looked at; a mark's group ("R CC #1", one per ``roi_marks`` entry: the view's most
  suspicious ROIs, at most the bundle's ``max_per_image``) holds the ROI detector score
  and attention weight over its box. Every group carries a Finding, the finding site
  (breast and laterality), a Comment that names it, and its region as a closed polyline
  twice: at group level (TID 1501 row 10c, where viewers place a group) and under each
  value (TID 300 INFERRED FROM, where viewers that load measurements, OHIF and dcmjs,
  read it). No group lacks a region: that breaks viewers placing groups on images;
- Derived Imaging Measurements: the probability of cancer of each breast and of the
  study, each the maximum of those below it (TID 300 rows in this extensible container:
  TID 1420 fits only values derived from ROI measurement groups);
- Qualitative Evaluations: the provenance as text: which history went in (by source
  field) or none, the indications when the order's reason is longer than its VR, how many
  views were used, views not scored, images not analysed.

Every container is SEPARATE, so each item reads as a statement of its own. The order goes
into Referenced Request Sequence; a re-run names the SR it replaces in Predecessor
Documents Sequence.
"""

from __future__ import annotations

from collections.abc import Iterable

from highdicom.sr import (
    AlgorithmIdentification,
    CodeContentItem,
    CodedConcept,
    Comprehensive3DSR,
    ComprehensiveSR,
    ContainerContentItem,
    ContentItem,
    ContentSequence,
    CoordinatesForMeasurement,
    FindingSite,
    GraphicTypeValues,
    ImageContentItem,
    LanguageOfContentItemAndDescendants,
    Measurement,
    MeasurementsAndQualitativeEvaluations,
    RelationshipTypeValues,
    ScoordContentItem,
    SourceImageForRegion,
    TextContentItem,
    TrackingIdentifier,
)
from pydicom import Dataset
from pydicom.sr.codedict import codes as dicom_codes
from pydicom.uid import Comprehensive3DSRStorage, ComprehensiveSRStorage

import mmbcd_node
from ml.types import ViewPrediction
from mmbcd_node.output_kinds import SR_CLASS_UIDS, OutputKind
from mmbcd_node.results import codes
from mmbcd_node.results.image_library import image_library
from mmbcd_node.results.result_set import ResultError, ResultSet
from mmbcd_node.results.roi_marks import RoiMark, box_polyline, roi_marks, score_text
from mmbcd_node.results.sr_document import document_arguments, observation_context
from mmbcd_node.results.value_fit import was_cut

# ``sr_class`` names -> highdicom document class, through the SOP Class each name means.
_DOCUMENT_CLASSES = {str(ComprehensiveSRStorage): ComprehensiveSR,
                     str(Comprehensive3DSRStorage): Comprehensive3DSR}
SR_CLASSES = {name: _DOCUMENT_CLASSES[uid] for name, uid in SR_CLASS_UIDS.items()}
# A re-run may switch SR class; the earlier report of either class is its predecessor.
TID_1500_SOP_CLASSES = frozenset(SR_CLASS_UIDS.values())
CONTAINS = RelationshipTypeValues.CONTAINS
QUALITATIVE_EVALUATIONS = CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
# CID 7551: what a region is to its measurement.
SOURCE_OF_MEASUREMENT = CodedConcept("121112", "DCM", "Source of Measurement")
# A group's own region, named as TID 1410 names it: OHIF loads a group as a tracked
# measurement only when its group-level region is an "Image Region" polyline.
IMAGE_REGION = CodedConcept("111030", "DCM", "Image Region")
ENGLISH = CodedConcept("en-US", "RFC5646", "English (United States)")


def build_structured_report(result: ResultSet, sr_class: str = "comprehensive") -> Dataset:
    """The TID 1500 SR of ``result``, as a Comprehensive SR or Comprehensive 3D SR.

    ``sr_class`` is ``"comprehensive"`` or ``"comprehensive3d"`` (``results.sr_class``).
    Returns a highdicom SR dataset ready to be written (``.save_as``). Raises
    ``ResultError`` for an unknown SR class or a prediction with no scored view.
    """
    try:
        document_class = SR_CLASSES[sr_class]
    except KeyError:
        raise ResultError(f"results.sr_class must be one of {sorted(SR_CLASSES)}, "
                          f"not {sr_class!r}") from None
    if result.prediction.probability is None or not result.scored_views:
        raise ResultError(f"study {result.prediction.study_uid}: no view could be scored, "
                          "so there is no result to report")
    algorithm = algorithm_identification(result)
    groups = []
    for view in _by_suspicion(result.scored_views):
        groups.append(_view_group(result, view, algorithm))
        groups += [_mark_group(result, view, mark, algorithm)
                   for mark in roi_marks(view, result.prediction.marks)]
    root = ContainerContentItem(dicom_codes.DCM.ImagingMeasurementReport, template_id="1500")
    root.ContentSequence = ContentSequence([
        *LanguageOfContentItemAndDescendants(ENGLISH),
        *observation_context(result),
        CodeContentItem(dicom_codes.DCM.ProcedureReported, codes.MAMMOGRAPHY,
                        RelationshipTypeValues.HAS_CONCEPT_MOD),
        image_library(result.views),
        _container(dicom_codes.DCM.ImagingMeasurements,
                   [item for group in groups for item in group]),
        _container(dicom_codes.DCM.DerivedImagingMeasurements,
                   [item for m in _probabilities(result, algorithm) for item in m]),
        _container(QUALITATIVE_EVALUATIONS, _provenance(result)),
    ])
    _separate(root)
    sr = document_class(content=root, **document_arguments(
        result, OutputKind.SR, TID_1500_SOP_CLASSES))
    result.stamp_identity(sr, private_codes=True)
    return sr


def algorithm_identification(result: ResultSet) -> AlgorithmIdentification:
    """TID 4019: bundle name, version = bundle digest (what identifies the weights)."""
    return AlgorithmIdentification(
        name=result.bundle.name,
        version=result.bundle.digest,
        parameters=[f"bundle_version={result.bundle.version}",
                    *result.bundle.parameter_lines()],
        manufacturer=mmbcd_node.MANUFACTURER,
    )


def finding_site(laterality: str | None) -> FindingSite:
    """Breast, with the laterality when the view states one."""
    return FindingSite(anatomic_location=codes.BREAST,
                       laterality=codes.LATERALITY.get(laterality or ""))


def _container(name: object, items: Iterable[ContentItem]) -> ContainerContentItem:
    container = ContainerContentItem(name, relationship_type=CONTAINS)  # type: ignore[arg-type]
    container.ContentSequence = ContentSequence(list(items))
    return container


def _separate(item: Dataset) -> None:
    """Every container SEPARATE: each item is a statement of its own, so a renderer
    names every value instead of running them together as one sentence."""
    if item.get("ValueType") == "CONTAINER":
        item.ContinuityOfContent = "SEPARATE"
    for child in item.get("ContentSequence", []):
        _separate(child)


def _by_suspicion(views: list[ViewPrediction]) -> list[ViewPrediction]:
    """Views by malignancy probability, highest first; ties keep the study's order."""
    return sorted(views, key=lambda view: -(view.probability or 0.0))


def _view_label(view: ViewPrediction) -> str:
    return f"{view.laterality or '?'} {view.view or '?'}"


def _group(result: ResultSet, view: ViewPrediction, *, key: str, label: str, comment: str,
           finding: CodedConcept, box: tuple[float, float, float, float],
           values: list[tuple[CodedConcept, float]], algorithm: AlgorithmIdentification,
           ) -> MeasurementsAndQualitativeEvaluations:
    """One TID 1501 group over ``box`` on ``view``'s image: ``values`` each inferred from
    the box, the box itself at group level, a Comment."""
    source = result.header_of(view)
    image = SourceImageForRegion(str(source.SOPClassUID), str(source.SOPInstanceUID))
    outline = box_polyline(box)
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=result.new_uid("sr", key, view.sop_instance_uid), identifier=label),
        finding_type=finding,
        algorithm_id=algorithm,
        finding_sites=[finding_site(view.laterality)],
        measurements=[Measurement(
            name=name, value=round(float(number), 6), unit=codes.NO_UNITS,
            referenced_coordinates=[CoordinatesForMeasurement(
                GraphicTypeValues.POLYLINE, outline, image, purpose=SOURCE_OF_MEASUREMENT)])
            for name, number in values],
    )
    region = ScoordContentItem(IMAGE_REGION, GraphicTypeValues.POLYLINE, outline,
                               relationship_type=CONTAINS)
    region.ContentSequence = ContentSequence([ImageContentItem(
        codes.SOURCE_IMAGE, str(source.SOPClassUID), str(source.SOPInstanceUID),
        relationship_type=RelationshipTypeValues.SELECTED_FROM)])
    group[0].ContentSequence += [region,
                                 TextContentItem(dicom_codes.DCM.Comment, comment, CONTAINS)]
    return group


def _view_group(result: ResultSet, view: ViewPrediction,
                algorithm: AlgorithmIdentification) -> MeasurementsAndQualitativeEvaluations:
    """The view's probability of cancer over the breast region (the image when unknown)."""
    source = result.header_of(view)
    box = view.breast_region or (0.0, 0.0, float(source.Columns), float(source.Rows))
    probability = float(view.probability or 0.0)
    label = _view_label(view)
    return _group(result, view, key="view", label=label,
                  comment=f"{label}: probability of cancer {score_text(probability)}",
                  finding=codes.BREAST, box=box,
                  values=[(codes.PROBABILITY_OF_CANCER, probability)], algorithm=algorithm)


def _mark_group(result: ResultSet, view: ViewPrediction, mark: RoiMark,
                algorithm: AlgorithmIdentification) -> MeasurementsAndQualitativeEvaluations:
    label = f"{_view_label(view)} #{mark.rank}"
    below = "" if mark.required else ", below the operating point for marks"
    return _group(result, view, key=f"roi-{mark.rank}", label=label,
                  comment=f"{label}: score {score_text(mark.score)}, attention "
                          f"{score_text(mark.roi.attention)}{below}",
                  finding=codes.SELECTED_REGION, box=mark.box,
                  values=[(codes.ROI_DETECTOR_SCORE, mark.score),
                          (codes.ATTENTION_WEIGHT, mark.roi.attention)],
                  algorithm=algorithm)


def _probabilities(result: ResultSet, algorithm: AlgorithmIdentification) -> list[Measurement]:
    """TID 300 measurements of the probability of cancer of each breast and of the study,
    each the maximum of those below it."""
    found = []
    maximum = dicom_codes.SCT.Maximum
    for side, probability in sorted(result.prediction.breasts.items(), key=lambda b: -b[1]):
        found.append(Measurement(name=codes.PROBABILITY_OF_CANCER,
                                 value=round(float(probability), 6), unit=codes.NO_UNITS,
                                 derivation=maximum, algorithm_id=algorithm,
                                 finding_sites=[finding_site(side)]))
    assert result.prediction.probability is not None  # checked by the caller
    found.append(Measurement(name=codes.PROBABILITY_OF_CANCER,
                             value=round(float(result.prediction.probability), 6),
                             unit=codes.NO_UNITS, derivation=maximum, algorithm_id=algorithm,
                             finding_sites=[finding_site(None)]))
    return found


def _provenance(result: ResultSet) -> list[TextContentItem]:
    """Which history went in, the whole indications when cut in the header, the views used,
    whether the probabilities are calibrated and where the flags are set, views not scored
    and images not analysed: stated in the report itself, so it travels
    with the result."""
    items = [TextContentItem(codes.HISTORY_SOURCE, result.history.statement(), CONTAINS)]
    if result.history.available:
        items.append(TextContentItem(codes.HISTORY_TEXT, result.history.text, CONTAINS))
    reason = result.order.reason_for_requested_procedure if result.order else ""
    if was_cut(reason, "LO"):  # Referenced Request Sequence holds it cut
        items.append(TextContentItem(codes.INDICATIONS, reason, CONTAINS))
    items.append(TextContentItem(codes.VIEWS_USED, result.views_statement(), CONTAINS))
    items.append(TextContentItem(codes.OPERATING_POINT,
                                 result.prediction.operating.statement()[:1024], CONTAINS))
    for view in result.failed_views:
        label = f"{view.laterality or '?'} {view.view or '?'} {view.sop_instance_uid}: " \
                f"{view.error or 'not scored'}"
        items.append(TextContentItem(codes.VIEW_NOT_SCORED, label, CONTAINS))
    items += [TextContentItem(codes.IMAGE_NOT_ANALYSED, line, CONTAINS)
              for line in result.input_statements()]
    return items
