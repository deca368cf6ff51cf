"""MMBCD: ROI crops and the clinical history of one view -> malignancy logits and attention.

Image encoder per ROI, text encoder on the history, then ``ml.fusion.Fusion`` (Eq. 1-3).
Only real ROIs go through the image encoder; padded slots stay zero and masked.
"""

from __future__ import annotations

from torch import Tensor, nn

from ml.encoders import ImageEncoder, TextEncoder
from ml.fusion import Fusion


class MMBCD(nn.Module):
    """The whole model; ``forward`` for training, ``embed_*`` + ``fusion`` for inference
    that encodes each study's history once for all its views."""

    def __init__(self, image_encoder: ImageEncoder, text_encoder: TextEncoder,
                 dim: int = 256, head_hidden: int | None = None) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.fusion = Fusion(image_encoder.dim, text_encoder.dim, dim, head_hidden)

    def embed_rois(self, crops: Tensor, mask: Tensor, encoder: nn.Module | None = None) -> Tensor:
        """Crops (B, K, 3, S, S), mask (B, K) -> ROI features (B, K, d_image); padded = 0.

        ``encoder`` replaces ``image_encoder`` (e.g. its compiled wrapper) when given.
        """
        batch, k = mask.shape
        features = (encoder or self.image_encoder)(crops[mask])  # (N_real, d_image)
        out = features.new_zeros(batch, k, features.shape[-1])
        out[mask] = features
        return out

    def forward(self, crops: Tensor, mask: Tensor, input_ids: Tensor,
                attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Logits (B, 2) and ROI attention (B, K) for B views with their histories (B, L)."""
        roi_features = self.embed_rois(crops, mask)  # (B, K, d_image)
        text_features = self.text_encoder(input_ids, attention_mask)  # (B, d_text)
        return self.fusion(roi_features, mask, text_features)
