"""``mmbcd-train ensemble``: fusion runs of one recipe, trained with different seeds, as one
model that averages their view scores.

The members' own calibrations do not apply to the average, so the ensemble is calibrated
again, and given its operating points, on the validation studies that every member chose
its checkpoint on, scored through the node's pipeline as a bundle would be. Members must
share the data set, the validation split, the detector run and the architecture; the
ensemble run folder names them and holds the fitted ``result.json`` that ``export`` reads.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ml.evaluate.metrics import binary_metrics
from ml.evaluate.recalibration import fit_on_studies
from ml.operating_points import operating_points_manifest, targets_of
from ml.synth.dataset import StudyRecord, load_manifest
from ml.train.export import ENSEMBLE, RUN_RESULT, write_bundle
from ml.train.fusion_run import split_seed
from ml.train.run_folder import RunFolder
from ml.train.splits import training_splits

log = logging.getLogger(__name__)


class EnsembleError(ValueError):
    """Runs that cannot form an ensemble; the message names the run and what differs."""


def shared_validation(members: Sequence[RunFolder]) -> list[StudyRecord]:
    """The validation studies every member chose its checkpoint on.

    Raises ``EnsembleError`` for fewer than two members, or members that differ in data
    set, detector run or validation split (a member that trained on another's validation
    studies would make the ensemble's calibration optimistic).
    """
    if len(members) < 2:
        raise EnsembleError("an ensemble needs at least two fusion runs")
    first = members[0].config["settings"]
    studies = load_manifest(Path(first["data"]))  # every member's, as checked below
    splits = []
    for member in members:
        settings = member.config["settings"]
        for key in ("data", "detector_run"):
            if settings[key] != first[key]:
                raise EnsembleError(f"{member.path}: its {key} {settings[key]} is not "
                                    f"{members[0].path}'s {first[key]}")
        splits.append(training_splits(studies, float(settings["val_fraction"]),
                                      split_seed(settings)))
    val_ids = {s.study_uid for s in splits[0].val}
    for member, split in zip(members[1:], splits[1:], strict=True):
        if {s.study_uid for s in split.val} != val_ids:
            raise EnsembleError(f"{member.path}: its validation split differs from "
                                f"{members[0].path}'s (mark the splits in the data set's "
                                "manifest, or train every member with the same seed's split)")
    return splits[0].val


def run_ensemble(runs: Sequence[Path], out: Path, *, device: str = "auto",
                 force: bool = False) -> dict[str, Any]:
    """Make the ensemble run ``out`` of the fusion runs ``runs``; returns its result
    (per-level calibration, operating points and validation metrics)."""
    members = [RunFolder.open(path, "fusion") for path in runs]
    val = shared_validation(members)
    settings = members[0].config["settings"]
    run = RunFolder.create(out, ENSEMBLE, {
        "runs": [str(m.path.resolve()) for m in members], "data": settings["data"],
        "calibration": settings["calibration"],
        "operating_targets": settings["operating_targets"], "device": device}, force=force)
    try:
        best_epochs = [m.read_json(RUN_RESULT)["best_epoch"] for m in members]
        with tempfile.TemporaryDirectory() as tmp:
            bundle = Path(tmp) / "bundle"
            write_bundle(members, {"threshold": 0.5, "best_epoch": best_epochs,
                                   "val_metrics": {}}, bundle,
                         name="ensemble (uncalibrated)", version="", notes="")
            calibration, operating, raw = fit_on_studies(
                bundle, val, method=settings["calibration"],
                targets=targets_of(settings["operating_targets"]),
                where=f"validation split ({len(val)} studies)", device=device)
        metrics = {level: binary_metrics(labels, calibration.level(level)(scores).tolist(),
                                         getattr(operating, level).threshold).as_dict()
                   for level, (labels, scores) in raw.items()}
        result = {"best_epoch": best_epochs, "threshold": operating.study.threshold,
                  "val_metrics": metrics, "calibration": calibration.as_manifest(),
                  "operating_points": operating_points_manifest(operating)}
        run.write_json(RUN_RESULT, result)
        log.info("event=ensemble_done members=%d val_auc_view=%.4f val_auc_study=%.4f",
                 len(members), metrics["view"]["auc"], metrics["study"]["auc"])
        return result
    finally:
        run.close()
