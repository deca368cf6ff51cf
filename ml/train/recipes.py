"""Named fusion-training recipes: the CPU-sized demo and the paper's production shape.

A recipe is a set of ``FusionTraining`` values; options given on the command line
override it. ``paper`` is MMBCD as published: DINO ViT-S/8 on 224-px crops, roberta-base
(its last 2 layers train), K = 8 ROIs after NMS at IoU 0.1, one-head cross-attention with
the history as query, an MLP head on [E_V, E_A, E_T], Adam at 1e-6 from pretrained
weights, keywords masked afresh every epoch. Without pretrained image weights it still
builds and trains, from random weights and at the demo's learning rate, so it can be
benchmarked anywhere; its stem and first blocks are then not frozen.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ml.train.fusion_training import FusionTraining

PAPER_LR = 1e-6  # the authors' rate, for pretrained encoders
RANDOM_INIT_LR = 3e-4  # random image weights need a larger step

RECIPES: dict[str, dict[str, Any]] = {
    # ``make demo-model``: a 3-block, 64-wide ViT on 48-px crops pre-trained on ROI crops,
    # MiniLM with its last layer training, the detector's confidence beside each crop, the
    # view's side before the history and a fifth of the views without their history, the
    # weights averaged over about two epochs' steps (EMA 0.99, chosen on a development set).
    # Validation view AUC levels off within 10 epochs: at most 15, patience 5. Patches of
    # 8 px (36 per crop, not 16 of 12 px), chosen on a development set (README): the
    # margins that tell a carcinoma from its benign look-alike are a few pixels wide.
    "demo": {"roi_scores": True, "trainable_text_layers": 1, "pretrain_epochs": 20,
             "epochs": 15, "patience": 5, "text_context": "side", "history_dropout": 0.2,
             "ema_decay": 0.99,
             "image_overrides": {"embed_dim": 64, "depth": 3, "num_heads": 2, "patch_size": 8}},
    "paper": {"crop_size": 224, "image_overrides": {}, "frozen_blocks": 9, "k": 8,
              "text_id": "FacebookAI/roberta-base", "text_location": None,
              "trainable_text_layers": 2, "max_length": 128, "dim": 256, "head_hidden": 256,
              "roi_scores": False, "pretrain_epochs": 0, "keyword_p": 0.2,
              "betas": (0.9, 0.98)},
}


class RecipeError(ValueError):
    """An unknown recipe, or a recipe that lacks what it needs."""


def recipe_settings(recipe: str, **chosen: Any) -> FusionTraining:
    """``FusionTraining`` of ``recipe`` with the ``chosen`` values (``None``: not chosen).

    The paper recipe's learning rate is 1e-6 with pretrained image weights and 3e-4
    without, unless a rate is chosen. Its text encoder must be chosen: roberta-base as a
    folder or ``hf:FacebookAI/roberta-base`` from the local cache (README, 'For sites').
    """
    if recipe not in RECIPES:
        raise RecipeError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)}")
    values = {**asdict(FusionTraining()), **RECIPES[recipe],
              **{k: v for k, v in chosen.items() if v is not None}}
    if recipe == "paper":
        if values["text_location"] is None:
            raise RecipeError("the paper recipe needs roberta-base: give --text-encoder "
                              "hf:FacebookAI/roberta-base (from the local Hugging Face "
                              "cache) or a folder holding it")
        if chosen.get("lr") is None:
            values["lr"] = PAPER_LR if values["image_weights"] else RANDOM_INIT_LR
    return FusionTraining(**values)
