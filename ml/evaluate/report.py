"""``evaluation.json`` and ``evaluation.md``: the metrics of a bundle on a test set and,
when given, the ablation table."""

from __future__ import annotations

from typing import Any

from ml.evaluate.metrics import FPR_TARGETS


def metrics_markdown(levels: dict[str, dict[str, Any]]) -> str:
    """A markdown table: one row per level (view, breast, ...) of ``BinaryMetrics`` dicts,
    with the AUC's bootstrap interval and the calibration error where measured."""
    fprs = " | ".join(f"recall@FPR {t}" for t in FPR_TARGETS)
    lines = [f"| level | n | positives | ROC AUC [95% CI] | ECE | ECE if calibrated | "
             f"threshold | sensitivity | specificity | accuracy | F1 | {fprs} |",
             "|---" * (11 + len(FPR_TARGETS)) + "|"]
    for level, m in levels.items():
        recalls = " | ".join(f"{m['recall_at_fpr'][str(t)]:.3f}" for t in FPR_TARGETS)
        interval = (f" [{m['auc_95ci'][0]:.3f}, {m['auc_95ci'][1]:.3f}]"
                    if m.get("auc_95ci") else "")
        ece = f"{m['ece']:.3f}" if m.get("ece") is not None else "-"
        floor = (f"{m['ece_if_calibrated']:.3f}" if m.get("ece_if_calibrated") is not None
                 else "-")
        lines.append(f"| {level} | {m['count']} | {m['positives']} | {m['auc']:.3f}{interval} | "
                     f"{ece} | {floor} | {m['threshold']:.4f} | {m['sensitivity']:.3f} | "
                     f"{m['specificity']:.3f} | {m['accuracy']:.3f} | {m['f1']:.3f} | "
                     f"{recalls} |")
    return "\n".join(lines)


def _spread(entry: dict[str, Any]) -> str:
    return f"{entry['mean']:.3f} ± {entry['sd']:.3f}"


def ablation_markdown(summary: dict[str, Any]) -> str:
    """The ablation table: test ROC AUC per level as mean ± standard deviation over seeds,
    the study AUC with every history removed, the validation view AUC; then the
    study-level bootstrap intervals and the validation choice."""
    seeds = summary.get("seeds") or []
    lines = [f"Seeds: {', '.join(map(str, seeds))}; mean ± standard deviation over seeds.",
             "",
             "| model | AUC view | AUC breast | AUC study | AUC study, no history | "
             "val AUC view |", "|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        lines.append(f"| {row['name']} | {_spread(row['test_view'])} | "
                     f"{_spread(row['test_breast'])} | {_spread(row['test_study'])} | "
                     f"{_spread(row['test_without_history_study'])} | "
                     f"{_spread(row['val_view'])} |")
    names = {row["key"]: row["name"] for row in summary["rows"]}
    if summary.get("intervals"):
        lines += ["", "Paired bootstrap over test studies (study-level AUC, each model "
                  "averaged over its seeds):", "",
                  "| difference | estimate | 95% interval |", "|---|---|---|"]
        for item in summary["intervals"]:
            lines.append(f"| {names[item['first']]} − {names[item['second']]} | "
                         f"{item['difference']:+.3f} | [{item['low']:+.3f}, "
                         f"{item['high']:+.3f}] ({item['resamples']} resamples) |")
    choice = summary.get("choice")
    if choice:
        lines += ["", f"Text context chosen on validation ({choice['rule']}): "
                  f"{names[choice['chosen']]} (validation view AUC "
                  f"{choice['full']:.3f} with side and history dropout, "
                  f"{choice['masking']:.3f} with the history alone)."]
    return "\n".join(lines)


def ensemble_lines(bundle: dict[str, Any]) -> list[str]:
    """Which seeds an ensemble bundle averages (nothing for one model)."""
    seeds = bundle.get("members") or []
    if not seeds:
        return []
    return [f"Model: an ensemble of {len(seeds)} runs of one recipe (seeds "
            f"{', '.join(map(str, seeds))}), their view scores averaged and then "
            "calibrated."]


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
             *ensemble_lines(bundle),
             *operating_lines(report),
             "Recall at FPR t is the best recall with a false-positive rate <= t; ECE is the "
             "expected calibration error over 10 equal-width bins, and 'ECE if calibrated' "
             "the median ECE these probabilities would show on as many cases were they "
             "exactly right (labels drawn from them 1000 times): the part of the ECE that "
             "the number of cases alone explains; the AUC interval is a 2000-draw "
             "percentile bootstrap over the level's cases.",
             "", metrics_markdown(report["metrics"]), ""]
    if report.get("without_history"):
        parts += ["## With every history removed (studies without an order)", "",
                  metrics_markdown(report["without_history"]), ""]
    if report.get("ablation"):
        parts += ["## Ablation (same test set)", "", ablation_markdown(report["ablation"]), ""]
    if report.get("figures"):
        parts += ["## Figures", ""] + [f"- `{f}`" for f in report["figures"]] + [""]
    return "\n".join(parts)
