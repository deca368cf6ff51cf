"""Per-level calibration, operating points at stated targets, and bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ml.calibration import (
    Calibration,
    CalibrationError,
    LevelCalibration,
    ece_of_a_calibrated_model,
    expected_calibration_error,
    fit_calibration,
    fit_levels,
)
from ml.evaluate.bootstrap import auc_interval, paired_auc_difference
from ml.operating_points import (
    Target,
    TargetError,
    choose_operating_points,
    operating_points_from_manifest,
    operating_points_manifest,
    parse_targets,
    threshold_at,
)


def draw(n: int, seed: int, prevalence: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Labels at ``prevalence`` and scores of a class-balanced model: over-confident and
    shifted towards cancer, as balanced sampling makes them."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    logit = rng.normal(np.where(y == 1, 1.0, -1.0), 1.0) * 2.5 + 1.5
    return y, 1 / (1 + np.exp(-logit))


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_fitted_on_one_draw_corrects_another(method) -> None:
    fit_y, fit_s = draw(2000, seed=1)
    y, s = draw(2000, seed=2)  # never seen by the fit
    calibration = fit_calibration(fit_y, fit_s, method)
    before = expected_calibration_error(y, s)
    after = expected_calibration_error(y, calibration(s))
    assert before > 0.15 and after < 0.05
    assert roc_auc_score(y, calibration(s)) == pytest.approx(roc_auc_score(y, s), abs=0.01)
    assert np.all(np.diff(calibration(np.linspace(0, 1, 101))) >= 0)  # monotone
    again = Calibration.from_manifest(calibration.as_manifest())
    assert np.allclose(again(s), calibration(s))


def test_platt_keeps_the_ranking_exactly_and_knows_prevalence() -> None:
    y, s = draw(1000, seed=3, prevalence=0.1)
    calibration = fit_calibration(y, s, "platt")
    assert roc_auc_score(y, calibration(s)) == roc_auc_score(y, s)
    assert calibration(s).mean() == pytest.approx(y.mean(), abs=0.01)


def test_calibration_refuses_one_class_and_bad_manifests() -> None:
    with pytest.raises(CalibrationError, match="both classes"):
        fit_calibration([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        Calibration.from_manifest({"method": "beta"})
    with pytest.raises(CalibrationError, match="non-decreasing"):
        Calibration.from_manifest({"method": "isotonic", "x": [0.0, 1.0], "y": [0.9, 0.1]})


def test_expected_calibration_error_by_hand() -> None:
    # Bin 0.1-0.2: p 0.15 twice, one cancer -> |0.5 - 0.15|; bin 0.9-1: p 0.95, cancer.
    assert expected_calibration_error([1, 0, 1], [0.15, 0.15, 0.95]) == \
        pytest.approx((2 * 0.35 + 0.05) / 3)


def test_the_ece_of_a_calibrated_model_is_what_sampling_alone_gives() -> None:
    rng = np.random.default_rng(5)
    floors = {}
    for n in (100, 1000):
        p = 1 / (1 + np.exp(-rng.normal(0.0, 2.5, n)))
        floors[n] = ece_of_a_calibrated_model(p, draws=300)
        # labels drawn from p: a calibrated model, whose measured ECE is that floor's size
        measured = [expected_calibration_error((rng.random(n) < p).astype(float), p)
                    for _ in range(300)]
        assert floors[n] == pytest.approx(np.median(measured), rel=0.15)
    assert floors[1000] < floors[100] / 2  # the bias shrinks with the number of cases
    # a miscalibrated map on as many cases stands clear of the floor
    y = (rng.random(1000) < p).astype(float)
    assert expected_calibration_error(y, np.clip(p + 0.2, 0, 1)) > 3 * floors[1000]
    assert ece_of_a_calibrated_model([0.0, 1.0, 0.0]) == 0.0  # certain and right
    with pytest.raises(CalibrationError, match="no cases"):
        ece_of_a_calibrated_model([])


def test_threshold_at_specificity_is_the_lowest_that_keeps_it() -> None:
    y, s = draw(500, seed=4)
    threshold, specificity, sensitivity = threshold_at(Target.parse("specificity:0.9"), y, s)
    flagged = s >= threshold
    assert 1 - flagged[y == 0].mean() == pytest.approx(specificity) and specificity >= 0.9
    assert flagged[y == 1].mean() == pytest.approx(sensitivity)
    lower = s[s < threshold].max()  # the next threshold down breaks the target
    assert 1 - (s[y == 0] >= lower).mean() < 0.9


def test_threshold_at_sensitivity_and_youden() -> None:
    y, s = draw(500, seed=5)
    threshold, _, sensitivity = threshold_at(Target.parse("sensitivity:0.95"), y, s)
    assert sensitivity >= 0.95 and (s[y == 1] >= threshold).mean() == sensitivity
    higher = s[s > threshold].min()
    assert (s[y == 1] >= higher).mean() < 0.95
    _, spec, sens = threshold_at(Target.parse("youden"), y, s)
    assert spec + sens > 1.5


def test_targets_parse_with_defaults_and_refuse_nonsense() -> None:
    targets = parse_targets(["study=sensitivity:0.85"])
    assert str(targets["study"]) == "sensitivity:0.85"
    assert str(targets["view"]) == str(targets["breast"]) == "specificity:0.90"
    for bad in (["study=specificity:1.5"], ["organ=youden"], ["view=precision:0.9"],
                ["view=youden:0.3"]):
        with pytest.raises(TargetError):
            parse_targets(bad)


def test_operating_points_per_level_round_trip_through_the_manifest() -> None:
    levels = {name: draw(n, seed) for name, n, seed in
              (("view", 800, 6), ("breast", 400, 7), ("study", 200, 8))}
    scores = {name: (y.tolist(), s.tolist()) for name, (y, s) in levels.items()}
    calibration = fit_levels(scores, "platt", "validation split (200 studies)")
    points = choose_operating_points(scores, calibration, parse_targets([]))
    assert points.calibrated and "platt, validation split (200 studies)" in points.statement()
    for name, (y, s) in levels.items():
        flagged = calibration.level(name)(s) >= getattr(points, name).threshold
        assert 1 - flagged[y == 0].mean() >= 0.9
    again = operating_points_from_manifest(operating_points_manifest(points), 0.0,
                                           LevelCalibration.from_manifest(
                                               calibration.as_manifest()))
    assert again == points
    legacy = operating_points_from_manifest(None, 0.37, LevelCalibration())
    assert legacy.study.threshold == legacy.view.threshold == 0.37
    assert not legacy.calibrated and "not calibrated" in legacy.statement()


def test_paired_bootstrap_separates_a_better_model_from_noise() -> None:
    rng = np.random.default_rng(9)
    y = (rng.random(300) < 0.3).astype(int)
    strong = [rng.normal(y * 2.0, 1.0) for _ in range(3)]  # three seeds
    weak = [rng.normal(y * 0.5, 1.0) for _ in range(3)]
    better = paired_auc_difference(y, strong, weak, resamples=500, seed=1)
    assert better.low > 0 and better.low < better.estimate < better.high
    same = paired_auc_difference(y, strong, strong, resamples=200, seed=1)
    assert same.estimate == same.low == same.high == 0.0
    twin = paired_auc_difference(y, strong[:1], strong[1:2], resamples=500, seed=1)
    assert twin.low < 0 < twin.high
    assert paired_auc_difference(y, strong, weak, resamples=500, seed=1) == better
    single = auc_interval(y, strong[0], resamples=500)
    assert single.estimate == pytest.approx(roc_auc_score(y, strong[0]))
    assert single.low < single.estimate < single.high
