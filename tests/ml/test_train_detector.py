"""The detector's training data: views prepared and letterboxed as the pipeline does,
lesion boxes mapped into that grid, benign views as background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ml.cli import app
from ml.preprocess import PreprocessParams, prepare_view
from ml.synth.dataset import load_manifest
from ml.train.detector_training import detector_views, to_prepared, write_yolo_dataset


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
