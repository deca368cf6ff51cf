"""ROI features: crop embeddings, with the detector's confidence when the bundle says so
(``[model.fusion] roi_scores``), through the plain or a compiled image encoder."""

from __future__ import annotations

import math

import pytest
import torch

from ml.bundle import build_model
from ml.model import LEGACY_SCORE_FLOOR, MMBCD, SCORE_FLOOR, score_feature
from ml.random_bundle import model_section


def _model(roi_scores: bool) -> MMBCD:
    section = model_section("tiny", vocab_size=64, k=3)
    section["fusion"]["roi_scores"] = roi_scores
    section["image_encoder"]["overrides"]["img_size"] = 32
    torch.manual_seed(0)
    return build_model(section).eval()


def test_confidence_becomes_a_logit_and_padding_stays_zero():
    scores = torch.tensor([[0.5, 0.9, 0.0, 0.7]])
    mask = torch.tensor([[True, True, True, False]])
    feature = score_feature(scores, mask)[0, :, 0]
    assert feature[0] == 0.0
    assert feature[1] == pytest.approx(math.log(9.0), rel=1e-5)
    # the whole-breast ROI (confidence 0) gets the lowest logit, not -inf
    assert feature[2] == pytest.approx(math.log(SCORE_FLOOR / (1 - SCORE_FLOOR)), rel=1e-5)
    assert feature[3] == 0.0  # padding, whatever its score


def test_confidences_under_the_floor_give_one_feature_so_rounding_cannot_move_it():
    mask = torch.ones(1, 3, dtype=torch.bool)
    weak = score_feature(torch.tensor([[0.0, 0.001, 0.0099]]), mask)[0, :, 0]
    assert torch.all(weak == weak[0])  # whole breast, a 0.1 % and a 0.99 % proposal alike
    assert score_feature(torch.tensor([[0.02, 0.0, 0.0]]), mask)[0, 0, 0] > weak[0]


def test_bundle_without_a_floor_keeps_the_floor_it_was_trained_with():
    section = model_section("tiny", vocab_size=64, k=3)
    section["fusion"].pop("score_floor")
    assert build_model(section).score_floor == LEGACY_SCORE_FLOOR
    assert _model(roi_scores=True).score_floor == SCORE_FLOOR


def test_model_with_roi_scores_appends_the_confidence_to_each_crop_embedding():
    model = _model(roi_scores=True)
    assert model.roi_dim == model.image_encoder.dim + 1
    crops = torch.rand(2, 3, 3, 32, 32)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    scores = torch.tensor([[0.8, 0.1, 0.0], [0.3, 0.0, 0.0]])
    with torch.no_grad():
        features = model.embed_rois(crops, mask, scores)
        plain = model.image_encoder(crops[mask])
    assert features.shape == (2, 3, model.roi_dim)
    torch.testing.assert_close(features[mask][:, :-1], plain)
    torch.testing.assert_close(features[..., -1], score_feature(scores, mask)[..., 0])
    assert torch.all(features[~mask] == 0)


def test_the_confidence_changes_the_score_of_a_view():
    model = _model(roi_scores=True)
    crops = torch.rand(2, 3, 3, 32, 32)
    mask = torch.ones(2, 3, dtype=torch.bool)
    text = torch.randn(2, model.text_encoder.dim)
    with torch.no_grad():
        low, _ = model.fusion(model.embed_rois(crops, mask, torch.full((2, 3), 0.01)),
                              mask, text)
        high, _ = model.fusion(model.embed_rois(crops, mask, torch.full((2, 3), 0.99)),
                               mask, text)
    assert not torch.allclose(low, high)


def test_a_model_that_weighs_confidences_refuses_rois_without_them():
    model = _model(roi_scores=True)
    with pytest.raises(ValueError, match="ROI scores"):
        model.embed_rois(torch.rand(1, 3, 3, 32, 32), torch.ones(1, 3, dtype=torch.bool))


def test_bundles_without_the_setting_keep_crop_embeddings_only():
    model = _model(roi_scores=False)
    assert model.roi_dim == model.image_encoder.dim
    crops = torch.rand(1, 3, 3, 32, 32)
    mask = torch.ones(1, 3, dtype=torch.bool)
    with torch.no_grad():
        ignored = model.embed_rois(crops, mask, torch.rand(1, 3))
        none = model.embed_rois(crops, mask)
    torch.testing.assert_close(ignored, none)


def test_a_compiled_image_encoder_gives_the_same_features():
    # torch.compile's wrapper refuses bool(); the GPU pipeline passes one in
    model = _model(roi_scores=True)
    compiled = torch.compile(model.image_encoder, backend="eager")
    crops = torch.rand(1, 3, 3, 32, 32)
    mask = torch.tensor([[True, True, False]])
    scores = torch.tensor([[0.6, 0.2, 0.0]])
    with torch.no_grad():
        torch.testing.assert_close(model.embed_rois(crops, mask, scores, encoder=compiled),
                                   model.embed_rois(crops, mask, scores))
