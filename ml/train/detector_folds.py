"""Out-of-fold detectors: ROIs for fusion training from detectors that never saw the view.

The detector that proposes ROIs at test time has not seen the test studies; the one
that trained on the training studies finds their lesions more surely than it ever will
on new ones, so fusion would learn from ROIs and confidences better than it gets. With
``--folds K`` the training patients are dealt into K folds (stratified by label) and K
more detectors are trained, fold k's on the other folds, with the same settings, the
same rendered images and the same validation split as the main one. Fusion training
then takes each training study's ROIs from the detector of its fold (a training study
none of whose views was drawn for detector training has no fold: no detector saw it, and
it takes the main detector's). The main detector,
trained on every training study, is the one a bundle ships and the one that proposes
ROIs for the validation and test studies. On the CPU the runs train side by side where
cores are left idle (Ultralytics gives one run all cores but one).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from ml.synth.dataset import StudyRecord, ViewRecord
from ml.synth.generate import assign_splits
from ml.train.detector_training import DetectorTraining, train_detector, yolo_stem
from ml.train.run_folder import RunFolder

FOLDS = "folds"


def deal_folds(studies: Sequence[StudyRecord], k: int, seed: int) -> dict[str, int]:
    """Study UID -> fold (0..k-1), whole patients at a time, stratified by label."""
    if k < 2:
        raise ValueError(f"out-of-fold ROIs need at least 2 folds, not {k}")
    patients: dict[str, list[StudyRecord]] = {}
    for study in studies:
        patients.setdefault(study.patient_id, []).append(study)
    if len(patients) < k:
        raise ValueError(f"{len(patients)} training patients cannot fill {k} folds")
    names = list(patients)
    drawn = assign_splits([max(s.label for s in patients[p]) == 1 for p in names],
                          {str(i): 1 / k for i in range(k)}, seed)
    return {s.study_uid: int(fold or 0) for p, fold in zip(names, drawn, strict=True)
            for s in patients[p]}


def prepare_fold_runs(train_views: Sequence[tuple[StudyRecord, ViewRecord]], yolo: Path,
                      out: Path, settings: DetectorTraining, k: int,
                      config: dict[str, Any]) -> list[tuple[Path, Path]]:
    """The K fold run folders of the detector run ``out``, each with its ``data.yaml``
    over the images ``out`` rendered under ``yolo`` and the studies it holds out; returns
    (data.yaml, run folder) per fold, ready for ``train_detectors``."""
    folds = deal_folds(list({s.study_uid: s for s, _ in train_views}.values()), k,
                       settings.seed)
    jobs = []
    for fold in range(k):
        folder = out / FOLDS / f"fold-{fold}"
        held_out = sorted(uid for uid, f in folds.items() if f == fold)
        RunFolder.create(folder, "detector", {**asdict(settings), **config, "fold": fold,
                                              "folds": k, "held_out": held_out},
                         force=True).close()
        images = [str((yolo / "train" / "images" / f"{yolo_stem(s, v)}.png").resolve())
                  for s, v in train_views if folds[s.study_uid] != fold]
        (folder / "train.txt").write_text("\n".join(images) + "\n")
        data = folder / "data.yaml"
        data.write_text(yaml.safe_dump({"path": str(yolo.resolve()),
                                        "train": str((folder / "train.txt").resolve()),
                                        "val": "val/images", "names": {0: "lesion"}}))
        jobs.append((data, folder))
    return jobs


def parallel_runs(settings: DetectorTraining) -> int:
    """How many detector runs train side by side: Ultralytics gives a CPU run all cores
    but one (at most 8), so on a 2-core machine two runs use it fully; one on a GPU."""
    cores = os.cpu_count() or 1
    if settings.device != "cpu":
        return 1
    return max(1, cores // max(1, min(8, cores - 1)))


def _train_one(data: Path, architecture: dict[str, Any], folder: Path,
               settings: DetectorTraining) -> None:
    """One run, its log lines in its own ``train.log`` (also in a spawned process)."""
    run = RunFolder.open(folder, "detector")
    run.start_log()
    try:
        train_detector(data, architecture, folder, settings)
    finally:
        run.close()


def train_detectors(jobs: Sequence[tuple[Path, Path]], architecture: dict[str, Any],
                    settings: DetectorTraining) -> None:
    """Train every (data.yaml, run folder) of ``jobs`` with the same settings, as many at
    once as ``parallel_runs`` allows (each in a process of its own), in the order given
    (the longest first)."""
    workers = min(len(jobs), parallel_runs(settings))
    if workers <= 1:
        for data, folder in jobs:
            _train_one(data, architecture, folder, settings)
        return
    context = multiprocessing.get_context("spawn")  # torch threads do not survive fork
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        for done in [pool.submit(_train_one, data, architecture, folder, settings)
                     for data, folder in jobs]:
            done.result()


def fold_runs(detector_run: Path) -> list[tuple[Path, set[str]]]:
    """The fold detectors of a detector run and the studies each held out (none: [])."""
    found = []
    for folder in sorted((detector_run / FOLDS).glob("fold-*")):
        config = RunFolder.open(folder, "detector").config["settings"]
        found.append((folder, set(config["held_out"])))
    return found
