"""MMBCD: ROI crops and the clinical history of one view -> malignancy logits and attention.

Image encoder per ROI, text encoder on the history, then ``ml.fusion.Fusion`` (Eq. 1-3).
Only real ROIs go through the image encoder; padded slots stay zero and masked. With
``roi_scores`` each ROI's feature also carries its detector confidence (as a logit), so
the fusion can weigh what the detector saw in the whole view against the crop.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ml.encoders import ImageEncoder, TextEncoder
from ml.fusion import Fusion

# Confidences are clamped to [floor, 1 - floor] before the logit. Below 1% a detector's
# confidence is noise that rounding moves (0.001 on one device, 0.000 on another, a logit
# apart by 2.3): every such ROI gets the same feature as the whole-breast ROI of a view
# without detections. Bundles whose manifest names no floor were trained with 1e-4.
SCORE_FLOOR = 0.01
LEGACY_SCORE_FLOOR = 1e-4


def score_feature(scores: Tensor, mask: Tensor, floor: float = SCORE_FLOOR) -> Tensor:
    """Detector confidences (B, K) -> (B, K, 1) logits in float32; padded ROIs 0. The
    whole-breast ROI of a view without detections has confidence 0, hence the floor."""
    clamped = scores.float().clamp(floor, 1.0 - floor)
    return (torch.logit(clamped) * mask)[..., None]


class MMBCD(nn.Module):
    """The whole model; ``forward`` for training, ``embed_*`` + ``fusion`` for inference
    that encodes each study's history once for all its views."""

    def __init__(self, image_encoder: ImageEncoder, text_encoder: TextEncoder,
                 dim: int = 256, head_hidden: int | None = None,
                 roi_scores: bool = False, score_floor: float = SCORE_FLOOR) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.roi_scores = roi_scores
        self.score_floor = score_floor
        self.roi_dim = image_encoder.dim + int(roi_scores)  # one ROI feature's size
        self.fusion = Fusion(self.roi_dim, text_encoder.dim, dim, head_hidden)

    def embed_rois(self, crops: Tensor, mask: Tensor, scores: Tensor | None = None,
                   encoder: nn.Module | None = None) -> Tensor:
        """Crops (B, K, 3, S, S), mask (B, K), detector confidences (B, K) -> ROI features
        (B, K, roi_dim); padded = 0. ``scores`` is required when the model uses them.

        ``encoder`` replaces ``image_encoder`` (e.g. its compiled wrapper) when given.
        """
        if encoder is None:  # not ``encoder or ...``: a compiled module refuses bool()
            encoder = self.image_encoder
        return self.roi_features(encoder(crops[mask]), mask, scores)

    def roi_features(self, embedded: Tensor, mask: Tensor,
                     scores: Tensor | None = None) -> Tensor:
        """Embeddings of the real ROIs (N_real, d_image) -> ROI features (B, K, roi_dim)
        in the mask's slots, padded = 0, with the confidence feature when the model uses it."""
        batch, k = mask.shape
        out = embedded.new_zeros(batch, k, embedded.shape[-1])
        out[mask] = embedded
        if not self.roi_scores:
            return out
        if scores is None:
            raise ValueError("this model weighs detector confidences: pass the ROI scores")
        return torch.cat([out, score_feature(scores, mask, self.score_floor).to(out.dtype)], dim=-1)

    def forward(self, crops: Tensor, mask: Tensor, input_ids: Tensor,
                attention_mask: Tensor, scores: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Logits (B, 2) and ROI attention (B, K) for B views with their histories (B, L)."""
        roi_features = self.embed_rois(crops, mask, scores)  # (B, K, roi_dim)
        text_features = self.text_encoder(input_ids, attention_mask)  # (B, d_text)
        return self.fusion(roi_features, mask, text_features)
