"""``mmbcd-train detector``, ``fusion`` and ``export``: train the two models and make a bundle.

Torch, Ultralytics and the models load inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from ml.evaluate.command import CALIBRATION, OPERATING_POINT

DATA = typer.Option(..., "--data", help="Data set folder with manifest.json (mmbcd-train synth "
                    "writes one; see README 'Training on your own data').")
SEED = typer.Option(0, "--seed", min=0, help="Seed of every random draw of the run.")
DEVICE = typer.Option("auto", "--device", help="auto, cpu or cuda[:N].")
FORCE = typer.Option(False, "--force", help="Overwrite an existing run folder.")
VAL_FRACTION = typer.Option(0.2, "--val-fraction", min=0.05, max=0.5,
                            help="Validation share when the manifest marks no 'val' split.")

PRETRAIN_EPOCHS = typer.Option(
    None, "--pretrain-epochs", min=0, help="Epochs of supervised pre-training of the image "
    "encoder on labelled ROI crops before fusion training (0: none).")
ROI_SCORES = typer.Option(None, "--roi-scores/--no-roi-scores",
                          help="Give each ROI feature the detector's confidence as well as "
                          "the crop's embedding.")
TRAINABLE_TEXT_LAYERS = typer.Option(
    None, "--trainable-text-layers", min=0, help="Last transformer layers of the text encoder "
    "that train (0: frozen; the authors trained RoBERTa's last 2).")
PRETRAIN_LR = typer.Option(None, "--pretrain-lr", help="Adam learning rate of the crop "
                           "pre-training.")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def detector(
    data: Path = DATA,
    out: Path = typer.Option(..., "--out", help="Run folder to create."),
    imgsz: int = typer.Option(384, "--imgsz", min=64, help="Detector input side, 64 to 1280, "
                              "a multiple of 32."),
    epochs: int = typer.Option(12, "--epochs", min=1),
    batch: int = typer.Option(16, "--batch", min=2),
    lr0: float = typer.Option(0.002, "--lr", help="AdamW learning rate."),
    width: float | None = typer.Option(None, "--width", min=0.03, max=1.0,
                                       help="Width multiple of the YOLO architecture "
                                            "(channels; default 0.0625). Not with --init."),
    init: Path | None = typer.Option(None, "--init", help="Ultralytics detection checkpoint "
                                     "(.pt, YOLOv8/YOLO11, any scale and class count) to start "
                                     "from: its architecture and weights, a one-class head."),
    patience: int = typer.Option(10, "--patience", min=1),
    validate_last: int | None = typer.Option(
        None, "--validate-last", min=1, help="Validate, and choose the checkpoint, over the "
        "last N epochs only (default: every epoch); saves the validation passes of the "
        "early epochs, whose weights are never kept."),
    warmup: float = typer.Option(3.0, "--warmup-epochs", min=0.0),
    background: float = typer.Option(1.0, "--background-per-lesion-view", min=0.0,
                                     help="Benign views kept as background per view with a box."),
    folds: int = typer.Option(0, "--folds", min=0, help="Also train this many out-of-fold "
                              "detectors (at least 2), so fusion training takes each "
                              "training study's ROIs from a detector that never saw it."),
    val_fraction: float = VAL_FRACTION, seed: int = SEED, device: str = DEVICE,
    force: bool = FORCE,
) -> None:
    """Train the ROI detector (Ultralytics YOLO) on the data set's lesion boxes, and with
    --folds the out-of-fold detectors of fusion training."""
    from ml.offline import configure_ultralytics

    configure_ultralytics()
    from ml.preprocess import PreprocessParams
    from ml.random_bundle import TINY_DETECTOR
    from ml.synth.dataset import ManifestError, load_manifest
    from ml.train.detector_folds import train_detectors
    from ml.train.detector_training import (
        MAX_IMGSZ,
        DetectorTraining,
        InitCheckpointError,
        detector_views,
        read_init_checkpoint,
        write_yolo_dataset,
    )
    from ml.train.roi_cache import progress_bar
    from ml.train.run_folder import RunFolder, RunFolderError
    from ml.train.splits import SplitError, training_splits

    if folds == 1:
        _fail("--folds needs at least 2 folds (0: none)")
    if imgsz % 32:
        _fail(f"--imgsz {imgsz} is not a multiple of 32 (the detector's stride)")
    if imgsz > MAX_IMGSZ:
        _fail(f"--imgsz {imgsz} is above {MAX_IMGSZ}, the largest detector input")
    if init is not None and width is not None:
        _fail("--width and --init do not combine: with --init the architecture, its width "
              "included, is the checkpoint's")
    try:
        start = read_init_checkpoint(init) if init is not None else None
    except InitCheckpointError as exc:
        _fail(str(exc))
        return
    settings = DetectorTraining(imgsz=imgsz, epochs=epochs, batch=batch, lr0=lr0,
                                patience=patience, validate_last=validate_last,
                                warmup_epochs=warmup,
                                width=None if start else (width or DetectorTraining.width),
                                init=start, background_per_lesion_view=background,
                                seed=seed, device="cpu" if device == "auto" else device)
    try:
        splits = training_splits(load_manifest(data), val_fraction, seed)
        run = RunFolder.create(out, "detector", {**asdict(settings), "data": str(data.resolve()),
                                                 "val_fraction": val_fraction}, force=force)
    except (ManifestError, SplitError, RunFolderError) as exc:
        _fail(str(exc))
        return
    train_views = detector_views(splits.train, background, seed)
    val_views = detector_views(splits.val, background, seed + 1)
    with progress_bar() as bar:
        task = bar.add_task("detector images", total=len(train_views) + len(val_views))
        data_yaml = write_yolo_dataset(train_views, val_views, out / "yolo", imgsz,
                                       PreprocessParams(), progress=lambda: bar.advance(task))
    run.close()  # each run logs into its own train.log while it trains
    jobs = [(data_yaml, out)]
    if folds:
        from ml.train.detector_folds import prepare_fold_runs

        jobs += prepare_fold_runs(train_views, out / "yolo", out, settings, folds,
                                  {"data": str(data.resolve()), "val_fraction": val_fraction})
    train_detectors(jobs, TINY_DETECTOR, settings)
    typer.echo(f"detector written to {out}/detector.yaml + detector.safetensors"
               + (f", {folds} out-of-fold detectors under {out}/folds" if folds else ""))


def fusion_settings(recipe: str | None, **values: Any) -> Any:
    """``FusionTraining`` from a recipe and command-line values (``None`` keeps the
    recipe's value, or the default without a recipe)."""
    from ml.train.fusion_training import FusionTraining
    from ml.train.recipes import RECIPES, recipe_settings

    base = RECIPES.get(recipe or "", {})
    overrides = dict(base.get("image_overrides", FusionTraining().image_overrides))
    for key in ("embed_dim", "depth", "num_heads", "patch_size"):
        if values.get(key) is not None:
            overrides[key] = values.pop(key)
        values.pop(key, None)
    beta1, beta2 = values.pop("beta1"), values.pop("beta2")
    if beta1 is not None or beta2 is not None:
        default = base.get("betas", FusionTraining().betas)
        values["betas"] = (beta1 if beta1 is not None else default[0],
                           beta2 if beta2 is not None else default[1])
    values["image_overrides"] = overrides
    if recipe is None:
        return FusionTraining(**{**asdict(FusionTraining()),
                                 **{k: v for k, v in values.items() if v is not None}})
    return recipe_settings(recipe, **values)


def _settings_or_fail(recipe: str | None, **values: Any) -> Any:
    from ml.train.recipes import RecipeError

    try:
        return fusion_settings(recipe, **values)
    except RecipeError as exc:
        _fail(str(exc))


def _targets_or_fail(items: list[str]) -> dict[str, str] | None:
    """``--operating-point`` items as the settings' targets (None: the defaults)."""
    from ml.operating_points import TargetError, parse_targets

    if not items:
        return None
    try:
        return {level: str(target) for level, target in parse_targets(items).items()}
    except TargetError as exc:
        _fail(str(exc))
        raise


TEXT_CONTEXT = typer.Option(None, "--text-context", help="What the text encoder reads "
                            "besides the history: none, or side (the view's breast first).")
HISTORY_DROPOUT = typer.Option(None, "--history-dropout", min=0.0, max=1.0,
                               help="Share of training views shown without their history "
                               "each epoch (a study without an order is then in "
                               "distribution).")
EMA_DECAY = typer.Option(None, "--ema-decay", min=0.0, max=0.9999,
                         help="Validate and keep an exponential moving average of the "
                         "weights, updated every step with this decay (0: the weights as "
                         "trained).")
RECIPE = typer.Option(None, "--recipe", help="demo (CPU-sized, make demo-model) or paper "
                      "(ViT-S/8 on 224-px crops, roberta-base; README 'For sites'); options "
                      "given override it.")
PRETRAINED = typer.Option(None, "--pretrained", help="Folder that keeps the crop pre-trained "
                          "image encoders, shared by runs that pre-train alike (an "
                          "ensemble's fusion runs and their ablation).")
IMAGE_WEIGHTS = typer.Option(None, "--image-weights", help="Pretrained ViT weights: DINO's "
                             ".pth, timm's .safetensors or a Hugging Face folder; pinned by "
                             "SHA-256 in the manifest.")


def fusion(
    data: Path = DATA,
    detector_run: Path = typer.Option(..., "--detector", help="Detector run folder."),
    out: Path = typer.Option(..., "--out", help="Run folder to create."),
    test: Path | None = typer.Option(None, "--test", help="Test data set: only checked for "
                                     "overlap with the validation split, never used."),
    variant: str | None = typer.Option(None, "--variant",
                                help="attention (full MMBCD), concat, vision or text."),
    epochs: int | None = typer.Option(None, "--epochs", min=1),
    batch: int | None = typer.Option(None, "--batch", min=2),
    lr: float | None = typer.Option(None, "--lr", help="Adam learning rate (default 3e-4; "
                                    "the paper recipe: 1e-6 from pretrained weights)."),
    beta1: float | None = typer.Option(None, "--beta1"),
    beta2: float | None = typer.Option(None, "--beta2"),
    patience: int | None = typer.Option(None, "--patience", min=1),
    keyword_count: int | None = typer.Option(None, "--keywords", min=0),
    keyword_p: float | None = typer.Option(None, "--keyword-p", min=0.0, max=1.0,
                                    help="Drop probability of each keyword (0: no masking)."),
    k: int | None = typer.Option(None, "--k", min=1, help="ROIs per view."),
    crop_size: int | None = typer.Option(None, "--crop-size", min=16),
    embed_dim: int | None = typer.Option(None, "--vit-dim"),
    depth: int | None = typer.Option(None, "--vit-depth"),
    num_heads: int | None = typer.Option(None, "--vit-heads"),
    patch_size: int | None = typer.Option(None, "--vit-patch"),
    frozen_blocks: int | None = typer.Option(
        None, "--frozen-blocks", min=0, help="ViT blocks frozen, with the stem, when "
        "--image-weights are given (random weights always train whole)."),
    image_weights: Path | None = IMAGE_WEIGHTS,
    text_location: str | None = typer.Option(None, "--text-encoder",
                                             help="Hugging Face encoder folder, "
                                                  "package:NAME/SUBDIR or hf:ID[@REVISION] "
                                                  "from the local Hugging Face cache, pinned "
                                                  "to its commit (default: MiniLM)."),
    trainable_text_layers: int | None = TRAINABLE_TEXT_LAYERS,
    roi_scores: bool | None = ROI_SCORES,
    pretrain_epochs: int | None = PRETRAIN_EPOCHS,
    pretrain_lr: float | None = PRETRAIN_LR, recipe: str | None = RECIPE,
    calibration: str | None = CALIBRATION, operating_point: list[str] = OPERATING_POINT,
    text_context: str | None = TEXT_CONTEXT, history_dropout: float | None = HISTORY_DROPOUT,
    ema_decay: float | None = EMA_DECAY,
    val_fraction: float = VAL_FRACTION, seed: int = SEED, device: str = DEVICE,
    pretrained: Path | None = PRETRAINED, force: bool = FORCE,
) -> None:
    """Train MMBCD (or one ablation variant) on the detector's ROIs, then calibrate it
    and choose its operating points on the validation split."""
    settings = _settings_or_fail(
        recipe, variant=variant, image_weights=str(image_weights) if image_weights else None,
        epochs=epochs, batch=batch, lr=lr, beta1=beta1, beta2=beta2,
        patience=patience, keyword_count=keyword_count, keyword_p=keyword_p, k=k,
        crop_size=crop_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
        patch_size=patch_size, frozen_blocks=frozen_blocks, text_location=text_location,
        trainable_text_layers=trainable_text_layers, roi_scores=roi_scores,
        pretrain_epochs=pretrain_epochs, pretrain_lr=pretrain_lr, seed=seed, device=device,
        calibration=calibration, operating_targets=_targets_or_fail(operating_point),
        text_context=text_context, history_dropout=history_dropout, ema_decay=ema_decay)
    from ml.train.fusion_run import run_fusion

    try:
        run_fusion(settings, data, detector_run, out, test=test, val_fraction=val_fraction,
                   pretrained=pretrained, force=force)
    except ValueError as exc:
        _fail(str(exc))


def export(
    run: Path = typer.Option(..., "--run", help="Fusion or ensemble run folder."),
    out: Path = typer.Option(..., "--out", help="Bundle folder to write."),
    name: str = typer.Option("mmbcd", "--name"),
    version: str = typer.Option("1.0.0", "--version"),
    evaluation: Path | None = typer.Option(None, "--evaluation",
                                           help="Folder with evaluation.json/.md "
                                                "(default: RUN/evaluation)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing bundle folder."),
) -> None:
    """Write the bundle of a fusion or ensemble run, ready for the node's model.bundle
    setting."""
    from ml.manifest import BundleError
    from ml.train.export import export_run
    from ml.train.run_folder import RunFolderError

    try:
        manifest = export_run(run, out, name=name, version=version, evaluation_dir=evaluation,
                              force=force)
    except (BundleError, RunFolderError) as exc:
        _fail(str(exc))
        return
    typer.echo(f"bundle {out} digest {manifest['digest']}")


def ablate(
    data: Path = DATA,
    test: Path = typer.Option(..., "--test", help="Held-out test data set."),
    detector_run: Path = typer.Option(..., "--detector", help="Detector run folder."),
    out: Path = typer.Option(..., "--out", help="Ablation folder to create."),
    reuse: list[Path] = typer.Option([], "--reuse", help="Fusion run of the recipe to use "
                                     "as the recipe row of its own seed instead of training "
                                     "it again; repeatable."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Seeds, comma-separated; every row "
                              "trains once per seed (at least 3 for a spread)."),
    rows: str | None = typer.Option(None, "--rows", help="Rows to train, comma-separated "
                                    "(text, vision, concat, attention, masking, full, "
                                    "no-confidence); default all that apply."),
    recipe_runs: Path | None = typer.Option(
        None, "--recipe-runs", help="Folder to keep the recipe row of every seed trained "
        "in, as the fusion run FOLDER/fusion-SEED (for ensemble and export), so that the "
        "recipe's runs train side by side with the other rows."),
    resamples: int = typer.Option(2000, "--resamples", min=100,
                                  help="Bootstrap resamples of the intervals."),
    workers: int = typer.Option(0, "--workers", min=0,
                                help="Runs side by side, each in a process of its own "
                                "(0: one per core on the CPU, at most 8; one on a GPU)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1),
    batch: int | None = typer.Option(None, "--batch", min=2),
    lr: float | None = typer.Option(None, "--lr"),
    beta1: float | None = typer.Option(None, "--beta1"),
    beta2: float | None = typer.Option(None, "--beta2"),
    patience: int | None = typer.Option(None, "--patience", min=1),
    keyword_count: int | None = typer.Option(None, "--keywords", min=0),
    keyword_p: float | None = typer.Option(None, "--keyword-p", min=0.0, max=1.0),
    k: int | None = typer.Option(None, "--k", min=1),
    crop_size: int | None = typer.Option(None, "--crop-size", min=16),
    trainable_text_layers: int | None = TRAINABLE_TEXT_LAYERS,
    roi_scores: bool | None = ROI_SCORES,
    text_context: str | None = TEXT_CONTEXT,
    history_dropout: float | None = HISTORY_DROPOUT, ema_decay: float | None = EMA_DECAY,
    pretrain_epochs: int | None = PRETRAIN_EPOCHS,
    pretrain_lr: float | None = PRETRAIN_LR, recipe: str | None = RECIPE,
    image_weights: Path | None = IMAGE_WEIGHTS,
    val_fraction: float = VAL_FRACTION, device: str = DEVICE,
    pretrained: Path | None = PRETRAINED, force: bool = FORCE,
) -> None:
    """Train the ablation rows with several seeds; print mean ± sd per level and the
    bootstrap intervals of the recipe against each single modality."""
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        _fail(f"--seeds {seeds!r}: give integers separated by commas")
        return
    if not seed_list:
        _fail("--seeds names no seed")
    settings = _settings_or_fail(
        recipe, image_weights=str(image_weights) if image_weights else None,
        epochs=epochs, batch=batch, lr=lr, beta1=beta1, beta2=beta2, patience=patience,
        keyword_count=keyword_count, keyword_p=keyword_p, k=k, crop_size=crop_size,
        trainable_text_layers=trainable_text_layers, roi_scores=roi_scores,
        text_context=text_context, history_dropout=history_dropout, ema_decay=ema_decay,
        pretrain_epochs=pretrain_epochs, pretrain_lr=pretrain_lr, seed=seed_list[0],
        device=device)
    from ml.evaluate.report import ablation_markdown
    from ml.train.ablation import ROWS, run_ablation

    keys = None if rows is None else [r.strip() for r in rows.split(",") if r.strip()]
    unknown = sorted(set(keys or ()) - {r.key for r in ROWS})
    if unknown:
        _fail(f"--rows: unknown {unknown}; choose from {[r.key for r in ROWS]}")
    try:
        summary = run_ablation(settings, data, test, detector_run, out, seeds=seed_list,
                               rows=keys, val_fraction=val_fraction, reuse=reuse,
                               pretrained=pretrained, recipe_runs=recipe_runs,
                               resamples=resamples, workers=workers, force=force)
    except ValueError as exc:
        _fail(str(exc))
        return
    typer.echo(ablation_markdown(summary))
    typer.echo(f"table written to {out}/ablation.md")


def ensemble(
    runs: list[Path] = typer.Option(..., "--run", help="Fusion run of the recipe; "
                                    "repeatable, at least two, each with its own seed."),
    out: Path = typer.Option(..., "--out", help="Ensemble run folder to create."),
    device: str = DEVICE, force: bool = FORCE,
) -> None:
    """Average fusion runs of one recipe as one model: calibrated, with its operating
    points, on the validation split they share (export writes its bundle)."""
    from ml.evaluate.scoring import EvaluationError
    from ml.manifest import BundleError
    from ml.train.ensemble import run_ensemble

    try:
        result = run_ensemble(runs, out, device=device, force=force)
    except (BundleError, EvaluationError, ValueError) as exc:
        _fail(str(exc))
        return
    for level, metrics in result["val_metrics"].items():
        point = result["operating_points"][level]
        typer.echo(f"{level}: validation AUC {metrics['auc']:.3f}, threshold "
                   f"{point['threshold']:.4f} ({point['target']})")
    typer.echo(f"ensemble of {len(runs)} runs written to {out}")


def register(app: typer.Typer) -> None:
    app.command("detector")(detector)
    app.command("fusion")(fusion)
    app.command("ensemble")(ensemble)
    app.command("export")(export)
    app.command("ablate")(ablate)
