"""DICOM audit messages (PS3.15 Annex A.5) built from rows of the audit trail.

The audit trail in SQL is the record; these XML messages are its copy for a hospital's
audit repository (IHE ATNA). ``messages_for`` turns a batch of audit events into
messages: Application Activity (start/stop), DICOM Instances Transferred (received
images, grouped per peer and study within a batch; results sent), Order Record, Security
Alert (rejected associations, TLS failures) and DICOM Study Deleted (retention).
Events of other kinds have no audit message and are skipped.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from mmbcd_node.db.models import AuditEvent
from mmbcd_node.db.utc import as_utc


class Code(NamedTuple):
    """A coded value as the audit schema writes it (csd-code, codeSystemName, originalText)."""

    value: str
    scheme: str
    meaning: str


APPLICATION_ACTIVITY = Code("110100", "DCM", "Application Activity")
APPLICATION_START = Code("110120", "DCM", "Application Start")
APPLICATION_STOP = Code("110121", "DCM", "Application Stop")
INSTANCES_TRANSFERRED = Code("110104", "DCM", "DICOM Instances Transferred")
ORDER_RECORD = Code("110109", "DCM", "Order Record")
SECURITY_ALERT = Code("110113", "DCM", "Security Alert")
NODE_AUTHENTICATION = Code("110126", "DCM", "Node Authentication")
STUDY_DELETED = Code("110105", "DCM", "DICOM Study Deleted")
APPLICATION_ROLE = Code("110150", "DCM", "Application")
DESTINATION_ROLE = Code("110152", "DCM", "Destination Role ID")
SOURCE_ROLE = Code("110153", "DCM", "Source Role ID")
PATIENT_NUMBER = Code("2", "RFC-3881", "Patient Number")
STUDY_INSTANCE_UID = Code("110180", "DCM", "Study Instance UID")
URI = Code("12", "RFC-3881", "URI")
# EventOutcomeIndicator: 0 success, 4 minor failure, 8 serious failure.
OUTCOMES = {"success": "0", "warning": "4", "partial": "4", "failure": "8"}


@dataclass(frozen=True)
class Participant:
    """An ActiveParticipant: a node, process or person taking part in the event."""

    user_id: str
    requestor: bool
    role: Code | None = None
    address: str | None = None
    alternative_id: str | None = None


@dataclass(frozen=True)
class AuditedObject:
    """A ParticipantObjectIdentification: the patient, study or resource concerned."""

    object_id: str
    type_code: str  # 1 person, 2 system object
    role: str  # 1 patient, 3 report, 13 security resource
    id_type: Code
    sop_classes: dict[str, int] = field(default_factory=dict)  # SOP Class UID -> instances
    accession: str | None = None
    lifecycle: str | None = None  # 14 = destruction (study deleted)
    name: str | None = None  # ParticipantObjectName; the identifier when None


@dataclass(frozen=True)
class NodeIdentity:
    """Who writes the messages: our AE title, host name and the audit source id."""

    ae_title: str
    host: str

    @property
    def source_id(self) -> str:
        return f"{self.ae_title}@{self.host}"

    def participant(self, requestor: bool, role: Code | None = None) -> Participant:
        return Participant(self.source_id, requestor, role, self.host,
                           f"AETITLES={self.ae_title}")


def build_message(event_id: Code, action: str, outcome: str, when: datetime, identity: NodeIdentity,
                  participants: Sequence[Participant], objects: Sequence[AuditedObject] = (),
                  event_type: Code | None = None) -> bytes:
    """One ``AuditMessage`` (PS3.15 A.5.1) as UTF-8 XML, valid against the standard's schema.

    ``action`` is the EventActionCode (C, R, U, D, E); ``outcome`` an audit outcome word
    (success, warning, partial, failure) mapped to the EventOutcomeIndicator.
    """
    root = ET.Element("AuditMessage")
    when = as_utc(when)
    event = ET.SubElement(root, "EventIdentification", {
        "EventActionCode": action, "EventDateTime": when.isoformat(timespec="milliseconds"),
        "EventOutcomeIndicator": OUTCOMES.get(outcome, "4")})
    _code(event, "EventID", event_id)
    if event_type is not None:
        _code(event, "EventTypeCode", event_type)
    for participant in participants:
        attributes = {"UserID": participant.user_id,
                      "UserIsRequestor": "true" if participant.requestor else "false"}
        if participant.alternative_id:
            attributes["AlternativeUserID"] = participant.alternative_id
        if participant.address:
            attributes["NetworkAccessPointID"] = participant.address
            attributes["NetworkAccessPointTypeCode"] = (
                "2" if participant.address.replace(".", "").isdigit() or ":" in participant.address
                else "1")
        element = ET.SubElement(root, "ActiveParticipant", attributes)
        if participant.role is not None:
            _code(element, "RoleIDCode", participant.role)
    source = ET.SubElement(root, "AuditSourceIdentification",
                           {"AuditSourceID": identity.source_id})
    ET.SubElement(source, "AuditSourceTypeCode", {"csd-code": "4"})  # application server
    for audited in objects:
        attributes = {"ParticipantObjectID": audited.object_id,
                      "ParticipantObjectTypeCode": audited.type_code,
                      "ParticipantObjectTypeCodeRole": audited.role}
        if audited.lifecycle:
            attributes["ParticipantObjectDataLifeCycle"] = audited.lifecycle
        element = ET.SubElement(root, "ParticipantObjectIdentification", attributes)
        _code(element, "ParticipantObjectIDTypeCode", audited.id_type)
        # The schema requires a name (or a query). The trail keeps no names, patients'
        # least of all, so an object without one is named by its identifier.
        ET.SubElement(element, "ParticipantObjectName").text = audited.name or audited.object_id
        if audited.accession or audited.sop_classes:
            # The DICOM extensions go inside ParticipantObjectDescription (CP-1361), in
            # the schema's order: Accession before SOPClass.
            description = ET.SubElement(element, "ParticipantObjectDescription")
            if audited.accession:
                ET.SubElement(description, "Accession", {"Number": audited.accession})
            for uid, count in audited.sop_classes.items():
                ET.SubElement(description, "SOPClass",
                              {"UID": uid, "NumberOfInstances": str(count)})
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _code(parent: ET.Element, tag: str, code: Code) -> None:
    ET.SubElement(parent, tag, {"csd-code": code.value, "codeSystemName": code.scheme,
                                "originalText": code.meaning})


def _detail(event: AuditEvent) -> dict[str, Any]:
    try:
        value = json.loads(event.detail or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _patient_and_study(event: AuditEvent, sop_classes: dict[str, int] | None = None,
                       lifecycle: str | None = None) -> list[AuditedObject]:
    objects = []
    if event.study_uid:
        objects.append(AuditedObject(event.study_uid, "2", "3", STUDY_INSTANCE_UID,
                                     sop_classes or {}, event.accession_number, lifecycle))
    if event.patient_id:
        objects.append(AuditedObject(event.patient_id, "1", "1", PATIENT_NUMBER))
    return objects


def _peer(event: AuditEvent, role: Code, requestor: bool) -> Participant:
    ae = event.calling_ae if requestor else (event.called_ae or event.calling_ae)
    return Participant(ae or event.peer_address or "unknown", requestor, role,
                       event.peer_address, f"AETITLES={ae}" if ae else None)


def group_key(event: AuditEvent) -> tuple[Any, ...]:
    """Received images with the same key go into one DICOM Instances Transferred message."""
    return (event.calling_ae, event.called_ae, event.peer_address, event.study_uid,
            event.patient_id, event.outcome)


def messages_for(events: Iterable[AuditEvent], identity: NodeIdentity) -> list[bytes]:
    """Audit messages for ``events`` (in id order); events without a message kind are skipped."""
    messages: list[bytes] = []
    received: dict[tuple[Any, ...], list[AuditEvent]] = {}
    for event in events:
        if event.action == "instance_stored":
            received.setdefault(group_key(event), []).append(event)
            continue
        message = _message_for(event, identity)
        if message is not None:
            messages.append(message)
    for group in received.values():
        messages.append(_instances_received(group, identity))
    return messages


def _instances_received(group: Sequence[AuditEvent], identity: NodeIdentity) -> bytes:
    first = group[0]
    classes: dict[str, int] = {}
    for event in group:
        uid = str(_detail(event).get("sop_class_uid") or "")
        if uid:
            classes[uid] = classes.get(uid, 0) + 1
    return build_message(INSTANCES_TRANSFERRED, "C", first.outcome, group[-1].occurred_at,
                         identity, [_peer(first, SOURCE_ROLE, True),
                                    identity.participant(False, DESTINATION_ROLE)],
                         _patient_and_study(first, classes))


def _message_for(event: AuditEvent, identity: NodeIdentity) -> bytes | None:
    action, detail = event.action, _detail(event)
    if action in ("application_start", "application_stop"):
        kind = APPLICATION_START if action == "application_start" else APPLICATION_STOP
        launcher = Participant(event.actor or "unknown", True, Code("110151", "DCM",
                                                                   "Application Launcher"))
        return build_message(APPLICATION_ACTIVITY, "E", event.outcome, event.occurred_at,
                             identity, [identity.participant(False, APPLICATION_ROLE), launcher],
                             event_type=kind)
    if action == "results_sent":
        destination = Participant(str(detail.get("destination") or event.called_ae or "unknown"),
                                  False, DESTINATION_ROLE, event.peer_address,
                                  f"AETITLES={event.called_ae}" if event.called_ae else None)
        return build_message(INSTANCES_TRANSFERRED, "R", event.outcome, event.occurred_at,
                             identity, [identity.participant(True, SOURCE_ROLE), destination],
                             _patient_and_study(event))
    if action.startswith("order_"):
        code = {"order_received": "U" if detail.get("new_order") is False else "C",
                "order_cancelled": "D"}.get(action, "U")
        return build_message(ORDER_RECORD, code, event.outcome, event.occurred_at, identity,
                             [identity.participant(False)], _patient_and_study(event))
    if action == "association_rejected" or "tls" in action:
        peer = _peer(event, SOURCE_ROLE, True)
        subject = f"dicom://{event.calling_ae or ''}@{event.peer_address or 'unknown'}"
        return build_message(SECURITY_ALERT, "E", "warning", event.occurred_at, identity,
                             [identity.participant(False), peer],
                             [AuditedObject(subject, "2", "13", URI)],
                             event_type=NODE_AUTHENTICATION)
    if action == "study_purged":
        deleter = Participant(event.actor or identity.source_id, True)
        return build_message(STUDY_DELETED, "D", event.outcome, event.occurred_at, identity,
                             [deleter, identity.participant(False)],
                             _patient_and_study(event, lifecycle="14"))
    return None
