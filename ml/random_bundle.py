"""Random-weight bundles: a tiny packaged one for wiring checks (its scores mean nothing),
and the full-size architecture for benchmarks. Nothing is downloaded: every part is built from a
configuration, and the RoBERTa byte-level BPE vocabulary is trained here (``tokenizers``)
on a small built-in corpus of clinical-history phrases.

``python -m ml.random_bundle --out ml/bundles/random-tiny`` (``make tiny-bundle``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import ByteLevelBPETokenizer
from torch import nn

from ml.bundle import CropParams, build_model, save_bundle
from ml.detector import DetectorParams, build_detector
from ml.model import MMBCD, SCORE_FLOOR
from ml.preprocess import PreprocessParams

CORPUS = [
    "screening mammogram, no complaints", "palpable lump in the left breast for two months",
    "right breast lump, hard and fixed", "nipple discharge, bloody, right side",
    "family history of breast cancer, mother diagnosed at 45", "BRCA1 carrier",
    "previous benign biopsy of the left breast", "skin dimpling and nipple retraction",
    "follow-up after lumpectomy and radiotherapy", "mastalgia, cyclical, both breasts",
    "axillary lymph node swelling", "known fibroadenoma, stable", "dense breasts on prior",
    "post menopausal, on hormone replacement therapy", "recall from screening for a mass",
    "calcifications seen on prior study", "no family history, routine annual screening",
    "painful swelling of the right breast, redness", "orange peel skin, rapidly growing mass",
    "simple cyst aspirated last year", "implants in place, no symptoms",
]
# A YOLOv8-shaped detector (backbone, FPN neck, Detect head) scaled far down for the CPU.
TINY_DETECTOR: dict[str, Any] = {
    "nc": 1, "depth_multiple": 0.33, "width_multiple": 0.0625, "max_channels": 256,
    "backbone": [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [128, 3, 2]],
                 [-1, 3, "C2f", [128, True]], [-1, 1, "Conv", [256, 3, 2]],
                 [-1, 6, "C2f", [256, True]], [-1, 1, "Conv", [512, 3, 2]],
                 [-1, 6, "C2f", [512, True]], [-1, 1, "Conv", [1024, 3, 2]],
                 [-1, 3, "C2f", [1024, True]], [-1, 1, "SPPF", [1024, 5]]],
    "head": [[-1, 1, "nn.Upsample", [None, 2, "nearest"]], [[-1, 6], 1, "Concat", [1]],
             [-1, 3, "C2f", [512]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
             [[-1, 4], 1, "Concat", [1]], [-1, 3, "C2f", [256]],
             [-1, 1, "Conv", [256, 3, 2]], [[-1, 12], 1, "Concat", [1]],
             [-1, 3, "C2f", [512]], [-1, 1, "Conv", [512, 3, 2]],
             [[-1, 9], 1, "Concat", [1]], [-1, 3, "C2f", [1024]],
             [[15, 18, 21], 1, "Detect", ["nc"]]],
}


@dataclass
class RandomParts:
    model: MMBCD
    model_section: dict[str, Any]
    detector: nn.Module
    detector_config: dict[str, Any]


def train_tokenizer(folder: Path, vocab_size: int = 1000) -> Path:
    """Byte-level BPE (RoBERTa's scheme) trained on ``CORPUS``: ``vocab.json`` + ``merges.txt``."""
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(CORPUS, vocab_size=vocab_size, min_frequency=1,
                                  special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  show_progress=False)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_model(str(folder))
    return folder


def model_section(size: str, vocab_size: int, k: int = 8, imgsz: int | None = None) -> dict:
    """The manifest ``model`` section of the tiny or the full-size (paper) architecture."""
    if size == "tiny":
        image = {"arch": "vit_small_patch8_224.dino", "frozen_blocks": 1,
                 "overrides": {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 32}}
        text_config = {"model_type": "roberta", "vocab_size": vocab_size, "hidden_size": 32,
                       "num_hidden_layers": 2, "num_attention_heads": 2,
                       "intermediate_size": 64, "max_position_embeddings": 130}
        detector = {"imgsz": imgsz or 512}
        text_id = "tiny-roberta (random init)"
        head_hidden = None
    elif size == "full":
        image = {"arch": "vit_small_patch8_224.dino", "frozen_blocks": 9, "overrides": {}}
        text_config = {"model_type": "roberta", "vocab_size": 50265, "hidden_size": 768,
                       "num_hidden_layers": 12, "num_attention_heads": 12,
                       "intermediate_size": 3072, "max_position_embeddings": 514,
                       "type_vocab_size": 1, "pad_token_id": 1}
        detector = {"imgsz": imgsz or 1024}
        text_id = "roberta-base architecture (random init)"
        head_hidden = 256  # the paper's MLP head on [E_V, E_A, E_T]
    else:
        raise ValueError(f"size must be 'tiny' or 'full', not {size!r}")
    return {"k": k, "image_encoder": image,
            "text_encoder": {"id": text_id, "config": text_config, "external": None,
                             "trainable_layers": 2, "max_length": 128},
            "fusion": {"dim": 256, "head_hidden": head_hidden, "score_floor": SCORE_FLOOR},
            "crop": {f: getattr(CropParams(), f) for f in ("size", "margin", "min_side")},
            "detector": {**{f: getattr(DetectorParams(), f)
                            for f in ("conf", "max_det", "ultralytics_iou", "nms_iou")},
                         **detector}}


def random_parts(size: str, vocab_size: int, seed: int = 0,
                 imgsz: int | None = None) -> RandomParts:
    """Models with random weights (fixed seed) and their manifest sections."""
    torch.manual_seed(seed)
    section = model_section(size, vocab_size, imgsz=imgsz)
    config = TINY_DETECTOR if size == "tiny" else "yolov8s.yaml"
    detector = build_detector(config)
    return RandomParts(build_model(section), section, detector,
                       dict(detector.yaml))  # type: ignore[arg-type]


def write_random_bundle(out: Path, size: str = "tiny", seed: int = 0) -> dict[str, Any]:
    """Write a random-weight bundle to ``out`` (replaced if present); returns its manifest."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_dir = train_tokenizer(Path(tmp) / "tokenizer")
        vocab_size = len(json.loads((tokenizer_dir / "vocab.json").read_text()))
        parts = random_parts(size, vocab_size, seed)
        if out.exists():
            shutil.rmtree(out)
        return save_bundle(
            out, name=f"mmbcd-random-{size}", version="0.0.0", model=parts.model,
            model_section=parts.model_section, detector=parts.detector,
            detector_config=parts.detector_config, tokenizer_dir=tokenizer_dir,
            preprocess=PreprocessParams(), threshold=0.5,
            training_data={"description": "none: random weights, for wiring and tests only",
                           "seed": seed},
            notes="Random weights. Its scores carry no information about cancer.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    manifest = write_random_bundle(args.out, args.size, args.seed)
    print(f"wrote {args.out} digest {manifest['digest']}")


if __name__ == "__main__":
    main()
