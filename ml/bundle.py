"""Model bundles: one folder with a manifest, weights (safetensors) and tokenizer files.

The manifest and its digests are described in ``ml.manifest``. Weights: ``model.safetensors``
(image encoder, text encoder or only its trained layers when the base is external, fusion;
for an ensemble, ``model.members`` in the manifest, each member's tensors under
``members.I.``: same architecture, trained with different seeds, their scores averaged),
``detector.yaml`` + ``detector.safetensors`` (Ultralytics architecture and weights: no
pickles), ``text_encoder.json`` and ``tokenizer/`` for a text encoder kept inside.

``load_bundle`` refuses, with ``BundleError`` naming the file, a bundle whose manifest is
missing or unreadable, a listed file that is missing or altered, an unlisted file, an
external encoder file that differs from its pin or is missing (a pinned Hugging Face model
absent from the local cache), or weights that do not fit.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from ml.calibration import LevelCalibration
from ml.detector import DetectorParams, build_detector
from ml.encoders import (
    ImageEncoder,
    TextEncoder,
    load_tokenizer,
    text_model_from_config,
    text_model_from_pretrained,
)
from ml.manifest import (
    FORMAT,
    MANIFEST,
    BundleError,
    default_bundle_path,
    manifest_digest,
    pin_folder,
    read_manifest,
    resolve_location,
    sha256_file,
)
from ml.model import LEGACY_SCORE_FLOOR, MMBCD
from ml.operating_points import operating_points_from_manifest, operating_points_manifest
from ml.preprocess import PreprocessParams
from ml.types import MarkOperatingPoint, OperatingPoints
from ml.view_text import check_context

MODEL_WEIGHTS = "model.safetensors"
DETECTOR_CONFIG = "detector.yaml"
DETECTOR_WEIGHTS = "detector.safetensors"
TEXT_CONFIG = "text_encoder.json"
TOKENIZER_DIR = "tokenizer"
__all__ = ["FORMAT", "MANIFEST", "Bundle", "BundleError", "CropParams", "build_model",
           "default_bundle_path", "load_bundle", "pin_folder", "read_manifest",
           "resolve_location", "save_bundle", "sha256_file"]


@dataclass(frozen=True)
class CropParams:
    size: int = 224
    margin: float = 0.1  # fraction of the box side added on each side
    min_side: float = 32.0  # stored-grid pixels
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass
class Bundle:
    """A loaded, verified bundle: models in eval mode on the CPU plus their parameters."""

    path: Path
    manifest: dict[str, Any]
    members: list[MMBCD]  # one model, or an ensemble whose view scores are averaged
    detector: nn.Module
    tokenizer: Any
    preprocess: PreprocessParams
    detector_params: DetectorParams
    crop: CropParams
    max_length: int
    operating: OperatingPoints
    marks: MarkOperatingPoint = field(default_factory=MarkOperatingPoint)
    calibration: LevelCalibration = field(default_factory=LevelCalibration)

    @property
    def model(self) -> MMBCD:
        """The first (for most bundles the only) member."""
        return self.members[0]

    @property
    def threshold(self) -> float:
        """The study operating threshold (the manifest's ``threshold``)."""
        return self.operating.study.threshold

    @property
    def text_context(self) -> str:
        """What the text encoder reads besides the history (``ml.view_text``)."""
        return str(self.manifest.get("model", {}).get("text_encoder", {})
                   .get("context", "none"))

    @property
    def per_level(self) -> bool:
        """The manifest states an operating point per level (not one threshold)."""
        return "operating_points" in self.manifest

    @property
    def study_marks(self) -> MarkOperatingPoint:
        """The marks' operating point, with the view threshold when the bundle has one."""
        if not self.per_level:
            return self.marks
        return MarkOperatingPoint(self.marks.threshold, self.marks.max_per_image,
                                  view_threshold=self.operating.view.threshold)

    @property
    def digest(self) -> str:
        return str(self.manifest["digest"])

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])


def _dataclass_from(cls: type, values: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise BundleError(f"{MANIFEST}: unknown {cls.__name__} keys {unknown}")
    converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**converted)


def build_model(model_section: dict[str, Any], root: Path | None = None) -> MMBCD:
    """MMBCD from the manifest's ``model`` section: random weights, except an external
    base text encoder, which is loaded from its pinned location."""
    image = model_section["image_encoder"]
    image_encoder = ImageEncoder(image["arch"], **image.get("overrides", {}))
    text = model_section["text_encoder"]
    if text.get("external"):
        base = text_model_from_pretrained(resolve_location(text["external"]["location"]))
    elif root is not None:
        base = text_model_from_config(json.loads((root / TEXT_CONFIG).read_text()))
    else:
        base = text_model_from_config(text["config"])
    text_encoder = TextEncoder(base, text.get("trainable_layers", 2))
    fusion = model_section.get("fusion", {})
    return MMBCD(image_encoder, text_encoder, fusion.get("dim", 256), fusion.get("head_hidden"),
                 roi_scores=bool(fusion.get("roi_scores", False)),
                 score_floor=float(fusion.get("score_floor", LEGACY_SCORE_FLOOR)))


MEMBER_PREFIX = "members.{}."


def _stored_state(model: MMBCD, external: bool) -> dict[str, torch.Tensor]:
    """The tensors a bundle stores: everything, or without the frozen external base."""
    trainable_text = {f"text_encoder.{n}" for n, p in model.text_encoder.named_parameters()
                      if p.requires_grad}
    return {name: tensor.detach().contiguous().cpu()
            for name, tensor in model.state_dict().items()
            if not (external and name.startswith("text_encoder.") and name not in trainable_text)}


def _members_state(members: list[MMBCD], external: bool) -> dict[str, torch.Tensor]:
    """``model.safetensors``: one model's tensors as they are, an ensemble's under
    ``members.I.``."""
    if len(members) == 1:
        return _stored_state(members[0], external)
    return {MEMBER_PREFIX.format(i) + name: tensor for i, member in enumerate(members)
            for name, tensor in _stored_state(member, external).items()}


def _member_states(state: dict[str, torch.Tensor], count: int
                   ) -> list[dict[str, torch.Tensor]]:
    """``_members_state`` undone: each member's tensors. ``BundleError`` for a tensor of
    an ensemble that belongs to none of its ``count`` members."""
    if count == 1:
        return [state]
    states: list[dict[str, torch.Tensor]] = [{} for _ in range(count)]
    for name, tensor in state.items():
        head, _, rest = name.partition(".")
        index, _, key = rest.partition(".")
        if head != "members" or not index.isdigit() or int(index) >= count:
            raise BundleError(f"{MODEL_WEIGHTS}: tensor {name!r} belongs to none of the "
                              f"{count} members")
        states[int(index)][key] = tensor
    return states


def member_count(model_section: dict[str, Any]) -> int:
    """How many models the bundle averages (the manifest's ``model.members``; 1 without)."""
    count = model_section.get("members", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise BundleError(f"{MANIFEST}: model.members must be a positive integer, not {count!r}")
    return count


def save_bundle(out_dir: Path | str, *, name: str, version: str,
                model: MMBCD | list[MMBCD], model_section: dict[str, Any], detector: nn.Module,
                detector_config: dict[str, Any], tokenizer_dir: Path | None,
                preprocess: PreprocessParams, threshold: float,
                training_data: dict[str, Any], extra_files: dict[str, bytes] | None = None,
                notes: str = "", marks: MarkOperatingPoint | None = None,
                operating: OperatingPoints | None = None,
                calibration: LevelCalibration | None = None) -> dict[str, Any]:
    """Write a bundle to ``out_dir`` (created; must be empty) and return its manifest.

    ``model`` is one model or the members of an ensemble (same ``model_section``; the
    manifest records their number). ``model_section`` describes the architecture as
    ``build_model`` reads it; for an
    internal text encoder its ``config`` is written to ``text_encoder.json`` and its
    tokenizer files are copied from ``tokenizer_dir``. ``extra_files`` (relative path ->
    bytes), e.g. an evaluation report, are written and pinned too. ``marks`` is the
    operating point for marks (``ml.types.MarkOperatingPoint``); without it the manifest
    names none and readers take the defaults. ``operating`` (per-level thresholds) and
    ``calibration`` (per-level maps) are written when given; ``threshold`` is then the
    study threshold.
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise BundleError(f"bundle folder {root} is not empty")
    section = json.loads(json.dumps(model_section))  # deep copy, JSON types only
    members = model if isinstance(model, list) else [model]
    section.pop("members", None)
    if len(members) > 1:
        section["members"] = len(members)
    text = section["text_encoder"]
    external = bool(text.get("external"))
    save_file(_members_state(members, external), str(root / MODEL_WEIGHTS))
    save_file({k: v.detach().contiguous().cpu() for k, v in detector.state_dict().items()},
              str(root / DETECTOR_WEIGHTS))
    (root / DETECTOR_CONFIG).write_text(yaml.safe_dump(detector_config, sort_keys=False))
    if not external:
        (root / TEXT_CONFIG).write_text(json.dumps(text.pop("config"), indent=2))
        if tokenizer_dir is None:
            raise BundleError("an internal text encoder needs its tokenizer_dir")
        (root / TOKENIZER_DIR).mkdir()
        for file in sorted(tokenizer_dir.iterdir()):
            if file.is_file():
                (root / TOKENIZER_DIR / file.name).write_bytes(file.read_bytes())
    for relative, content in (extra_files or {}).items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    for weights in (root / MODEL_WEIGHTS, root / DETECTOR_WEIGHTS):
        weights.chmod(0o644)  # safetensors writes 0600; a bundle is read by the service user
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "name": name,
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "notes": notes,
        "model": section,
        "preprocessing": {f.name: getattr(preprocess, f.name) for f in fields(preprocess)},
        "threshold": operating.study.threshold if operating is not None else threshold,
        **({"operating_points": operating_points_manifest(operating)}
           if operating is not None else {}),
        **({"calibration": calibration.as_manifest()} if calibration is not None else {}),
        **({"marks": {k: v for k, v in asdict(marks).items() if k != "view_threshold"}}
           if marks is not None else {}),
        "training_data": training_data,
        "files": {p.relative_to(root).as_posix(): sha256_file(p)
                  for p in sorted(root.rglob("*")) if p.is_file()},
    }
    manifest["digest"] = manifest_digest(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_bundle(path: Path | str | None = None) -> Bundle:
    """Verify and load the bundle at ``path`` (default: the packaged one) onto the CPU.

    Raises ``BundleError`` for a missing, unlisted or altered file (see
    ``read_manifest``) or weights that do not fit the architecture.
    """
    root = Path(path) if path is not None else default_bundle_path()
    manifest = read_manifest(root, verify=True)
    section = manifest["model"]
    external = bool(section["text_encoder"].get("external"))
    members = []
    for index, state in enumerate(_member_states(load_file(str(root / MODEL_WEIGHTS)),
                                                 member_count(section))):
        model = build_model(section, root)
        missing, unexpected = model.load_state_dict(state, strict=False)
        frozen_base = {k for k in missing if external and k.startswith("text_encoder.")}
        if unexpected or set(missing) - frozen_base:
            which = f" member {index}" if "members" in section else ""
            raise BundleError(f"bundle {root}: {MODEL_WEIGHTS}{which} does not fit the "
                              f"architecture (missing {sorted(set(missing) - frozen_base)[:3]}"
                              f", unexpected {sorted(unexpected)[:3]})")
        members.append(model.eval())
    detector = build_detector(yaml.safe_load((root / DETECTOR_CONFIG).read_text()))
    try:
        detector.load_state_dict(load_file(str(root / DETECTOR_WEIGHTS)), strict=True)
    except RuntimeError as exc:
        raise BundleError(f"bundle {root}: {DETECTOR_WEIGHTS} does not fit "
                          f"{DETECTOR_CONFIG}: {exc}") from exc
    text = section["text_encoder"]
    tokenizer_dir = (resolve_location(text["external"]["location"]) if external
                     else root / TOKENIZER_DIR)
    crop = section.get("crop", {})
    try:
        check_context(str(section["text_encoder"].get("context", "none")))
        calibration = LevelCalibration.from_manifest(manifest.get("calibration"))
        operating = operating_points_from_manifest(manifest.get("operating_points"),
                                                   float(manifest["threshold"]), calibration)
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{MANIFEST}: calibration or operating points: {exc}") from exc
    return Bundle(
        path=root, manifest=manifest, members=members, detector=detector.eval(),
        tokenizer=load_tokenizer(tokenizer_dir),
        preprocess=_dataclass_from(PreprocessParams, manifest.get("preprocessing", {})),
        detector_params=_dataclass_from(DetectorParams, {**section.get("detector", {}),
                                                         "k": section["k"]}),
        crop=_dataclass_from(CropParams, crop),
        max_length=int(text.get("max_length", 128)),
        operating=operating, calibration=calibration,
        marks=_marks(manifest.get("marks", {})),
    )


def _marks(section: dict[str, Any]) -> MarkOperatingPoint:
    """The manifest's optional ``marks`` section, checked; defaults where it is absent."""
    marks: MarkOperatingPoint = _dataclass_from(MarkOperatingPoint, section)
    if not 0.0 <= marks.threshold <= 1.0 or marks.max_per_image < 1:
        raise BundleError(f"{MANIFEST}: marks {section} needs a threshold in 0..1 and "
                          "max_per_image of at least 1")
    return marks
