"""The patient of an HL7 result (PID): the order's, as the RIS sent it, else the images'.

With an order, PID is the order's own PID segment, echoed with every field as the RIS
sent it (in the standard delimiters). Without one, or for an order stored before the
node kept its PID, PID is made from the DICOM header of the study's images: Patient ID
with its issuer and identifier type code (PID-3), Patient's Name (PID-5), Birth Date
(PID-7) and Sex (PID-8). A required field the header leaves empty is sent as the HL7
null ``""``.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.valuerep import PersonName
from sqlalchemy import select
from sqlalchemy.orm import Session

from mmbcd_node.db.models import Instance, Study
from mmbcd_node.db.order_models import Order
from mmbcd_node.db.result_models import OutputObject, Result
from mmbcd_node.logs import get_logger
from mmbcd_node.orders.text import escape

log = get_logger(__name__)

HL7_NULL = '""'
_HEADER_TAGS = ["SpecificCharacterSet", "PatientID", "IssuerOfPatientID",
                "IssuerOfPatientIDQualifiersSequence", "PatientName", "PatientBirthDate",
                "PatientSex"]
# Administrative sex (HL7 table 0001) for the DICOM Patient's Sex values.
_SEX = {"M": "M", "F": "F", "O": "O"}


def patient_identification(session: Session, storage_root: Path, study: Study,
                           order: Order | None) -> str:
    """The PID segment (ER7) of an HL7 result about ``study``."""
    if order is not None and order.patient_identification:
        return order.patient_identification
    return pid_from_header(study_header(session, storage_root, study) or Dataset(), study)


def study_header(session: Session, storage_root: Path, study: Study) -> Dataset | None:
    """The patient attributes of the study's first readable image (else result object)."""
    paths = list(session.execute(
        select(Instance.path).where(Instance.study_id == study.id, Instance.purged_at.is_(None))
        .order_by(Instance.id).limit(5)).scalars())
    paths += session.execute(
        select(OutputObject.path).join(Result, OutputObject.result_id == Result.id)
        .where(Result.study_id == study.id).order_by(OutputObject.id).limit(5)).scalars().all()
    for path in paths:
        try:
            return pydicom.dcmread(storage_root / path, stop_before_pixels=True,
                                   specific_tags=_HEADER_TAGS)
        except (OSError, InvalidDicomError) as exc:
            log.warning("patient_header_unreadable", study_uid=study.study_uid, path=path,
                        error=str(exc))
    return None


def pid_from_header(ds: Dataset, study: Study) -> str:
    """A PID segment from a DICOM header (``study``'s identifiers where it has none)."""
    qualifiers = (ds.IssuerOfPatientIDQualifiersSequence[0]
                  if ds.get("IssuerOfPatientIDQualifiersSequence") else Dataset())
    authority = _components("&", _text(ds, "IssuerOfPatientID") or study.issuer_of_patient_id,
                            _text(qualifiers, "UniversalEntityID"),
                            _text(qualifiers, "UniversalEntityIDType"))
    patient_id = _text(ds, "PatientID") or study.patient_id
    # CX: ID number, check digit, check digit scheme, assigning authority, type code.
    identifier = "^".join([escape(patient_id or ""), "", "", authority,
                           escape(_text(qualifiers, "IdentifierTypeCode"))]).rstrip("^")
    name = PersonName(_text(ds, "PatientName"))
    # XPN: family, given, second names, suffix, prefix (PN has prefix before suffix).
    xpn = _components("^", name.family_name, name.given_name, name.middle_name,
                      name.name_suffix, name.name_prefix)
    birth = _text(ds, "PatientBirthDate")
    fields = ["PID", "1", "", identifier if patient_id else HL7_NULL, "", xpn or HL7_NULL, "",
              birth if len(birth) == 8 and birth.isdigit() else "",
              _SEX.get(_text(ds, "PatientSex").upper(), "")]
    return "|".join(fields).rstrip("|")


def _components(separator: str, *values: str | None) -> str:
    return separator.join(escape(v or "") for v in values).rstrip(separator)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return str(value).strip() if value not in (None, "") else ""
