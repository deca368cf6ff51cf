"""MMBCD fusion: ROI embeddings and the history embedding -> malignancy logits (paper Eq. 1-3).

Shapes: B views, K ROIs per view (padded ROIs masked out), D = projection size (256).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Projection(nn.Sequential):
    """BatchNorm1d -> Linear(d_in, d_out) -> GELU, applied to one embedding per row."""

    def __init__(self, d_in: int, d_out: int = 256) -> None:
        super().__init__(nn.BatchNorm1d(d_in), nn.Linear(d_in, d_out), nn.GELU())


def masked_max(rois: Tensor, mask: Tensor) -> Tensor:
    """Eq. 1, E_V = max_k R_k over real ROIs: rois (B, K, D), mask (B, K) -> (B, D).

    A padded ROI can never win: it is replaced by -inf before the max.
    """
    return rois.masked_fill(~mask[..., None], float("-inf")).amax(dim=1)


class TextQueriedRoiAttention(nn.Module):
    """Eq. 3: one-head scaled dot-product attention, E_T as query, ROIs as keys and values.

    E_A = softmax((E_T W_q)(R W_k)^T / sqrt(D)) (R W_v), padded ROIs at -inf, so their
    weight is exactly zero. Returns E_A and the weight of each ROI (the real ones, which
    the node draws and reports).
    """

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, e_t: Tensor, rois: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        q = self.query(e_t)[:, None, :]  # (B, 1, D)
        k = self.key(rois)  # (B, K, D)
        v = self.value(rois)  # (B, K, D)
        scores = (q @ k.transpose(1, 2)).squeeze(1) * self.scale  # (B, K)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)  # (B, K)
        e_a = (weights[:, None, :] @ v).squeeze(1)  # (B, D)
        return e_a, weights


class Fusion(nn.Module):
    """ROI features (B, K, d_image), mask (B, K), text features (B, d_text) -> logits (B, 2).

    E_V (Eq. 1) from the projected ROIs, E_T (Eq. 2) from the projected first-token
    text embedding, E_A (Eq. 3); head on concat(E_V, E_A, E_T) (3D), optionally with one
    hidden layer.
    """

    def __init__(self, d_image: int, d_text: int, dim: int = 256,
                 head_hidden: int | None = None, dropout: float = 0.1) -> None:
        super().__init__()
        self.dim = dim
        self.roi_projection = Projection(d_image, dim)
        self.text_projection = Projection(d_text, dim)
        self.attention = TextQueriedRoiAttention(dim)
        if head_hidden:
            self.head: nn.Module = nn.Sequential(nn.Linear(3 * dim, head_hidden), nn.GELU(),
                                                 nn.Dropout(dropout), nn.Linear(head_hidden, 2))
        else:
            self.head = nn.Linear(3 * dim, 2)

    def forward(self, roi_features: Tensor, mask: Tensor,
                text_features: Tensor) -> tuple[Tensor, Tensor]:
        """Returns logits (B, 2) and attention weights (B, K); raises ``ValueError`` for a
        view without any real ROI (the detector always supplies at least one)."""
        if not bool(mask.any(dim=1).all()):
            raise ValueError("every view needs at least one real ROI (mask is all False)")
        batch, k, _ = roi_features.shape
        # Project only real ROIs, so padding never enters the BatchNorm statistics.
        projected = self.roi_projection(roi_features[mask])  # (N_real, D)
        rois = projected.new_zeros(batch, k, self.dim)
        rois[mask] = projected  # (B, K, D)
        e_v = masked_max(rois, mask)  # (B, D), Eq. 1
        e_t = self.text_projection(text_features)  # (B, D), Eq. 2
        e_a, weights = self.attention(e_t, rois, mask)  # (B, D), (B, K), Eq. 3
        logits = self.head(torch.cat([e_v, e_a, e_t], dim=-1))  # (B, 2)
        return logits, weights
