"""Detector ROIs and their crops, computed once per view and run, as the pipeline does.

Each view goes through ``prepare_view`` -> ``detect`` -> ``crop_rois`` with the bundle's
parameters, exactly as ``ml.pipeline.Pipeline`` scores it; the crop is kept before the
per-channel normalisation (one channel, float16), which ``ViewCache.batch`` applies.
Boxes are kept in stored pixels for the attention pictures, with the detector's
confidence in each ROI. For the views with lesion
boxes the cache also keeps a crop on each lesion and marks the ROIs that hit one: the
labelled crops the image encoder is pre-trained on (``ml.train.crop_pretraining``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from ml.bundle import CropParams
from ml.crops import crop_rois
from ml.detector import DetectorParams, detect
from ml.preprocess import PreprocessParams, prepare_view
from ml.synth.dataset import StudyRecord
from ml.train.detector_training import to_prepared


@dataclass
class ViewCache:
    """N views: crops (N, K, S, S) in [0, 1], mask (N, K), boxes (N, K, 4) stored px,
    scores (N, K) detector confidence (0 for padding and the whole-breast ROI)."""

    crops: Tensor
    mask: Tensor
    boxes: Tensor
    scores: Tensor
    labels: Tensor  # (N,) view label
    study: Tensor  # (N,) index into ``histories``
    histories: list[str]
    study_uids: list[str]
    lateralities: list[str]
    views: list[str]
    paths: list[str]
    breast_labels: dict[str, int]  # "study_uid/laterality" -> label
    lesion_crops: Tensor = field(default_factory=lambda: torch.zeros(0, 1, 1))  # (M, S, S)
    roi_on_lesion: Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.bool))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def breast_key(self, i: int) -> tuple[str, str]:
        return self.study_uids[int(self.study[i])], self.lateralities[i]

    def batch(self, indices: Sequence[int], crop: CropParams,
              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Normalised crops (B, K, 3, S, S) and mask (B, K); with ``generator``, each crop
        is flipped at random (training augmentation)."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        raw = self.crops[index].float()  # (B, K, S, S)
        if generator is not None:
            raw = random_flips(raw, generator)
        return normalise_crops(raw, crop), self.mask[index]

    def save(self, path: Path) -> None:
        """Write the cache to ``path`` whole or not at all (a run stopped while saving,
        or two runs filling the same detector cache, never leave half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        torch.save({f.name: getattr(self, f.name) for f in fields(self)}, partial)
        os.replace(partial, path)

    @classmethod
    def load(cls, path: Path) -> ViewCache:
        return cls(**torch.load(path, weights_only=True))


def build_view_cache(studies: Sequence[StudyRecord], detector: nn.Module,
                     detector_params: DetectorParams, crop: CropParams,
                     preprocess: PreprocessParams, batch_views: int = 8,
                     progress: Callable[[int], None] | None = None) -> ViewCache:
    """Run preprocessing, the detector and the crops over every view of ``studies``.

    Raises what ``prepare_view`` raises for a view that cannot be read: training data
    must be clean, so a bad file stops the run with its error.
    """
    detector = detector.eval()
    items = [(s_index, view) for s_index, study in enumerate(studies) for view in study.views]
    crops, masks, boxes, scores, lesion_crops, on_lesion = [], [], [], [], [], []
    with torch.inference_mode():
        for start in range(0, len(items), batch_views):
            chunk = items[start:start + batch_views]
            prepared = [prepare_view(view.path, preprocess) for _, view in chunk]
            images = [torch.from_numpy(p.image) for p in prepared]
            for (_, view), image, view_prep, rois in zip(
                    chunk, images, prepared, detect(detector, images, detector_params),
                    strict=True):
                raw = crop_rois(image, rois.boxes, size=crop.size, margin=crop.margin,
                                min_side=crop.min_side, mean=(0.0,) * 3, std=(1.0,) * 3)
                crops.append(raw[:, 0].half())
                masks.append(rois.mask.clone())
                scores.append(rois.scores.float().clone())
                lesions = torch.tensor([to_prepared(view_prep, b) for b in view.boxes],
                                       dtype=torch.float32).reshape(-1, 4)
                on_lesion.append(rois_on_lesions(rois.boxes, lesions) & rois.mask)
                if len(lesions):
                    lesion_crops.append(crop_rois(
                        image, lesions, size=crop.size, margin=crop.margin,
                        min_side=crop.min_side, mean=(0.0,) * 3, std=(1.0,) * 3)[:, 0].half())
                stored = torch.tensor([view_prep.to_stored(tuple(b)) for b in
                                       rois.boxes.tolist()], dtype=torch.float32)
                boxes.append(stored * rois.mask[:, None])
            if progress is not None:
                progress(min(start + batch_views, len(items)))
    return ViewCache(
        crops=torch.stack(crops), mask=torch.stack(masks), boxes=torch.stack(boxes),
        scores=torch.stack(scores),
        labels=torch.tensor([view.label for _, view in items], dtype=torch.long),
        study=torch.tensor([i for i, _ in items], dtype=torch.long),
        histories=[s.history for s in studies], study_uids=[s.study_uid for s in studies],
        lateralities=[view.laterality for _, view in items],
        views=[view.view for _, view in items], paths=[str(view.path) for _, view in items],
        breast_labels={f"{s.study_uid}/{lat}": int(v) for s in studies
                       for lat, v in s.breast_labels.items()},
        lesion_crops=(torch.cat(lesion_crops) if lesion_crops
                      else torch.zeros(0, crop.size, crop.size, dtype=torch.float16)),
        roi_on_lesion=torch.stack(on_lesion))


def concat_caches(parts: Sequence[ViewCache]) -> ViewCache:
    """One cache of ``parts`` (disjoint studies), in order."""
    offsets, total = [], 0
    for part in parts:
        offsets.append(total)
        total += len(part.histories)
    return ViewCache(
        crops=torch.cat([p.crops for p in parts]), mask=torch.cat([p.mask for p in parts]),
        boxes=torch.cat([p.boxes for p in parts]), scores=torch.cat([p.scores for p in parts]),
        labels=torch.cat([p.labels for p in parts]),
        study=torch.cat([p.study + o for p, o in zip(parts, offsets, strict=True)]),
        histories=[h for p in parts for h in p.histories],
        study_uids=[u for p in parts for u in p.study_uids],
        lateralities=[x for p in parts for x in p.lateralities],
        views=[x for p in parts for x in p.views], paths=[x for p in parts for x in p.paths],
        breast_labels={k: v for p in parts for k, v in p.breast_labels.items()},
        lesion_crops=torch.cat([p.lesion_crops for p in parts]),
        roi_on_lesion=torch.cat([p.roi_on_lesion for p in parts]))


def rois_on_lesions(rois: Tensor, lesions: Tensor, min_iou: float = 0.1) -> Tensor:
    """(K,) bool: ROI boxes (K, 4) whose centre lies in a lesion box (M, 4) or that overlap
    one at IoU >= ``min_iou`` (same pixel grid)."""
    if not len(lesions):
        return torch.zeros(len(rois), dtype=torch.bool)
    centre = (rois[:, None, :2] + rois[:, None, 2:]) / 2  # (K, 1, 2)
    inside = ((centre >= lesions[None, :, :2]) & (centre <= lesions[None, :, 2:])).all(-1)
    return (inside | (box_iou(rois, lesions) >= min_iou)).any(dim=1)


def random_flips(raw: Tensor, generator: torch.Generator) -> Tensor:
    """Crops (..., S, S), each flipped left-right and up-down with probability 1/2."""
    flip = torch.rand(raw.shape[:-2] + (2,), generator=generator) < 0.5
    raw = torch.where(flip[..., 0, None, None], raw.flip(-1), raw)
    return torch.where(flip[..., 1, None, None], raw.flip(-2), raw)


def normalise_crops(raw: Tensor, crop: CropParams) -> Tensor:
    """Crops (..., S, S) in [0, 1] -> encoder input (..., 3, S, S), normalised as the
    bundle's crop parameters say."""
    mean = torch.tensor(crop.mean)[:, None, None]
    std = torch.tensor(crop.std)[:, None, None]
    channels = raw.unsqueeze(-3).expand(*raw.shape[:-2], 3, *raw.shape[-2:])
    return (channels - mean) / std
