"""Evaluation metrics against values worked out by hand: accuracy, F1, ROC AUC, recall at
a false-positive rate (best recall with FPR at or below the target) and the breast level."""

from __future__ import annotations

import pytest

from ml.evaluate.metrics import (
    MetricsError,
    binary_metrics,
    breast_scores,
    choose_threshold,
    recall_at_fpr,
)

# 10 negatives and 5 positives; every expected value below is counted by hand.
NEGATIVES = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9, 0.95]
POSITIVES = [0.99, 0.97, 0.85, 0.55, 0.15]
LABELS = [0] * 10 + [1] * 5
SCORES = NEGATIVES + POSITIVES


def test_roc_auc_counts_pairs_ranked_right() -> None:
    # negatives below each positive: 0.99 -> 10, 0.97 -> 10, 0.85 -> 8, 0.55 -> 6, 0.15 -> 2
    expected = (10 + 10 + 8 + 6 + 2) / 50
    assert binary_metrics(LABELS, SCORES).auc == pytest.approx(expected)


def test_recall_at_fpr_is_the_best_recall_without_exceeding_the_rate() -> None:
    # FPR 0.0: threshold 0.97 -> recall 2/5. FPR 0.1 (1 FP allowed): threshold above 0.9
    # still only 2/5 (0.95 is the FP, nothing between 0.95 and 0.97 is positive).
    # FPR 0.2: threshold 0.85 -> 3 TP, FPs 0.95 and 0.9 -> recall 3/5.
    # FPR 0.5: threshold 0.55 -> 4 TP, FPs 0.6 .. 0.95 (4) -> recall 4/5.
    assert recall_at_fpr(LABELS, SCORES, 0.0) == pytest.approx(0.4)
    assert recall_at_fpr(LABELS, SCORES, 0.1) == pytest.approx(0.4)
    assert recall_at_fpr(LABELS, SCORES, 0.2) == pytest.approx(0.6)
    assert recall_at_fpr(LABELS, SCORES, 0.3) == pytest.approx(0.6)
    assert recall_at_fpr(LABELS, SCORES, 0.5) == pytest.approx(0.8)
    metrics = binary_metrics(LABELS, SCORES)
    assert metrics.recall_at_fpr == {"0.025": pytest.approx(0.4), "0.05": pytest.approx(0.4),
                                     "0.1": pytest.approx(0.4), "0.3": pytest.approx(0.6)}


def test_accuracy_and_f1_at_the_threshold() -> None:
    # threshold 0.5: predicted positive = 0.5, 0.6, 0.7, 0.9, 0.95 (FP 5) and 0.99, 0.97,
    # 0.85, 0.55 (TP 4); FN 1 (0.15); TN 5 -> accuracy 9/15, F1 = 2*4 / (2*4 + 5 + 1)
    metrics = binary_metrics(LABELS, SCORES, threshold=0.5)
    assert metrics.accuracy == pytest.approx(9 / 15)
    assert metrics.f1 == pytest.approx(8 / 14)
    assert (metrics.count, metrics.positives) == (15, 5)


def test_breast_score_is_the_max_of_its_views() -> None:
    keys = [("s1", "R"), ("s1", "R"), ("s1", "L"), ("s2", "R")]
    labels, scores = breast_scores(keys, [0.2, 0.7, 0.1, 0.4],
                                   {("s1", "R"): 1, ("s1", "L"): 0, ("s2", "R"): 0})
    assert labels == [1, 0, 0]
    assert scores == [0.7, 0.1, 0.4]


def test_threshold_maximises_youden_on_the_given_split() -> None:
    # perfectly separable at any value in (0.4, 0.6]: the chosen threshold separates them
    threshold = choose_threshold([0, 0, 1, 1], [0.1, 0.4, 0.6, 0.9])
    assert 0.4 < threshold <= 0.6


def test_single_class_or_mismatched_input_is_refused() -> None:
    with pytest.raises(MetricsError, match="both classes"):
        binary_metrics([1, 1], [0.2, 0.3])
    with pytest.raises(MetricsError, match="3 labels but 2 scores"):
        binary_metrics([0, 1, 1], [0.2, 0.3])
