"""What every import shares: one row per image, checked, grouped into studies and split
by patient.

A row names its DICOM file, patient, study, side, view, the label of its breast (1 =
cancer in that breast), the lesion boxes drawn on it and the study's history. Each file's
header is read (never its pixels, and the file is referenced, not copied): the view
must be a mammogram the node can read, and a side or view the row leaves empty is taken
from the header. Rows that contradict each other (two labels for one breast, two
patients for one study, a header that names the other side) stop the import with the
file, row and column.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid

from ml.synth.dataset import Box, StudyRecord, ViewRecord
from ml.synth.generate import assign_splits
from ml.train.splits import SplitError, check_disjoint
from ml.views import laterality_of, view_of

SPLITS = ("train", "val", "test")


class ImportRowError(ValueError):
    """A row that cannot be imported; the message names the file, row and column."""

    def __init__(self, source: str, row: int | None, column: str | None, problem: str) -> None:
        where = source + (f" row {row}" if row is not None else "") + \
            (f" column {column!r}" if column else "")
        super().__init__(f"{where}: {problem}")


@dataclass
class ImageRow:
    """One image as a source lists it; ``origin`` is (file, row number) for errors."""

    path: Path
    patient_id: str
    study_id: str
    laterality: str | None
    view: str | None
    label: int
    origin: tuple[str, int]
    boxes: list[Box] = field(default_factory=list)
    history: str = ""
    split: str | None = None
    accession: str = ""


def parse_boxes(text: str, source: str, row: int, column: str) -> list[Box]:
    """``"x0 y0 x1 y1;x0 y0 x1 y1"`` (stored pixels) -> boxes; "" -> none."""
    boxes: list[Box] = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        try:
            x0, y0, x1, y1 = (float(v) for v in part.replace(",", " ").split())
        except ValueError:
            raise ImportRowError(source, row, column, f"box {part!r} is not four numbers "
                                 "x0 y0 x1 y1") from None
        if not (x1 > x0 and y1 > y0 and min(x0, y0) >= 0):
            raise ImportRowError(source, row, column, f"box {part!r} needs 0 <= x0 < x1 and "
                                 "0 <= y0 < y1")
        boxes.append((x0, y0, x1, y1))
    return boxes


def parse_label(text: str, source: str, row: int, column: str) -> int:
    value = text.strip()
    if value not in ("0", "1"):
        raise ImportRowError(source, row, column, f"label {value!r} must be 0 or 1")
    return int(value)


def parse_split(text: str | None, source: str, row: int, column: str) -> str | None:
    value = (text or "").strip().lower()
    if not value:
        return None
    if value not in SPLITS:
        raise ImportRowError(source, row, column, f"split {value!r} must be one of {SPLITS}")
    return value


def _view_record(row: ImageRow) -> ViewRecord:
    """The row's view, with what its header says; raises ``ImportRowError``."""
    source, number = row.origin
    if not row.path.is_file():
        raise ImportRowError(source, number, "path", f"no file at {row.path}")
    try:
        ds = pydicom.dcmread(row.path, stop_before_pixels=True)
    except (InvalidDicomError, OSError) as exc:
        raise ImportRowError(source, number, "path", f"{row.path} is not DICOM: {exc}") \
            from None
    missing = [k for k in ("Rows", "Columns", "BitsStored", "PhotometricInterpretation")
               if k not in ds]
    if missing:
        raise ImportRowError(source, number, "path", f"{row.path} is not an image: no "
                             f"{', '.join(missing)}")
    header_side, header_view = laterality_of(ds), view_of(ds)
    if row.laterality and header_side and row.laterality != header_side:
        raise ImportRowError(source, number, "laterality", f"{row.laterality!r} but the "
                             f"header of {row.path.name} says {header_side!r}")
    side = row.laterality or header_side
    view = row.view or header_view
    if side not in ("R", "L"):
        raise ImportRowError(source, number, "laterality", "no side (R or L) in the row or "
                             f"in the header of {row.path.name}")
    if not view:
        raise ImportRowError(source, number, "view", "no view in the row or in the header "
                             f"of {row.path.name}")
    for box in row.boxes:
        if box[2] > int(ds.Columns) or box[3] > int(ds.Rows):
            raise ImportRowError(source, number, "boxes", f"box {box} lies outside the "
                                 f"{ds.Columns}x{ds.Rows} image")
    return ViewRecord(path=row.path.resolve(), sop_instance_uid=str(
        ds.get("SOPInstanceUID", "") or generate_uid(entropy_srcs=[str(row.path.resolve())])),
        laterality=side, view=view, label=row.label, boxes=list(row.boxes), findings=[],
        photometric=str(ds.PhotometricInterpretation), bits_stored=int(ds.BitsStored),
        rows=int(ds.Rows), columns=int(ds.Columns))


def _agree(values: dict[str, tuple[object, tuple[str, int]]], key: str, value: object,
           origin: tuple[str, int], column: str, what: str) -> None:
    """Record ``value`` for ``key``, or raise if an earlier row gave another one."""
    if key in values and values[key][0] != value:
        first = values[key][1]
        raise ImportRowError(origin[0], origin[1], column, f"{what} {key}: {value!r} here but "
                             f"{values[key][0]!r} in row {first[1]}")
    values.setdefault(key, (value, origin))


def assemble(rows: Sequence[ImageRow], progress: object = None) -> list[StudyRecord]:
    """Studies of ``rows`` in first-seen order, every header read and every row checked.

    ``progress``, when given, is called with no argument after each header.
    """
    if not rows:
        raise ImportRowError("source", None, None, "no image rows")
    patients: dict[str, tuple[object, tuple[str, int]]] = {}
    labels: dict[str, tuple[object, tuple[str, int]]] = {}
    histories: dict[str, tuple[object, tuple[str, int]]] = {}
    splits: dict[str, tuple[object, tuple[str, int]]] = {}
    views: dict[str, list[ViewRecord]] = {}
    seen: dict[str, tuple[str, int]] = {}
    first: dict[str, ImageRow] = {}
    for row in rows:
        record = _view_record(row)
        if str(record.path) in seen:
            raise ImportRowError(row.origin[0], row.origin[1], "path", f"{record.path} is "
                                 f"listed twice (also row {seen[str(record.path)][1]})")
        seen[str(record.path)] = row.origin
        _agree(patients, row.study_id, row.patient_id, row.origin, "patient_id",
               "the patient of study")
        _agree(labels, f"{row.study_id} {record.laterality}", row.label, row.origin, "label",
               "the label of breast")
        _agree(histories, row.study_id, row.history, row.origin, "history",
               "the history of study")
        _agree(splits, row.study_id, row.split, row.origin, "split", "the split of study")
        views.setdefault(row.study_id, []).append(record)
        first.setdefault(row.study_id, row)
        if callable(progress):
            progress()
    studies = []
    for study_id, study_views in views.items():
        breast_labels = {side: int(labels[f"{study_id} {side}"][0])  # type: ignore[call-overload]
                         for side in sorted({v.laterality for v in study_views})}
        row = first[study_id]
        studies.append(StudyRecord(
            study_uid=study_id, accession=row.accession or study_id,
            patient_id=row.patient_id, label=max(breast_labels.values()),
            breast_labels=breast_labels, history=row.history, split=row.split,
            order_path=None, views=study_views))
    return studies


def split_by_patient(studies: list[StudyRecord], fractions: dict[str, float], seed: int,
                     keep: bool = True, val_fraction: float = 0.0) -> list[StudyRecord]:
    """Studies with a split each, whole patients at a time.

    With ``keep``, splits the source gave are kept and only unmarked patients are drawn
    (by ``fractions``, stratified by the patient's label); a patient whose studies the
    source put in two splits is an error. Without ``keep``, every patient is drawn
    afresh. When no patient ends up in ``val``, ``val_fraction`` of the ``train``
    patients are drawn into it (sources with only an official train/test split). Raises
    ``SplitError`` naming the patient.
    """
    by_patient: dict[str, list[StudyRecord]] = {}
    for study in studies:
        by_patient.setdefault(study.patient_id, []).append(study)
    chosen: dict[str, str | None] = {}
    for patient, own in by_patient.items():
        given = {s.split for s in own} if keep else {None}
        if len(given) > 1:
            raise SplitError(f"patient {patient} has studies in the splits "
                             f"{sorted(str(g) for g in given)}; a patient belongs to one "
                             "split (import again with --resplit to draw them afresh)")
        chosen[patient] = given.pop()
    undecided = [p for p, split in chosen.items() if split is None]
    if undecided:
        if not fractions:
            raise SplitError(f"{len(undecided)} patients have no split and no --split "
                             "fractions were given")
        drawn = assign_splits([max(s.label for s in by_patient[p]) == 1 for p in undecided],
                              fractions, seed)
        chosen.update(zip(undecided, drawn, strict=True))
    if val_fraction and "val" not in chosen.values():
        training = [p for p, split in chosen.items() if split == "train"]
        drawn = assign_splits([max(s.label for s in by_patient[p]) == 1 for p in training],
                              {"train": 1 - val_fraction, "val": val_fraction}, seed + 1)
        chosen.update(zip(training, drawn, strict=True))
    result = [dataclasses.replace(study, split=chosen[study.patient_id]) for study in studies]
    check_disjoint({name: [s for s in result if s.split == name] for name in SPLITS})
    return result
