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

On the CPU the (row, seed) runs train side by side, one process per core (at most
``MAX_WORKERS``) with the cores shared out as torch threads: a small run keeps two
threads busy but not dozens. Every run seeds itself, so a run's result does not depend
on where it ran (up to the rounding of a different thread count).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ml.encoders import load_tokenizer
from ml.evaluate.bootstrap import paired_auc_difference
from ml.manifest import resolve_location
from ml.model import MMBCD
from ml.pipeline import resolve_device
from ml.train.crop_pretraining import pretraining_file
from ml.train.export import load_run_model
from ml.train.fusion_run import Caches, fusion_inputs, prepare_caches, save_result
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
from ml.train.variants import uses_text
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
    bare = (score_cache(model, tokenizer, test, settings, device,
                        texts=without_history(test, settings.text_context))
            if uses_text(model) else scores)  # a history it never reads changes nothing
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


@dataclass(frozen=True)
class Job:
    """One row trained (or reused) with one seed."""

    row: Row
    seed: int
    reuse: Path | None = None  # a fusion run standing in for this row and seed
    keep: Path | None = None  # the fusion run folder this trained row is also kept as


@dataclass
class Bench:
    """What every run of one ablation shares."""

    settings: FusionTraining
    caches: Caches
    pretrained: Path  # folder of the crop pre-trained image encoders (pretraining_file)
    device: torch.device
    fusion_inputs: dict[str, Any]  # a kept run's config beside its settings (fusion_inputs)
    force: bool = False  # a kept run may overwrite a run folder
    text_cache: FrozenTextCache = field(default_factory=FrozenTextCache)


def run_job(job: Job, bench: Bench) -> dict[str, Any]:
    """Train (or load) one row with one seed and measure it (``measure``)."""
    values = row_settings(bench.settings, job.row, job.seed)
    if job.reuse is not None:
        model, _ = load_run_model(RunFolder.open(job.reuse, "fusion"))
        result: dict[str, Any] = {"reused": str(job.reuse)}
    else:
        kept = (RunFolder.create(job.keep, "fusion",
                                 {**dataclasses.asdict(values), **bench.fusion_inputs},
                                 force=bench.force) if job.keep is not None else None)
        try:
            trained = train_fusion(values, bench.caches.detector, bench.caches.train,
                                   bench.caches.val, bench.device,
                                   on_epoch=kept.record_epoch if kept else None,
                                   pretrained=pretraining_file(bench.pretrained,
                                                               dataclasses.asdict(values),
                                                               bench.caches.source),
                                   text_cache=bench.text_cache)
            if kept is not None:
                save_result(kept, trained, bench.caches.counts)
        finally:
            if kept is not None:
                kept.close()
        model, result = trained.model, {"best_epoch": trained.best_epoch}
        if job.keep is not None:
            result["kept"] = str(job.keep)
    return {"seed": job.seed, **result,
            **measure(model.to(bench.device), values, bench.caches, bench.device)}


MAX_WORKERS = 8  # each worker holds its own model, text encoder and caches (~2.5 GB)


def side_by_side(device: torch.device, jobs: int, workers: int = 0) -> int:
    """How many runs train at once: ``workers`` when given, else one per core on the CPU
    (at most ``MAX_WORKERS``; one on a GPU), never more than there are ``jobs``."""
    if workers <= 0:
        workers = min(os.cpu_count() or 1, MAX_WORKERS) if device.type == "cpu" else 1
    return max(1, min(workers, jobs))


_BENCH: list[Bench] = []  # a worker process's bench, set once by _start_worker


def _start_worker(bench: Bench, threads: int) -> None:
    torch.set_num_threads(threads)
    _BENCH.append(bench)


def _worker_job(job: Job) -> dict[str, Any]:
    return run_job(job, _BENCH[0])


def run_jobs(jobs: Sequence[Job], bench: Bench, workers: int,
             on_done: Callable[[Job, dict[str, Any]], None] | None = None
             ) -> list[dict[str, Any]]:
    """``run_job`` of every job, results in the jobs' order; with ``workers`` > 1 in as
    many spawned processes, the cores shared out among them as torch threads.
    ``on_done(job, result)`` follows each finished job."""
    if workers <= 1:
        results = []
        for job in jobs:
            results.append(run_job(job, bench))
            if on_done:
                on_done(job, results[-1])
        return results
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # torch threads do not survive fork
    done: dict[int, dict[str, Any]] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                             initializer=_start_worker,
                             initargs=(bench, threads)) as pool:
        futures = {pool.submit(_worker_job, job): index for index, job in enumerate(jobs)}
        for future in as_completed(futures):
            index = futures[future]
            done[index] = future.result()
            if on_done:
                on_done(jobs[index], done[index])
    return [done[i] for i in range(len(jobs))]


def ablation_jobs(rows: Sequence[Row], seeds: Sequence[int],
                  reuse: Mapping[int, Path] | None = None,
                  keep: Path | None = None) -> list[Job]:
    """Every (row, seed), seed by seed; the recipe row of a seed in ``reuse`` from the
    fusion run it maps to, and that of any other seed, with ``keep``, kept as the fusion
    run ``keep/fusion-SEED`` (``kept_run``). Within a seed one vision row comes first and
    the text-only rows next: the seed's crop pre-training, which its other vision rows
    wait for, is under way while a text-only run needs none."""
    recipe = recipe_key(rows)
    vision = [r for r in rows if r.variant != "text"]
    ordered = vision[:1] + [r for r in rows if r.variant == "text"] + vision[1:]
    reuse = reuse or {}
    jobs = []
    for seed in seeds:
        for row in ordered:
            reused = reuse.get(seed) if row.key == recipe else None
            kept = (kept_run(keep, seed) if keep is not None and row.key == recipe
                    and reused is None else None)
            jobs.append(Job(row, seed, reused, kept))
    return jobs


def kept_run(folder: Path, seed: int) -> Path:
    """Where ``ablate --recipe-runs folder`` keeps the recipe row of ``seed``."""
    return folder / f"fusion-{seed}"


def reused_runs(runs: Sequence[Path], seeds: Sequence[int]) -> dict[int, Path]:
    """Fusion runs of the recipe by their seed; ``ValueError`` for two runs of one seed
    or a run of a seed the ablation does not train."""
    by_seed: dict[int, Path] = {}
    for path in runs:
        seed = int(RunFolder.open(path, "fusion").config["settings"]["seed"])
        if seed in by_seed:
            raise ValueError(f"--reuse {path}: {by_seed[seed]} is already the run of "
                             f"seed {seed}")
        if seed not in seeds:
            raise ValueError(f"--reuse {path}: its seed {seed} is not among the seeds "
                             f"{list(seeds)}")
        by_seed[seed] = path
    return by_seed


def run_ablation(settings: FusionTraining, data: Path, test: Path, detector_run: Path,
                 out: Path, *, seeds: Sequence[int] = (0, 1, 2), rows: Sequence[str] | None = None,
                 val_fraction: float = 0.2, reuse: Sequence[Path] = (),
                 pretrained: Path | None = None, resamples: int = 2000, workers: int = 0,
                 recipe_runs: Path | None = None, force: bool = False) -> dict[str, Any]:
    """Train and test every row with every seed; writes ``ablation.json`` and
    ``ablation.md`` into ``out``; returns the summary. Each run in ``reuse`` (fusion runs
    of the recipe) stands in for the recipe row of its own seed. ``pretrained``: the
    folder of crop pre-trained encoders, shared with fusion runs (default
    ``out/pretrained``). ``workers``: runs side by side (0: ``side_by_side`` decides).
    ``recipe_runs``: a folder where the recipe row of every seed it trains is also kept as
    a fusion run (``kept_run``), as ``mmbcd-train fusion`` would write it, for
    ``ensemble`` and ``export``: the recipe's runs then train side by side with the
    other rows instead of one after another before them."""
    from ml.evaluate.report import ablation_markdown

    device = resolve_device(settings.device)
    chosen_rows = rows_for(settings, rows)
    jobs = ablation_jobs(chosen_rows, seeds, reused_runs(reuse, seeds), recipe_runs)
    for job in jobs:  # before anything is written or trained
        if job.keep is not None:
            RunFolder.refuse_used(job.keep, force)
    run = RunFolder.create(out, "ablation", {**dataclasses.asdict(settings),
                                             "data": str(data.resolve()),
                                             "test": str(test.resolve()),
                                             "detector_run": str(detector_run.resolve()),
                                             "reuse": [str(p) for p in reuse],
                                             "recipe_runs": (str(recipe_runs.resolve())
                                                             if recipe_runs else None),
                                             "seeds": list(seeds),
                                             "rows": [r.key for r in chosen_rows],
                                             "val_fraction": val_fraction}, force=force)
    try:
        caches = prepare_caches(data, detector_run, settings, val_fraction, test,
                                with_test=True)
        folder = pretrained or out / "pretrained"
        bench = Bench(settings, caches, folder, device,
                      fusion_inputs(data, detector_run, test, val_fraction, settings.seed,
                                    folder, device), force)
        at_once = side_by_side(device, len(jobs), workers)
        log.info("event=ablation_start runs=%d side_by_side=%d", len(jobs), at_once)
        with progress_bar() as bar:
            task = bar.add_task(f"ablation ({at_once} at once)", total=len(jobs))

            def finished(job: Job, result: dict[str, Any]) -> None:
                log.info("event=ablation_row row=%s seed=%d auc_study=%.4f", job.row.key,
                         job.seed, result["test"]["study"])
                bar.update(task, advance=1,
                           description=f"ablation: {job.row.name}, seed {job.seed} done")

            results = run_jobs(jobs, bench, at_once, finished)
        runs: dict[str, list[dict[str, Any]]] = {r.key: [] for r in chosen_rows}
        for job, result in zip(jobs, results, strict=True):
            runs[job.row.key].append(result)
        summary = summarise(chosen_rows, runs, resamples)
        summary["choice"] = validation_choice(summary)
        summary["studies"] = caches.counts
        summary["seeds"] = list(seeds)
        summary["side_by_side"] = at_once
        run.write_json("ablation.json", {**summary, "runs": runs})
        (out / "ablation.md").write_text(ablation_markdown(summary) + "\n")
        return summary
    finally:
        run.close()
