"""``mmbcd-train ablate``: the paper's Table 2 and what our recipe adds, several seeds per
row, with paired bootstrap intervals.

Rows (``ROWS``): text only; vision only; vision + text (concatenation); + attention
(full MMBCD, no keyword masking); + keyword masking (full MMBCD as the paper trains it,
the history alone as text); and, when the recipe has them, + side and history dropout
(the recipe's text context and history dropout) and the recipe without the detector's
confidence feature. Every row trains with the same data, ROIs and settings except what
it names, once per seed; each seed picks its checkpoint on the validation split and is
measured once on the test split, also with every history removed.

The summary gives each row's mean and standard deviation over seeds at view, breast and
study level, and paired bootstrap 95% intervals at study level (studies resampled,
each row's AUC averaged over its seeds) for the recipe against vision only, text only
and the rows it differs from by one choice. ``choice`` names the text context the
validation split prefers (never the test split).
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml.encoders import load_tokenizer
from ml.evaluate.bootstrap import paired_auc_difference
from ml.manifest import resolve_location
from ml.model import MMBCD
from ml.pipeline import resolve_device
from ml.train.export import load_run_model
from ml.train.fusion_run import Caches, prepare_caches
from ml.train.fusion_training import (
    FrozenTextCache,
    FusionTraining,
    cache_level_scores,
    evaluate_cache,
    score_cache,
    train_fusion,
)
from ml.train.roi_cache import progress_bar
from ml.train.run_folder import RunFolder
from ml.train.view_texts import without_history

log = logging.getLogger(__name__)
LEVELS = ("view", "breast", "study")


@dataclass(frozen=True)
class Row:
    key: str
    name: str
    variant: str
    masked: bool
    changes: dict[str, Any] = field(default_factory=dict)  # settings replaced


HISTORY_ONLY = {"text_context": "none", "history_dropout": 0.0}
ROWS = (
    Row("text", "text only", "text", False, HISTORY_ONLY),
    Row("vision", "vision only", "vision", False, HISTORY_ONLY),
    Row("concat", "vision + text (concat)", "concat", False, HISTORY_ONLY),
    Row("attention", "+ attention", "attention", False, HISTORY_ONLY),
    Row("masking", "+ keyword masking", "attention", True, HISTORY_ONLY),
    Row("full", "+ side and history dropout", "attention", True),
    Row("no-confidence", "full − detector confidence", "attention", True,
        {"roi_scores": False}),
)
# The differences reported with intervals: (recipe row, compared row).
COMPARISONS = (("full", "vision"), ("full", "text"), ("full", "masking"),
               ("full", "no-confidence"))


def rows_for(settings: FusionTraining, keys: Sequence[str] | None = None) -> list[Row]:
    """The rows that mean something for ``settings``: ``full`` only when the recipe adds a
    text context or history dropout, ``no-confidence`` only when it uses the confidence."""
    chosen = [r for r in ROWS if keys is None or r.key in keys]
    adds = settings.text_context != "none" or settings.history_dropout > 0
    return [r for r in chosen if (r.key != "full" or adds)
            and (r.key != "no-confidence" or settings.roi_scores)]


def recipe_key(rows: Sequence[Row]) -> str:
    """The row that is the recipe itself."""
    return "full" if any(r.key == "full" for r in rows) else "masking"


def row_settings(settings: FusionTraining, row: Row, seed: int) -> FusionTraining:
    return dataclasses.replace(settings, variant=row.variant, seed=seed,
                               keyword_p=settings.keyword_p if row.masked else 0.0,
                               **row.changes)


def measure(model: MMBCD, settings: FusionTraining, caches: Caches, device: Any
            ) -> dict[str, Any]:
    """Validation and test AUCs of one trained row, with and without the histories; the
    test scores per level are kept for the bootstrap."""
    tokenizer = load_tokenizer(resolve_location(settings.text_location))
    test = caches.test
    assert test is not None
    scores = score_cache(model, tokenizer, test, settings, device)
    val = score_cache(model, tokenizer, caches.val, settings, device)
    bare = score_cache(model, tokenizer, test, settings, device,
                       texts=without_history(test, settings.text_context))
    levels = cache_level_scores(test, scores)
    return {"test": {level: m["auc"] for level, m in evaluate_cache(test, scores, 0.5).items()},
            "val": {level: m["auc"] for level, m in
                    evaluate_cache(caches.val, val, 0.5).items()},
            "test_without_history": {level: m["auc"] for level, m in
                                     evaluate_cache(test, bare, 0.5).items()},
            "scores": {level: levels[level][1] for level in LEVELS},
            "labels": {level: levels[level][0] for level in LEVELS}}


def summarise(rows: Sequence[Row], runs: dict[str, list[dict[str, Any]]],
              resamples: int) -> dict[str, Any]:
    """Mean and standard deviation per row and level, and the study-level intervals."""
    table = []
    for row in rows:
        seeds = runs[row.key]
        entry: dict[str, Any] = {"key": row.key, "name": row.name, "seeds": len(seeds)}
        for split in ("test", "val", "test_without_history"):
            for level in LEVELS:
                values = [run[split][level] for run in seeds]
                entry[f"{split}_{level}"] = {
                    "mean": statistics.fmean(values),
                    "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "values": values}
        table.append(entry)
    intervals = []
    keys = {r.key for r in rows}
    recipe = recipe_key(rows)
    for first, second in COMPARISONS:
        first = recipe if first == "full" else first
        if first not in keys or second not in keys or first == second:
            continue
        labels = runs[first][0]["labels"]["study"]
        interval = paired_auc_difference(
            labels, [r["scores"]["study"] for r in runs[first]],
            [r["scores"]["study"] for r in runs[second]], resamples=resamples)
        intervals.append({"first": first, "second": second, "level": "study",
                          "difference": interval.estimate, "low": interval.low,
                          "high": interval.high, "resamples": interval.resamples})
    return {"rows": table, "intervals": intervals}


def validation_choice(summary: dict[str, Any]) -> dict[str, Any] | None:
    """Which text the validation split prefers: the recipe's context and dropout
    (``full``) or the history alone (``masking``), by mean validation view AUC."""
    by_key = {r["key"]: r for r in summary["rows"]}
    if "full" not in by_key or "masking" not in by_key:
        return None
    full, plain = by_key["full"]["val_view"]["mean"], by_key["masking"]["val_view"]["mean"]
    return {"rule": "higher mean validation view AUC over seeds", "full": full,
            "masking": plain, "chosen": "full" if full >= plain else "masking"}


def run_ablation(settings: FusionTraining, data: Path, test: Path, detector_run: Path,
                 out: Path, *, seeds: Sequence[int] = (0, 1, 2), rows: Sequence[str] | None = None,
                 val_fraction: float = 0.2, reuse: Path | None = None,
                 resamples: int = 2000, force: bool = False) -> dict[str, Any]:
    """Train and test every row with every seed; writes ``ablation.json`` and
    ``ablation.md`` into ``out``; returns the summary. ``reuse`` (a fusion run of the
    recipe) stands in for the recipe row of its own seed."""
    from ml.evaluate.report import ablation_markdown

    device = resolve_device(settings.device)
    chosen_rows = rows_for(settings, rows)
    run = RunFolder.create(out, "ablation", {**dataclasses.asdict(settings),
                                             "data": str(data.resolve()),
                                             "test": str(test.resolve()),
                                             "detector_run": str(detector_run.resolve()),
                                             "reuse": str(reuse) if reuse else None,
                                             "seeds": list(seeds),
                                             "rows": [r.key for r in chosen_rows],
                                             "val_fraction": val_fraction}, force=force)
    try:
        caches = prepare_caches(data, detector_run, settings, val_fraction, test,
                                with_test=True)
        reused = RunFolder.open(reuse, "fusion") if reuse is not None else None
        runs: dict[str, list[dict[str, Any]]] = {r.key: [] for r in chosen_rows}
        text_cache = FrozenTextCache()  # the frozen text layers are the same in every run
        recipe = recipe_key(chosen_rows)
        with progress_bar() as bar:
            task = bar.add_task("ablation", total=len(chosen_rows) * len(seeds))
            for seed in seeds:
                for row in chosen_rows:
                    bar.update(task, description=f"ablation: {row.name}, seed {seed}")
                    values = row_settings(settings, row, seed)
                    if (reused is not None and row.key == recipe
                            and int(reused.config["settings"]["seed"]) == seed):
                        model, _ = load_run_model(reused)
                        result: dict[str, Any] = {"reused": str(reuse)}
                    else:
                        trained = train_fusion(values, caches.detector, caches.train,
                                               caches.val, device,
                                               pretrained=out / "pretrained" / f"{seed}.pt",
                                               text_cache=text_cache)
                        model, result = trained.model, {"best_epoch": trained.best_epoch}
                    runs[row.key].append({"seed": seed, **result,
                                          **measure(model.to(device), values, caches, device)})
                    log.info("event=ablation_row row=%s seed=%d auc_study=%.4f", row.key,
                             seed, runs[row.key][-1]["test"]["study"])
                    bar.advance(task)
        summary = summarise(chosen_rows, runs, resamples)
        summary["choice"] = validation_choice(summary)
        summary["studies"] = caches.counts
        summary["seeds"] = list(seeds)
        run.write_json("ablation.json", {**summary, "runs": runs})
        (out / "ablation.md").write_text(ablation_markdown(summary) + "\n")
        return summary
    finally:
        run.close()

