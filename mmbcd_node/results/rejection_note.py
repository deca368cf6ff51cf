"""IHE IOCM rejection notes: withdrawing result objects the PACS already holds.

A rejection note is a Key Object Selection document (PS3.3 A.35.4, highdicom's
``KeyObjectSelectionDocument``) whose title, from CID 7011 "Rejected for Quality Reasons"
family, tells the PACS why the listed instances must no longer be shown. IHE IOCM
(Imaging Object Change Management) archives hide or delete the instances it lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from highdicom.ko import KeyObjectSelection, KeyObjectSelectionDocument
from highdicom.sr import CodedConcept
from pydicom import Dataset

import mmbcd_node
from mmbcd_node.output_kinds import OutputKind
from mmbcd_node.results.references import reference_dataset
from mmbcd_node.results.result_set import (
    NOT_FOR_DIAGNOSIS,
    ObjectReference,
    ResultError,
    device_uid,
    new_uid,
)
from mmbcd_node.results.sr_document import device_observer


class RejectionReason(Enum):
    """Why results are withdrawn, mapped to the CID 7011 document title sent.

    ``SUPERSEDED`` (results replaced by a re-run, e.g. after late images) uses
    113001 "Rejected for Quality Reasons": the old result is sound data about the wrong
    (incomplete) image set, which is what IOCM's quality rejection means; the archive
    hides it from clinical use but keeps it, whereas 113039 "Data Retention Policy
    Expired" asks for deletion and 113037 "Rejected for Patient Safety Reasons" raises
    alarms meant for objects that could harm.
    ``ORDER_CANCELLED`` uses 113038 "Incorrect Modality Worklist Entry": the results
    belong to an order the RIS withdrew, the IOCM case of objects attached to an order
    that should not have them.
    """

    SUPERSEDED = ("113001", "Rejected for Quality Reasons")
    ORDER_CANCELLED = ("113038", "Incorrect Modality Worklist Entry")

    @property
    def title(self) -> CodedConcept:
        value, meaning = self.value
        return CodedConcept(value, "DCM", meaning)


def build_rejection_note(study: Dataset, rejected: Sequence[ObjectReference], *,
                         uid_root: str, series_numbers: int,
                         reason: RejectionReason = RejectionReason.SUPERSEDED,
                         device_serial_number: str = "MMBCD",
                         uid_entropy: str | None = None, installation: str = "") -> Dataset:
    """A rejection note withdrawing ``rejected`` (our earlier SR, CAD SR, SC, GSPS).

    ``study`` is any dataset of the study (a source view or an earlier output): patient
    and study attributes come from it. The note goes into its own series, numbered
    ``series_numbers`` + the rejection offset, with UIDs under ``uid_root`` (stable for
    the same ``installation`` and ``uid_entropy``). Raises ``ResultError`` when nothing
    is rejected or an object belongs to another study.
    """
    if not rejected:
        raise ResultError("a rejection note needs at least one object to reject")
    study_uid = str(study.StudyInstanceUID)
    for reference in rejected:
        if reference.study_instance_uid != study_uid:
            raise ResultError(
                f"cannot reject SOP instance {reference.sop_instance_uid}: it belongs to "
                f"study {reference.study_instance_uid}, the note to study {study_uid}")
    evidence = [reference_dataset(reference, study) for reference in rejected]
    device = device_observer(device_uid(uid_root, device_serial_number, installation),
                             device_serial_number)
    kind = OutputKind.KO
    content = KeyObjectSelection(
        document_title=reason.title, referenced_objects=evidence,
        observer_device_context=device,
        description=f"{reason.value[1]}: AI results withdrawn by {mmbcd_node.MODEL_NAME}")
    note = KeyObjectSelectionDocument(
        evidence=evidence, content=content,
        series_instance_uid=new_uid(uid_root, uid_entropy, "rejection", "series",
                                    installation=installation),
        series_number=series_numbers + kind.offset,
        sop_instance_uid=new_uid(uid_root, uid_entropy, "rejection", "instance",
                                 installation=installation),
        instance_number=1,
        manufacturer=mmbcd_node.MANUFACTURER,
        series_description=f"{NOT_FOR_DIAGNOSIS} - {kind.label}"[:64],
        manufacturer_model_name=mmbcd_node.MODEL_NAME,
        software_versions=f"mmbcd-node {mmbcd_node.__version__}",
        device_serial_number=device_serial_number,
    )
    return note
