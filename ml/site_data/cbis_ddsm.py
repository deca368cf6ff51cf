"""CBIS-DDSM (TCIA) as published: the case-description CSVs and the DICOM tree.

The four CSVs (``mass_case_description_train_set.csv``, ``calc_case_description_
train_set.csv`` and their ``test_set`` pairs) list one row per abnormality: ``patient_id``,
``left or right breast``, ``image view``, ``pathology`` (MALIGNANT, BENIGN,
BENIGN_WITHOUT_CALLBACK), ``image file path`` and ``ROI mask file path``. Every image
of CBIS-DDSM shows at least one abnormality; a breast is labelled 1 when any of its
abnormalities is malignant. Each patient ID is one DDSM case (one examination), with no
clinical history. The lesion box of a malignant abnormality is the extent of its ROI
mask. The official split is kept (train, test) and validation patients are drawn from
the training ones.

The CSV paths (``Mass-Training_P_00001_LEFT_CC/<study>/<series>/000000.dcm``) differ from
the names the TCIA downloader writes below the first folder, so a path that does not
exist is looked up by its first folder: the full mammogram is the only DICOM file there,
and the ROI mask is the file of the mask's folder that has the mammogram's size (the
other is the cropped lesion).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom

from ml.site_data.records import ImageRow, ImportRowError
from ml.synth.dataset import Box

PATHOLOGIES = ("MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK")
COLUMNS = ("patient_id", "left or right breast", "image view", "pathology", "image file path")


def _candidates(root: Path, listed: str) -> tuple[Path | None, list[Path]]:
    """The listed path if it exists, else the DICOM files under its first folder."""
    exact = root / listed
    if exact.is_file():
        return exact, []
    first = listed.split("/")[0]
    folder = root / first
    found = sorted(p for p in folder.rglob("*.dcm")) if folder.is_dir() else []
    return None, found


def resolve_image(root: Path, listed: str, source: str, row: int) -> Path:
    exact, found = _candidates(root, listed)
    if exact is not None:
        return exact
    if len(found) != 1:
        raise ImportRowError(source, row, "image file path", f"{listed!r}: expected one DICOM "
                             f"file under {root / listed.split('/')[0]}, found {len(found)}")
    return found[0]


def mask_box(root: Path, listed: str, image: Path, source: str, row: int) -> Box:
    """The extent of the ROI mask's non-zero pixels, in the mammogram's stored pixels."""
    exact, found = _candidates(root, listed)
    size = pydicom.dcmread(image, stop_before_pixels=True)
    shape = (int(size.Rows), int(size.Columns))
    if exact is None:
        same = [p for p in found if (lambda d: (int(d.Rows), int(d.Columns)))(
            pydicom.dcmread(p, stop_before_pixels=True)) == shape]
        if len(same) != 1:
            raise ImportRowError(source, row, "ROI mask file path",
                                 f"{listed!r}: expected one mask of {shape[1]}x{shape[0]} "
                                 f"under {root / listed.split('/')[0]}, found {len(same)}")
        exact = same[0]
    mask = pydicom.dcmread(exact).pixel_array
    if mask.shape != shape:
        raise ImportRowError(source, row, "ROI mask file path", f"mask {mask.shape} does not "
                             f"match the mammogram {shape}")
    ys, xs = np.nonzero(mask)
    if not len(xs):
        raise ImportRowError(source, row, "ROI mask file path", "the mask is empty")
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def read_cbis_ddsm(root: Path, boxes_from_masks: bool = True) -> list[ImageRow]:
    """One row per mammogram of the case-description CSVs under ``root``."""
    tables = sorted(root.glob("*case_description*.csv"))
    if not tables:
        raise ImportRowError(str(root), None, None, "no *case_description*.csv files (the "
                             "CBIS-DDSM description CSVs) in the folder")
    images: dict[Path, ImageRow] = {}
    malignant: dict[tuple[str, str], bool] = {}
    for table in tables:
        split = "test" if "test" in table.name.lower() else "train"
        with table.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = {f.strip() for f in reader.fieldnames or []}
            for column in COLUMNS:
                if column not in fields:
                    raise ImportRowError(table.name, 1, column, "missing column")
            for number, raw in enumerate(reader, start=2):
                item = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
                side = {"LEFT": "L", "RIGHT": "R"}.get(item["left or right breast"].upper())
                if side is None:
                    raise ImportRowError(table.name, number, "left or right breast",
                                         f"{item['left or right breast']!r} is not LEFT or "
                                         "RIGHT")
                pathology = item["pathology"].upper()
                if pathology not in PATHOLOGIES:
                    raise ImportRowError(table.name, number, "pathology", f"{pathology!r} is "
                                         f"not one of {PATHOLOGIES}")
                path = resolve_image(root, item["image file path"], table.name, number)
                patient = item["patient_id"]
                is_cancer = pathology == "MALIGNANT"
                malignant[(patient, side)] = malignant.get((patient, side), False) or is_cancer
                row = images.setdefault(path, ImageRow(
                    path=path, patient_id=patient, study_id=patient, laterality=side,
                    view=item["image view"].upper() or None, label=0,
                    origin=(table.name, number), split=split, accession=patient))
                if is_cancer and boxes_from_masks and item.get("ROI mask file path"):
                    row.boxes.append(mask_box(root, item["ROI mask file path"], path,
                                              table.name, number))
    for row in images.values():
        row.label = int(malignant[(row.patient_id, row.laterality or "")])
    return list(images.values())
