"""Paper Eq. 1-3 against a hand computation, and the padding mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ml.fusion import Fusion, TextQueriedRoiAttention, masked_max

D_IMAGE, D_TEXT, DIM = 6, 5, 4


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def _projection(x: np.ndarray, layer: torch.nn.Sequential) -> np.ndarray:
    bn, linear = layer[0], layer[1]
    norm = (x - bn.running_mean.numpy()) / np.sqrt(bn.running_var.numpy() + bn.eps)
    norm = norm * bn.weight.detach().numpy() + bn.bias.detach().numpy()
    return _gelu(norm @ linear.weight.detach().numpy().T + linear.bias.detach().numpy())


def _randomised_fusion(seed: int = 0) -> Fusion:
    torch.manual_seed(seed)
    fusion = Fusion(D_IMAGE, D_TEXT, DIM).double()
    for bn in (fusion.roi_projection[0], fusion.text_projection[0]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    return fusion.eval()


def test_eq1_visual_embedding_is_max_over_real_rois_only():
    rois = torch.tensor([[[1.0, -5.0], [3.0, 2.0], [100.0, 100.0]]])  # third ROI is padding
    mask = torch.tensor([[True, True, False]])
    assert masked_max(rois, mask).tolist() == [[3.0, 2.0]]


def test_eq3_attention_matches_hand_computation():
    torch.manual_seed(1)
    attention = TextQueriedRoiAttention(DIM).double().eval()
    e_t = torch.randn(1, DIM, dtype=torch.float64)
    rois = torch.randn(1, 3, DIM, dtype=torch.float64)
    mask = torch.tensor([[True, True, True]])
    with torch.no_grad():
        e_a, weights = attention(e_t, rois, mask)

    def lin(layer, x):
        return x @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()

    q = lin(attention.query, e_t.numpy()[0])
    k = lin(attention.key, rois.numpy()[0])
    v = lin(attention.value, rois.numpy()[0])
    scores = k @ q / math.sqrt(DIM)
    expected_weights = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    np.testing.assert_allclose(weights.numpy()[0], expected_weights, rtol=1e-12)
    np.testing.assert_allclose(e_a.numpy()[0], expected_weights @ v, rtol=1e-12)


def test_padded_rois_get_exactly_zero_attention_and_weights_sum_to_one():
    torch.manual_seed(2)
    attention = TextQueriedRoiAttention(DIM).eval()
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    _, weights = attention(torch.randn(2, DIM), torch.randn(2, 4, DIM) * 50, mask)
    assert torch.all(weights[~mask] == 0)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2))
    assert weights[1, 0] == 1


def test_fusion_logits_match_hand_computation_of_eq1_to_eq3():
    fusion = _randomised_fusion()
    rng = np.random.default_rng(3)
    roi_features = rng.normal(size=(1, 3, D_IMAGE))
    text_features = rng.normal(size=(1, D_TEXT))
    mask = np.array([[True, True, False]])
    with torch.no_grad():
        logits, weights = fusion(torch.from_numpy(roi_features), torch.from_numpy(mask),
                                 torch.from_numpy(text_features))

    r = _projection(roi_features[0, :2], fusion.roi_projection)  # real ROIs only, (2, DIM)
    e_v = r.max(axis=0)  # Eq. 1
    e_t = _projection(text_features, fusion.text_projection)[0]  # Eq. 2
    att = fusion.attention

    def lin(layer, x):
        return x @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()

    scores = lin(att.key, r) @ lin(att.query, e_t) / math.sqrt(DIM)
    a = np.exp(scores) / np.exp(scores).sum()
    e_a = a @ lin(att.value, r)  # Eq. 3
    expected = lin(fusion.head, np.concatenate([e_v, e_a, e_t]))
    np.testing.assert_allclose(logits.numpy()[0], expected, rtol=1e-10)
    np.testing.assert_allclose(weights.numpy()[0], [*a, 0.0], rtol=1e-10)


def test_padding_never_changes_the_result():
    fusion = _randomised_fusion(seed=4)
    rng = np.random.default_rng(5)
    real = torch.from_numpy(rng.normal(size=(1, 2, D_IMAGE)))
    text = torch.from_numpy(rng.normal(size=(1, D_TEXT)))
    padded = torch.cat([real, torch.full((1, 6, D_IMAGE), 1e6, dtype=torch.float64)], dim=1)
    mask = torch.tensor([[True, True] + [False] * 6])
    with torch.no_grad():
        short, _ = fusion(real, torch.ones(1, 2, dtype=torch.bool), text)
        long, weights = fusion(padded, mask, text)
    torch.testing.assert_close(short, long, rtol=0, atol=1e-12)
    assert torch.all(weights[0, 2:] == 0)


def test_view_without_any_real_roi_is_refused():
    fusion = _randomised_fusion()
    with pytest.raises(ValueError, match="at least one real ROI"):
        fusion(torch.zeros(1, 2, D_IMAGE, dtype=torch.float64),
               torch.zeros(1, 2, dtype=torch.bool), torch.zeros(1, D_TEXT, dtype=torch.float64))
