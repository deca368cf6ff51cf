"""Generate a synthetic data set: label and split assignment, the files of each study
(four DICOM views and an HL7 order) and the manifest."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from ml.synth.config import SynthConfig
from ml.synth.dataset import FindingRecord, StudyRecord, ViewRecord, write_manifest
from ml.synth.mammogram_file import write_mammogram
from ml.synth.order import order_message
from ml.synth.study import LATERALITIES, VIEWS, StudyPlan, plan_study, render_view

Progress = Callable[[int], None]


def assign_labels(studies: int, malignant_fraction: float, seed: int) -> list[bool]:
    """Exactly round(studies * malignant_fraction) malignant studies, shuffled by seed."""
    malignant = int(round(studies * malignant_fraction))
    labels = np.zeros(studies, bool)
    labels[:malignant] = True
    return [bool(v) for v in np.random.default_rng([seed, 1]).permutation(labels)]


def parse_split(spec: str | None) -> dict[str, float]:
    """``"test"`` -> {"test": 1.0}; ``"train=0.7,val=0.15,test=0.15"`` -> fractions.

    Raises ValueError for a malformed spec or fractions that do not add up to 1.
    """
    if not spec:
        return {}
    if "=" not in spec:
        return {spec.strip(): 1.0}
    parts: dict[str, float] = {}
    for item in spec.split(","):
        name, _, value = item.partition("=")
        if not name.strip() or not value:
            raise ValueError(f"split {item!r}: expected NAME=FRACTION")
        parts[name.strip()] = float(value)
    if abs(sum(parts.values()) - 1.0) > 1e-6 or min(parts.values()) < 0:
        raise ValueError(f"split fractions {spec!r} must be >= 0 and add up to 1")
    return parts


def assign_splits(labels: list[bool], fractions: dict[str, float], seed: int) -> list[str | None]:
    """Split name per study, stratified by label so each split keeps the label balance.
    Studies (hence patients) never straddle splits."""
    if not fractions:
        return [None] * len(labels)
    names = list(fractions)
    out: list[str | None] = [None] * len(labels)
    rng = np.random.default_rng([seed, 2])
    for value in (False, True):
        members = [i for i, label in enumerate(labels) if label == value]
        members = [members[i] for i in rng.permutation(len(members))]
        bounds = np.rint(np.cumsum([fractions[n] for n in names]) * len(members)).astype(int)
        start = 0
        for name, stop in zip(names, bounds, strict=True):
            for i in members[start:stop]:
                out[i] = name
            start = stop
    return out


def write_study(root: Path, plan: StudyPlan) -> StudyRecord:
    """Render and write the four views and the order of ``plan``; its manifest record."""
    folder = root / "studies" / plan.accession
    views: list[ViewRecord] = []
    for laterality in LATERALITIES:
        for view in VIEWS:
            rendered = render_view(plan, laterality, view)
            path = write_mammogram(folder / f"{laterality}_{view}.dcm", plan, rendered)
            breast = plan.breasts[laterality]
            findings = [FindingRecord(kind=r.finding.kind, malignant=r.finding.malignant,
                                      visibility=r.finding.visibility, box=r.box)
                        for r in rendered.findings]
            views.append(ViewRecord(
                path=path, sop_instance_uid=plan.sop_uids[f"{laterality}_{view}"],
                laterality=laterality, view=view, label=int(breast.malignant),
                boxes=[f.box for f in findings if f.malignant and f.box is not None],
                findings=findings, photometric=plan.photometric, bits_stored=plan.bits_stored,
                rows=plan.rows, columns=plan.cols))
    order_path = root / "orders" / f"{plan.accession}.hl7"
    order_path.parent.mkdir(parents=True, exist_ok=True)
    order_path.write_bytes(order_message(plan).encode("latin-1"))
    return StudyRecord(
        study_uid=plan.study_uid, accession=plan.accession, patient_id=plan.patient_id,
        label=int(plan.malignant),
        breast_labels={lat: int(b.malignant) for lat, b in plan.breasts.items()},
        history=plan.history, split=plan.split, order_path=order_path, views=views)


def _write_one(root: Path, seed: int, index: int, malignant: bool, split: str | None,
               config: SynthConfig) -> StudyRecord:
    return write_study(root, plan_study(seed, index, malignant, config, split))


def generate_dataset(out: Path, studies: int, seed: int, config: SynthConfig | None = None,
                     split: str | None = None, jobs: int = 1,
                     progress: Progress | None = None) -> list[StudyRecord]:
    """Write ``studies`` studies made with ``seed`` under ``out`` and their manifest.

    The same (seed, config, split) always gives the same files. ``progress`` is called
    with the number of studies finished so far. Raises ValueError for a bad ``split``.
    """
    config = config or SynthConfig()
    fractions = parse_split(split)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    labels = assign_labels(studies, config.malignant_fraction, seed)
    splits = assign_splits(labels, fractions, seed)
    records: list[StudyRecord | None] = [None] * studies
    if jobs <= 1:
        for i in range(studies):
            records[i] = _write_one(out, seed, i, labels[i], splits[i], config)
            if progress:
                progress(i + 1)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(_write_one, out, seed, i, labels[i], splits[i], config): i
                       for i in range(studies)}
            for done, future in enumerate(as_completed(futures), start=1):
                records[futures[future]] = future.result()
                if progress:
                    progress(done)
    finished = [r for r in records if r is not None]
    meta = {"seed": seed, "study_count": studies, "split": split,
            "config": {k: list(v) if isinstance(v, tuple) else v
                       for k, v in dataclasses.asdict(config).items()}}
    write_manifest(out, finished, meta)
    return finished
