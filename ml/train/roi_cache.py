"""Where view caches live: in the detector run, one file per (data set, studies, settings),
so every fusion and ablation run on the same detector reuses the ROIs and crops."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from rich.progress import Progress
from torch import nn

from ml.bundle import CropParams
from ml.detector import DetectorParams
from ml.preprocess import PreprocessParams
from ml.synth.dataset import StudyRecord
from ml.train.detector_training import DETECTOR_WEIGHTS
from ml.train.view_cache import ViewCache, build_view_cache

CACHE_FORMAT = 2  # raised whenever ViewCache gains or changes a field


def cache_key(studies: Sequence[StudyRecord], detector_run: Path, params: DetectorParams,
              crop: CropParams, preprocess: PreprocessParams) -> str:
    """A digest of everything the cached crops depend on."""
    weights = (detector_run / DETECTOR_WEIGHTS).stat()
    facts = {"format": CACHE_FORMAT, "views": [str(v.path) for s in studies for v in s.views],
             "labels": [v.label for s in studies for v in s.views],
             "detector": [weights.st_size, weights.st_mtime_ns], "params": repr(params),
             "crop": repr(crop), "preprocess": repr(preprocess)}
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:16]


def cached_views(name: str, studies: Sequence[StudyRecord], detector: nn.Module,
                 detector_run: Path, params: DetectorParams, crop: CropParams,
                 preprocess: PreprocessParams, progress: Progress) -> ViewCache:
    """The view cache of ``studies``: loaded when present, else built (with a progress
    bar named ``name``) and saved under ``detector_run/cache``."""
    key = cache_key(studies, detector_run, params, crop, preprocess)
    path = detector_run / "cache" / f"{key}.pt"
    if path.exists():
        return ViewCache.load(path)
    total = sum(len(s.views) for s in studies)
    task = progress.add_task(f"ROIs and crops ({name})", total=total)
    cache = build_view_cache(studies, detector, params, crop, preprocess,
                             progress=lambda done: progress.update(task, completed=done))
    cache.save(path)
    return cache


def progress_bar() -> Progress:
    """The progress display of every training command."""
    from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
