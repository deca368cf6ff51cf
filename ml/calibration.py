"""Calibrated probabilities: one monotone map per level, fitted on the validation split.

Training draws both classes equally often, so the model's raw score is not the chance of
cancer at the site's prevalence. Each level (view, breast = max of its views, study = max
of its breasts) gets its own map from the raw score to a probability, fitted on that
level's validation scores:

- ``platt``: logistic regression on the logit, p = sigmoid(a * logit(s) + b): a
  temperature (1/a) and a prevalence shift (b). Two numbers, hard to overfit; the default.
- ``isotonic``: the non-decreasing step function that fits best (pool adjacent
  violators), interpolated linearly between its knots. Needs more validation cases.
- ``identity``: no map, for bundles that were never calibrated.

Every map is non-decreasing, so a level's ROC curve and AUC are unchanged by it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS = ("platt", "isotonic")
LEVELS = ("view", "breast", "study")
_EPS = 1e-6

# Labels and raw scores per level: {"view": (labels, scores), "breast": ..., "study": ...}.
LevelScores = Mapping[str, tuple[Sequence[int], Sequence[float]]]


class CalibrationError(ValueError):
    """A map that cannot be fitted or read (one class only, an unknown method)."""


def _logit(scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(scores, _EPS, 1 - _EPS)
    return np.log(clipped / (1 - clipped))


@dataclass(frozen=True)
class Calibration:
    """A non-decreasing map from a raw score in [0, 1] to a probability."""

    method: str  # "platt" | "isotonic" | "identity"
    slope: float = 1.0  # platt
    intercept: float = 0.0  # platt
    knots_x: tuple[float, ...] = ()  # isotonic
    knots_y: tuple[float, ...] = ()  # isotonic

    def __call__(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        raw = np.asarray(scores, dtype=float)
        if self.method == "platt":
            return 1.0 / (1.0 + np.exp(-(self.slope * _logit(raw) + self.intercept)))
        if self.method == "isotonic":
            return np.interp(raw, self.knots_x, self.knots_y)
        return raw.copy()

    def one(self, score: float) -> float:
        return float(self(np.array([score]))[0])

    def as_manifest(self) -> dict[str, Any]:
        if self.method == "platt":
            return {"method": "platt", "slope": self.slope, "intercept": self.intercept}
        if self.method == "isotonic":
            return {"method": "isotonic", "x": list(self.knots_x), "y": list(self.knots_y)}
        return {"method": "identity"}

    @classmethod
    def from_manifest(cls, section: dict[str, Any]) -> Calibration:
        method = section.get("method")
        if method == "platt":
            return cls("platt", slope=float(section["slope"]),
                       intercept=float(section["intercept"]))
        if method == "isotonic":
            x, y = tuple(map(float, section["x"])), tuple(map(float, section["y"]))
            if len(x) != len(y) or len(x) < 2 or list(x) != sorted(x) or list(y) != sorted(y):
                raise CalibrationError("an isotonic map needs at least two knots, x and y "
                                       "both non-decreasing and of the same length")
            return cls("isotonic", knots_x=x, knots_y=y)
        if method == "identity":
            return cls("identity")
        raise CalibrationError(f"unknown calibration method {method!r}; one of "
                               f"{[*METHODS, 'identity']}")


IDENTITY = Calibration("identity")


def fit_calibration(labels: Sequence[int], scores: Sequence[float],
                    method: str = "platt") -> Calibration:
    """The ``method`` map that fits 0/1 ``labels`` from raw ``scores`` (validation only).

    Raises ``CalibrationError`` for an unknown method or a single class.
    """
    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    if len(set(y.tolist())) != 2:
        raise CalibrationError("calibration needs both classes among the validation cases")
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(s)[:, None], y)
        slope = float(model.coef_[0, 0])
        if slope <= 0:  # scores that do not rank: a flat map at the prevalence
            return Calibration("platt", slope=0.0,
                               intercept=float(np.log(y.mean() / (1 - y.mean()))))
        return Calibration("platt", slope=slope, intercept=float(model.intercept_[0]))
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
        x_knots, y_knots = iso.X_thresholds_, iso.y_thresholds_
        if len(x_knots) < 2:
            x_knots = np.array([0.0, 1.0])
            y_knots = np.full(2, float(y.mean()))
        return Calibration("isotonic", knots_x=tuple(map(float, x_knots)),
                           knots_y=tuple(map(float, y_knots)))
    raise CalibrationError(f"calibration method must be one of {METHODS}, not {method!r}")


@dataclass(frozen=True)
class LevelCalibration:
    """The maps of the three levels and where they were fitted."""

    view: Calibration = IDENTITY
    breast: Calibration = IDENTITY
    study: Calibration = IDENTITY
    fitted_on: str = ""  # "" when not calibrated

    @property
    def calibrated(self) -> bool:
        return bool(self.fitted_on)

    @property
    def description(self) -> str:
        """``platt, validation split (96 studies)``; "" when not calibrated."""
        return f"{self.view.method}, {self.fitted_on}" if self.calibrated else ""

    def level(self, name: str) -> Calibration:
        if name not in LEVELS:
            raise CalibrationError(f"level must be one of {LEVELS}, not {name!r}")
        return getattr(self, name)  # type: ignore[no-any-return]

    def as_manifest(self) -> dict[str, Any]:
        return {"fitted_on": self.fitted_on,
                **{level: self.level(level).as_manifest() for level in LEVELS}}

    @classmethod
    def from_manifest(cls, section: dict[str, Any] | None) -> LevelCalibration:
        if not section:
            return cls()
        return cls(**{level: Calibration.from_manifest(section[level]) for level in LEVELS},
                   fitted_on=str(section.get("fitted_on") or "validation split"))


def fit_levels(scores: LevelScores, method: str, fitted_on: str) -> LevelCalibration:
    """A ``method`` map per level, fitted on the validation ``scores`` of each level;
    ``fitted_on`` says where (e.g. ``validation split (96 studies)``)."""
    return LevelCalibration(**{level: fit_calibration(*scores[level], method=method)
                               for level in LEVELS}, fitted_on=fitted_on)


def expected_calibration_error(labels: Sequence[int] | np.ndarray,
                               probabilities: Sequence[float] | np.ndarray,
                               bins: int = 10) -> float:
    """ECE: the case-weighted mean |observed rate - mean probability| over ``bins``
    equal-width probability bins."""
    y = np.asarray(labels, dtype=float)
    p = np.asarray(probabilities, dtype=float)
    if y.size == 0:
        raise CalibrationError("no cases to measure calibration on")
    which = np.minimum((p * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.sum() * abs(y[members].mean() - p[members].mean())
    return float(error / y.size)


def reliability_bins(labels: Sequence[int], probabilities: Sequence[float],
                     bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean probability, observed rate, count) of every non-empty bin, for the plot."""
    y = np.asarray(labels, dtype=float)
    p = np.asarray(probabilities, dtype=float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    return [(float(p[which == b].mean()), float(y[which == b].mean()), int((which == b).sum()))
            for b in range(bins) if (which == b).any()]


def ece_of_a_calibrated_model(probabilities: Sequence[float] | np.ndarray, bins: int = 10,
                              draws: int = 1000, seed: int = 0) -> float:
    """The median ECE that ``probabilities`` would show if they were exactly right: labels
    drawn from them ``draws`` times (consistency resampling). ECE over a finite set of
    cases is biased upwards, more the fewer the cases; this is the part of a measured ECE
    that sampling alone explains, so a measured value near it says the map is as good as
    this many cases can show."""
    p = np.asarray(probabilities, dtype=float)
    if p.size == 0:
        raise CalibrationError("no cases to measure calibration on")
    rng = np.random.default_rng(seed)
    errors = [expected_calibration_error((rng.random(p.size) < p).astype(float), p, bins)
              for _ in range(draws)]
    return float(np.median(errors))
