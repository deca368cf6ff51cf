"""One fusion run end to end: splits, cached ROIs, training, and the run folder's files
(``model.safetensors``, ``model_section.json``, ``keywords.json``, ``result.json``)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.progress import Progress
from safetensors.torch import save_file
from torch import nn

from ml.bundle import CropParams
from ml.detector import DetectorParams
from ml.operating_points import operating_points_manifest
from ml.pipeline import resolve_device
from ml.preprocess import PreprocessParams
from ml.synth.dataset import StudyRecord, load_manifest, read_manifest_meta
from ml.train.crop_pretraining import pretraining_file
from ml.train.detector_folds import fold_runs
from ml.train.detector_training import load_detector
from ml.train.export import RUN_RESULT, RUN_SECTION, RUN_WEIGHTS
from ml.train.fusion_training import FusionResult, FusionTraining, train_fusion
from ml.train.roi_cache import cached_views, progress_bar
from ml.train.run_folder import CONFIG, RunFolder
from ml.train.splits import Splits, check_disjoint, test_studies, training_splits
from ml.train.view_cache import ViewCache, concat_caches

log = logging.getLogger(__name__)


@dataclass
class Caches:
    train: ViewCache
    val: ViewCache
    test: ViewCache | None
    detector: DetectorParams
    counts: dict[str, int]
    source: str  # digest of the data set, the detector run and the train/val studies


def caches_source(data: Path, detector_run: Path, splits: Splits) -> str:
    """What identifies the training ROIs: which data set, which detector run (its config,
    which a retrained detector writes anew) and which studies train and validate
    (``Caches.source``)."""
    key = [str(data.resolve()), str(detector_run.resolve()),
           (detector_run / CONFIG).read_text(),
           sorted(s.study_uid for s in splits.train), sorted(s.study_uid for s in splits.val)]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def detector_params(detector_run: Path, k: int) -> DetectorParams:
    """The inference parameters of a detector run (its training input size, our NMS)."""
    settings = RunFolder.open(detector_run, "detector").config["settings"]
    return DetectorParams(imgsz=int(settings["imgsz"]), k=k)


def prepare_caches(data: Path, detector_run: Path, settings: FusionTraining,
                   val_fraction: float, test: Path | None, with_test: bool) -> Caches:
    """Splits of ``data`` (and the test set ``test``, else its ``test`` studies), checked
    to be disjoint, and their view caches from the detector run."""
    studies = load_manifest(data)
    splits = training_splits(studies, val_fraction, settings.seed)
    tests = test_studies(load_manifest(test) if test else studies, separate=test is not None)
    check_disjoint({"train": splits.train, "val": splits.val, "test": tests})
    params = detector_params(detector_run, settings.k)
    detector, _ = load_detector(detector_run)
    crop = CropParams(size=settings.crop_size)
    preprocess = PreprocessParams()
    with progress_bar() as bar:
        train = training_views(splits.train, detector, detector_run, params, crop,
                               preprocess, bar)
        val = cached_views("val", splits.val, detector, detector_run, params, crop,
                           preprocess, bar)
        test_cache = (cached_views("test", tests, detector, detector_run, params, crop,
                                   preprocess, bar) if with_test and tests else None)
    counts = {"train": len(splits.train), "val": len(splits.val), "test": len(tests),
              "out_of_fold_detectors": len(fold_runs(detector_run))}
    return Caches(train, val, test_cache, params, counts,
                  caches_source(data, detector_run, splits))


def training_views(studies: list[StudyRecord], detector: nn.Module, detector_run: Path,
                   params: DetectorParams, crop: CropParams, preprocess: PreprocessParams,
                   bar: Progress) -> ViewCache:
    """The training studies' view cache: with the detector run's out-of-fold detectors,
    each study's ROIs from the detector that held it out, and a study no detector trained
    on (none of its views was drawn for detector training) from the main detector, which
    never saw it either; without folds, from the detector itself."""
    folds = fold_runs(detector_run)
    if not folds:
        return cached_views("train", studies, detector, detector_run, params, crop,
                            preprocess, bar)
    parts = []
    for index, (folder, held_out) in enumerate(folds):
        fold_detector, _ = load_detector(folder)
        parts.append(cached_views(f"train, fold {index}",
                                  [s for s in studies if s.study_uid in held_out],
                                  fold_detector, folder, params, crop, preprocess, bar))
    unseen = [s for s in studies if not any(s.study_uid in held for _, held in folds)]
    if unseen:
        parts.append(cached_views("train, unseen by the detectors", unseen, detector,
                                  detector_run, params, crop, preprocess, bar))
    return concat_caches(parts)


def fusion_inputs(data: Path, detector_run: Path, test: Path | None, val_fraction: float,
                  split_seed: int, pretrained: Path | None, device: Any) -> dict[str, Any]:
    """What a fusion run's config records beside its settings: where its data, detector
    and pre-training came from, and ``split_seed``, the seed whose draw made its
    validation split (``training_splits``) when the data set marks none."""
    return {"data": str(data.resolve()), "data_meta": read_manifest_meta(data),
            "detector_run": str(detector_run.resolve()),
            "test": str(test.resolve()) if test else None, "val_fraction": val_fraction,
            "split_seed": split_seed,
            "pretrained": str(pretrained.resolve()) if pretrained else None,
            "preprocess": asdict(PreprocessParams()), "device_used": str(device)}


def split_seed(settings: dict[str, Any]) -> int:
    """The seed that drew a fusion run's validation split, from its config's settings
    (runs written before ``split_seed`` was recorded drew it with their own seed)."""
    return int(settings.get("split_seed", settings["seed"]))


def save_result(run: RunFolder, result: FusionResult, counts: dict[str, int]) -> None:
    """The trained model and what export needs, in the run folder."""
    frozen = not any(p.requires_grad for p in result.model.text_encoder.parameters())
    state = {k: v.detach().contiguous().cpu() for k, v in result.model.state_dict().items()
             if not (frozen and k.startswith("text_encoder."))}
    save_file(state, str(run.path / RUN_WEIGHTS))
    run.write_json(RUN_SECTION, result.model_section)
    run.write_json("keywords.json", result.keywords)
    run.write_json(RUN_RESULT, {"best_epoch": result.best_epoch, "threshold": result.threshold,
                                "val_metrics": result.val_metrics, "studies": counts,
                                "pretrain_val_crop_auc": result.pretrain_auc,
                                "calibration": result.calibration.as_manifest(),
                                "operating_points": (
                                    operating_points_manifest(result.operating)
                                    if result.operating else None)})


def run_fusion(settings: FusionTraining, data: Path, detector_run: Path, out: Path, *,
               test: Path | None = None, val_fraction: float = 0.2,
               pretrained: Path | None = None, force: bool = False) -> FusionResult:
    """Train a fusion run into ``out``; returns the result (best checkpoint, threshold).
    ``pretrained``: a folder where the crop pre-trained image encoder is kept and found
    (``ml.train.crop_pretraining.pretraining_file``), shared with other runs and the
    ablation; without it the run pre-trains for itself.

    Raises ``ValueError`` subclasses for a bad data set, overlapping splits or a used
    run folder.
    """
    device = resolve_device(settings.device)
    inputs = fusion_inputs(data, detector_run, test, val_fraction, settings.seed, pretrained,
                           device)
    run = RunFolder.create(out, "fusion", {**asdict(settings), **inputs}, force=force)
    try:
        caches = prepare_caches(data, detector_run, settings, val_fraction, test,
                                with_test=False)
        log.info("event=fusion_start variant=%s train_views=%d val_views=%d device=%s",
                 settings.variant, len(caches.train), len(caches.val), device)
        with progress_bar() as bar:
            task = bar.add_task(f"fusion ({settings.variant})", total=None)
            saved = (pretraining_file(pretrained, asdict(settings), caches.source)
                     if pretrained is not None else None)
            result = train_fusion(settings, caches.detector, caches.train, caches.val, device,
                                  on_epoch=run.record_epoch, pretrained=saved,
                                  progress=lambda done, total: bar.update(
                                      task, completed=done, total=total))
        save_result(run, result, caches.counts)
        log.info("event=fusion_done best_epoch=%d threshold=%.4f val_auc_view=%.4f",
                 result.best_epoch, result.threshold, result.val_metrics["view"]["auc"])
        return result
    finally:
        run.close()
