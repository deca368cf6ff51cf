"""The model variants of the ablation (paper Table 2, plus text only).

Every variant is an ``MMBCD`` whose ``fusion`` is swapped for a head on a subset of the
embeddings, so training, caching and evaluation treat them alike:

- ``text``: head(E_T)
- ``vision``: head(E_V), E_V = max over projected ROIs (Eq. 1)
- ``concat``: head(concat(E_V, E_T))
- ``attention``: the full MMBCD head, head(concat(E_V, E_A, E_T)) (Eq. 1-3)

Keyword masking is a training setting, not a variant: the ablation's last row is
``attention`` trained with masking.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ml.fusion import Projection, masked_max
from ml.model import MMBCD

VARIANTS = ("text", "vision", "concat", "attention")


class PartialHead(nn.Module):
    """A head on E_V and/or E_T only; attention weights are uniform over the real ROIs
    (nothing is attended), so callers that draw them still get a valid distribution."""

    def __init__(self, d_image: int, d_text: int, dim: int, vision: bool, text: bool) -> None:
        super().__init__()
        if not (vision or text):
            raise ValueError("a head needs the vision or the text embedding")
        self.roi_projection = Projection(d_image, dim) if vision else None
        self.text_projection = Projection(d_text, dim) if text else None
        self.dim = dim
        self.head = nn.Linear(dim * (int(vision) + int(text)), 2)

    def forward(self, roi_features: Tensor, mask: Tensor,
                text_features: Tensor) -> tuple[Tensor, Tensor]:
        parts = []
        if self.roi_projection is not None:
            batch, k, _ = roi_features.shape
            projected = self.roi_projection(roi_features[mask])  # (N_real, D)
            rois = projected.new_zeros(batch, k, self.dim)
            rois[mask] = projected  # (B, K, D)
            parts.append(masked_max(rois, mask))  # (B, D)
        if self.text_projection is not None:
            parts.append(self.text_projection(text_features))  # (B, D)
        weights = mask.float() / mask.float().sum(dim=1, keepdim=True)  # (B, K)
        return self.head(torch.cat(parts, dim=-1)), weights


def uses_vision(model: MMBCD) -> bool:
    return not isinstance(model.fusion, PartialHead) or model.fusion.roi_projection is not None


def uses_text(model: MMBCD) -> bool:
    return not isinstance(model.fusion, PartialHead) or model.fusion.text_projection is not None


def make_variant(model: MMBCD, variant: str) -> MMBCD:
    """``model`` with the head of ``variant`` (``attention`` leaves it as it is)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    if variant != "attention":
        dim = model.fusion.dim
        head = PartialHead(model.roi_dim, model.text_encoder.dim, dim,
                           vision=variant in ("vision", "concat"),
                           text=variant in ("text", "concat"))
        model.fusion = head  # type: ignore[assignment]
    return model
