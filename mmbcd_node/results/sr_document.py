"""What every SR document we build shares: the device observer and the document
attributes, so the TID 1500 SR and the Mammography CAD SR cannot drift apart."""

from __future__ import annotations

from typing import Any

from highdicom.sr import DeviceObserverIdentifyingAttributes, ObservationContext, ObserverContext

import mmbcd_node
from mmbcd_node.output_kinds import OutputKind
from mmbcd_node.results import codes
from mmbcd_node.results.request import referenced_requests
from mmbcd_node.results.result_set import ResultSet


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
