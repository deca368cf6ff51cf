"""``mmbcd-train export``: a fusion run, or an ensemble of fusion runs (and the detector run
they used) -> a model bundle.

The bundle holds the trained weights, the detector, the threshold chosen on the
validation split, the preprocessing parameters, a training-data summary and, when the
run was evaluated, ``evaluation.json`` and ``evaluation.md``. A frozen external text
encoder is pinned by the SHA-256 of its files, not copied.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from ml.bundle import BundleError, build_model, save_bundle
from ml.calibration import LevelCalibration
from ml.detector import DetectorParams
from ml.model import MMBCD
from ml.operating_points import operating_points_from_manifest
from ml.preprocess import PreprocessParams
from ml.train.detector_training import load_detector
from ml.train.run_folder import RunFolder

RUN_WEIGHTS = "model.safetensors"
RUN_SECTION = "model_section.json"
RUN_RESULT = "result.json"
ENSEMBLE = "ensemble"  # the kind of an ensemble run folder (ml.train.ensemble)
EVALUATION_FILES = ("evaluation.json", "evaluation.md")


def image_encoder_history(section: dict[str, Any], settings: dict[str, Any],
                          result: dict[str, Any]) -> str:
    """How the run's image encoder was trained, in one sentence for the manifest."""
    encoder = section["image_encoder"]
    pretrained = encoder.get("pretrained")
    if pretrained:
        files = ", ".join(f"{name} sha256:{digest}" for name, digest in
                          pretrained["files"].items())
        text = (f"timm {encoder['arch']} shape {encoder['overrides']}, from the "
                f"{pretrained['layout']} weights {pretrained['source']} ({files}), stem and "
                f"first {encoder.get('frozen_blocks', 0)} blocks frozen")
    else:
        text = (f"timm {encoder['arch']} shape {encoder['overrides']}, from random "
                "initialisation (no pretrained weights), every weight trained")
    epochs = int(settings.get("pretrain_epochs") or 0)
    if epochs:
        auc = result.get("pretrain_val_crop_auc")
        text += (f"; pre-trained for {epochs} epochs (lr {settings.get('pretrain_lr')}) on "
                 "labelled crops (malignant lesion boxes and the detector ROIs on them vs "
                 "the ROIs of views without a cancer)"
                 + (f", validation crop ROC AUC {auc:.3f}" if auc is not None else ""))
    return text + "; then trained with the fusion model on detector ROI crops"


def load_run_model(run: RunFolder) -> tuple[MMBCD, dict[str, Any]]:
    """The trained full model of a fusion run (variant ``attention``) and its section.

    Raises ``BundleError`` for a run of another variant: a bundle holds the full model.
    """
    variant = run.config["settings"].get("variant", "attention")
    if variant != "attention":
        raise BundleError(f"{run.path} trained the {variant!r} ablation variant; only the "
                          "full model ('attention') can become a bundle")
    section = run.read_json(RUN_SECTION)
    model = build_model(section)
    missing, unexpected = model.load_state_dict(load_file(str(run.path / RUN_WEIGHTS)),
                                                strict=False)
    if unexpected or any(not k.startswith("text_encoder.") for k in missing):
        raise BundleError(f"{run.path}: {RUN_WEIGHTS} does not fit {RUN_SECTION}")
    return model.eval(), section


def member_runs(run: RunFolder) -> list[RunFolder]:
    """The fusion runs whose models a run's bundle holds: a fusion run itself, or an
    ensemble run's members."""
    if run.kind != ENSEMBLE:
        return [run]
    return [RunFolder.open(Path(path), "fusion") for path in run.config["settings"]["runs"]]


def export_run(run_dir: Path, out: Path, *, name: str, version: str,
               evaluation_dir: Path | None = None, force: bool = False) -> dict[str, Any]:
    """Write the bundle of the fusion or ensemble run at ``run_dir`` to ``out``; returns
    its manifest.

    ``evaluation_dir`` (default ``run_dir/evaluation`` when present) supplies
    ``evaluation.json`` and ``evaluation.md``. ``out`` must not exist unless ``force``.
    """
    run = RunFolder.open(run_dir, ("fusion", ENSEMBLE))
    members = member_runs(run)
    result = run.read_json(RUN_RESULT)
    evaluation_dir = evaluation_dir or run.path / "evaluation"
    extra = {f: (evaluation_dir / f).read_bytes() for f in EVALUATION_FILES
             if (evaluation_dir / f).is_file()}
    if run.kind == ENSEMBLE:
        seeds = ", ".join(str(m.config["settings"]["seed"]) for m in members)
        notes = (f"An ensemble (run {run.path.name}) of {len(members)} fusion runs of one "
                 f"recipe, seeds {seeds}, averaging their view scores; calibration and "
                 "operating points fitted on their shared validation split.")
    else:
        notes = (f"Trained by mmbcd-train (fusion run {run.path.name}); calibration and "
                 "operating points fitted on the validation split.")
    if out.exists():
        if not force:
            raise BundleError(f"{out} exists (use --force to replace it)")
        shutil.rmtree(out)
    return write_bundle(members, result, out, name=name, version=version, extra_files=extra,
                        notes=notes)


def write_bundle(members: list[RunFolder], result: dict[str, Any], out: Path, *, name: str,
                 version: str, notes: str,
                 extra_files: dict[str, bytes] | None = None) -> dict[str, Any]:
    """The bundle of the fusion runs ``members`` (one, or an ensemble's) with the
    threshold, calibration and operating points of ``result`` (none: uncalibrated).

    Raises ``BundleError`` when the members differ in architecture.
    """
    loaded = [load_run_model(member) for member in members]
    section = loaded[0][1]
    for member, (_, other) in zip(members[1:], loaded[1:], strict=True):
        if other != section:
            raise BundleError(f"{member.path}: {RUN_SECTION} differs from "
                              f"{members[0].path}'s: an ensemble's members share one "
                              "architecture")
    first = members[0]
    settings = first.config["settings"]
    first_result = first.read_json(RUN_RESULT)
    detector_run = Path(settings["detector_run"])
    detector, detector_config = load_detector(detector_run)
    preprocess = PreprocessParams(**settings.get("preprocess", {}))
    detector_settings = RunFolder.open(detector_run, "detector").config["settings"]
    params = DetectorParams(**{**section["detector"], "k": section["k"]})
    text = section["text_encoder"]
    training = {
        "data": settings.get("data"), "data_meta": settings.get("data_meta"),
        "studies": first_result.get("studies"), "best_epoch": result["best_epoch"],
        "validation": result["val_metrics"],
        "fusion_settings": {k: v for k, v in settings.items() if k not in ("data_meta",)},
        "detector_settings": detector_settings,
        "encoders": {
            "image": image_encoder_history(section, settings, first_result),
            "text": text_encoder_history(text),
            "detector": detector_history(detector_settings, detector_config, params.imgsz),
        },
    }
    if len(members) > 1:
        training["members"] = [
            {"run": str(m.path.resolve()), "seed": m.config["settings"]["seed"],
             "best_epoch": m.read_json(RUN_RESULT)["best_epoch"]} for m in members]
    return save_bundle(
        out, name=name, version=version, model=[model for model, _ in loaded],
        model_section=section, detector=detector, detector_config=detector_config,
        tokenizer_dir=None, preprocess=preprocess, threshold=float(result["threshold"]),
        **run_operating(result),
        training_data=json.loads(json.dumps(training, default=str)), extra_files=extra_files,
        notes=notes)


def run_operating(result: dict[str, Any]) -> dict[str, Any]:
    """``save_bundle``'s calibration and per-level operating points of a run's result
    (none for a run trained before they were fitted: one threshold, not calibrated)."""
    if not result.get("operating_points"):
        return {}
    calibration = LevelCalibration.from_manifest(result["calibration"])
    return {"calibration": calibration,
            "operating": operating_points_from_manifest(result["operating_points"],
                                                        float(result["threshold"]),
                                                        calibration)}


def detector_history(settings: dict[str, Any], config: dict[str, Any], imgsz: int) -> str:
    """How the bundle's detector was trained, for the manifest."""
    init = settings.get("init")
    start = (f"from {init['path']} (sha256:{init['sha256']})" if init
             else "from scratch")
    return (f"Ultralytics YOLO ({config.get('width_multiple')} width) trained {start} at "
            f"{imgsz} px on the lesion boxes")


def text_encoder_history(text: dict[str, Any]) -> str:
    """How the bundle's text encoder came to be, for the manifest."""
    source = f"{text['id']} from {text['external']['location']}, pinned by SHA-256"
    trained = int(text.get("trainable_layers", 0))
    if not trained:
        return f"{source}; frozen"
    return (f"{source}; its last {trained} transformer layer(s) trained with the fusion "
            "and kept in the bundle, the others frozen as installed")
