"""Scoring a test set with the node's own inference path (``ml.pipeline.Pipeline``), so
the evaluation measures exactly what the node will return."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml.evaluate.metrics import binary_metrics, breast_scores
from ml.pipeline import Pipeline
from ml.synth.dataset import StudyRecord, ViewRecord
from ml.types import OperatingPoints, StudyInput, StudyPrediction, ViewInput, ViewPrediction


class EvaluationError(ValueError):
    """A test set that cannot be evaluated (no test studies, training studies in it)."""


@dataclass(frozen=True)
class ScoredView:
    study: StudyRecord
    view: ViewRecord
    prediction: ViewPrediction
    study_prediction: StudyPrediction


def test_split(studies: Sequence[StudyRecord], data: Path) -> list[StudyRecord]:
    """The studies marked ``test``, or all when none is marked at all.

    Raises ``EvaluationError`` when the data set marks train/val studies but no test ones.
    """
    marked = [s for s in studies if s.split == "test"]
    if marked:
        return marked
    if any(s.split for s in studies):
        raise EvaluationError(f"{data} marks training splits but no 'test' studies; evaluate "
                              "on a separate test data set")
    return list(studies)


def score_studies(pipeline: Pipeline, studies: Sequence[StudyRecord], chunk: int = 8,
                  progress: Callable[[int], None] | None = None,
                  histories: bool = True) -> list[ScoredView]:
    """Every view of ``studies`` scored by ``pipeline``, with its study's history (or,
    without ``histories``, as if no order had come).

    Raises ``EvaluationError`` naming the first view the pipeline could not score.
    """
    scored: list[ScoredView] = []
    for start in range(0, len(studies), chunk):
        part = studies[start:start + chunk]
        inputs = [StudyInput(study_uid=s.study_uid, history=s.history if histories else "",
                             views=[ViewInput(v.path, v.sop_instance_uid) for v in s.views])
                  for s in part]
        for study, prediction in zip(part, pipeline.predict(inputs), strict=True):
            for view, view_prediction in zip(study.views, prediction.views, strict=True):
                if view_prediction.probability is None:
                    raise EvaluationError(f"{view.path}: not scored: {view_prediction.error}")
                scored.append(ScoredView(study, view, view_prediction, prediction))
        if progress is not None:
            progress(min(start + chunk, len(studies)))
    return scored


def level_scores(scored: Sequence[ScoredView], raw: bool = False
                 ) -> dict[str, tuple[list[int], list[float]]]:
    """Labels and probabilities per level as the node reports them: each view's, each
    breast's and each study's (calibrated when the bundle is). With ``raw``, the model's
    uncalibrated scores instead: a breast's and a study's is the highest of their views'.
    """
    view_y = [v.view.label for v in scored]
    if raw:
        view_p = [float(v.prediction.score or 0.0) for v in scored]
        breast_y, breast_p = breast_scores(
            [(v.study.study_uid, v.view.laterality) for v in scored], view_p,
            {(v.study.study_uid, lat): y for v in scored
             for lat, y in v.study.breast_labels.items()})
        study_y, study_p = breast_scores([(v.study.study_uid, "") for v in scored], view_p,
                                         {(v.study.study_uid, ""): v.study.label
                                          for v in scored})
        return {"view": (view_y, view_p), "breast": (breast_y, breast_p),
                "study": (study_y, study_p)}
    view_p = [float(v.prediction.probability or 0.0) for v in scored]
    breasts: dict[tuple[str, str], tuple[int, float]] = {}
    studies: dict[str, tuple[int, float]] = {}
    for v in scored:
        side = v.view.laterality
        breasts[(v.study.study_uid, side)] = (v.study.breast_labels[side],
                                              v.study_prediction.breasts[side])
        studies[v.study.study_uid] = (v.study.label,
                                      float(v.study_prediction.probability or 0.0))
    return {"view": (view_y, view_p),
            "breast": ([y for y, _ in breasts.values()], [p for _, p in breasts.values()]),
            "study": ([y for y, _ in studies.values()], [p for _, p in studies.values()])}


def level_metrics(scored: Sequence[ScoredView],
                  operating: OperatingPoints) -> dict[str, dict[str, Any]]:
    """``BinaryMetrics`` (as dicts) per level at that level's operating threshold."""
    return {level: binary_metrics(y, p, getattr(operating, level).threshold).as_dict()
            for level, (y, p) in level_scores(scored).items()}
