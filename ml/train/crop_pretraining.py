"""Supervised pre-training of the image encoder on labelled ROI crops.

A ViT trained from scratch learns slowly through the max over ROIs of the
multi-instance objective: one label per view, most of whose ROIs are normal tissue.
Before fusion training, the encoder (with a throw-away linear head) therefore learns to
tell crops on cancers from the rest: positives are the crops on the malignant lesion
boxes and the detector ROIs that hit them, negatives every ROI of the views without a
cancer (normal tissue and the benign look-alikes). Class-balanced sampling, flips and
quarter turns, Adam; the epoch with the best crop-level ROC AUC on the validation split
is kept. Fusion training then starts from that encoder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn

from ml.bundle import CropParams
from ml.encoders import ImageEncoder
from ml.train.view_cache import ViewCache, normalise_crops, random_flips


@dataclass(frozen=True)
class LabelledCrops:
    """Crops (M, S, S) in [0, 1] (float16) and their labels (M,): 1 on a cancer."""

    crops: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def labelled_crops(cache: ViewCache) -> LabelledCrops:
    """The pre-training samples of ``cache``: lesion crops and ROIs on a lesion of the
    cancer views (1), every real ROI of the views without a cancer (0). ROIs of cancer
    views that miss the lesion are left out: their label is unknown."""
    negative_views = (cache.labels == 0)[:, None]  # (N, 1)
    positives = [cache.lesion_crops]
    if cache.roi_on_lesion.numel():
        positives.append(cache.crops[cache.roi_on_lesion & cache.mask & ~negative_views])
    negatives = cache.crops[cache.mask & negative_views]
    positive = torch.cat(positives)
    return LabelledCrops(
        crops=torch.cat([positive, negatives]),
        labels=torch.cat([torch.ones(len(positive), dtype=torch.long),
                          torch.zeros(len(negatives), dtype=torch.long)]))


def augment(raw: Tensor, generator: torch.Generator) -> Tensor:
    """Random flips and quarter turns of crops (B, S, S): a lesion has no orientation."""
    raw = random_flips(raw, generator)
    turn = torch.rand(len(raw), generator=generator) < 0.5
    return torch.where(turn[:, None, None], raw.transpose(-1, -2), raw)


def crop_scores(encoder: ImageEncoder, head: nn.Module, samples: LabelledCrops,
                crop: CropParams, device: torch.device, batch: int = 256) -> np.ndarray:
    """Probability of a cancer (M,) for every crop of ``samples``."""
    encoder.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(samples), batch):
            raw = samples.crops[start:start + batch].float()
            logits = head(encoder(normalise_crops(raw, crop).to(device)))
            out.append(logits.float().softmax(-1)[:, 1].cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


def pretrain_image_encoder(encoder: ImageEncoder, train: ViewCache, val: ViewCache,
                           crop: CropParams, *, epochs: int, lr: float, batch: int,
                           seed: int, device: torch.device,
                           on_epoch: Callable[[dict[str, Any]], None] | None = None) -> float:
    """Train ``encoder`` in place on the labelled crops of ``train``; keeps the epoch with
    the best crop-level validation AUC and returns that AUC.

    Raises ValueError when ``train`` has no crop of either class (no lesion boxes).
    """
    samples, val_samples = labelled_crops(train), labelled_crops(val)
    counts = torch.bincount(samples.labels, minlength=2)
    if int(counts.min()) == 0:
        raise ValueError("crop pre-training needs lesion boxes and views without a cancer "
                         f"(found {int(counts[1])} lesion crops, {int(counts[0])} others)")
    generator = torch.Generator().manual_seed(seed)
    head = nn.Linear(encoder.dim, 2).to(device)
    parameters = [p for p in encoder.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.Adam(parameters, lr=lr, betas=(0.9, 0.98))
    weights = 1.0 / counts.float()[samples.labels]  # each class drawn equally often
    best_auc, best_state = -1.0, None
    for epoch in range(epochs):
        started = time.perf_counter()
        encoder.train()
        order = torch.multinomial(weights, len(samples), replacement=True, generator=generator)
        total = 0.0
        for start in range(0, len(order), batch):
            index = order[start:start + batch]
            inputs = normalise_crops(augment(samples.crops[index].float(), generator), crop)
            loss = F.cross_entropy(head(encoder(inputs.to(device))).float(),
                                   samples.labels[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        scores = crop_scores(encoder, head, val_samples, crop, device)
        auc = (float(roc_auc_score(val_samples.labels.numpy(), scores))
               if len(set(val_samples.labels.tolist())) == 2 else -1.0)
        if on_epoch is not None:
            on_epoch({"pretrain_epoch": epoch, "train_loss": total / len(order),
                      "val_crop_auc": auc, "crops": len(samples),
                      "lesion_crops": int(counts[1]), "seconds": time.perf_counter() - started})
        if auc >= best_auc:  # ties (or no validation lesions): the later epoch
            best_auc = auc
            best_state = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    assert best_state is not None
    encoder.load_state_dict(best_state)
    return best_auc


@contextlib.contextmanager
def _held(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``'s lock file, between processes and threads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# The fusion settings that crop pre-training reads: the encoder it starts from, the crops it
# sees and how it trains.
PRETRAINING_SETTINGS = ("seed", "image_arch", "image_overrides", "image_weights",
                        "frozen_blocks", "k", "crop_size", "batch", "pretrain_epochs",
                        "pretrain_lr")


def pretraining_file(folder: Path, settings: Mapping[str, Any], source: str) -> Path:
    """The file in ``folder`` where runs that pre-train the same encoder on the same ROIs
    keep it: named by the seed and a digest of the ``PRETRAINING_SETTINGS`` of
    ``settings`` (a fusion run's) and of ``source`` (which studies and detector gave the
    ROIs). Runs that differ only after pre-training (the ablation's rows, the fusion runs
    of an ensemble and the ablation beside them) share it; any other run gets its own."""
    key = {name: settings[name] for name in PRETRAINING_SETTINGS} | {"source": source}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode())
    return folder / f"seed-{settings['seed']}-{digest.hexdigest()[:16]}.pt"


def load_or_pretrain(encoder: nn.Module, saved: Path | None,
                     pretrain: Callable[[], float]) -> float:
    """The crop-level validation AUC of ``encoder`` after pre-training: loaded from
    ``saved`` when it holds one, else ``pretrain()`` (in place) and written there. Runs
    that share ``saved`` (the ablation's rows of one seed, side by side in several
    processes) pre-train once: the others wait for the file and load it."""
    if saved is None:
        return pretrain()
    with _held(saved):
        if saved.is_file():
            state = torch.load(saved, weights_only=True)
            encoder.load_state_dict(state["state"])
            return float(state["auc"])
        auc = pretrain()
        partial = saved.with_name(saved.name + ".partial")
        torch.save({"state": encoder.state_dict(), "auc": auc}, partial)
        os.replace(partial, saved)
        return auc
