"""Model bundles: one folder with a manifest, weights (safetensors) and tokenizer files.

``manifest.json`` holds name, version, creation time, the architecture (``model``), the
preprocessing parameters, the operating threshold, a training-data summary, the SHA-256
of every other file in the folder (``files``) and ``digest``: the SHA-256 of the
manifest's canonical JSON without ``digest`` itself, which therefore covers every file.
The digest is what results and the database record as the model version.

A bundle may use a frozen base text encoder that lives outside it (a folder, or
``package:NAME/SUBDIR`` inside an installed Python package), pinned by the SHA-256 of
each of its files; the bundle then stores only the text layers it trained.

``load_bundle`` refuses, with ``BundleError`` naming the file, a bundle whose manifest is
missing or unreadable, a listed file that is missing or altered, an unlisted file, or an
external encoder file that differs from its pin.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from ml.detector import DetectorParams, build_detector
from ml.encoders import (
    ImageEncoder,
    TextEncoder,
    load_tokenizer,
    text_model_from_config,
    text_model_from_pretrained,
)
from ml.model import MMBCD
from ml.preprocess import PreprocessParams

FORMAT = "mmbcd-bundle/1"
MANIFEST = "manifest.json"
MODEL_WEIGHTS = "model.safetensors"
DETECTOR_CONFIG = "detector.yaml"
DETECTOR_WEIGHTS = "detector.safetensors"
TEXT_CONFIG = "text_encoder.json"
TOKENIZER_DIR = "tokenizer"


class BundleError(ValueError):
    """The bundle is incomplete, altered or inconsistent; the message names the file."""


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
    model: MMBCD
    detector: nn.Module
    tokenizer: Any
    preprocess: PreprocessParams
    detector_params: DetectorParams
    crop: CropParams
    max_length: int
    threshold: float

    @property
    def digest(self) -> str:
        return str(self.manifest["digest"])

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])


def default_bundle_path() -> Path:
    """The bundle shipped with the package (``ml/bundles/default``)."""
    return Path(__file__).parent / "bundles" / "default"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``manifest`` without its ``digest`` key."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def resolve_location(location: str) -> Path:
    """A folder path, or ``package:NAME/SUBDIR`` inside an installed Python package."""
    if location.startswith("package:"):
        package, _, sub = location.removeprefix("package:").partition("/")
        try:
            root = Path(str(importlib.resources.files(package)))
        except ModuleNotFoundError as exc:
            raise BundleError(f"external encoder package {package!r} is not installed") from exc
        return root / sub
    return Path(location).expanduser()


def pin_folder(folder: Path) -> dict[str, str]:
    """SHA-256 of every file directly in ``folder`` (what an external pin records)."""
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}


def _verify_files(root: Path, pinned: dict[str, str], what: str) -> None:
    for name, expected in sorted(pinned.items()):
        file = root / name
        if not file.is_file():
            raise BundleError(f"{what}: file {file} is missing")
        if sha256_file(file) != expected:
            raise BundleError(f"{what}: file {file} does not match its SHA-256 in the manifest "
                              "(altered or replaced)")


def read_manifest(path: Path | str, verify: bool = True) -> dict[str, Any]:
    """The manifest of the bundle at ``path``; with ``verify``, every digest is checked.

    Raises ``BundleError`` naming the file that is missing, unlisted or altered.
    """
    root = Path(path)
    manifest_file = root / MANIFEST
    if not manifest_file.is_file():
        raise BundleError(f"bundle {root}: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"bundle {root}: {MANIFEST} is not readable JSON: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise BundleError(f"bundle {root}: {MANIFEST} format is {manifest.get('format')!r}, "
                          f"expected {FORMAT!r}")
    if not verify:
        return manifest
    if manifest.get("digest") != manifest_digest(manifest):
        raise BundleError(f"bundle {root}: {MANIFEST} was altered (digest does not match)")
    listed = manifest.get("files", {})
    _verify_files(root, listed, f"bundle {root}")
    present = {p.relative_to(root).as_posix() for p in root.rglob("*")
               if p.is_file() and p.name != MANIFEST and "__pycache__" not in p.parts}
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise BundleError(f"bundle {root}: file {unlisted[0]} is not listed in {MANIFEST}")
    external = manifest["model"]["text_encoder"].get("external")
    if external:
        _verify_files(resolve_location(external["location"]), external["files"],
                      "external text encoder")
    return manifest


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
    image_encoder = ImageEncoder(image["arch"], image.get("frozen_blocks", 0),
                                 **image.get("overrides", {}))
    text = model_section["text_encoder"]
    if text.get("external"):
        base = text_model_from_pretrained(resolve_location(text["external"]["location"]))
    elif root is not None:
        base = text_model_from_config(json.loads((root / TEXT_CONFIG).read_text()))
    else:
        base = text_model_from_config(text["config"])
    text_encoder = TextEncoder(base, text.get("trainable_layers", 2))
    fusion = model_section.get("fusion", {})
    return MMBCD(image_encoder, text_encoder, fusion.get("dim", 256), fusion.get("head_hidden"))


def _stored_state(model: MMBCD, external: bool) -> dict[str, torch.Tensor]:
    """The tensors a bundle stores: everything, or without the frozen external base."""
    trainable_text = {f"text_encoder.{n}" for n, p in model.text_encoder.named_parameters()
                      if p.requires_grad}
    return {name: tensor.detach().contiguous().cpu()
            for name, tensor in model.state_dict().items()
            if not (external and name.startswith("text_encoder.") and name not in trainable_text)}


def save_bundle(out_dir: Path | str, *, name: str, version: str, model: MMBCD,
                model_section: dict[str, Any], detector: nn.Module,
                detector_config: dict[str, Any], tokenizer_dir: Path | None,
                preprocess: PreprocessParams, threshold: float,
                training_data: dict[str, Any], extra_files: dict[str, bytes] | None = None,
                notes: str = "") -> dict[str, Any]:
    """Write a bundle to ``out_dir`` (created; must be empty) and return its manifest.

    ``model_section`` describes the architecture as ``build_model`` reads it; for an
    internal text encoder its ``config`` is written to ``text_encoder.json`` and its
    tokenizer files are copied from ``tokenizer_dir``. ``extra_files`` (relative path ->
    bytes), e.g. an evaluation report, are written and pinned too.
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise BundleError(f"bundle folder {root} is not empty")
    section = json.loads(json.dumps(model_section))  # deep copy, JSON types only
    text = section["text_encoder"]
    external = bool(text.get("external"))
    save_file(_stored_state(model, external), str(root / MODEL_WEIGHTS))
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
        "threshold": threshold,
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
    model = build_model(section, root)
    state = load_file(str(root / MODEL_WEIGHTS))
    missing, unexpected = model.load_state_dict(state, strict=False)
    external = bool(section["text_encoder"].get("external"))
    frozen_base = {k for k in missing if external and k.startswith("text_encoder.")}
    if unexpected or set(missing) - frozen_base:
        raise BundleError(f"bundle {root}: {MODEL_WEIGHTS} does not fit the architecture "
                          f"(missing {sorted(set(missing) - frozen_base)[:3]}, "
                          f"unexpected {sorted(unexpected)[:3]})")
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
    return Bundle(
        path=root, manifest=manifest, model=model.eval(), detector=detector.eval(),
        tokenizer=load_tokenizer(tokenizer_dir),
        preprocess=_dataclass_from(PreprocessParams, manifest.get("preprocessing", {})),
        detector_params=_dataclass_from(DetectorParams, {**section.get("detector", {}),
                                                         "k": section["k"]}),
        crop=_dataclass_from(CropParams, crop),
        max_length=int(text.get("max_length", 128)),
        threshold=float(manifest["threshold"]),
    )
