"""Paired bootstrap intervals over cases: how much of a difference in AUC the test set
alone could produce.

Cases (studies, for the study level) are drawn with replacement; every model is scored
on the same draw, so the interval is for the paired difference. A draw holding one
class only is drawn again. With several seeds per model, each model's AUC on a draw is
the mean over its seeds, so the interval covers test-set sampling and the seed spread
is reported beside it (mean +- standard deviation over seeds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    resamples: int

    def __str__(self) -> str:
        return f"{self.estimate:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def _mean_auc(labels: np.ndarray, runs: np.ndarray, index: np.ndarray) -> float:
    return float(np.mean([roc_auc_score(labels[index], run[index]) for run in runs]))


def paired_auc_difference(labels: Sequence[int], first: Sequence[Sequence[float]],
                          second: Sequence[Sequence[float]], resamples: int = 2000,
                          seed: int = 0, level: float = 0.95) -> Interval:
    """Percentile interval of mean AUC(first runs) - mean AUC(second runs).

    ``first`` and ``second`` hold one score list per run (seed), each aligned with
    ``labels``.
    """
    y = np.asarray(labels, dtype=int)
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if a.shape[1:] != y.shape or b.shape[1:] != y.shape:
        raise ValueError("every run needs one score per case")
    everything = np.arange(y.size)
    estimate = _mean_auc(y, a, everything) - _mean_auc(y, b, everything)
    rng = np.random.default_rng(seed)
    differences: list[float] = []
    while len(differences) < resamples:
        index = rng.integers(0, y.size, y.size)
        if y[index].min() == y[index].max():
            continue
        differences.append(_mean_auc(y, a, index) - _mean_auc(y, b, index))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high), resamples)


def auc_interval(labels: Sequence[int], scores: Sequence[float], resamples: int = 2000,
                 seed: int = 0, level: float = 0.95) -> Interval:
    """Percentile bootstrap interval of one model's AUC."""
    zeros = [0.5] * len(labels)  # AUC of a constant score is 0.5
    interval = paired_auc_difference(labels, [scores], [zeros], resamples, seed, level)
    return Interval(interval.estimate + 0.5, interval.low + 0.5, interval.high + 0.5,
                    resamples)
