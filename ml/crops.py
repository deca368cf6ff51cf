"""ROI crops for the image encoder, cut from the full-resolution prepared image.

Each box becomes an aspect-preserving square around its centre (side = longest box side
plus a margin on each side, at least ``min_side`` pixels), resampled to ``size`` x ``size``
with ``torchvision.ops.roi_align`` (several samples averaged per output pixel, up to
``max_samples`` per axis, so large boxes are not aliased), replicated to 3 channels and normalised
with the encoder's mean and standard deviation. Parts of a square outside the image are 0
(background after preprocessing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import roi_align


def square_boxes(boxes: Tensor, margin: float, min_side: float) -> Tensor:
    """Boxes (K, 4) -> squares (K, 4) with the same centres; side = max(w, h) * (1 + 2 margin)."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # (K, 2)
    side = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1) * (1 + 2 * margin)
    half = side.clamp(min=min_side)[:, None] / 2  # (K, 1)
    return torch.cat([centre - half, centre + half], dim=1)


def crop_rois(image: Tensor, boxes: Tensor, *, size: int = 224, margin: float = 0.1,
              min_side: float = 32.0, mean: Sequence[float] = (0.485, 0.456, 0.406),
              std: Sequence[float] = (0.229, 0.224, 0.225), max_samples: int = 4) -> Tensor:
    """Crops of one view: image (H, W) in [0, 1], boxes (K, 4) in its pixel grid ->
    (K, 3, size, size) normalised, on the image's device and dtype."""
    squares = square_boxes(boxes.to(image.dtype), margin, min_side)
    indexed = torch.cat([squares.new_zeros(len(squares), 1), squares], dim=1)  # (K, 5)
    ratio = math.ceil(float((squares[:, 2] - squares[:, 0]).max()) / size)
    sampling = max(1, min(max_samples, ratio))  # samples per output pixel and axis
    # aligned=True: pixel c covers [c, c + 1), the convention of our boxes
    crops = roi_align(image[None, None], indexed, output_size=size, spatial_scale=1.0,
                      sampling_ratio=sampling, aligned=True)  # (K, 1, size, size)
    mean_t = torch.tensor(mean, dtype=image.dtype, device=image.device)[None, :, None, None]
    std_t = torch.tensor(std, dtype=image.dtype, device=image.device)[None, :, None, None]
    return (crops.expand(-1, 3, -1, -1) - mean_t) / std_t
