"""``import_dataset``: a source (generic CSV, CBIS-DDSM, VinDr-Mammo) -> a data set folder
holding ``manifest.json`` and ``manifest.csv`` that reference the source's files."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ml.site_data.cbis_ddsm import read_cbis_ddsm
from ml.site_data.generic import read_generic
from ml.site_data.records import SPLITS, ImageRow, assemble, split_by_patient
from ml.site_data.vindr import read_vindr
from ml.synth.dataset import MANIFEST_JSON, StudyRecord, write_manifest

FORMATS = ("generic", "cbis-ddsm", "vindr-mammo")


def read_source(kind: str, source: Path, positive_birads: int = 4,
                boxes_from_masks: bool = True) -> list[ImageRow]:
    if kind == "generic":
        return read_generic(source)
    if kind == "cbis-ddsm":
        return read_cbis_ddsm(source, boxes_from_masks=boxes_from_masks)
    if kind == "vindr-mammo":
        return read_vindr(source, positive_birads=positive_birads)
    raise ValueError(f"format must be one of {FORMATS}, not {kind!r}")


def split_summary(studies: list[StudyRecord]) -> dict[str, dict[str, int]]:
    """Patients, studies, views and cancer studies per split."""
    summary = {}
    for name in SPLITS:
        part = [s for s in studies if s.split == name]
        summary[name] = {"patients": len({s.patient_id for s in part}), "studies": len(part),
                         "views": sum(len(s.views) for s in part),
                         "cancer_studies": sum(s.label for s in part)}
    return summary


def import_dataset(kind: str, source: Path, out: Path, *, fractions: dict[str, float],
                   val_fraction: float, seed: int, resplit: bool = False,
                   positive_birads: int = 4, boxes_from_masks: bool = True,
                   force: bool = False, progress: Callable[[int, int], None] | None = None
                   ) -> list[StudyRecord]:
    """Read, check, split by patient and write the manifest of ``source`` into ``out``.

    Nothing is written unless every row passes. Raises ``ImportRowError`` (a row),
    ``SplitError`` (a patient in two splits) or ``ValueError``.
    """
    manifest = out / MANIFEST_JSON
    if manifest.exists() and not force:
        raise ValueError(f"{out} already holds a data set (use --force to replace it)")
    rows = read_source(kind, source, positive_birads, boxes_from_masks)
    done = 0

    def advance() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(rows))

    studies = assemble(rows, progress=advance)
    studies = split_by_patient(studies, fractions, seed, keep=not resplit,
                               val_fraction=val_fraction)
    if out.exists() and force:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"source": {"format": kind, "path": str(source.resolve()),
                                       "positive_birads": positive_birads
                                       if kind == "vindr-mammo" else None},
                            "seed": seed, "splits": split_summary(studies)}
    write_manifest(out.resolve(), studies, meta)
    return studies
