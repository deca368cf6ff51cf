"""What every SR document we build shares: the device observer, the document attributes
and the order it answers (Referenced Request Sequence), so the TID 1500 SR and the
Mammography CAD SR cannot drift apart."""

from __future__ import annotations

from typing import Any

from highdicom.sr import DeviceObserverIdentifyingAttributes, ObservationContext, ObserverContext
from pydicom import Dataset

import mmbcd_node
from mmbcd_node.output_kinds import OutputKind
from mmbcd_node.results import codes
from mmbcd_node.results.result_set import ResultSet
from mmbcd_node.results.value_fit import fit


def device_observer(uid: str, name: str) -> ObserverContext:
    """This node as the observer device (TID 1004): its UID, name, manufacturer, model."""
    return ObserverContext(
        observer_type=codes.DEVICE_OBSERVER,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=uid, name=name, manufacturer_name=mmbcd_node.MANUFACTURER,
            model_name=mmbcd_node.MODEL_NAME))


def observation_context(result: ResultSet) -> ObservationContext:
    """TID 1001 with the node as the only observer."""
    return ObservationContext(observer_device_context=device_observer(
        result.device_uid, result.device_serial_number))


def document_arguments(result: ResultSet, kind: OutputKind,
                       predecessor_classes: frozenset[str]) -> dict[str, Any]:
    """highdicom SR constructor arguments besides ``content``: evidence, numbering, order,
    completeness (``PARTIAL`` when a view was not used) and predecessors of this class."""
    return {
        "evidence": result.evidence,
        "series_instance_uid": result.new_uid(kind.value, "series"),
        "series_number": result.series_number(kind),
        "sop_instance_uid": result.new_uid(kind.value, "instance"),
        "instance_number": 1,
        "manufacturer": mmbcd_node.MANUFACTURER,
        "is_complete": result.all_views_used,
        "requested_procedures": referenced_requests(result),
        "previous_versions": result.predecessor_datasets(predecessor_classes),
        "series_description": result.series_description(kind),
    }


def referenced_requests(result: ResultSet) -> list[Dataset] | None:
    """Referenced Request Sequence items (PS3.3 C.17.2) for the order, or None without one.

    The sequence is required only when the object fulfils a requested procedure, so a
    study run without an order carries none rather than an empty, misleading item. Order
    values longer than their VR are cut with a marker (``value_fit``).
    """
    order = result.order
    if order is None:
        return None
    item = Dataset()
    item.StudyInstanceUID = result.prediction.study_uid
    item.AccessionNumber = fit(order.accession_number, "SH")
    item.ReferencedStudySequence = []
    if order.accession_issuer:
        issuer = Dataset()
        issuer.LocalNamespaceEntityID = order.accession_issuer
        item.IssuerOfAccessionNumberSequence = [issuer]
    # The identifier sequences are left out, not sent empty: validators read an empty
    # one as a sequence missing its item.
    item.PlacerOrderNumberImagingServiceRequest = fit(order.placer_order_number, "LO")
    item.FillerOrderNumberImagingServiceRequest = fit(order.filler_order_number, "LO")
    item.RequestedProcedureID = fit(order.requested_procedure_id, "SH")
    item.RequestedProcedureDescription = fit(order.requested_procedure_description, "LO")
    item.RequestedProcedureCodeSequence = _procedure_code(order.requested_procedure_code)
    if order.reason_for_requested_procedure:
        # The whole reason goes into the TID 1500 report when this cuts it.
        item.ReasonForTheRequestedProcedure = fit(order.reason_for_requested_procedure, "LO")
    return [item]


def _procedure_code(code: tuple[str, str, str] | None) -> list[Dataset]:
    """The order's coded procedure as a Code Sequence item (PS3.3 8.8); none without one.

    A code value over SH's 16 characters goes into Long Code Value (UC) instead.
    """
    if code is None:
        return []
    value, scheme, meaning = code
    item = Dataset()
    if len(value) > 16:
        item.LongCodeValue = value
    else:
        item.CodeValue = value
    item.CodingSchemeDesignator = fit(scheme, "SH")
    item.CodeMeaning = fit(meaning, "LO")
    return [item]
