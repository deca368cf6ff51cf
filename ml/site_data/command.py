"""``mmbcd-train import``: a site's or a public data set's mammograms into the training
format, split by patient, the files referenced where they are."""

from __future__ import annotations

from pathlib import Path

import typer


def import_data(
    source: Path = typer.Argument(..., help="The generic CSV, or the CBIS-DDSM or "
                                  "VinDr-Mammo folder."),
    kind: str = typer.Option("generic", "--format",
                             help="generic (README 'Training on your own data'), cbis-ddsm "
                             "or vindr-mammo."),
    out: Path = typer.Option(..., "--out", help="Data set folder to write (manifest only)."),
    split: str = typer.Option("train=0.7,val=0.15,test=0.15", "--split",
                              help="Fractions for patients the source puts in no split."),
    val_fraction: float = typer.Option(0.15, "--val-fraction", min=0.0, max=0.5,
                                       help="Share of training patients drawn into "
                                       "validation when the source has no validation split."),
    resplit: bool = typer.Option(False, "--resplit", help="Ignore the source's splits and "
                                 "draw every patient afresh."),
    positive_birads: int = typer.Option(4, "--positive-birads", min=1, max=6,
                                        help="VinDr-Mammo: lowest breast BI-RADS labelled 1."),
    boxes_from_masks: bool = typer.Option(True, "--boxes-from-masks/--no-boxes",
                                          help="CBIS-DDSM: lesion boxes from the ROI masks."),
    seed: int = typer.Option(0, "--seed", min=0),
    force: bool = typer.Option(False, "--force", help="Replace an existing data set."),
) -> None:
    """Import real mammograms: check every row and header, split by patient, write the
    manifest (pixel data is referenced, never copied)."""
    from rich.console import Console
    from rich.table import Table

    from ml.site_data.importer import import_dataset, split_summary
    from ml.synth.generate import parse_split
    from ml.train.roi_cache import progress_bar

    try:
        fractions = parse_split(split)
        with progress_bar() as bar:
            task = bar.add_task("reading headers", total=None)
            studies = import_dataset(
                kind, source, out, fractions=fractions, val_fraction=val_fraction, seed=seed,
                resplit=resplit, positive_birads=positive_birads,
                boxes_from_masks=boxes_from_masks, force=force,
                progress=lambda done, total: bar.update(task, completed=done, total=total))
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    table = Table(title=f"{out} ({kind})")
    for column in ("split", "patients", "studies", "views", "cancer studies"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for name, counts in split_summary(studies).items():
        table.add_row(name, *(str(v) for v in counts.values()))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("import")(import_data)
