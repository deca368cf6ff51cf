"""A tiny synthetic training set shared by the training tests of a module: 12 studies
marked train/val, 4 test studies of another seed, and a random tiny detector run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ml.cli import app
from ml.detector import build_detector
from ml.random_bundle import TINY_DETECTOR
from ml.train.detector_training import save_detector
from ml.train.run_folder import RunFolder

SIZE = "256x208"


def synth(out: Path, *args: str) -> Path:
    result = CliRunner().invoke(app, ["synth", "--out", str(out), "--size", SIZE, *args])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train")
    train = synth(root / "train", "--studies", "12", "--seed", "21",
                  "--split", "train=0.67,val=0.33")
    test = synth(root / "test", "--studies", "4", "--seed", "22", "--split", "test")
    detector_run = root / "detector"
    torch.manual_seed(0)
    RunFolder.create(detector_run, "detector", {"imgsz": 128}).close()
    save_detector(build_detector(TINY_DETECTOR), detector_run)
    return {"train": train, "test": test, "detector": detector_run, "root": root}
