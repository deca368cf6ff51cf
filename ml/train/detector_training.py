"""``mmbcd-train detector``: Ultralytics YOLO trained on the lesion boxes of a data set.

Each view is prepared as the pipeline prepares it (``prepare_view``) and letterboxed to
the detector's input exactly as ``ml.detector.letterbox`` does at inference (scaled to
fit, padded bottom/right with 0), then written as an 8-bit PNG with its boxes in YOLO
format; benign views get an empty label file and serve as background. Ultralytics
trains offline (``ml.offline``), without AMP on the CPU (bf16 on a GPU), and the best
checkpoint on the validation split becomes ``detector.yaml`` + ``detector.safetensors``.

Training starts from random weights (the architecture the command passes, at its width
multiple) or from an Ultralytics detection checkpoint (``--init``): its architecture, and
its weights as Ultralytics' own ``DetectionModel.load`` transfers them to a one-class
head. The checkpoint is checked before anything is written, and recorded by path and
SHA-256 in the run's ``config.json``.
"""

from __future__ import annotations

import copy
import logging
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
from ml.manifest import sha256_file
from ml.offline import configure_ultralytics
from ml.preprocess import PreparedView, PreprocessParams, prepare_view
from ml.synth.dataset import Box, StudyRecord, ViewRecord

DETECTOR_CONFIG = "detector.yaml"
DETECTOR_WEIGHTS = "detector.safetensors"
MAX_IMGSZ = 1280  # a full-field view; the input side is also a multiple of 32 (the stride)
log = logging.getLogger(__name__)


class InitCheckpointError(ValueError):
    """An ``--init`` file that is missing or not an Ultralytics detection checkpoint."""


@dataclass(frozen=True)
class InitCheckpoint:
    """The Ultralytics checkpoint a detector run starts from (in the run's ``config.json``)."""

    path: str  # absolute
    sha256: str
    architecture: str  # the YAML it was built from, e.g. yolov8n.yaml
    scale: str  # n, s, m, l or x ('' when the YAML names none)
    classes: int  # its class count; the run trains one (lesion)
    ultralytics: str | None  # the version that saved it


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
    validate_last: int | None = None  # validate (and choose) over the last N epochs only
    seed: int = 0
    device: str = "cpu"
    workers: int = 0
    width: float | None = 0.0625  # the architecture's width multiple; None with ``init``
    init: InitCheckpoint | None = None  # the checkpoint training starts from; None: random


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


def yolo_stem(study: StudyRecord, view: ViewRecord) -> str:
    """The file name (without suffix) of a view's image and label in the YOLO data set."""
    return f"{study.accession}_{view.laterality}_{view.view}"


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
        stem = yolo_stem(study, view)
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


def read_init_checkpoint(path: Path) -> InitCheckpoint:
    """Check that ``path`` is an Ultralytics detection checkpoint whose architecture the
    node can store (YAML + weights), and describe it; ``InitCheckpointError`` names the
    file and what is wrong. Reads only the local file: a name Ultralytics would first map
    to one of its release files (``yolov5s.pt`` -> ``yolov5su.pt``) is refused, since it
    would then fetch that file from the network."""
    configure_ultralytics()
    from ultralytics.nn.tasks import torch_safe_load
    from ultralytics.utils.checks import check_yolov5u_filename

    path = path.expanduser().resolve()
    if not path.is_file():
        raise InitCheckpointError(f"init checkpoint {path} does not exist or is not a file")
    if path.suffix.lower() != ".pt":
        raise InitCheckpointError(f"init checkpoint {path} is not a .pt file (Ultralytics "
                                  "checkpoints are)")
    if check_yolov5u_filename(str(path), verbose=False) != str(path):
        raise InitCheckpointError(f"init checkpoint {path}: Ultralytics reads this name as "
                                  "another (YOLOv5u/YOLOv3u) release file; rename the file")
    try:
        checkpoint, _ = torch_safe_load(str(path))
    except Exception as exc:  # whatever the unpickler trips on, the file is no checkpoint
        cause = exc.__cause__ or exc
        reason = (str(cause).splitlines() or [""])[0]
        raise InitCheckpointError(f"init checkpoint {path} cannot be read as a PyTorch "
                                  f"checkpoint ({type(cause).__name__}: {reason})") from exc
    model = checkpoint.get("ema") or checkpoint.get("model")
    if problem := detection_model_problem(model):
        raise InitCheckpointError(f"init checkpoint {path} is not an Ultralytics detection "
                                  f"checkpoint: {problem}")
    version = checkpoint.get("version")
    return InitCheckpoint(path=str(path), sha256=sha256_file(path),
                          architecture=Path(str(model.yaml.get("yaml_file", ""))).name,
                          scale=str(model.yaml.get("scale", "")),
                          classes=int(model.model[-1].nc),
                          ultralytics=str(version) if version else None)


def detection_model_problem(model: Any) -> str | None:
    """Why ``model`` (a checkpoint's ``ema`` or ``model`` entry) cannot start a detector
    run, or None. It must be a plain ``DetectionModel`` (not segmentation, pose, OBB,
    classification, RT-DETR or open-vocabulary) that its own YAML rebuilds, the head's
    class branch aside (``restore_yaml_class_branch`` rebuilds that one anyway)."""
    from ultralytics.nn.tasks import DetectionModel

    if not isinstance(model, nn.Module):
        return ("it holds no model under 'ema' or 'model' (a plain state dict, or not "
                "saved by Ultralytics)")
    if type(model) is not DetectionModel:
        return f"its model is a {type(model).__name__}, not a DetectionModel"
    try:
        rebuilt: Any = DetectionModel(copy.deepcopy(model.yaml), verbose=False)
    except Exception as exc:  # a YAML this Ultralytics cannot build
        return f"its YAML does not build ({type(exc).__name__}: {exc})"
    ours, theirs = shapes(model), shapes(rebuilt)
    head = f"model.{len(rebuilt.model) - 1}."
    branches = (f"{head}cv3.", f"{head}one2one_cv3.")
    differ = sorted(k for k in ours.keys() | theirs.keys()
                    if ours.get(k) != theirs.get(k) and not k.startswith(branches))
    if differ:
        return (f"its YAML builds a different model ({len(differ)} tensors differ in name "
                f"or shape, the first {differ[0]})")
    return None


def restore_yaml_class_branch(model: Any, channels: int) -> list[str]:
    """Give the head of ``model`` (a ``DetectionModel``) back the class branch its YAML
    builds; returns the branches replaced.

    When the class branch's hidden width depends on the class count (nano scales: 80
    classes give 80 channels where one class gives 64), ``DetectionModel.load`` keeps the
    source's width so that its hidden layers transfer. A detector is stored as YAML +
    weights and rebuilt from the YAML, which could not hold such a branch; it starts from
    the YAML's random initialisation instead, as in training from scratch.
    """
    from ultralytics.nn.tasks import DetectionModel

    reference: Any = DetectionModel(copy.deepcopy(model.yaml), ch=channels, verbose=False)
    head, built = model.model[-1], reference.model[-1]
    replaced = []
    for name in ("cv3", "one2one_cv3"):
        ours, theirs = getattr(head, name, None), getattr(built, name, None)
        if ours is None or theirs is None or shapes(ours) == shapes(theirs):
            continue
        setattr(head, name, theirs.to(next(ours.parameters()).device).train(ours.training))
        replaced.append(name)
    if replaced:
        log.info("event=detector_init_class_branch_reset branches=%s", ",".join(replaced))
    return replaced


def shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of a module's state, by name."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def storable_trainer() -> type:
    """Ultralytics' ``DetectionTrainer`` whose model is always one its YAML rebuilds
    (``restore_yaml_class_branch`` after Ultralytics' own weight transfer)."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    class StorableDetectionTrainer(DetectionTrainer):
        def get_model(self, cfg: Any = None, weights: Any = None, verbose: bool = True) -> Any:
            model = super().get_model(cfg=cfg, weights=weights, verbose=verbose)
            if weights is not None:
                restore_yaml_class_branch(model, channels=self.data["channels"])
            return model

    return StorableDetectionTrainer


def start_model(architecture: dict[str, Any], run_dir: Path, settings: DetectorTraining) -> Any:
    """The Ultralytics ``YOLO`` training starts from: the ``init`` checkpoint, or
    ``architecture`` at ``settings.width`` with random weights (its YAML kept in
    ``run_dir``)."""
    from ultralytics import YOLO

    if settings.init is not None:
        return YOLO(settings.init.path, task="detect")
    arch_file = run_dir / "architecture.yaml"
    architecture = {**architecture, "width_multiple": settings.width}
    arch_file.write_text(yaml.safe_dump(architecture, sort_keys=False))
    return YOLO(str(arch_file), task="detect")


def train_arguments(data_yaml: Path, run_dir: Path, settings: DetectorTraining,
                    gpu: bool) -> dict[str, Any]:
    """The arguments of Ultralytics' ``train``. AMP is off on the CPU and bf16 on a GPU:
    Ultralytics runs its AMP check (which downloads a model) only for ``amp=True``."""
    return dict(
        data=str(data_yaml), epochs=settings.epochs, imgsz=settings.imgsz,
        batch=settings.batch, lr0=settings.lr0, patience=settings.patience,
        warmup_epochs=settings.warmup_epochs, seed=settings.seed, deterministic=True,
        device=settings.device if gpu else "cpu", workers=settings.workers,
        amp="bf16" if gpu else False, pretrained=settings.init is not None,
        project=str((run_dir / "ultralytics").resolve()), name="train", exist_ok=True,
        optimizer="AdamW", plots=False, verbose=False,
        # grey phantoms: no colour jitter; chest wall stays on the left
        hsv_h=0.0, hsv_s=0.0, hsv_v=0.2, fliplr=0.0, flipud=0.5, mosaic=0.0,
        scale=0.2, translate=0.05, close_mosaic=0)


def validation_window(last: int) -> Callable[[Any], None]:
    """An Ultralytics ``on_train_epoch_end`` callback that lets the trainer validate only
    in its last ``last`` epochs (it runs before the trainer decides whether to validate).

    Validating a CPU run every epoch costs about a third of a small detector's training;
    the checkpoint worth keeping comes late, as the learning rate decays. Before the window
    Ultralytics keeps the latest weights as ``best.pt``; within it, the best by fitness.
    """
    if last < 1:
        raise ValueError(f"the validation window needs at least 1 epoch, not {last}")

    def on_train_epoch_end(trainer: Any) -> None:
        trainer.args.val = trainer.epoch + 1 > trainer.epochs - last

    return on_train_epoch_end


def train_detector(data_yaml: Path, architecture: dict[str, Any], run_dir: Path,
                   settings: DetectorTraining) -> nn.Module:
    """Train with Ultralytics, from ``settings.init`` or from scratch (``architecture``);
    returns the best checkpoint's model (by validation fitness) as a plain
    ``DetectionModel`` and writes it to ``run_dir`` as ``detector.yaml`` +
    ``detector.safetensors``."""
    configure_ultralytics()
    random.seed(settings.seed)
    np.random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    if settings.init is not None:
        log.info("event=detector_init path=%s sha256=%s architecture=%s classes=%d",
                 settings.init.path, settings.init.sha256, settings.init.architecture,
                 settings.init.classes)
    yolo = start_model(architecture, run_dir, settings)
    if settings.validate_last is not None:
        yolo.add_callback("on_train_epoch_end", validation_window(settings.validate_last))
    gpu = settings.device != "cpu" and torch.cuda.is_available()
    yolo.train(trainer=storable_trainer(),
               **train_arguments(data_yaml, run_dir, settings, gpu))
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
