"""A corpus of real-world mammogram header variants, one small study each.

Each ``Variant`` writes its study's files (``write(folder)``) and says how the node must
end it: with a result at the PACS (``outcome="result"``, plus the images the outputs
must list as not analysed and the views reported missing), or in a final state after
exactly one attempt with a reason naming the attribute (``outcome="not_analysable"`` or
``"failed"``).

The variants cover what units and archives write: Pixel Spacing without Imager Pixel
Spacing (DX-style headers), digitised film as Secondary Capture with Modality MG and
only Nominal Scanned Pixel Spacing, no spacing at all, laterality and view only in the
series header, VOI LUT Data in both encodings, MONOCHROME1 with Pixel Padding, signed
pixels with a rescale, malformed windows, the header sets of five vendors' units with
their private groups, deflated and big-endian syntaxes, every compressed syntax with an
odd number of rows, retakes and work-up views, missing views, tomosynthesis with and
without its 2D image, For Processing with and without its For Presentation twin, and
images no default can rescue (RGB, a truncated codec stream).

The vendor header sets follow the attributes those units are known to write in MG
images (window explanations and VOI LUT Function, MONOCHROME1 output, VOI LUT
sequences, 10-16 bit depths, detector and exposure attributes) with a private block in
each vendor's usual group; the private payloads are placeholders of the right VRs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    BreastTomosynthesisImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalMammographyXRayImageStorageForProcessing,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from tests.support.mammo import make_mammogram, mammo_pixels, write_mammogram

FOUR = (("R", "CC"), ("R", "MLO"), ("L", "CC"), ("L", "MLO"))
ROWS, COLS = 192, 160
Mutation = Callable[[Dataset, str, str], None]


@dataclass
class Image:
    ds: Dataset
    syntax: str = ExplicitVRLittleEndian


@dataclass
class Variant:
    name: str
    images: list[Image]
    outcome: str = "result"  # result | not_analysable | failed
    reason: str = ""  # a fragment the study's reason must contain (final states)
    not_analysed: int = 0  # images the outputs must list as not analysed
    missing: tuple[str, ...] = ()  # views the outputs must report missing
    spacing_unknown: bool = False  # the SR must say the spacing is unknown
    truncate: int | None = None  # index of an image whose codec stream is cut short
    files: list[Path] = field(default_factory=list)

    @property
    def study_uid(self) -> str:
        return str(self.images[0].ds.StudyInstanceUID)

    def write(self, folder: Path) -> list[Path]:
        """Write every image in its transfer syntax under ``folder / name``."""
        self.files = [write_image(folder / self.name / f"{n:02d}.dcm", image)
                      for n, image in enumerate(self.images)]
        return self.files


def write_image(path: Path, image: Image) -> Path:
    if image.syntax != ExplicitVRBigEndian:
        return write_mammogram(path, image.ds, image.syntax)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = copy.deepcopy(image.ds)
    out.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    # Pixel Data as big-endian words: pydicom writes the bytes as given.
    bits = int(out.BitsAllocated)
    if bits == 16:
        out.PixelData = np.frombuffer(image.ds.PixelData, "<u2").astype(">u2").tobytes()
    out.save_as(path, enforce_file_format=True)
    return path


def study(index: int, mutate: Mutation | None = None, views=FOUR, *, rows: int = ROWS,
          cols: int = COLS, syntax: str = ExplicitVRLittleEndian, **fields) -> list[Image]:
    """A study of ``views`` with the synthetic modality's headers, then ``mutate`` per image."""
    uid = generate_uid()
    images = []
    for n, (side, view) in enumerate(views):
        ds = make_mammogram(study_uid=uid, patient_id=f"HV{index:03d}",
                            accession=f"HV{index:05d}", laterality=side, view=view,
                            rows=rows, cols=cols, seed=index * 10 + n, **fields)
        if mutate:
            mutate(ds, side, view)
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        images.append(Image(ds, syntax))
    return images


def _drop(ds: Dataset, *keywords: str) -> None:
    for keyword in keywords:
        if keyword in ds:
            delattr(ds, keyword)


def _private(ds: Dataset, group: int, creator: str, values: list[tuple[str, object]]) -> None:
    block = ds.private_block(group, creator, create=True)
    for offset, (vr, value) in enumerate(values, start=0x10):
        block.add_new(offset, vr, value)


def _voi_lut(ds: Dataset, vr: str) -> None:
    bits = int(ds.BitsStored)
    entries = 1 << bits
    curve = np.round(4095 / (1 + np.exp(-(np.arange(entries) - entries / 2) / (entries / 8))))
    item = Dataset()
    item.LUTDescriptor = [entries if entries < 65536 else 0, 0, 12]
    item.LUTExplanation = "NORMAL"
    if vr == "US":
        item.add_new("LUTData", "US", [int(v) for v in curve])
    else:
        item.add_new("LUTData", "OW", curve.astype("<u2").tobytes())
    ds.VOILUTSequence = Sequence([item])
    _drop(ds, "WindowCenter", "WindowWidth")


# -- variants --------------------------------------------------------------------------


def _pixel_spacing_only(ds, side, view):
    _drop(ds, "ImagerPixelSpacing")
    ds.PixelSpacing = [0.085, 0.085]


def _digitised_film(ds, side, view):
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.ConversionType = "DF"
    ds.SecondaryCaptureDeviceManufacturer = "Film Digitiser Co"
    pixels = (mammo_pixels(ROWS, COLS, 8, seed=hash((side, view)) % 97)).astype(np.uint8)
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = pixels.tobytes()
    ds.WindowCenter, ds.WindowWidth = 128, 256
    ds.NominalScannedPixelSpacing = [0.05, 0.05]
    ds.Laterality = side
    ds.SeriesDescription = f"{'RIGHT' if side == 'R' else 'LEFT'} {view} FILM"
    _drop(ds, "ImagerPixelSpacing", "PixelSpacing", "ImageLaterality", "ViewCodeSequence",
          "ViewPosition", "PresentationIntentType", "PatientOrientation", "DetectorType",
          "PositionerType", "BreastImplantPresent", "PixelIntensityRelationship",
          "PixelIntensityRelationshipSign", "RescaleType")


def _no_spacing(ds, side, view):
    _drop(ds, "ImagerPixelSpacing", "PixelSpacing")


def _series_header_only(ds, side, view):
    ds.Laterality = side
    ds.SeriesDescription = f"{side}{view} screening"
    _drop(ds, "PatientOrientation", "ImageLaterality", "ViewCodeSequence", "ViewPosition")


def _monochrome1_padding(ds, side, view):
    top = (1 << int(ds.BitsStored)) - 1
    pixels = top - np.frombuffer(ds.PixelData, "<u2")
    pixels = pixels.reshape(int(ds.Rows), int(ds.Columns)).copy()
    pixels[:, -12:] = top  # a padded strip along the far edge
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.PixelPaddingValue = top
    ds.PixelData = pixels.astype("<u2").tobytes()


def _signed_rescale(ds, side, view):
    pixels = np.frombuffer(ds.PixelData, "<u2").astype(np.int32) - 2048
    ds.PixelRepresentation = 1
    ds.RescaleIntercept, ds.RescaleSlope = 2048, 1
    ds.PixelData = pixels.astype("<i2").tobytes()


def _malformed_window(ds, side, view):
    ds.WindowCenter, ds.WindowWidth = 2048, 0  # width 0 is not a window
    ds.add_new("VOILUTFunction", "CS", "CURVED")


def _hologic(ds, side, view):
    ds.Manufacturer, ds.ManufacturerModelName = "HOLOGIC, Inc.", "Selenia Dimensions"
    ds.WindowCenter, ds.WindowWidth = [2047, 1900, 2200], [4096, 3500, 4500]
    ds.WindowCenterWidthExplanation = ["NORMAL", "HARDER", "SOFTER"]
    ds.VOILUTFunction = "SIGMOID"
    ds.ExposureIndex, ds.KVP, ds.BodyPartThickness = 450, 29, 52
    ds.AnodeTargetMaterial, ds.FilterMaterial = "TUNGSTEN", "RHODIUM"
    _private(ds, 0x0019, "HOLOGIC, Inc.", [("LO", "Hologic"), ("DS", "0.7"), ("OB", b"\x00" * 8)])


def _ge(ds, side, view):
    # After a public GE Senographe Essential (ADS_54.10) For Presentation header: view
    # code from SNOMED RT (SNM3 R-10242 / R-10226), four windows with explanations and
    # a SIGMOID VOI LUT Function beside a VOI LUT of 3954 entries starting at 142,
    # Pixel Padding Value with a Range Limit, magnification-corrected Imager Pixel
    # Spacing, Presentation LUT Shape IDENTITY, and the GEMS_SENO_02 private block in
    # group 0045.
    ds.Manufacturer = "GE MEDICAL SYSTEMS"
    ds.ManufacturerModelName = "Senographe Essential VERSION ADS_54.10"
    code = ds.ViewCodeSequence[0]
    code.CodeValue = {"CC": "R-10242", "MLO": "R-10226"}[view]
    code.CodingSchemeDesignator = "SNM3"
    code.CodeMeaning = {"CC": "cranio-caudal", "MLO": "medio-lateral oblique"}[view]
    ds.ImagerPixelSpacing = [0.09409090909091, 0.09409090909091]
    ds.EstimatedRadiographicMagnificationFactor = 1
    _drop(ds, "PixelSpacing")
    ds.WindowCenter = [3703, 3745, 3631, 3907]
    ds.WindowWidth = [900, 750, 1050, 1671]
    ds.WindowCenterWidthExplanation = ["NORMAL", "HARDER", "SOFTER", "USER"]
    ds.VOILUTFunction = "SIGMOID"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LOG", -1
    ds.PixelPaddingValue, ds.PixelPaddingRangeLimit = 0, 658
    item = Dataset()
    item.LUTDescriptor = [3954, 142, 12]
    item.LUTExplanation = "USER"
    item.add_new("LUTData", "US", [min(4095, v) for v in range(0, 3954 * 2, 2)])
    ds.VOILUTSequence = Sequence([item])
    ds.PresentationLUTShape = "IDENTITY"
    ds.DetectorType, ds.DetectorID = "SCINTILLATOR", "NPL0130_06"
    _private(ds, 0x0045, "GEMS_SENO_02", [("SL", 3), ("DS", "1.0"), ("LO", "STD")])


def _siemens(ds, side, view):
    ds.Manufacturer, ds.ManufacturerModelName = "SIEMENS", "Mammomat Revelation"
    ds.BitsStored, ds.HighBit = 14, 13
    ds.PixelData = (np.frombuffer(ds.PixelData, "<u2") * 4).astype("<u2").tobytes()
    ds.WindowCenter, ds.WindowWidth = 8191, 16384
    ds.ImagerPixelSpacing = [0.085, 0.085]
    ds.PixelSpacing = [0.0722, 0.0722]  # calibrated at the breast support
    _private(ds, 0x0029, "SIEMENS MED", [("LO", "MAMMO"), ("UL", 1)])


def _fujifilm(ds, side, view):
    ds.Manufacturer, ds.ManufacturerModelName = "FUJIFILM Corporation", "AMULET Innovality"
    top = (1 << int(ds.BitsStored)) - 1
    ds.PixelData = (top - np.frombuffer(ds.PixelData, "<u2")).astype("<u2").tobytes()
    ds.PhotometricInterpretation = "MONOCHROME1"
    _voi_lut(ds, "US")
    ds.ImagerPixelSpacing = [0.05, 0.05]
    _drop(ds, "PixelSpacing")
    _private(ds, 0x0009, "FDMS 1.0", [("SH", "FCR"), ("US", 200), ("LO", "M")])


def _philips(ds, side, view):
    ds.Manufacturer, ds.ManufacturerModelName = "Philips Digital Mammography Sweden AB", \
        "MammoDiagnost DR"
    ds.BitsStored, ds.HighBit = 16, 15
    ds.PixelData = (np.frombuffer(ds.PixelData, "<u2") * 16).astype("<u2").tobytes()
    ds.WindowCenter, ds.WindowWidth = 32767, 65536
    ds.ImagerPixelSpacing = [0.05, 0.05]
    ds.DetectorType = "DIRECT"
    _private(ds, 0x0019, "SECTRA_Ident_01", [("LO", "MicroDose"), ("SH", "L30")])


def _for_processing(ds, side, view):
    ds.SOPClassUID = DigitalMammographyXRayImageStorageForProcessing
    ds.PresentationIntentType = "FOR PROCESSING"


def _tomosynthesis(ds, side, view):
    frames = 3
    ds.SOPClassUID = BreastTomosynthesisImageStorage
    ds.NumberOfFrames = frames
    ds.PixelData = ds.PixelData * frames


def _rgb(ds, side, view):
    ds.SOPClassUID = SecondaryCaptureImageStorage
    gray = (np.frombuffer(ds.PixelData, "<u2") >> 4).astype(np.uint8)
    ds.PixelData = np.repeat(gray, 3).tobytes()
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7


def _extra(base: list[Image], side: str, view: str, mutate: Mutation | None = None,
           **fields) -> Image:
    """One more image of ``base``'s study (same patient and accession)."""
    first = base[0].ds
    ds = make_mammogram(study_uid=first.StudyInstanceUID, patient_id=first.PatientID,
                        accession=first.AccessionNumber, laterality=side, view=view,
                        rows=ROWS, cols=COLS, seed=len(base) + 40, **fields)
    if mutate:
        mutate(ds, side, view)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    return Image(ds)


def _spot(ds, side, view):
    modifier = Dataset()
    modifier.CodeValue, modifier.CodingSchemeDesignator = "399055006", "SCT"
    modifier.CodeMeaning = "Spot Compression"
    ds.ViewCodeSequence[0].ViewModifierCodeSequence = Sequence([modifier])


def _later(ds, side, view):
    ds.AcquisitionTime = ds.ContentTime = "103000"
    ds.InstanceNumber = 2


def _retakes_and_workup(index: int) -> Variant:
    images = study(index)
    images += [_extra(images, "R", "CC", _later), _extra(images, "L", "CC", _spot),
               _extra(images, "L", "XCCL")]
    return Variant("retake_spot_and_xccl", images, not_analysed=3)


def _tomo_with_2d(index: int) -> Variant:
    images = study(index)
    images.append(_extra(images, "L", "CC", _tomosynthesis))
    return Variant("tomosynthesis_with_2d", images, not_analysed=1)


def _for_processing_twins(index: int) -> Variant:
    images = study(index)
    images += [_extra(images, side, view, _for_processing) for side, view in FOUR]
    return Variant("for_processing_with_twins", images, not_analysed=4)


def _truncated_codec(index: int) -> Variant:
    return Variant("truncated_codec_stream", study(index, syntax=JPEG2000Lossless),
                   outcome="failed", reason="PixelData", truncate=2)


def corpus() -> list[Variant]:
    """Every variant, each a fresh study (fresh UIDs on every call)."""
    odd = ROWS + 1
    variants = [
        Variant("dx_pixel_spacing_only", study(1, _pixel_spacing_only)),
        Variant("digitised_film_sc_8bit", study(2, _digitised_film)),
        Variant("no_pixel_spacing", study(3, _no_spacing), spacing_unknown=True),
        Variant("laterality_view_in_series_header", study(4, _series_header_only)),
        Variant("voi_lut_data_us", study(5, lambda ds, s, v: _voi_lut(ds, "US"))),
        Variant("voi_lut_data_ow", study(6, lambda ds, s, v: _voi_lut(ds, "OW"))),
        Variant("monochrome1_pixel_padding", study(7, _monochrome1_padding)),
        Variant("signed_pixels_rescaled", study(8, _signed_rescale)),
        Variant("malformed_window", study(9, _malformed_window)),
        Variant("vendor_hologic", study(10, _hologic)),
        Variant("vendor_ge", study(11, _ge)),
        Variant("vendor_siemens", study(12, _siemens)),
        Variant("vendor_fujifilm", study(13, _fujifilm)),
        Variant("vendor_philips_sectra", study(14, _philips)),
        Variant("deflated", study(15, syntax=DeflatedExplicitVRLittleEndian)),
        Variant("implicit_little_endian", study(16, syntax=ImplicitVRLittleEndian)),
        Variant("odd_rows_rle_jpegls_j2k", _mixed(study(17, rows=odd),
                                                   (RLELossless, JPEGLSLossless,
                                                    JPEG2000Lossless, JPEG2000))),
        Variant("odd_rows_jpeg_lossless_htj2k", _mixed(study(18, rows=odd),
                                                        (JPEGLosslessSV1, HTJ2KLossless,
                                                         JPEGLosslessSV1, HTJ2KLossless))),
        _retakes_and_workup(19),
        Variant("three_views", study(20, views=FOUR[:3]), missing=("L MLO",)),
        _tomo_with_2d(21),
        _for_processing_twins(22),
        Variant("tomosynthesis_only", study(23, _tomosynthesis), outcome="not_analysable",
                reason="tomosynthesis only", not_analysed=4),
        Variant("for_processing_only", study(24, _for_processing), outcome="not_analysable",
                reason="For Processing", not_analysed=4),
        Variant("rgb_secondary_capture", study(25, _rgb), outcome="failed",
                reason="PhotometricInterpretation"),
        _truncated_codec(26),
        # Retired, still written by old archives: the node refuses the syntax at
        # negotiation and storescu sends the files in little endian instead.
        Variant("explicit_big_endian", study(27, syntax=ExplicitVRBigEndian)),
    ]
    return variants


def _mixed(images: list[Image], syntaxes: tuple[str, ...]) -> list[Image]:
    for image, syntax in zip(images, syntaxes, strict=True):
        image.syntax = syntax
    return images


def write_corpus(folder: Path, variants: list[Variant]) -> None:
    """Write every variant; a truncated codec stream is cut after it is encoded."""
    for variant in variants:
        variant.write(folder)
        if variant.truncate is not None:
            _truncate_stream(variant.files[variant.truncate])


def _truncate_stream(path: Path) -> None:
    import pydicom
    from pydicom.encaps import encapsulate, generate_frames

    ds = pydicom.dcmread(path)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: len(frame) // 3]])
    ds.save_as(path, enforce_file_format=True)

