"""``mmbcd-train synth``: write a synthetic data set with a progress bar."""

from __future__ import annotations

from pathlib import Path

import typer

from ml.synth.config import SynthConfig

_DEFAULT = SynthConfig()


def _sizes(text: str) -> tuple[tuple[int, int], ...]:
    try:
        return tuple((int(r), int(c)) for r, c in (s.lower().split("x") for s in text.split(",")))
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r}: expected ROWSxCOLS[,ROWSxCOLS...]") from exc


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(","))
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r}: expected integers separated by commas") from exc


def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write the data set into."),
    studies: int = typer.Option(..., "--studies", min=1, help="Number of studies."),
    seed: int = typer.Option(0, "--seed", min=0, help="Same seed, same data set."),
    size: str = typer.Option("x".join(map(str, _DEFAULT.sizes[0])), "--size",
                             help="Image size ROWSxCOLS (up to 4096x3328); a comma list "
                                  "mixes sizes across studies."),
    bits: str = typer.Option(",".join(map(str, _DEFAULT.bits_stored)), "--bits",
                             help="Bits stored (12..16), drawn per study."),
    monochrome1_fraction: float = typer.Option(_DEFAULT.monochrome1_fraction, min=0.0, max=1.0,
                                               help="Share of studies stored MONOCHROME1."),
    malignant_fraction: float = typer.Option(_DEFAULT.malignant_fraction, min=0.0, max=1.0,
                                             help="Share of studies with a cancer (exact)."),
    subtle_fraction: float = typer.Option(_DEFAULT.subtle_fraction, min=0.0, max=1.0,
                                          help="Share of cancers drawn at low contrast."),
    occult_fraction: float = typer.Option(_DEFAULT.occult_fraction, min=0.0, max=1.0,
                                          help="Share of cancers invisible on both views."),
    one_view_fraction: float = typer.Option(_DEFAULT.one_view_fraction, min=0.0, max=1.0,
                                            help="Share of visible cancers seen on one view "
                                                 "only."),
    bilateral_fraction: float = typer.Option(_DEFAULT.bilateral_fraction, min=0.0, max=1.0,
                                             help="Share of cancer studies with a cancer in "
                                                  "both breasts."),
    benign_finding_rate: float = typer.Option(_DEFAULT.benign_finding_rate, min=0.0, max=1.0,
                                              help="Chance a breast has a benign look-alike."),
    history_signal: float = typer.Option(_DEFAULT.history_signal, min=0.0, max=1.5,
                                         help="How much the history text depends on the "
                                              "label (0: none; the default 1.2: a bag of "
                                              "words reaches a study AUC near 0.92)."),
    split: str | None = typer.Option(None, "--split",
                                     help="Split name for every study (e.g. test) or "
                                          "fractions, e.g. train=0.7,val=0.15,test=0.15."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Worker processes."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing data set."),
) -> None:
    """Write synthetic mammography studies (DICOM), HL7 orders and the manifest."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from ml.synth.dataset import MANIFEST_JSON
    from ml.synth.generate import generate_dataset, parse_split

    if (out / MANIFEST_JSON).exists() and not force:
        raise typer.BadParameter(f"{out} already holds a data set (use --force)",
                                 param_hint="--out")
    try:
        parse_split(split)
        config = SynthConfig(sizes=_sizes(size), bits_stored=_ints(bits),
                             monochrome1_fraction=monochrome1_fraction,
                             malignant_fraction=malignant_fraction,
                             subtle_fraction=subtle_fraction, occult_fraction=occult_fraction,
                             one_view_fraction=one_view_fraction,
                             bilateral_fraction=bilateral_fraction,
                             benign_finding_rate=benign_finding_rate,
                             history_signal=history_signal)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn()) as bar:
        task = bar.add_task("synthetic studies", total=studies)
        records = generate_dataset(out, studies, seed, config, split=split, jobs=jobs,
                                   progress=lambda done: bar.update(task, completed=done))
    malignant = sum(r.label for r in records)
    typer.echo(f"wrote {len(records)} studies ({malignant} malignant, {4 * len(records)} views) "
               f"to {out}")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
