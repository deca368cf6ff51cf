"""Pretrained image-encoder weights from local files, pinned by SHA-256; never downloaded.

Three published layouts of the DINO ViT-S/8 are read:

- ``dino``: the state dict the DINO authors publish (``dino_deitsmall8_pretrain.pth``),
  or a full DINO training checkpoint (its ``teacher`` network, ``module.``/``backbone.``
  prefixes stripped);
- ``timm``: timm's ``vit_small_patch8_224.dino`` (``model.safetensors``, or a timm
  Hugging Face folder with ``config.json`` + ``model.safetensors``);
- ``transformers``: a Hugging Face ``ViTModel`` folder (``facebook/dino-vits8``), whose
  separate query/key/value projections are joined into timm's ``qkv``.

Every layout goes through timm's own ``checkpoint_filter_fn``, which interpolates the
position embedding when the crop size differs from the checkpoint's (224 px) and
resamples the patch embedding when the patch size differs. The weights must then fit
the encoder exactly (a classifier head is the only thing dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from timm.models.vision_transformer import checkpoint_filter_fn
from torch import Tensor, nn

from ml.manifest import pin_folder, sha256_file

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class PretrainedWeightsError(ValueError):
    """A weights file that cannot be read or does not fit; the message names the file."""


@dataclass(frozen=True)
class PretrainedWeights:
    """Where an encoder's starting weights came from, as the manifest records it."""

    source: str  # the file or folder name the weights were read from
    layout: str  # dino, timm or transformers
    files: dict[str, str]  # file name -> SHA-256

    def as_manifest(self) -> dict[str, Any]:
        return {"source": self.source, "layout": self.layout, "files": dict(self.files)}


def _read_tensors(file: Path) -> dict[str, Any]:
    if file.suffix == ".safetensors":
        return dict(load_file(str(file)))
    try:  # tensors only: a pickle that needs code to unpickle is refused
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a non-checkpoint file
        raise PretrainedWeightsError(f"{file}: not a PyTorch state dict ({exc})") from exc
    if not isinstance(loaded, dict):
        raise PretrainedWeightsError(f"{file}: holds a {type(loaded).__name__}, "
                                     "not a state dict")
    return loaded


def _dino_state(checkpoint: dict[str, Any]) -> dict[str, Tensor]:
    """The backbone of a DINO state dict or training checkpoint, in timm's names."""
    state = checkpoint.get("teacher", checkpoint)
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "backbone."):
            key = key.removeprefix(prefix)
        if not key.startswith("head.") and isinstance(value, Tensor):
            out[key] = value
    return out


def _transformers_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A Hugging Face ``ViTModel`` state dict in timm's names (query/key/value -> qkv)."""
    prefix = next((p for p in ("vit.", "dino.", "") if f"{p}embeddings.cls_token" in state),
                  None)
    if prefix is None:
        raise PretrainedWeightsError("no embeddings.cls_token: not a ViTModel state dict")
    hf = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    out = {"cls_token": hf["embeddings.cls_token"],
           "pos_embed": hf["embeddings.position_embeddings"],
           "patch_embed.proj.weight": hf["embeddings.patch_embeddings.projection.weight"],
           "patch_embed.proj.bias": hf["embeddings.patch_embeddings.projection.bias"],
           "norm.weight": hf["layernorm.weight"], "norm.bias": hf["layernorm.bias"]}
    layers = sorted({int(k.split(".")[2]) for k in hf if k.startswith("encoder.layer.")})
    renamed = {"layernorm_before": "norm1", "layernorm_after": "norm2",
               "attention.output.dense": "attn.proj", "intermediate.dense": "mlp.fc1",
               "output.dense": "mlp.fc2"}
    for i in layers:
        source, target = f"encoder.layer.{i}.", f"blocks.{i}."
        for part in ("weight", "bias"):
            out[f"{target}attn.qkv.{part}"] = torch.cat(
                [hf[f"{source}attention.attention.{name}.{part}"]
                 for name in ("query", "key", "value")])
            for hf_name, timm_name in renamed.items():
                out[f"{target}{timm_name}.{part}"] = hf[f"{source}{hf_name}.{part}"]
    return out


def _folder_weights(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise PretrainedWeightsError(f"{folder}: no {' or '.join(WEIGHT_FILES)} in the folder")


def read_image_weights(path: Path) -> tuple[dict[str, Tensor], PretrainedWeights]:
    """The state dict at ``path`` in timm's names, and its provenance (file digests)."""
    if not path.exists():
        raise PretrainedWeightsError(f"{path}: no such file or folder")
    file = _folder_weights(path) if path.is_dir() else path
    state = _read_tensors(file)
    state = state.get("model", state) if isinstance(state.get("model"), dict) else state
    if any(k.endswith("embeddings.cls_token") for k in state):
        layout, converted = "transformers", _transformers_state(state)
    elif file.suffix == ".safetensors":
        layout, converted = "timm", {k: v for k, v in state.items() if isinstance(v, Tensor)}
    else:
        layout, converted = "dino", _dino_state(state)
    if "cls_token" not in converted or "pos_embed" not in converted:
        raise PretrainedWeightsError(f"{file}: no cls_token/pos_embed: not a ViT checkpoint "
                                     "in the DINO, timm or transformers layout")
    files = (pin_folder(path) if path.is_dir() else {path.name: sha256_file(path)})
    return converted, PretrainedWeights(source=path.name, layout=layout, files=files)


def load_image_weights(vit: nn.Module, path: Path) -> PretrainedWeights:
    """Load the ViT weights at ``path`` into ``vit`` (a timm ``VisionTransformer``),
    adapting the position embedding to its crop size; raises ``PretrainedWeightsError``
    when the file cannot be read or the weights do not fit."""
    state, provenance = read_image_weights(path)
    state = {k: v for k, v in state.items() if not k.startswith(("head.", "fc_norm."))}
    try:
        fitted = checkpoint_filter_fn(state, vit)  # type: ignore[arg-type]
        missing, unexpected = vit.load_state_dict(fitted, strict=False)
    except RuntimeError as exc:  # a shape that no resampling can fix
        raise PretrainedWeightsError(f"{path}: the weights do not fit the image encoder "
                                     f"({str(exc).splitlines()[0]} ...)") from exc
    missing = [k for k in missing if not k.startswith(("head.", "fc_norm."))]
    if missing or unexpected:
        raise PretrainedWeightsError(f"{path}: the weights do not fit the image encoder "
                                     f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return provenance


def describe(provenance: PretrainedWeights | None) -> str:
    """One line for logs and reports."""
    if provenance is None:
        return "random initialisation"
    digests = ", ".join(f"{name} sha256:{digest[:12]}"
                        for name, digest in provenance.files.items())
    return f"{provenance.layout} weights from {provenance.source} ({digests})"
