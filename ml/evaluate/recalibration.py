"""``mmbcd-train calibrate``: fit a bundle's calibration and operating points on a data
set's validation studies, and write the bundle again with them.

A site that adopts a bundle trained elsewhere recalibrates it on its own validation
studies (never its test studies): the weights stay as they are, the probabilities come
to mean the site's cancer rate and the thresholds sit at the site's targets. The new
bundle's manifest records the data set, the studies used and the method.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ml.bundle import load_bundle
from ml.calibration import LevelCalibration, LevelScores, fit_levels
from ml.evaluate.scoring import EvaluationError, level_scores, score_studies
from ml.manifest import MANIFEST, BundleError, manifest_digest, sha256_file
from ml.operating_points import Target, choose_operating_points, operating_points_manifest
from ml.pipeline import Pipeline
from ml.synth.dataset import StudyRecord, load_manifest
from ml.train.export import EVALUATION_FILES
from ml.train.roi_cache import progress_bar
from ml.types import OperatingPoints


def calibration_studies(studies: Sequence[StudyRecord], split: str,
                        data: Path) -> list[StudyRecord]:
    """The studies of ``split``; a data set that marks no split at all gives all of them.

    Raises ``EvaluationError`` for a split the data set does not have, and refuses the
    ``test`` split: a test set that chose a threshold is spent.
    """
    if split == "test":
        raise EvaluationError("calibrating on the test split would spend it: use the "
                              "validation split, or a data set kept for calibration")
    chosen = [s for s in studies if s.split == split]
    if chosen:
        return chosen
    if any(s.split for s in studies):
        raise EvaluationError(f"{data} marks splits but no {split!r} studies")
    return list(studies)


def fit_bundle(bundle_path: Path, data: Path, *, method: str, targets: Mapping[str, Target],
               split: str = "val", device: str = "auto",
               ) -> tuple[LevelCalibration, OperatingPoints, int]:
    """The bundle's raw scores on ``data``'s ``split``, and the calibration and operating
    points fitted on them; returns them with the number of studies used."""
    studies = calibration_studies(load_manifest(data), split, data)
    where = f"{split} split of {data.resolve().name} ({len(studies)} studies)"
    calibration, operating, _ = fit_on_studies(bundle_path, studies, method=method,
                                               targets=targets, where=where, device=device)
    return calibration, operating, len(studies)


def fit_on_studies(bundle_path: Path, studies: Sequence[StudyRecord], *, method: str,
                   targets: Mapping[str, Target], where: str, device: str = "auto",
                   ) -> tuple[LevelCalibration, OperatingPoints, LevelScores]:
    """The bundle's raw scores on ``studies`` through the node's pipeline, and the
    calibration (fitted on ``where``, as the manifest will say) and operating points
    fitted on them; returns them with the raw scores per level."""
    pipeline = Pipeline(load_bundle(bundle_path), device=device)
    with progress_bar() as bar:
        task = bar.add_task(f"scoring the {where}", total=len(studies))
        scored = score_studies(pipeline, studies,
                               progress=lambda done: bar.update(task, completed=done))
    raw = level_scores(scored, raw=True)
    calibration = fit_levels(raw, method, where)
    return calibration, choose_operating_points(raw, calibration, targets), raw


def rewrite_bundle(source: Path, out: Path, updates: dict[str, Any],
                   extra_files: dict[str, bytes] | None = None,
                   remove: Sequence[str] = (), force: bool = False) -> dict[str, Any]:
    """Copy the bundle at ``source`` to ``out`` with manifest ``updates``, ``extra_files``
    added and ``remove`` left out, re-pinned and re-digested; returns the new manifest."""
    if out.exists():
        if not force:
            raise BundleError(f"{out} exists (use --force to replace it)")
        shutil.rmtree(out)
    shutil.copytree(source, out)
    for relative in remove:
        (out / relative).unlink(missing_ok=True)
    for relative, content in (extra_files or {}).items():
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        (out / relative).write_bytes(content)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest.update(updates)
    manifest["files"] = {p.relative_to(out).as_posix(): sha256_file(p)
                         for p in sorted(out.rglob("*")) if p.is_file() and p.name != MANIFEST}
    manifest["digest"] = manifest_digest(manifest)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def recalibrate_bundle(bundle_path: Path, data: Path, out: Path, *, method: str,
                       targets: Mapping[str, Target], split: str = "val",
                       version: str | None = None, device: str = "auto",
                       force: bool = False) -> dict[str, Any]:
    """Fit on ``data``'s ``split`` and write the recalibrated bundle to ``out``."""
    calibration, operating, count = fit_bundle(bundle_path, data, method=method,
                                               targets=targets, split=split, device=device)
    manifest = json.loads((bundle_path / MANIFEST).read_text())
    training = dict(manifest.get("training_data") or {})
    training["calibration_data"] = {"data": str(data.resolve()), "split": split,
                                    "studies": count, "method": method,
                                    "targets": {k: str(v) for k, v in targets.items()}}
    return rewrite_bundle(bundle_path, out, {
        "version": version or manifest.get("version", ""),
        "threshold": operating.study.threshold,
        "operating_points": operating_points_manifest(operating),
        "calibration": calibration.as_manifest(),
        "training_data": training,
        "notes": (manifest.get("notes", "") + f" Recalibrated ({method}) on the "
                  f"{calibration.fitted_on}.").strip(),
    }, remove=EVALUATION_FILES, force=force)  # the old report measured other thresholds
