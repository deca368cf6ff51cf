"""The manifest of a synthetic data set: what training reads.

A data set folder holds ``studies/<accession>/<R|L>_<CC|MLO>.dcm``,
``orders/<accession>.hl7`` (one ORM^O01 per study), ``manifest.json`` (studies ->
breasts -> views, with labels, lesion boxes, findings and histories) and
``manifest.csv`` (one row per view, the same facts flattened). Boxes are
(x0, y0, x1, y1) in stored pixel coordinates of the view's DICOM file. A view's
label is its breast's label (1 = cancer in that breast, visible on the view or not);
``boxes`` lists only the cancers drawn visibly on that view. An imported data set
(``mmbcd-train import``) has the same manifest without images or orders of its own: its
views are absolute paths of the site's files, referenced where they are.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST_FORMAT = "mmbcd-synth/1"
MANIFEST_JSON = "manifest.json"
MANIFEST_CSV = "manifest.csv"
CSV_COLUMNS = ("study_uid", "accession", "patient_id", "split", "laterality", "view", "path",
               "sop_instance_uid", "view_label", "breast_label", "study_label", "boxes",
               "findings", "photometric", "bits_stored", "rows", "columns", "history")

Box = tuple[float, float, float, float]


class ManifestError(ValueError):
    """The folder holds no readable synthetic manifest, or one of another format."""


@dataclass(frozen=True)
class FindingRecord:
    kind: str
    malignant: bool
    visibility: str  # "obvious" | "subtle" | "occult"
    box: Box | None  # None when not visible on this view


@dataclass(frozen=True)
class ViewRecord:
    path: Path  # absolute path of the DICOM file
    sop_instance_uid: str
    laterality: str  # "R" | "L"
    view: str  # "CC" | "MLO"
    label: int  # 1 when the breast has a cancer
    boxes: list[Box]  # visible cancers on this view, stored pixel coordinates
    findings: list[FindingRecord]  # every finding of the breast, benign ones included
    photometric: str
    bits_stored: int
    rows: int
    columns: int


@dataclass(frozen=True)
class StudyRecord:
    study_uid: str
    accession: str
    patient_id: str
    label: int  # 1 when either breast has a cancer
    breast_labels: dict[str, int]  # "R"/"L" -> 0/1
    history: str
    split: str | None
    order_path: Path | None  # the ORM^O01 of a synthetic study; None for imported data
    views: list[ViewRecord]


def _stored_path(path: Path, root: Path) -> str:
    """A file under the data set's folder relative to it; a referenced one absolute."""
    return (path.relative_to(root) if path.is_relative_to(root) else path).as_posix()


def _box(value: Any) -> Box | None:
    return None if value is None else (float(value[0]), float(value[1]), float(value[2]),
                                       float(value[3]))


def _study_to_json(study: StudyRecord, root: Path) -> dict[str, Any]:
    return {
        "study_uid": study.study_uid, "accession": study.accession,
        "patient_id": study.patient_id, "label": study.label,
        "breast_labels": study.breast_labels, "history": study.history, "split": study.split,
        "order": None if study.order_path is None else _stored_path(study.order_path, root),
        "views": [{
            "path": _stored_path(v.path, root), "sop_instance_uid": v.sop_instance_uid,
            "laterality": v.laterality, "view": v.view, "label": v.label,
            "boxes": [list(b) for b in v.boxes],
            "findings": [{"kind": f.kind, "malignant": f.malignant, "visibility": f.visibility,
                          "box": None if f.box is None else list(f.box)} for f in v.findings],
            "photometric": v.photometric, "bits_stored": v.bits_stored, "rows": v.rows,
            "columns": v.columns,
        } for v in study.views],
    }


def _study_from_json(item: dict[str, Any], root: Path) -> StudyRecord:
    return StudyRecord(
        study_uid=item["study_uid"], accession=item["accession"], patient_id=item["patient_id"],
        label=int(item["label"]), breast_labels={k: int(v) for k, v in
                                                 item["breast_labels"].items()},
        history=item["history"], split=item.get("split"),
        order_path=root / item["order"] if item.get("order") else None,
        views=[ViewRecord(
            path=root / v["path"], sop_instance_uid=v["sop_instance_uid"],
            laterality=v["laterality"], view=v["view"], label=int(v["label"]),
            boxes=[b for b in (_box(x) for x in v["boxes"]) if b is not None],
            findings=[FindingRecord(kind=f["kind"], malignant=bool(f["malignant"]),
                                    visibility=f["visibility"], box=_box(f["box"]))
                      for f in v["findings"]],
            photometric=v["photometric"], bits_stored=int(v["bits_stored"]), rows=int(v["rows"]),
            columns=int(v["columns"]),
        ) for v in item["views"]],
    )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", newline="")
    os.replace(tmp, path)


def write_manifest(root: Path, studies: list[StudyRecord], meta: dict[str, Any]) -> None:
    """Write ``manifest.json`` and ``manifest.csv`` for ``studies`` under ``root``.

    ``meta`` (seed, generator settings) is kept in the JSON so a data set can be remade.
    """
    document = {"format": MANIFEST_FORMAT, **meta,
                "studies": [_study_to_json(s, root) for s in studies]}
    _atomic_write(root / MANIFEST_JSON, json.dumps(document, indent=1, sort_keys=False) + "\n")
    tmp = root / (MANIFEST_CSV + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for s in studies:
            for v in s.views:
                writer.writerow([
                    s.study_uid, s.accession, s.patient_id, s.split or "", v.laterality, v.view,
                    _stored_path(v.path, root), v.sop_instance_uid, v.label,
                    s.breast_labels[v.laterality], s.label,
                    ";".join(" ".join(f"{c:.1f}" for c in b) for b in v.boxes),
                    ";".join(f"{f.kind}:{f.visibility}" for f in v.findings),
                    v.photometric, v.bits_stored, v.rows, v.columns, s.history])
    os.replace(tmp, root / MANIFEST_CSV)


def load_manifest(root: Path | str) -> list[StudyRecord]:
    """The studies of the data set in ``root`` (paths made absolute), in manifest order.

    Raises ManifestError when ``root`` has no manifest or one of another format.
    """
    root = Path(root).resolve()
    path = root / MANIFEST_JSON
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(f"no {MANIFEST_JSON} in {root}") from exc
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from exc
    if document.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{path}: format {document.get('format')!r}, "
                            f"expected {MANIFEST_FORMAT!r}")
    return [_study_from_json(item, root) for item in document["studies"]]


def read_manifest_meta(root: Path | str) -> dict[str, Any]:
    """The generator settings stored with the data set (seed, config, counts)."""
    document = json.loads((Path(root) / MANIFEST_JSON).read_text(encoding="utf-8"))
    return {k: v for k, v in document.items() if k != "studies"}
