"""The generic layout: one CSV row per image.

========== ======== ===============================================================
column     required meaning
========== ======== ===============================================================
path       yes      the DICOM file, absolute or relative to the CSV's folder
patient_id yes      the woman; never in two splits
study_id   yes      the examination (an accession number or Study Instance UID)
label      yes      1 when this image's breast has a cancer, else 0
laterality no       R or L (default: the header's Image Laterality)
view       no       CC, MLO, ... (default: the header's view)
boxes      no       lesions on this image, ``x0 y0 x1 y1`` in stored pixels, ``;``
                    between boxes
history    no       the study's clinical history (the order's text); empty: none
split      no       train, val or test; empty: drawn by patient
accession  no       the accession number, for reports
========== ======== ===============================================================
"""

from __future__ import annotations

import csv
from pathlib import Path

from ml.site_data.records import (
    ImageRow,
    ImportRowError,
    parse_boxes,
    parse_label,
    parse_split,
)

REQUIRED = ("path", "patient_id", "study_id", "label")
OPTIONAL = ("laterality", "view", "boxes", "history", "split", "accession")


def read_generic(csv_path: Path) -> list[ImageRow]:
    """The rows of a generic CSV; raises ``ImportRowError`` naming row and column."""
    source = csv_path.name
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise ImportRowError(source, 1, missing[0], f"missing column(s) {missing}; the "
                                 f"header needs {list(REQUIRED)} and may have "
                                 f"{list(OPTIONAL)}")
        unknown = sorted(set(columns) - set(REQUIRED) - set(OPTIONAL))
        if unknown:
            raise ImportRowError(source, 1, unknown[0], f"unknown column(s) {unknown}")
        rows = []
        for number, raw in enumerate(reader, start=2):
            item = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
            for column in REQUIRED:
                if not item.get(column):
                    raise ImportRowError(source, number, column, "empty")
            path = Path(item["path"])
            side = item.get("laterality", "").upper() or None
            if side not in (None, "R", "L"):
                raise ImportRowError(source, number, "laterality", f"{side!r} must be R or L")
            rows.append(ImageRow(
                path=path if path.is_absolute() else csv_path.parent / path,
                patient_id=item["patient_id"], study_id=item["study_id"], laterality=side,
                view=item.get("view", "").upper() or None,
                label=parse_label(item["label"], source, number, "label"),
                origin=(source, number),
                boxes=parse_boxes(item.get("boxes", ""), source, number, "boxes"),
                history=item.get("history", ""),
                split=parse_split(item.get("split"), source, number, "split"),
                accession=item.get("accession", "")))
    return rows
