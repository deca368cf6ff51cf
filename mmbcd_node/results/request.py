"""References our objects carry: the order they answer and the objects they point to."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydicom import Dataset

from mmbcd_node.results.value_fit import fit

# Patient and study attributes every object copies from its study (Type 2 in PS3.3).
TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                       "AccessionNumber", "StudyID", "StudyDate", "StudyTime",
                       "ReferringPhysicianName")

if TYPE_CHECKING:  # result_set imports this module
    from mmbcd_node.results.result_set import ObjectReference, ResultSet


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


def reference_dataset(reference: ObjectReference, study: Dataset | None = None) -> Dataset:
    """A minimal dataset standing for an object we sent earlier.

    highdicom takes earlier objects as datasets; this carries their four UIDs and, when
    ``study`` is given, its patient and study attributes (a rejection note inherits
    them from its first evidence item).
    """
    ds = Dataset()
    if study is not None:
        if "SpecificCharacterSet" in study:
            ds.SpecificCharacterSet = study.SpecificCharacterSet
        for keyword in TYPE2_PATIENT_STUDY:
            # Type 2: sent empty when the study does not know it.
            setattr(ds, keyword, study[keyword].value if keyword in study else "")
    ds.StudyInstanceUID = reference.study_instance_uid
    ds.SeriesInstanceUID = reference.series_instance_uid
    ds.SOPClassUID = reference.sop_class_uid
    ds.SOPInstanceUID = reference.sop_instance_uid
    if reference.is_image:
        # highdicom tells images from other objects by Rows/Columns (IMAGE vs COMPOSITE).
        ds.Rows = ds.Columns = 1
    return ds


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
