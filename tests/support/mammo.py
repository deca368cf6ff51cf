"""Synthetic mammograms for tests: valid MG headers, small pixel arrays, every transfer syntax.

``make_mammogram(...)`` builds a Digital Mammography X-Ray image (For Presentation by
default) with the headers a modality writes: patient/study/series/equipment modules,
Image Laterality, View Code Sequence, Presentation Intent Type, VOI window. Pixels are a
smooth, seeded pattern so the compressed syntaxes stay small and tests are repeatable.

``write_mammogram(path, ds, transfer_syntax=...)`` encodes it in any syntax the node
claims: implicit/explicit VR little endian and deflated (pydicom), RLE, JPEG-LS and
JPEG 2000 lossless/lossy (pydicom encoders), JPEG lossless SV1 (dcmtk ``dcmcjpeg``) and
HTJ2K lossless (OpenJPH ``ojph_compress``, encapsulated with pydicom).
"""

from __future__ import annotations

import copy
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalMammographyXRayImageStorageForProcessing,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

# Every transfer syntax the receiver claims, as written by ``write_mammogram``.
TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
    RLELossless, JPEGLSLossless, JPEG2000Lossless, JPEG2000, JPEGLosslessSV1, HTJ2KLossless,
)
LOSSY_SYNTAXES: frozenset[UID] = frozenset({JPEG2000})

# CID 4014 codes (SNOMED CT) for the standard views.
_VIEW_CODES = {
    "CC": ("399162004", "cranio-caudal"),
    "MLO": ("399368009", "medio-lateral oblique"),
    "ML": ("399260004", "medio-lateral"),
    "LM": ("399352003", "latero-medial"),
}
# Patient Orientation (row\column direction) as a modality writes it per laterality/view.
_ORIENTATION = {("L", "CC"): ["A", "R"], ("R", "CC"): ["P", "L"],
                ("L", "MLO"): ["A", "FR"], ("R", "MLO"): ["P", "FL"]}


def _code(value: str, meaning: str, scheme: str = "SCT") -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def mammo_pixels(rows: int, cols: int, bits_stored: int, seed: int) -> np.ndarray:
    """A smooth breast-like blob plus seeded texture, uint16 within ``bits_stored``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    blob = np.exp(-(((x / cols) ** 2) * 2.0 + (((y - rows / 2) / rows) ** 2) * 4.0))
    texture = rng.normal(0.0, 0.04, size=(rows // 8 + 1, cols // 8 + 1)).astype(np.float32)
    texture = np.kron(texture, np.ones((8, 8), np.float32))[:rows, :cols]
    top = (1 << bits_stored) - 1
    return np.clip((blob + texture) * 0.8 * top, 0, top).astype(np.uint16)


def make_mammogram(*, study_uid: str | None = None, patient_id: str = "P1",
                   accession: str = "A1", laterality: str = "L", view: str = "CC",
                   rows: int = 256, cols: int = 208, bits_stored: int = 12,
                   photometric: str = "MONOCHROME2",
                   sop_class: str = DigitalMammographyXRayImageStorageForPresentation,
                   seed: int = 0, **overrides: Any) -> Dataset:
    """A Digital Mammography image with valid headers and native (uncompressed) pixels.

    UIDs are fresh unless given (``study_uid`` or ``SOPInstanceUID=...``/
    ``SeriesInstanceUID=...`` in ``overrides``). ``overrides`` set any keyword
    afterwards; a value of ``None`` deletes the element (to make broken objects).
    ``file_meta`` is filled in, with Explicit VR Little Endian.
    """
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = UID(sop_class)
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "MG"
    ds.PatientName = "Test^Patient"
    ds.PatientID = patient_id
    ds.IssuerOfPatientID = "HOSP"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = "20261130"
    ds.StudyTime = "101500"
    ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = ds.StudyDate
    ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = ds.StudyTime
    ds.AccessionNumber = accession
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.StudyDescription = "MAMMOGRAPHY SCREENING BILATERAL"
    ds.SeriesNumber = {"CC": 1, "MLO": 2}.get(view, 3) + (10 if laterality == "R" else 0)
    ds.SeriesDescription = f"{laterality} {view}"
    ds.InstanceNumber = 1
    ds.Manufacturer = "Synthetic Modality Co"
    ds.ManufacturerModelName = "Phantom-1"
    ds.InstitutionName = "Test Hospital"
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.PresentationIntentType = (
        "FOR PROCESSING" if sop_class == DigitalMammographyXRayImageStorageForProcessing
        else "FOR PRESENTATION")
    ds.ImageLaterality = laterality
    ds.PatientOrientation = _ORIENTATION.get((laterality, view), ["A", "R"])
    meaning = _VIEW_CODES.get(view, ("399162004", "cranio-caudal"))
    view_item = _code(*meaning)
    view_item.ViewModifierCodeSequence = Sequence([])
    ds.ViewCodeSequence = Sequence([view_item])
    ds.ViewPosition = view
    ds.AnatomicRegionSequence = Sequence([_code("76752008", "Breast")])
    ds.BodyPartExamined = "BREAST"
    ds.BreastImplantPresent = "NO"
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.DetectorType = "DIRECT"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.WindowCenter = 1 << (bits_stored - 1)
    ds.WindowWidth = 1 << bits_stored
    ds.ImagerPixelSpacing = [0.1, 0.1]
    ds.PixelSpacing = [0.1, 0.1]
    ds.PixelData = mammo_pixels(rows, cols, bits_stored, seed).tobytes()
    for keyword, value in overrides.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = getattr(ds, "SOPClassUID", sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = getattr(ds, "SOPInstanceUID", generate_uid())
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def write_mammogram(path: str | Path, ds: Dataset,
                    transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    """Write ``ds`` (native pixels) to ``path`` encoded in ``transfer_syntax``; return the path.

    Raises ``ValueError`` for a syntax this module cannot produce and
    ``subprocess.CalledProcessError`` when dcmcjpeg/ojph_compress fail.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = copy.deepcopy(ds)
    ts = UID(transfer_syntax)
    if ts in (ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
        out.file_meta.TransferSyntaxUID = ts
        out.save_as(path, enforce_file_format=True)
    elif ts in (RLELossless, JPEGLSLossless, JPEG2000Lossless):
        out.compress(ts, generate_instance_uid=False)
        out.save_as(path, enforce_file_format=True)
    elif ts == JPEG2000:
        out.compress(ts, j2k_cr=[15], generate_instance_uid=False)
        out.LossyImageCompression = "01"
        out.LossyImageCompressionRatio = 15
        out.LossyImageCompressionMethod = "ISO_15444_1"
        out.save_as(path, enforce_file_format=True)
    elif ts == JPEGLosslessSV1:
        with tempfile.TemporaryDirectory() as tmp:
            native = Path(tmp) / "native.dcm"
            out.save_as(native, enforce_file_format=True)
            subprocess.run(["dcmcjpeg", "+e1", "+un", str(native), str(path)], check=True,
                           capture_output=True)
    elif ts == HTJ2KLossless:
        _write_htj2k(path, out)
    else:
        raise ValueError(f"write_mammogram cannot encode transfer syntax {ts} ({ts.name})")
    return path


def _write_htj2k(path: Path, ds: Dataset) -> None:
    pixels = ds.pixel_array.astype(">u2")  # PGM stores 16-bit samples big-endian
    with tempfile.TemporaryDirectory() as tmp:
        pgm = Path(tmp) / "image.pgm"
        j2c = Path(tmp) / "image.j2c"
        header = f"P5\n{ds.Columns} {ds.Rows}\n{(1 << ds.BitsStored) - 1}\n".encode()
        pgm.write_bytes(header + pixels.tobytes())
        subprocess.run(["ojph_compress", "-i", str(pgm), "-o", str(j2c), "-reversible", "true"],
                       check=True, capture_output=True)
        frame = j2c.read_bytes()
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = HTJ2KLossless
    ds.save_as(path, enforce_file_format=True)
