"""``mmbcd-train evaluate``: a bundle (or a fusion or ensemble run) on a held-out test set,
through the node's inference pipeline: metrics per view, breast and study, ROC curves,
attention pictures, ``evaluation.json`` and ``evaluation.md``."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def evaluate(
    data: Path = typer.Option(..., "--data", help="Test data set (its 'test' studies, or all "
                              "when it marks no split)."),
    bundle: Path | None = typer.Option(None, "--bundle", help="Bundle folder to evaluate."),
    run: Path | None = typer.Option(None, "--run", help="Fusion or ensemble run to evaluate "
                                    "(exported to a temporary bundle first)."),
    out: Path | None = typer.Option(None, "--out", help="Report folder (default: "
                                    "RUN/evaluation)."),
    ablation: Path | None = typer.Option(None, "--ablation", help="Ablation folder whose "
                                         "table goes into the report."),
    pictures: int = typer.Option(8, "--attention-pictures", min=0,
                                 help="How many attention pictures to draw."),
    device: str = typer.Option("auto", "--device"),
    without_history: bool = typer.Option(True, "--without-history/--with-history-only",
                                         help="Also score every study with its history "
                                         "removed (a study without an order)."),
) -> None:
    """Evaluate a bundle on a test set: per level, ROC AUC with its bootstrap interval,
    calibration error, and sensitivity and specificity at the bundle's operating points."""
    if (bundle is None) == (run is None):
        _fail("give exactly one of --bundle and --run")
    if out is None:
        if run is None:
            _fail("--out is needed with --bundle")
        out = run / "evaluation"  # type: ignore[operator]
    from ml.evaluate.evaluation import evaluate_bundle
    from ml.evaluate.scoring import EvaluationError
    from ml.manifest import BundleError
    from ml.train.export import export_run

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = bundle or Path(tmp) / "bundle"
            if run is not None:
                export_run(run, path, name=f"run {run.resolve().name}", version="",
                           evaluation_dir=Path(tmp) / "none")
            report = evaluate_bundle(path, data, out, ablation=ablation, pictures=pictures,
                                     device=device, without_history=without_history)
    except (BundleError, EvaluationError, ValueError) as exc:
        _fail(str(exc))
        return
    from ml.evaluate.report import metrics_markdown

    typer.echo(metrics_markdown(report["metrics"]))
    if report.get("without_history"):
        typer.echo("\nwith every history removed:")
        typer.echo(metrics_markdown(report["without_history"]))
    typer.echo(f"report written to {out}/evaluation.md")


CALIBRATION = typer.Option(None, "--calibration",
                           help="platt (temperature and prevalence shift on the logit; the "
                           "default) or isotonic (needs more validation cases).")
OPERATING_POINT = typer.Option(
    [], "--operating-point", help="LEVEL=TARGET, LEVEL view, breast or study; TARGET "
    "specificity:V, sensitivity:V or youden; repeatable. Default: specificity:0.90 at "
    "every level.")


def calibrate(
    bundle: Path = typer.Option(..., "--bundle", help="Bundle folder to recalibrate."),
    data: Path = typer.Option(..., "--data", help="Data set whose validation studies fit the "
                              "maps and thresholds (never its test studies)."),
    out: Path = typer.Option(..., "--out", help="Bundle folder to write."),
    split: str = typer.Option("val", "--split", help="Split to fit on (all studies when the "
                              "data set marks none)."),
    method: str | None = CALIBRATION,
    operating_point: list[str] = OPERATING_POINT,
    version: str | None = typer.Option(None, "--version", help="Version of the new bundle "
                                       "(default: the old one's)."),
    device: str = typer.Option("auto", "--device"),
    force: bool = typer.Option(False, "--force", help="Replace an existing bundle folder."),
) -> None:
    """Calibrate a bundle's probabilities and set its per-level operating points on
    validation studies; the weights are unchanged."""
    from ml.calibration import CalibrationError
    from ml.evaluate.recalibration import recalibrate_bundle
    from ml.evaluate.scoring import EvaluationError
    from ml.manifest import BundleError
    from ml.operating_points import TargetError, parse_targets

    try:
        manifest = recalibrate_bundle(bundle, data, out, method=method or "platt",
                                      targets=parse_targets(operating_point), split=split,
                                      version=version, device=device, force=force)
    except (BundleError, EvaluationError, CalibrationError, TargetError) as exc:
        _fail(str(exc))
        return
    for level, point in manifest["operating_points"].items():
        typer.echo(f"{level}: threshold {point['threshold']:.4f} ({point['target']})")
    typer.echo(f"bundle {out} digest {manifest['digest']}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
    app.command("calibrate")(calibrate)
