"""ROI proposals: Ultralytics YOLO on the whole view, then our NMS and the top K.

The detector keeps many low-confidence proposals (conf 0.001, up to 300, after
Ultralytics' own class NMS); we then run greedy NMS at IoU 0.1 (torchvision), highest
score first, and keep the top K. Fewer than K boxes are padded and masked, never
duplicated; no box at all gives the whole breast region as the single ROI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import nms

from ml.offline import configure_ultralytics


@dataclass(frozen=True)
class DetectorParams:
    imgsz: int = 640  # square input side; a multiple of the model stride (32)
    conf: float = 0.001  # keep low-confidence proposals: the fusion decides
    max_det: int = 300
    ultralytics_iou: float = 0.7  # Ultralytics' class NMS before ours
    nms_iou: float = 0.1  # our greedy NMS (the authors' setting)
    k: int = 8


@dataclass(frozen=True)
class Rois:
    """The K ROIs of one view in the prepared image's pixel grid."""

    boxes: Tensor  # (K, 4) x0, y0, x1, y1; padded rows are zeros
    scores: Tensor  # (K,) detector confidence; 0 for padding and the whole-breast ROI
    mask: Tensor  # (K,) True for a real ROI
    whole_breast: bool  # no detection: the single ROI is the whole prepared image


def build_detector(config: dict[str, Any] | str | Path, nc: int = 1) -> nn.Module:
    """An Ultralytics ``DetectionModel`` from a YAML dict or file (random weights), in eval mode."""
    configure_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    cfg = dict(config) if isinstance(config, dict) else str(config)
    model = DetectionModel(cfg=cfg, ch=3, nc=nc, verbose=False)
    return model.eval()


def letterbox(images: list[Tensor], size: int) -> tuple[Tensor, list[float]]:
    """Images (H, W) in [0, 1] -> batch (B, 3, size, size), each scaled to fit and padded
    at the bottom/right with 0; returns the scale of each (detector px per image px)."""
    batch = images[0].new_zeros(len(images), 3, size, size)
    scales = []
    for i, image in enumerate(images):
        scale = size / max(image.shape)
        height = max(1, round(image.shape[0] * scale))
        width = max(1, round(image.shape[1] * scale))
        resized = F.interpolate(image[None, None], size=(height, width), mode="bilinear",
                                antialias=True, align_corners=False)[0, 0]
        batch[i, :, :height, :width] = resized
        scales.append(scale)
    return batch, scales


def propose(detector: nn.Module, batch: Tensor, params: DetectorParams) -> list[Tensor]:
    """Raw proposals per image: list of (N, 5) [x0, y0, x1, y1, score] in batch pixels."""
    configure_ultralytics()
    from ultralytics.utils.nms import non_max_suppression

    out = detector(batch)
    prediction = out[0] if isinstance(out, tuple | list) else out  # (B, 4 + nc, anchors)
    # Ultralytics stops NMS for the rest of the batch after a time limit, which on a busy
    # CPU would silently leave later views without proposals: lift the limit.
    kept = non_max_suppression(prediction.float(), conf_thres=params.conf,
                               iou_thres=params.ultralytics_iou, max_det=params.max_det,
                               max_time_img=3600.0)
    return [det[:, :5] for det in kept]


def ranking(boxes: Tensor, scores: Tensor) -> Tensor:
    """Indices of proposals by decreasing score, equal scores by position (top, left,
    bottom, right): the same order on every device and run, whatever the input order."""
    order = torch.arange(len(scores), device=scores.device)
    for key in (boxes[:, 2], boxes[:, 3], boxes[:, 0], boxes[:, 1], -scores):  # last = primary
        order = order[torch.sort(key[order], stable=True).indices]
    return order


def select_rois(proposals: Tensor, k: int, iou: float, image_size: tuple[int, int]) -> Rois:
    """Greedy NMS at ``iou`` (highest score first) then the top ``k``; proposals (N, 5)
    in the image's pixel grid, ``image_size`` = (H, W) for the whole-breast fallback."""
    device = proposals.device
    boxes = torch.zeros(k, 4, device=device)
    scores = torch.zeros(k, device=device)
    mask = torch.zeros(k, dtype=torch.bool, device=device)
    height, width = image_size
    if proposals.shape[0]:
        clipped = proposals[:, :4].clone()
        clipped[:, 0::2] = clipped[:, 0::2].clamp(0, width)
        clipped[:, 1::2] = clipped[:, 1::2].clamp(0, height)
        area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
        clipped, score = clipped[area > 0], proposals[area > 0, 4].float()
        order = ranking(clipped, score)
        clipped, score = clipped[order], score[order]
        # NMS on ranks, not on scores: equal scores keep the ranking's order
        rank = torch.arange(len(order), 0, -1, device=device, dtype=torch.float32)
        keep = nms(clipped.float(), rank, iou)[:k]  # in ranking order
        n = int(keep.numel())
        if n:
            boxes[:n], scores[:n], mask[:n] = clipped[keep], score[keep], True
            return Rois(boxes, scores, mask, whole_breast=False)
    boxes[0] = torch.tensor([0.0, 0.0, float(width), float(height)], device=device)
    mask[0] = True
    return Rois(boxes, scores, mask, whole_breast=True)


def detect(detector: nn.Module, images: list[Tensor], params: DetectorParams) -> list[Rois]:
    """ROIs of each prepared image (H, W), in that image's pixel grid."""
    batch, scales = letterbox(images, params.imgsz)
    weight = next(detector.parameters())
    batch = batch.to(weight.dtype)
    if weight.dim() == 4 and not weight.is_contiguous():  # detector converted to NHWC
        batch = batch.contiguous(memory_format=torch.channels_last)
    rois = []
    for image, scale, proposals in zip(images, scales, propose(detector, batch, params),
                                       strict=True):
        proposals = proposals.clone()
        proposals[:, :4] /= scale  # detector pixels -> image pixels
        size = (int(image.shape[0]), int(image.shape[1]))
        rois.append(select_rois(proposals, params.k, params.nms_iou, size))
    return rois
