"""Classification metrics of the paper: accuracy, F1, ROC AUC and recall at fixed
false-positive rates, at the view and the breast level.

Recall at FPR ``t`` is the best true-positive rate of any threshold whose false-positive
rate is at most ``t`` (0 when no threshold gets there), read from the full ROC curve
(every distinct score is a threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score, roc_curve

FPR_TARGETS = (0.025, 0.05, 0.1, 0.3)


class MetricsError(ValueError):
    """Scores and labels that cannot be evaluated (mismatched lengths, a single class)."""


@dataclass(frozen=True)
class BinaryMetrics:
    count: int
    positives: int
    threshold: float
    accuracy: float
    f1: float
    auc: float
    recall_at_fpr: dict[str, float]  # "0.025" -> recall
    sensitivity: float  # at the threshold
    specificity: float  # at the threshold

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def recall_at_fpr(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray,
                  target: float) -> float:
    """The highest recall among thresholds with false-positive rate <= ``target``."""
    fpr, tpr, _ = roc_curve(np.asarray(labels), np.asarray(scores), drop_intermediate=False)
    allowed = tpr[fpr <= target + 1e-12]
    return float(allowed.max()) if allowed.size else 0.0


def binary_metrics(labels: Sequence[int], scores: Sequence[float],
                   threshold: float = 0.5) -> BinaryMetrics:
    """Metrics of ``scores`` (probability of class 1) against 0/1 ``labels``; a score at or
    above ``threshold`` counts as positive for accuracy and F1.

    Raises ``MetricsError`` when the lengths differ or only one class is present (ROC AUC
    is undefined then).
    """
    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    if y.shape != s.shape:
        raise MetricsError(f"{y.size} labels but {s.size} scores")
    if len(set(y.tolist())) != 2:
        raise MetricsError("both classes are needed for ROC AUC and recall at FPR")
    predicted = (s >= threshold).astype(int)
    return BinaryMetrics(
        count=int(y.size), positives=int(y.sum()), threshold=float(threshold),
        accuracy=float(accuracy_score(y, predicted)),
        f1=float(f1_score(y, predicted, zero_division=0)),
        auc=float(roc_auc_score(y, s)),
        recall_at_fpr={str(t): recall_at_fpr(y, s, t) for t in FPR_TARGETS},
        sensitivity=float(predicted[y == 1].mean()),
        specificity=float(1 - predicted[y == 0].mean()))


def breast_scores(view_keys: Sequence[tuple[str, str]], view_scores: Sequence[float],
                  breast_labels: dict[tuple[str, str], int]) -> tuple[list[int], list[float]]:
    """Breast level from view level: score = max over the breast's views.

    ``view_keys`` gives (study_uid, laterality) per view; returns labels and scores of
    every breast in first-seen order.
    """
    best: dict[tuple[str, str], float] = {}
    for key, score in zip(view_keys, view_scores, strict=True):
        best[key] = max(best.get(key, float("-inf")), float(score))
    return [int(breast_labels[k]) for k in best], list(best.values())


def choose_threshold(labels: Sequence[int], scores: Sequence[float]) -> float:
    """The operating threshold that maximises Youden's J (TPR - FPR) on ``labels``;
    meant for the validation split, never the test split."""
    fpr, tpr, thresholds = roc_curve(np.asarray(labels), np.asarray(scores))
    finite = np.isfinite(thresholds)
    best = int(np.argmax(np.where(finite, tpr - fpr, -np.inf)))
    return float(thresholds[best])
