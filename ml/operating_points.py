"""Operating points: one threshold per level, chosen on validation at a stated target.

A target is ``specificity:0.90`` (the highest sensitivity whose specificity is at least
0.90), ``sensitivity:0.90`` (the highest specificity whose sensitivity is at least 0.90)
or ``youden`` (the largest sensitivity + specificity - 1). The defaults are specificity
0.90 at every level: the operating region of screening programmes, where recall rates
of about a tenth of the women read are usual. Thresholds are chosen on calibrated
probabilities, so they read as probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_curve

from ml.calibration import LEVELS, LevelCalibration, LevelScores
from ml.types import LevelOperatingPoint, OperatingPoints

KINDS = ("specificity", "sensitivity", "youden")
DEFAULT_TARGETS = {"view": "specificity:0.90", "breast": "specificity:0.90",
                   "study": "specificity:0.90"}


class TargetError(ValueError):
    """A target that cannot be read or reached."""


@dataclass(frozen=True)
class Target:
    kind: str
    value: float | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        kind, _, value = text.strip().partition(":")
        if kind not in KINDS:
            raise TargetError(f"target {text!r}: the kind must be one of {KINDS}")
        if kind == "youden":
            if value:
                raise TargetError(f"target {text!r}: youden takes no value")
            return cls(kind)
        try:
            number = float(value)
        except ValueError:
            raise TargetError(f"target {text!r}: give {kind}:VALUE with VALUE in (0, 1)") \
                from None
        if not 0.0 < number < 1.0:
            raise TargetError(f"target {text!r}: the value must lie in (0, 1)")
        return cls(kind, number)

    def __str__(self) -> str:
        return "youden" if self.value is None else f"{self.kind}:{self.value:.2f}"


def parse_targets(texts: Sequence[str]) -> dict[str, Target]:
    """``level=target`` items over the defaults, e.g. ``["study=sensitivity:0.85"]``."""
    targets = {level: Target.parse(text) for level, text in DEFAULT_TARGETS.items()}
    for item in texts:
        level, _, text = item.partition("=")
        if level not in LEVELS or not text:
            raise TargetError(f"operating point {item!r}: give LEVEL=TARGET with LEVEL one "
                              f"of {LEVELS}")
        targets[level] = Target.parse(text)
    return targets


def targets_of(settings: Mapping[str, str]) -> dict[str, Target]:
    """A run's ``operating_targets`` (level -> target text) over the defaults."""
    return parse_targets([f"{level}={target}" for level, target in settings.items()])


def threshold_at(target: Target, labels: Sequence[int],
                 scores: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """(threshold, specificity, sensitivity) of ``target`` on ``labels``/``scores``; a
    score at or above the threshold is positive."""
    y = np.asarray(labels, dtype=int)
    if len(set(y.tolist())) != 2:
        raise TargetError("an operating point needs both classes among the validation cases")
    fpr, tpr, thresholds = roc_curve(y, np.asarray(scores, dtype=float),
                                     drop_intermediate=False)
    finite = np.isfinite(thresholds)
    if target.kind == "specificity":
        assert target.value is not None
        allowed = np.flatnonzero(finite & (fpr <= 1 - target.value + 1e-12))
        index = int(allowed[-1]) if allowed.size else 1
    elif target.kind == "sensitivity":
        assert target.value is not None
        index = int(np.flatnonzero(finite & (tpr >= target.value - 1e-12))[0])
    else:
        index = int(np.argmax(np.where(finite, tpr - fpr, -np.inf)))
    return float(thresholds[index]), float(1 - fpr[index]), float(tpr[index])


def choose_operating_points(scores: LevelScores, calibration: LevelCalibration,
                            targets: Mapping[str, Target]) -> OperatingPoints:
    """Thresholds per level on the calibrated validation ``scores`` (raw scores in,
    per level), at ``targets``; each says what it reached there."""
    points = {}
    for level in LEVELS:
        labels, raw = scores[level]
        probabilities = calibration.level(level)(raw)
        threshold, specificity, sensitivity = threshold_at(targets[level], labels,
                                                           probabilities)
        points[level] = LevelOperatingPoint(
            threshold, str(targets[level]), f"specificity {specificity:.3f}, sensitivity "
                                            f"{sensitivity:.3f} on {len(labels)} validation "
                                            "cases")
    return OperatingPoints(**points, calibration=calibration.description)


def operating_points_manifest(points: OperatingPoints) -> dict[str, dict[str, object]]:
    return {level: {"threshold": getattr(points, level).threshold,
                    "target": getattr(points, level).target,
                    "reached": getattr(points, level).reached} for level in LEVELS}


def operating_points_from_manifest(section: Mapping[str, Mapping[str, object]] | None,
                                   threshold: float,
                                   calibration: LevelCalibration) -> OperatingPoints:
    """The manifest's per-level points, or the one legacy ``threshold`` at every level."""
    if not section:
        return OperatingPoints.single(threshold)
    points = {}
    for level in LEVELS:
        value = float(section[level]["threshold"])  # type: ignore[arg-type]
        if not 0.0 <= value <= 1.0:
            raise TargetError(f"operating point {level}: threshold {value} is not in 0..1")
        points[level] = LevelOperatingPoint(value, str(section[level].get("target", "")),
                                            str(section[level].get("reached", "")))
    return OperatingPoints(**points, calibration=calibration.description)
