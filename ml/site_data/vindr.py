"""VinDr-Mammo (PhysioNet) as published: ``breast-level_annotations.csv``,
``finding_annotations.csv`` and ``images/<study_id>/<image_id>.dicom``.

The breast-level CSV has one row per image: ``study_id``, ``series_id``, ``image_id``,
``laterality`` (L/R), ``view_position`` (CC/MLO), ``breast_birads`` ("BI-RADS 1" ..
"BI-RADS 5") and ``split`` ("training"/"test"). VinDr-Mammo has no pathology: a breast
is labelled 1 when its BI-RADS assessment is at least ``positive_birads`` (4, suspicious,
by default). The finding CSV gives boxes (``xmin``, ``ymin``, ``xmax``, ``ymax``, stored
pixels) with a ``finding_birads``; those at or above ``positive_birads`` become the
image's lesion boxes. Every woman has one examination, so the study is the patient;
there is no clinical history. The official split is kept and validation patients are
drawn from the training ones.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ml.site_data.records import ImageRow, ImportRowError
from ml.synth.dataset import Box

BREAST_CSV = "breast-level_annotations.csv"
FINDING_CSV = "finding_annotations.csv"
COLUMNS = ("study_id", "image_id", "laterality", "view_position", "breast_birads", "split")
SPLITS = {"training": "train", "test": "test"}
_BIRADS = re.compile(r"^\s*(?:BI-?RADS)?\s*([0-6])[ABC]?\s*$", re.IGNORECASE)


def birads(text: str, source: str, row: int, column: str) -> int:
    match = _BIRADS.match(text)
    if not match:
        raise ImportRowError(source, row, column, f"{text!r} is not a BI-RADS category")
    return int(match.group(1))


def _finding_boxes(root: Path, positive: int) -> dict[str, list[Box]]:
    path = root / FINDING_CSV
    boxes: dict[str, list[Box]] = {}
    if not path.is_file():
        return boxes
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for number, raw in enumerate(csv.DictReader(handle), start=2):
            item = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
            coordinates = [item.get(k, "") for k in ("xmin", "ymin", "xmax", "ymax")]
            if not all(coordinates) or not item.get("finding_birads"):
                continue  # "No Finding" rows carry no box
            if birads(item["finding_birads"], FINDING_CSV, number, "finding_birads") < positive:
                continue
            try:
                x0, y0, x1, y1 = (float(c) for c in coordinates)
            except ValueError:
                raise ImportRowError(FINDING_CSV, number, "xmin", f"{coordinates} are not "
                                     "numbers") from None
            boxes.setdefault(item["image_id"], []).append((x0, y0, x1, y1))
    return boxes


def read_vindr(root: Path, positive_birads: int = 4) -> list[ImageRow]:
    """One row per image of ``breast-level_annotations.csv`` under ``root``."""
    table = root / BREAST_CSV
    if not table.is_file():
        raise ImportRowError(str(root), None, None, f"no {BREAST_CSV} in the folder")
    boxes = _finding_boxes(root, positive_birads)
    rows = []
    with table.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = {f.strip() for f in reader.fieldnames or []}
        for column in COLUMNS:
            if column not in fields:
                raise ImportRowError(BREAST_CSV, 1, column, "missing column")
        for number, raw in enumerate(reader, start=2):
            item = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
            split = SPLITS.get(item["split"].lower())
            if split is None:
                raise ImportRowError(BREAST_CSV, number, "split", f"{item['split']!r} is not "
                                     f"one of {sorted(SPLITS)}")
            side = item["laterality"].upper()
            if side not in ("L", "R"):
                raise ImportRowError(BREAST_CSV, number, "laterality", f"{side!r} is not L "
                                     "or R")
            study = item["study_id"]
            label = birads(item["breast_birads"], BREAST_CSV, number, "breast_birads")
            rows.append(ImageRow(
                path=root / "images" / study / f"{item['image_id']}.dicom",
                patient_id=study, study_id=study, laterality=side,
                view=item["view_position"].upper() or None,
                label=int(label >= positive_birads), origin=(BREAST_CSV, number),
                boxes=list(boxes.get(item["image_id"], [])), split=split, accession=study))
    return rows
