"""Writes a synthetic view as a Digital Mammography X-Ray Image - For Presentation
(PS3.3 A.26) file: Patient, General Study, General/DX/Mammography Series, General
Equipment, General Image, Image Pixel, DX Anatomy Imaged, DX Image, DX Detector,
DX Positioning, Mammography Image, VOI LUT, Acquisition Context and SOP Common.
"""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import DigitalMammographyXRayImageStorageForPresentation, ExplicitVRLittleEndian

from ml.synth.study import RenderedView, StudyPlan

MANUFACTURER = "mmbcd-node synthetic phantom"
# SNOMED CT codes of CID 4014 (View for Mammography) and CID 4031 (breast).
_VIEW_CODES = {"CC": ("399162004", "cranio-caudal"), "MLO": ("399368009", "medio-lateral oblique")}
_BREAST = ("76752008", "Breast")
# Stored orientation (row direction, column direction) of each view as hung: right
# breasts with the chest wall on the right, lateral/superior at the top.
_ORIENTATION = {("R", "CC"): ["P", "L"], ("L", "CC"): ["A", "R"],
                ("R", "MLO"): ["P", "FL"], ("L", "MLO"): ["A", "FR"]}
_SERIES_NUMBER = {"R_CC": 1, "L_CC": 2, "R_MLO": 3, "L_MLO": 4}


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "SCT"
    item.CodeMeaning = meaning
    return item


def mammogram_dataset(plan: StudyPlan, rendered: RenderedView) -> Dataset:
    """The DICOM dataset (with file meta) of one rendered view of ``plan``."""
    key = f"{rendered.laterality}_{rendered.view}"
    laterality, view = rendered.laterality, rendered.view
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = DigitalMammographyXRayImageStorageForPresentation
    ds.SOPInstanceUID = plan.sop_uids[key]
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = plan.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = plan.study_time
    ds.AccessionNumber = plan.accession
    ds.Modality = "MG"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = MANUFACTURER
    ds.InstitutionName = "Synthetic Breast Centre"
    ds.ReferringPhysicianName = "REFERRER^SYNTHETIC"
    ds.StudyDescription = "MAMMOGRAPHY BILATERAL"
    ds.SeriesDescription = f"{laterality}{view}"
    ds.ManufacturerModelName = "mmbcd-synth"
    ds.PatientName = plan.patient_name
    ds.PatientID = plan.patient_id
    ds.IssuerOfPatientID = "SYNTH"
    ds.PatientBirthDate = plan.birth_date
    ds.PatientSex = "F"
    ds.PatientAge = f"{plan.age:03d}Y"
    ds.BodyPartExamined = "BREAST"
    ds.DeviceSerialNumber = "SYN0001"
    ds.SoftwareVersions = "1"
    ds.ViewPosition = view
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.DetectorType = "DIRECT"
    ds.ImagerPixelSpacing = [round(plan_spacing(plan), 6)] * 2
    ds.PixelSpacing = ds.ImagerPixelSpacing
    ds.StudyInstanceUID = plan.study_uid
    ds.SeriesInstanceUID = plan.series_uids[key]
    ds.StudyID = plan.requested_procedure_id[:16]
    ds.SeriesNumber = _SERIES_NUMBER[key]
    ds.InstanceNumber = 1
    ds.PatientOrientation = _ORIENTATION[(laterality, view)]
    ds.ImageLaterality = laterality
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    top = (1 << plan.bits_stored) - 1
    ds.WindowCenter = top // 2
    ds.WindowWidth = top + 1
    ds.PresentationLUTShape = "INVERSE" if plan.photometric == "MONOCHROME1" else "IDENTITY"
    ds.OrganExposed = "BREAST"
    ds.BreastImplantPresent = "NO"
    ds.AnatomicRegionSequence = Sequence([_code(*_BREAST)])
    view_item = _code(*_VIEW_CODES[view])
    view_item.ViewModifierCodeSequence = Sequence()
    ds.ViewCodeSequence = Sequence([view_item])
    ds.AcquisitionContextSequence = Sequence()
    request = Dataset()
    request.AccessionNumber = plan.accession
    request.RequestedProcedureID = plan.requested_procedure_id
    request.ScheduledProcedureStepID = plan.requested_procedure_id
    ds.RequestAttributesSequence = Sequence([request])
    ds.set_pixel_data(rendered.pixels, plan.photometric, plan.bits_stored,
                      generate_instance_uid=False)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def plan_spacing(plan: StudyPlan) -> float:
    """Pixel spacing (mm) of the study's images."""
    from ml.synth.anatomy import pixel_spacing_mm

    return pixel_spacing_mm(plan.rows)


def write_mammogram(path: Path, plan: StudyPlan, rendered: RenderedView) -> Path:
    """Write one view to ``path`` (parent folders created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mammogram_dataset(plan, rendered).save_as(path, enforce_file_format=True)
    return path
