"""``evaluation.json`` and ``evaluation.md``: the metrics of a bundle on a test set and,
when given, the ablation table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ml.evaluate.metrics import FPR_TARGETS

ABLATION_COLUMNS = ("accuracy", "f1", "auc")


def metrics_markdown(levels: dict[str, dict[str, Any]]) -> str:
    """A markdown table: one row per level (view, breast, ...) of ``BinaryMetrics`` dicts."""
    fprs = " | ".join(f"recall@FPR {t}" for t in FPR_TARGETS)
    lines = [f"| level | n | positives | accuracy | F1 | ROC AUC | {fprs} |",
             "|---" * (6 + len(FPR_TARGETS)) + "|"]
    for level, m in levels.items():
        recalls = " | ".join(f"{m['recall_at_fpr'][str(t)]:.3f}" for t in FPR_TARGETS)
        lines.append(f"| {level} | {m['count']} | {m['positives']} | {m['accuracy']:.3f} | "
                     f"{m['f1']:.3f} | {m['auc']:.3f} | {recalls} |")
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


def evaluation_markdown(report: dict[str, Any]) -> str:
    """The human-readable evaluation report."""
    bundle = report["bundle"]
    parts = [f"# Evaluation of {bundle['name']} {bundle['version']}".rstrip(), "",
             f"Test data: `{report['data']['name']}` ({report['data']['studies']} studies, "
             f"{report['data']['views']} views, seed {report['data'].get('seed')}), never "
             "used for training, early stopping or the threshold.",
             f"Operating threshold {report['threshold']:.4f} (chosen on the validation "
             "split). Recall at FPR t is the best recall with a false-positive rate <= t.",
             "", metrics_markdown(report["metrics"]), ""]
    if report.get("ablation"):
        parts += ["## Ablation (same test set)", "", ablation_markdown(report["ablation"]), ""]
    if report.get("figures"):
        parts += ["## Figures", ""] + [f"- `{f}`" for f in report["figures"]] + [""]
    return "\n".join(parts)
