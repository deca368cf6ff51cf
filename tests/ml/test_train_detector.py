"""The detector's training data: views prepared and letterboxed as the pipeline does,
lesion boxes mapped into that grid, benign views as background; training from an
Ultralytics checkpoint (``--init``) and the input sizes up to full-field views."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import socket
from copy import deepcopy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ml.cli import app
from ml.offline import configure_ultralytics
from ml.preprocess import PreprocessParams, prepare_view
from ml.synth.dataset import load_manifest
from ml.train.detector_training import (
    DetectorTraining,
    detector_views,
    load_detector,
    to_prepared,
    train_arguments,
    write_yolo_dataset,
)
from ml.train.fusion_run import detector_params
from ml.train.fusion_training import FusionTraining, model_section
from ml.train.run_folder import RunFolder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("det") / "set"
    result = CliRunner().invoke(app, ["synth", "--out", str(out), "--size", "256x208",
                                      "--studies", "6", "--seed", "31", "--split",
                                      "train=0.5,val=0.5", "--occult-fraction", "0"])
    assert result.exit_code == 0, result.output
    return out


def test_box_mapping_inverts_the_pipeline_mapping(dataset) -> None:
    view = next(v for s in load_manifest(dataset) for v in s.views if v.boxes)
    prepared = prepare_view(view.path, PreprocessParams())
    box = view.boxes[0]
    assert prepared.to_stored(to_prepared(prepared, box)) == pytest.approx(box)


def test_yolo_labels_sit_on_the_lesion_and_benign_views_are_background(dataset, tmp_path):
    studies = load_manifest(dataset)
    train = [s for s in studies if s.split == "train"]
    val = [s for s in studies if s.split == "val"]
    chosen = detector_views(train, background_per_lesion_view=1.0, seed=0)
    lesion_views = sum(1 for _, v in chosen if v.boxes)
    assert lesion_views > 0
    assert len(chosen) - lesion_views <= lesion_views  # at most one background per lesion view
    data_yaml = write_yolo_dataset(chosen, detector_views(val, 1.0, 0), tmp_path / "yolo", 128,
                                   PreprocessParams())
    assert data_yaml.is_file()
    for study, view in chosen:
        stem = f"{study.accession}_{view.laterality}_{view.view}"
        image = np.asarray(Image.open(tmp_path / "yolo/train/images" / f"{stem}.png"))
        assert image.shape == (128, 128)
        rows = [line.split() for line in
                (tmp_path / "yolo/train/labels" / f"{stem}.txt").read_text().splitlines()]
        assert len(rows) == len(view.boxes)
        for row in rows:
            cx, cy, w, h = (float(v) for v in row[1:])
            assert row[0] == "0" and 0 < w < 1 and 0 < h < 1
            # the box centre lies on the breast, not on the zero padding
            x, y = int(cx * 128), int(cy * 128)
            assert image[y, x] > 0


# --- training from an Ultralytics checkpoint (--init) and the input-size range ---

TRAIN_FAST = ["--epochs", "1", "--imgsz", "64", "--batch", "4", "--lr", "0",
              "--warmup-epochs", "0"]


def ultralytics_checkpoint(cfg: str, path: Path, nc: int = 80) -> Path:
    """A random-weight checkpoint laid out as Ultralytics releases them: the dict its trainer
    saves (``save_model``), finalised by its own ``strip_optimizer`` (half-precision
    ``model``, ``train_args``, ``date``, ``version``)."""
    configure_ultralytics()
    from ultralytics import __version__
    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.torch_utils import strip_optimizer

    torch.manual_seed(1234)  # not the runs' seed: their own random start must differ from it
    model = DetectionModel(cfg, nc=nc, verbose=False)
    torch.save({"epoch": 0, "best_fitness": None, "model": None, "ema": deepcopy(model).half(),
                "updates": 0, "optimizer": None,
                "train_args": {**DEFAULT_CFG_DICT, "model": cfg, "data": "coco.yaml"},
                "date": datetime.now(UTC).isoformat(), "version": __version__}, path)
    strip_optimizer(path)
    return path


@pytest.fixture
def network_attempts(monkeypatch) -> list[Any]:
    """Every attempt to reach the network (name lookups, connections), each refused."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("the network is off in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def train(dataset: Path, out: Path, *options: str) -> Any:
    return CliRunner().invoke(app, ["detector", "--data", str(dataset), "--out", str(out),
                                    *options])


@pytest.mark.parametrize("cfg", ["yolov8n.yaml", "yolo11n.yaml"])
def test_init_trains_the_checkpoint_architecture_from_its_weights(dataset, tmp_path, cfg,
                                                                   network_attempts):
    from ultralytics import __version__
    from ultralytics.nn.tasks import DetectionModel

    checkpoint = ultralytics_checkpoint(cfg, tmp_path / "coco.pt", nc=80)
    source = torch.load(checkpoint, weights_only=False)["model"].float().state_dict()
    run = tmp_path / "run"
    result = train(dataset, run, "--init", str(checkpoint), *TRAIN_FAST)
    assert result.exit_code == 0, result.output
    assert network_attempts == []

    settings = RunFolder.open(run, "detector").config["settings"]
    assert settings["init"] == {
        "path": str(checkpoint.resolve()),
        "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        "architecture": cfg, "scale": "n", "classes": 80, "ultralytics": __version__}
    assert settings["width"] is None
    detector, config = load_detector(run)
    # the checkpoint's architecture with a one-class head, not TINY_DETECTOR's
    assert config["nc"] == 1 and config["yaml_file"] == cfg and config["scale"] == "n"
    assert shapes(detector) == shapes(DetectionModel(cfg, nc=1, verbose=False))
    assert detector.model[0].conv.out_channels == 16
    # with learning rate 0 every parameter outside the class branch kept the checkpoint's value
    head = f"model.{len(detector.model) - 1}."
    trained = dict(detector.named_parameters())
    kept = [k for k in trained if not k.startswith(f"{head}cv3.")]
    assert {"model.0.conv.weight", f"{head}cv2.0.0.conv.weight"} <= set(kept)
    for key in kept:
        torch.testing.assert_close(trained[key], source[key], rtol=0, atol=1e-3, msg=key)
    # 80 classes widen a nano class branch: it restarts at the one-class YAML's width
    assert "event=detector_init_class_branch_reset branches=cv3" in (run / "train.log").read_text()


def test_without_init_the_tiny_architecture_trains_at_its_width(dataset, tmp_path):
    run = tmp_path / "run"
    result = train(dataset, run, *TRAIN_FAST)
    assert result.exit_code == 0, result.output
    settings = RunFolder.open(run, "detector").config["settings"]
    assert settings["init"] is None and settings["width"] == 0.0625
    detector, config = load_detector(run)
    assert config["width_multiple"] == 0.0625
    assert detector.model[0].conv.out_channels == 8


@pytest.mark.parametrize("window, validated", [(None, [True, True, True]),
                                               ("1", [False, False, True])])
def test_validation_runs_only_within_the_last_epochs_asked_for(dataset, tmp_path, window,
                                                              validated):
    run = tmp_path / "run"
    options = [*TRAIN_FAST[2:], "--epochs", "3"] + (["--validate-last", window] if window else [])
    result = train(dataset, run, *options)
    assert result.exit_code == 0, result.output
    assert RunFolder.open(run, "detector").config["settings"]["validate_last"] == (
        int(window) if window else None)
    with (run / "ultralytics" / "train" / "results.csv").open() as rows:
        epochs = list(csv.DictReader(rows))
    # an epoch without validation leaves the validation losses at Ultralytics' zeros
    assert [float(e["val/cls_loss"]) > 0 for e in epochs] == validated
    assert load_detector(run)[0] is not None


@pytest.mark.parametrize("kind, problem", [
    ("missing", "does not exist"),
    ("text", "cannot be read as a PyTorch checkpoint"),
    ("state dict", "holds no model"),
    ("classify", "ClassificationModel, not a DetectionModel"),
    ("segment", "SegmentationModel, not a DetectionModel"),
    ("suffix", "is not a .pt file"),
])
def test_init_refuses_what_is_no_detection_checkpoint(dataset, tmp_path, kind, problem):
    configure_ultralytics()
    from ultralytics.nn.tasks import ClassificationModel, DetectionModel, SegmentationModel

    file = tmp_path / ("init.pth" if kind == "suffix" else "init.pt")
    if kind == "text":
        file.write_text("not a checkpoint\n")
    elif kind == "state dict":
        torch.save(DetectionModel("yolov8n.yaml", verbose=False).state_dict(), file)
    elif kind == "classify":
        torch.save({"model": ClassificationModel("yolov8n-cls.yaml", verbose=False).half()}, file)
    elif kind == "segment":
        torch.save({"model": SegmentationModel("yolov8n-seg.yaml", verbose=False).half()}, file)
    elif kind == "suffix":
        ultralytics_checkpoint("yolov8n.yaml", tmp_path / "real.pt").rename(file)
    run = tmp_path / "run"
    result = train(dataset, run, "--init", str(file), *TRAIN_FAST)
    assert result.exit_code == 2, result.output
    assert str(file.resolve()) in result.output and problem in result.output
    assert not run.exists()  # refused before the run folder, let alone training


@pytest.mark.parametrize("options, message", [
    (["--imgsz", "1312"], "above 1280"),
    (["--imgsz", "1000"], "not a multiple of 32"),
    (["--init", "some.pt", "--width", "0.25"], "--width and --init do not combine"),
])
def test_detector_refuses_bad_options(dataset, tmp_path, options, message):
    run = tmp_path / "run"
    result = train(dataset, run, *options, "--epochs", "1")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not run.exists()


@pytest.mark.parametrize("imgsz", [1024, 1280])
def test_full_field_input_sizes_reach_the_data_and_the_bundle(dataset, tmp_path, imgsz):
    studies = load_manifest(dataset)
    views = detector_views([s for s in studies if s.split == "train"], 0.5, seed=0)[:3]
    assert any(v.boxes for _, v in views)
    write_yolo_dataset(views, views[:1], tmp_path / "yolo", imgsz, PreprocessParams())
    for image in (tmp_path / "yolo/train/images").iterdir():
        assert np.asarray(Image.open(image)).shape == (imgsz, imgsz)
    for labels in (tmp_path / "yolo/train/labels").iterdir():
        for row in labels.read_text().splitlines():
            assert all(0 < float(v) < 1 for v in row.split()[1:])
    # the run's input size is the one the fusion run, and then the bundle, detects at
    run = tmp_path / "run"
    RunFolder.create(run, "detector", DetectorTraining(imgsz=imgsz)).close()
    params = detector_params(run, k=8)
    assert params.imgsz == imgsz
    assert model_section(FusionTraining(), params)["detector"]["imgsz"] == imgsz


def test_ultralytics_never_runs_its_amp_check(tmp_path):
    """Ultralytics' AMP check downloads a model; it runs only for ``amp=True``."""
    settings = DetectorTraining(device="cuda")
    assert train_arguments(tmp_path / "d.yaml", tmp_path, settings, gpu=True)["amp"] == "bf16"
    assert train_arguments(tmp_path / "d.yaml", tmp_path, settings, gpu=False)["amp"] is False


def test_out_of_fold_detectors_hold_out_whole_patients_and_feed_the_training_rois(
        tmp_path_factory, tmp_path):
    from ml.train.detector_folds import deal_folds, fold_runs
    from ml.train.fusion_run import prepare_caches
    from ml.train.splits import training_splits

    data = tmp_path_factory.mktemp("oof") / "set"
    made = CliRunner().invoke(app, ["synth", "--out", str(data), "--size", "256x208",
                                    "--studies", "8", "--seed", "33", "--split",
                                    "train=0.75,val=0.25", "--occult-fraction", "0"])
    assert made.exit_code == 0, made.output
    run = tmp_path / "run"
    # No benign view as background: the benign studies train no detector at all.
    result = train(data, run, *TRAIN_FAST, "--folds", "2", "--background-per-lesion-view", "0")
    assert result.exit_code == 0, result.output
    folds = fold_runs(run)
    assert len(folds) == 2
    train_studies = training_splits(load_manifest(data), 0.2, 0).train
    trained_on = {s.study_uid for s, _ in detector_views(train_studies, 0.0, 0)}
    assert trained_on < {s.study_uid for s in train_studies}
    held = [h for _, h in folds]
    assert held[0].isdisjoint(held[1]) and held[0] | held[1] == trained_on
    for folder, held_out in folds:  # a fold detector never trained on what it held out
        listed = (folder / "train.txt").read_text().split()
        accessions = {s.accession for s in train_studies if s.study_uid in held_out}
        assert listed and not any(Path(p).name.split("_")[0] in accessions for p in listed)
        assert load_detector(folder)[0] is not None
    settings = FusionTraining(k=4, crop_size=32)
    caches = prepare_caches(data, run, settings, 0.2, None, with_test=False)
    assert caches.counts["out_of_fold_detectors"] == 2
    assert sorted(caches.train.study_uids) == sorted(s.study_uid for s in train_studies)
    for folder, _ in folds:  # the training ROIs were cached from each fold's detector
        assert list((folder / "cache").glob("*.pt"))
    # ... and those of the studies no detector saw from the main one, as were validation's.
    assert len(list((run / "cache").glob("*.pt"))) == 2
    patients = deal_folds([dataclasses.replace(s, patient_id="same") for s in train_studies]
                          + [dataclasses.replace(train_studies[0], study_uid="x",
                                                 patient_id="other")], 2, 0)
    assert len({patients[s.study_uid] for s in train_studies}) == 1  # one patient, one fold
