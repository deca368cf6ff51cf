"""The evaluation of one bundle on one test set, written as a report folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ml.bundle import load_bundle
from ml.calibration import LEVELS, ece_of_a_calibrated_model, expected_calibration_error
from ml.evaluate.bootstrap import auc_interval
from ml.evaluate.figures import attention_picture, reliability_png, roc_png
from ml.evaluate.report import evaluation_markdown
from ml.evaluate.scoring import ScoredView, level_metrics, level_scores, score_studies, test_split
from ml.operating_points import operating_points_manifest
from ml.pipeline import Pipeline
from ml.synth.dataset import load_manifest, read_manifest_meta
from ml.train.roi_cache import progress_bar


def picture_views(scored: list[ScoredView], count: int) -> list[ScoredView]:
    """Cancers the model scores highest, then the highest-scored benign views (false
    positives are as instructive), ``count`` in all."""
    ranked = sorted(scored, key=lambda v: -(v.prediction.probability or 0.0))
    cancers = [v for v in ranked if v.view.label == 1 and v.view.boxes]
    benign = [v for v in ranked if v.view.label == 0]
    take = (count + 1) // 2
    return cancers[:take] + benign[:count - min(take, len(cancers))]


def evaluate_bundle(bundle_path: Path, data: Path, out: Path, *, ablation: Path | None = None,
                    pictures: int = 8, device: str = "auto",
                    without_history: bool = True) -> dict[str, Any]:
    """Score the test studies of ``data`` with the bundle; write ``evaluation.json``,
    ``evaluation.md``, ``roc.png``, ``reliability.png`` and ``attention/*.png`` into
    ``out``; return the report. With ``without_history`` the studies are scored a second
    time with every history removed, as the node scores a study that came without an
    order.

    Raises ``BundleError`` for a bad bundle and ``EvaluationError`` for a bad test set.
    """
    bundle = load_bundle(bundle_path)
    studies = test_split(load_manifest(data), data)
    pipeline = Pipeline(bundle, device=device)
    with progress_bar() as bar:
        task = bar.add_task("evaluating studies", total=len(studies))
        scored = score_studies(pipeline, studies,
                               progress=lambda done: bar.update(task, completed=done))
        bare = []
        if without_history:
            task = bar.add_task("evaluating studies without history", total=len(studies))
            bare = score_studies(pipeline, studies, histories=False,
                                 progress=lambda done: bar.update(task, completed=done))
    out.mkdir(parents=True, exist_ok=True)
    metrics = level_metrics(scored, bundle.operating)
    scores = level_scores(scored)
    for level in LEVELS:
        labels, probabilities = scores[level]
        interval = auc_interval(labels, probabilities)
        metrics[level]["auc_95ci"] = [interval.low, interval.high]
        metrics[level]["ece"] = expected_calibration_error(labels, probabilities)
        metrics[level]["ece_if_calibrated"] = ece_of_a_calibrated_model(probabilities)
    figures = [roc_png(dict(scores), out / "roc.png", title=f"{bundle.name} on {data.name}").name,
               reliability_png(dict(scores), out / "reliability.png",
                               title=f"{bundle.name} on {data.name}").name]
    for i, item in enumerate(picture_views(scored, pictures)):
        name = (f"attention/{i:02d}_{item.study.accession}_{item.view.laterality}"
                f"{item.view.view}.png")
        caption = (f"p={item.prediction.probability:.2f} label={item.view.label} "
                   f"{item.view.laterality} {item.view.view}")
        attention_picture(item.view.path, item.prediction.rois, out / name, caption,
                          truth=item.view.boxes)
        figures.append(name)
    meta = read_manifest_meta(data)
    report: dict[str, Any] = {
        "bundle": {"name": bundle.name, "version": bundle.version,
                   "members": [m.get("seed") for m in
                               bundle.manifest.get("training_data", {}).get("members", [])],
                   "files": {k: v for k, v in bundle.manifest["files"].items()
                             if k.endswith(".safetensors")}},
        "data": {"name": data.name, "studies": len(studies), "views": len(scored),
                 "seed": meta.get("seed"), "config": meta.get("config")},
        "threshold": bundle.threshold, "calibration": bundle.operating.calibration,
        "operating_points": operating_points_manifest(bundle.operating),
        "metrics": metrics, "figures": figures,
    }
    if bare:
        report["without_history"] = level_metrics(bare, bundle.operating)
    if ablation is not None:
        summary = json.loads((ablation / "ablation.json").read_text())
        report["ablation"] = {k: v for k, v in summary.items() if k != "runs"}
    (out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "evaluation.md").write_text(evaluation_markdown(report))
    return report
