"""``evaluation.json`` and ``evaluation.md``: the metrics of a bundle on a test set and,
when given, the ablation table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ml.evaluate.metrics import FPR_TARGETS

ABLATION_COLUMNS = ("accuracy", "f1", "auc")


def metrics_markdown(levels: dict[str, dict[str, Any]]) -> str:
    """A markdown table: one row per level (view, breast, ...) of ``BinaryMetrics`` dicts,
    with the AUC's bootstrap interval and the calibration error where measured."""
    fprs = " | ".join(f"recall@FPR {t}" for t in FPR_TARGETS)
    lines = [f"| level | n | positives | ROC AUC [95% CI] | ECE | threshold | sensitivity | "
             f"specificity | accuracy | F1 | {fprs} |",
             "|---" * (10 + len(FPR_TARGETS)) + "|"]
    for level, m in levels.items():
        recalls = " | ".join(f"{m['recall_at_fpr'][str(t)]:.3f}" for t in FPR_TARGETS)
        interval = (f" [{m['auc_95ci'][0]:.3f}, {m['auc_95ci'][1]:.3f}]"
                    if m.get("auc_95ci") else "")
        ece = f"{m['ece']:.3f}" if m.get("ece") is not None else "-"
        lines.append(f"| {level} | {m['count']} | {m['positives']} | {m['auc']:.3f}{interval} | "
                     f"{ece} | {m['threshold']:.4f} | {m['sensitivity']:.3f} | "
                     f"{m['specificity']:.3f} | {m['accuracy']:.3f} | {m['f1']:.3f} | "
                     f"{recalls} |")
    return "\n".join(lines)


def ablation_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The ablation table (paper Table 2 plus text only): view-level accuracy, F1 and AUC,
    and the breast-level AUC."""
    lines = ["| model | accuracy | F1 | ROC AUC (view) | ROC AUC (breast) |",
             "|---|---|---|---|---|"]
    for row in rows:
        view, breast = row["view"], row["breast"]
        lines.append(f"| {row['name']} | {view['accuracy']:.3f} | {view['f1']:.3f} | "
                     f"{view['auc']:.3f} | {breast['auc']:.3f} |")
    return "\n".join(lines)


def operating_lines(report: dict[str, Any]) -> list[str]:
    """Whether the probabilities are calibrated, and each level's threshold and target."""
    points = report.get("operating_points") or {}
    calibration = report.get("calibration")
    lines = [f"Probabilities calibrated: {calibration}." if calibration
             else "Probabilities not calibrated (the model's raw, class-balanced scores)."]
    lines += [f"- {level}: threshold {p['threshold']:.4f} at {p['target']} (reached "
              f"{p.get('reached', '')})" for level, p in points.items()]
    return [*lines, ""]


def evaluation_markdown(report: dict[str, Any]) -> str:
    """The human-readable evaluation report."""
    bundle = report["bundle"]
    parts = [f"# Evaluation of {bundle['name']} {bundle['version']}".rstrip(), "",
             f"Test data: `{report['data']['name']}` ({report['data']['studies']} studies, "
             f"{report['data']['views']} views, seed {report['data'].get('seed')}), never "
             "used for training, early stopping or the threshold.",
             *operating_lines(report),
             "Recall at FPR t is the best recall with a false-positive rate <= t; ECE is the "
             "expected calibration error over 10 equal-width bins; the AUC interval is a "
             "2000-draw percentile bootstrap over the level's cases.",
             "", metrics_markdown(report["metrics"]), ""]
    if report.get("ablation"):
        parts += ["## Ablation (same test set)", "", ablation_markdown(report["ablation"]), ""]
    if report.get("figures"):
        parts += ["## Figures", ""] + [f"- `{f}`" for f in report["figures"]] + [""]
    return "\n".join(parts)
