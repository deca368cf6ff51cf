"""``mmbcd-train detector``: Ultralytics YOLO trained on the lesion boxes of a data set.

Each view is prepared as the pipeline prepares it (``prepare_view``) and letterboxed to
the detector's input exactly as ``ml.detector.letterbox`` does at inference (scaled to
fit, padded bottom/right with 0), then written as an 8-bit PNG with its boxes in YOLO
format; benign views get an empty label file and serve as background. Ultralytics
trains offline (``ml.offline``), without AMP on the CPU (bf16 on a GPU), and the best
checkpoint on the validation split becomes ``detector.yaml`` + ``detector.safetensors``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from ml.detector import build_detector, letterbox
from ml.offline import configure_ultralytics
from ml.preprocess import PreparedView, PreprocessParams, prepare_view
from ml.synth.dataset import Box, StudyRecord, ViewRecord

DETECTOR_CONFIG = "detector.yaml"
DETECTOR_WEIGHTS = "detector.safetensors"


@dataclass(frozen=True)
class DetectorTraining:
    """Settings of one detector run (written to the run's ``config.json``)."""

    imgsz: int = 384
    epochs: int = 12
    batch: int = 16
    lr0: float = 0.002  # AdamW
    warmup_epochs: float = 3.0
    background_per_lesion_view: float = 1.0  # benign views kept per view with a box
    patience: int = 10
    seed: int = 0
    device: str = "cpu"
    workers: int = 0
    width: float = 0.0625  # the architecture's width multiple (channels per layer)


def to_prepared(view: PreparedView, box: Box) -> Box:
    """A box in stored pixels -> the prepared image's pixels (inverse of ``to_stored``)."""
    x0, y0, x1, y1 = (box[0] - view.region[0], box[1] - view.region[1],
                      box[2] - view.region[0], box[3] - view.region[1])
    if view.flipped:
        width = view.image.shape[1]
        x0, x1 = width - x1, width - x0
    return x0, y0, x1, y1


def detector_views(studies: Sequence[StudyRecord], background_per_lesion_view: float,
                   seed: int) -> list[tuple[StudyRecord, ViewRecord]]:
    """Every view with a lesion box plus up to ``background_per_lesion_view`` times as many
    views without one (drawn with ``seed``), in data set order."""
    views = [(s, v) for s in studies for v in s.views]
    lesion = [i for i, (_, v) in enumerate(views) if v.boxes]
    background = [i for i, (_, v) in enumerate(views) if not v.boxes]
    keep = int(round(background_per_lesion_view * len(lesion)))
    rng = np.random.default_rng([seed, 11])
    chosen = {background[i] for i in rng.permutation(len(background))[:keep]}
    return [views[i] for i in sorted(set(lesion) | chosen)]


def write_yolo_split(views: Sequence[tuple[StudyRecord, ViewRecord]], folder: Path, imgsz: int,
                     preprocess: PreprocessParams,
                     progress: Callable[[], None] | None = None) -> int:
    """Write ``images/*.png`` and ``labels/*.txt`` for ``views``; returns the box count."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    boxes_written = 0
    for study, view in views:
        prepared = prepare_view(view.path, preprocess)
        batch, (scale,) = letterbox([torch.from_numpy(prepared.image)], imgsz)
        pixels = (batch[0, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        stem = f"{study.accession}_{view.laterality}_{view.view}"
        Image.fromarray(pixels).save(folder / "images" / f"{stem}.png")
        lines = []
        for box in view.boxes:
            x0, y0, x1, y1 = (c * scale for c in to_prepared(prepared, box))
            x0, x1 = max(0.0, x0), min(float(imgsz), x1)
            y0, y1 = max(0.0, y0), min(float(imgsz), y1)
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            lines.append(f"0 {(x0 + x1) / 2 / imgsz:.6f} {(y0 + y1) / 2 / imgsz:.6f} "
                         f"{(x1 - x0) / imgsz:.6f} {(y1 - y0) / imgsz:.6f}")
        (folder / "labels" / f"{stem}.txt").write_text("\n".join(lines))
        boxes_written += len(lines)
        if progress is not None:
            progress()
    return boxes_written


def write_yolo_dataset(train: Sequence[tuple[StudyRecord, ViewRecord]],
                       val: Sequence[tuple[StudyRecord, ViewRecord]], out: Path,
                       imgsz: int, preprocess: PreprocessParams,
                       progress: Callable[[], None] | None = None) -> Path:
    """The Ultralytics data set (``train/``, ``val/``, ``data.yaml``) under ``out``.

    Raises ``ValueError`` when the training views hold no lesion box at all.
    """
    counts = {name: write_yolo_split(part, out / name, imgsz, preprocess, progress)
              for name, part in (("train", train), ("val", val))}
    if counts["train"] == 0:
        raise ValueError("the training split has no lesion boxes: the detector cannot learn")
    data = out / "data.yaml"
    data.write_text(yaml.safe_dump({"path": str(out.resolve()), "train": "train/images",
                                    "val": "val/images", "names": {0: "lesion"}}))
    return data


def train_detector(data_yaml: Path, architecture: dict[str, Any], run_dir: Path,
                   settings: DetectorTraining) -> nn.Module:
    """Train the architecture from scratch with Ultralytics; returns the best checkpoint's
    model (by validation fitness) as a plain ``DetectionModel`` and writes it to
    ``run_dir`` as ``detector.yaml`` + ``detector.safetensors``."""
    configure_ultralytics()
    from ultralytics import YOLO

    random.seed(settings.seed)
    np.random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    arch_file = run_dir / "architecture.yaml"
    architecture = {**architecture, "width_multiple": settings.width}
    arch_file.write_text(yaml.safe_dump(architecture, sort_keys=False))
    yolo = YOLO(str(arch_file), task="detect")
    gpu = settings.device != "cpu" and torch.cuda.is_available()
    yolo.train(data=str(data_yaml), epochs=settings.epochs, imgsz=settings.imgsz,
               batch=settings.batch, lr0=settings.lr0, patience=settings.patience,
               warmup_epochs=settings.warmup_epochs,
               seed=settings.seed, deterministic=True, device=settings.device if gpu else "cpu",
               workers=settings.workers, amp="bf16" if gpu else False, pretrained=False,
               project=str((run_dir / "ultralytics").resolve()), name="train", exist_ok=True,
               optimizer="AdamW", plots=False, verbose=False,
               # grey phantoms: no colour jitter; chest wall stays on the left
               hsv_h=0.0, hsv_s=0.0, hsv_v=0.2, fliplr=0.0, flipud=0.5, mosaic=0.0,
               scale=0.2, translate=0.05, close_mosaic=0)
    trainer: Any = yolo.trainer
    best = Path(trainer.best)
    checkpoint = torch.load(best if best.exists() else trainer.last, weights_only=False)
    trained = (checkpoint.get("ema") or checkpoint["model"]).float()
    detector = build_detector(dict(trained.yaml))
    detector.load_state_dict(trained.state_dict(), strict=True)
    save_detector(detector, run_dir)
    return detector.eval()


def save_detector(detector: nn.Module, run_dir: Path) -> None:
    """``detector.yaml`` (architecture) and ``detector.safetensors`` (weights) in ``run_dir``."""
    architecture: dict[str, Any] = dict(detector.yaml)  # type: ignore[arg-type]
    (run_dir / DETECTOR_CONFIG).write_text(yaml.safe_dump(architecture, sort_keys=False))
    save_file({k: v.detach().contiguous().cpu() for k, v in detector.state_dict().items()},
              str(run_dir / DETECTOR_WEIGHTS))


def load_detector(run_dir: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The detector of a detector run folder and its architecture dict."""
    config = yaml.safe_load((run_dir / DETECTOR_CONFIG).read_text())
    detector = build_detector(config)
    detector.load_state_dict(load_file(str(run_dir / DETECTOR_WEIGHTS)), strict=True)
    return detector.eval(), config
