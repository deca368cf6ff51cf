"""The TID 1500 Measurement Report: the model's result as a Comprehensive (3D) SR.

Content (PS3.16 TID 1500, built with highdicom's templates):

- observer context: this node as the device observer (TID 1004);
- image library (TID 1600): every source view;
- a study-level group (TID 1501): Probability of cancer (DCM 111047) with the algorithm
  identification (TID 4019: bundle name, version = bundle digest, parameters), and the
  provenance: which history went in (by source field) or none, and how many views;
- one group per breast with that breast's probability, finding site breast + laterality;
- one planar-ROI group (TID 1410) per ROI: the box as a closed 5-point polyline on its
  source image, finding site, ROI detector score and attention weight.

The order goes into Referenced Request Sequence; a re-run names the SR it replaces in
Predecessor Documents Sequence.
"""

from __future__ import annotations

from highdicom.sr import (
    AlgorithmIdentification,
    Comprehensive3DSR,
    ComprehensiveSR,
    FindingSite,
    GraphicTypeValues,
    ImageRegion,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    PlanarROIMeasurementsAndQualitativeEvaluations,
    RelationshipTypeValues,
    SourceImageForRegion,
    TextContentItem,
    TrackingIdentifier,
)
from pydicom import Dataset

import mmbcd_node
from ml.types import RoiPrediction, ViewPrediction
from mmbcd_node.results import codes
from mmbcd_node.results.image_library import image_library
from mmbcd_node.results.result_set import OutputKind, ResultError, ResultSet
from mmbcd_node.results.roi_marks import box_polyline
from mmbcd_node.results.sr_document import document_arguments, observation_context
from mmbcd_node.results.value_fit import was_cut

SR_CLASSES = {"comprehensive": ComprehensiveSR, "comprehensive3d": Comprehensive3DSR}
# A re-run may switch SR class; the earlier report of either class is its predecessor.
TID_1500_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.88.33",
                                  "1.2.840.10008.5.1.4.1.1.88.34"})


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
    groups: list = [_study_group(result, algorithm)]
    groups += [_breast_group(result, side, p, algorithm)
               for side, p in sorted(result.prediction.breasts.items())]
    for view in result.scored_views:
        groups += [_roi_group(result, view, n, roi, algorithm)
                   for n, roi in enumerate(view.rois, start=1)]
    report = MeasurementReport(
        observation_context=observation_context(result),
        procedure_reported=codes.MAMMOGRAPHY,
        imaging_measurements=groups,
    )
    # TID 1500 row order: language, observer context, procedure reported, then the
    # image library (ours, from the normalised images), then the measurements.
    root = report[0].ContentSequence
    first_group = next(i for i, item in enumerate(root)
                       if item.ValueType == "CONTAINER")
    root.insert(first_group, image_library(result.views))
    _separate(report[0])
    sr = document_class(content=report, **document_arguments(
        result, OutputKind.STRUCTURED_REPORT, TID_1500_SOP_CLASSES))
    result.stamp_identity(sr, private_codes=True)
    return sr


def _separate(item: Dataset) -> None:
    """Every container SEPARATE: each item is a statement of its own, so a renderer
    names every value instead of running them together as one sentence."""
    if item.get("ValueType") == "CONTAINER":
        item.ContinuityOfContent = "SEPARATE"
    for child in item.get("ContentSequence", []):
        _separate(child)


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


def _probability(value: float, laterality: str | None = None) -> Measurement:
    return Measurement(name=codes.PROBABILITY_OF_CANCER, value=round(float(value), 6),
                       unit=codes.NO_UNITS,
                       finding_sites=None if laterality is None else [finding_site(laterality)])


def _study_group(result: ResultSet,
                 algorithm: AlgorithmIdentification) -> MeasurementsAndQualitativeEvaluations:
    assert result.prediction.probability is not None  # checked by the caller
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=result.new_uid("sr", "study-group"),
                                               identifier="Study"),
        algorithm_id=algorithm,
        finding_sites=[finding_site(None)],
        measurements=[_probability(result.prediction.probability)],
    )
    # Provenance is stated in the report itself, so it travels with the result.
    contains = RelationshipTypeValues.CONTAINS
    items = group[0].ContentSequence
    items.append(TextContentItem(codes.HISTORY_SOURCE, result.history.statement(), contains))
    if result.history.available:
        items.append(TextContentItem(codes.HISTORY_TEXT, result.history.text, contains))
    reason = result.order.reason_for_requested_procedure if result.order else ""
    if was_cut(reason, "LO"):  # Referenced Request Sequence holds it cut
        items.append(TextContentItem(codes.INDICATIONS, reason, contains))
    items.append(TextContentItem(codes.VIEWS_USED, result.views_statement(), contains))
    for view in result.failed_views:
        label = f"{view.laterality or '?'} {view.view or '?'} {view.sop_instance_uid}: " \
                f"{view.error or 'not scored'}"
        items.append(TextContentItem(codes.VIEW_NOT_SCORED, label, contains))
    for line in result.input_statements():
        items.append(TextContentItem(codes.IMAGE_NOT_ANALYSED, line, contains))
    return group



def _breast_group(result: ResultSet, side: str, probability: float,
                  algorithm: AlgorithmIdentification) -> MeasurementsAndQualitativeEvaluations:
    name = {"R": "Right breast", "L": "Left breast"}.get(side, f"Breast {side}")
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=result.new_uid("sr", "breast", side),
                                               identifier=name),
        algorithm_id=algorithm,
        finding_sites=[finding_site(side)],
        measurements=[_probability(probability, side)],
    )


def _roi_group(result: ResultSet, view: ViewPrediction, number: int, roi: RoiPrediction,
               algorithm: AlgorithmIdentification,
               ) -> PlanarROIMeasurementsAndQualitativeEvaluations:
    source = result.header_of(view)
    label = f"ROI {number} {view.laterality or ''} {view.view or ''}".replace("  ", " ").strip()
    group = PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=result.new_uid("sr", "roi", view.sop_instance_uid, str(number)),
            identifier=label),
        referenced_region=ImageRegion(
            graphic_type=GraphicTypeValues.POLYLINE,
            graphic_data=box_polyline(roi.box),
            source_image=SourceImageForRegion(str(source.SOPClassUID),
                                              str(source.SOPInstanceUID))),
        finding_type=codes.SELECTED_REGION,
        algorithm_id=algorithm,
        finding_sites=[finding_site(view.laterality)],
        measurements=[
            Measurement(name=codes.ROI_DETECTOR_SCORE, value=round(roi.detector_score, 6),
                        unit=codes.NO_UNITS),
            Measurement(name=codes.ATTENTION_WEIGHT, value=round(roi.attention, 6),
                        unit=codes.NO_UNITS),
        ],
    )
    if roi.whole_breast:
        group[0].ContentSequence.append(TextContentItem(
            codes.ROI_ORIGIN, "whole breast region (no ROI detected)",
            RelationshipTypeValues.CONTAINS))
    return group

