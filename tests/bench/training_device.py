"""``make check-training``: the training commands on the accelerator, end to end, in a minute.

A tiny synthetic data set, a random-weight detector, a tiny RoBERTa-shaped text encoder
(one layer trained), ROI confidences, crop pre-training and fusion training on
``--device`` (``auto``: CUDA when present; bf16 autocast there), export, then the test
studies scored by ``Pipeline`` on that device and on the CPU. Prints each epoch, the
time, and the largest difference between the two pipelines; exits 1 when the training
loss did not go down or the two pipelines disagree by more than ``--tolerance``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from typer.testing import CliRunner

from ml.bundle import load_bundle
from ml.cli import app
from ml.detector import build_detector
from ml.encoders import text_model_from_config
from ml.pipeline import Pipeline, resolve_device
from ml.random_bundle import TINY_DETECTOR, model_section, train_tokenizer
from ml.synth.dataset import load_manifest
from ml.train.detector_training import save_detector
from ml.train.export import export_run
from ml.train.fusion_run import run_fusion
from ml.train.fusion_training import FusionTraining
from ml.train.run_folder import RunFolder
from ml.types import StudyInput, ViewInput


def synthesise(root: Path) -> None:
    for name, args in (("train", ["--studies", "40", "--seed", "21",
                                  "--split", "train=0.75,val=0.25"]),
                       ("test", ["--studies", "8", "--seed", "22", "--split", "test"])):
        result = CliRunner().invoke(app, ["synth", "--out", str(root / name),
                                          "--size", "256x208", *args])
        if result.exit_code:
            raise SystemExit(result.output)


def tiny_text_encoder(folder: Path) -> Path:
    """A random RoBERTa-shaped encoder and its BPE tokenizer, saved as a local folder."""
    tokenizer = train_tokenizer(folder)
    vocab = len(json.loads((tokenizer / "vocab.json").read_text()))
    config = model_section("tiny", vocab)["text_encoder"]["config"]
    model: Any = text_model_from_config(config)  # a transformers PreTrainedModel
    model.save_pretrained(str(folder))
    return folder


def score(bundle_dir: Path, studies: list[StudyInput], device: str) -> np.ndarray:
    predictions = Pipeline(load_bundle(bundle_dir), device=device).predict(studies)
    return np.array([v.probability for p in predictions for v in p.views], dtype=float)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--tolerance", type=float, default=0.02,
                        help="largest accepted probability difference device vs CPU")
    args = parser.parse_args()
    device = str(resolve_device(args.device))
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "CPU"
    print(f"device {device} ({name})")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthesise(root)
        detector = root / "detector"
        torch.manual_seed(0)
        RunFolder.create(detector, "detector", {"imgsz": 128}).close()
        save_detector(build_detector(TINY_DETECTOR), detector)
        settings = FusionTraining(
            k=4, crop_size=32, dim=32, epochs=8, batch=16, lr=2e-3, patience=8,
            keyword_count=20, text_location=str(tiny_text_encoder(root / "text")),
            text_id="tiny roberta (random init)", trainable_text_layers=1, roi_scores=True,
            pretrain_epochs=2, device=device, seed=3,
            image_overrides={"embed_dim": 32, "depth": 1, "num_heads": 2, "patch_size": 8})
        started = time.perf_counter()
        run_fusion(settings, root / "train", detector, root / "fusion", test=root / "test",
                   val_fraction=0.25)
        print(f"crop pre-training and fusion on {device}: "
              f"{time.perf_counter() - started:.1f} s")
        records = [json.loads(line) for line in
                   (root / "fusion" / "metrics.jsonl").read_text().splitlines()]
        epochs = [e for e in records if "epoch" in e]  # the others are pre-training epochs
        losses = [e["train_loss"] for e in epochs]
        for e in epochs:
            print(f"epoch {e['epoch']}: train loss {e['train_loss']:.4f}, "
                  f"validation view AUC {e['val_auc_view']:.3f}")
        export_run(root / "fusion", root / "bundle", name="training-check", version="0")
        studies = [StudyInput(study_uid=s.study_uid, history=s.history,
                              views=[ViewInput(v.path, v.sop_instance_uid) for v in s.views])
                   for s in load_manifest(root / "test")]
        on_device = score(root / "bundle", studies, device)
        on_cpu = score(root / "bundle", studies, "cpu")
    difference = float(np.abs(on_device - on_cpu).max())
    print(f"{len(on_cpu)} views: pipeline on {device} vs CPU, largest |difference| "
          f"{difference:.4f}")
    failures = []
    if not min(losses[-2:]) < losses[0]:
        failures.append("the training loss did not go down")
    if difference > args.tolerance:
        failures.append(f"the pipelines differ by more than {args.tolerance}")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
