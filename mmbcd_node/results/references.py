"""References to objects the node sent earlier: what predecessors and rejection notes name."""

from __future__ import annotations

from dataclasses import dataclass

import pydicom
from pydicom import Dataset

from mmbcd_node.results.errors import ResultError

# Patient and study attributes every object copies from its study (Type 2 in PS3.3).
TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                       "AccessionNumber", "StudyID", "StudyDate", "StudyTime",
                       "ReferringPhysicianName")



@dataclass(frozen=True)
class ObjectReference:
    """A DICOM object we sent earlier: what a predecessor or a rejection note points to."""

    study_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    sop_instance_uid: str

    @classmethod
    def from_dataset(cls, ds: pydicom.Dataset) -> ObjectReference:
        """The reference to ``ds``; ``ResultError`` if one of the four UIDs is missing."""
        try:
            return cls(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                       str(ds.SOPClassUID), str(ds.SOPInstanceUID))
        except AttributeError as exc:
            raise ResultError(f"cannot reference a dataset without {exc.name}") from None

    @property
    def is_image(self) -> bool:
        # Secondary Capture image storage classes; our SR and GSPS objects are not images.
        return self.sop_class_uid.startswith("1.2.840.10008.5.1.4.1.1.7")



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
