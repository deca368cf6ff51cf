"""The synthetic study and the node's results for it, written as DICOM files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset

from mmbcd_node.results.outputs import build_outputs
from tests.support.predictions import make_result_set

IMAGING_MEASUREMENTS = "126010"
MEASUREMENT_GROUP = "125007"


@dataclass(frozen=True)
class Study:
    study_uid: str
    files: list[Path]
    sr: Dataset  # the TID 1500 SR
    series: dict[str, str]  # Series Instance UID -> "kind: description"
    sc_uids: list[str]  # SOP Instance UIDs of the secondary captures, in order
    sc_series_number: int

    @property
    def measurement_groups(self) -> list[str]:
        """Each TID 1501 group's Tracking Identifier, in the SR's order."""
        names = []
        for item in self.sr.ContentSequence:
            if _code(item) != IMAGING_MEASUREMENTS:
                continue
            for group in item.ContentSequence:
                if _code(group) == MEASUREMENT_GROUP:
                    names += [str(c.TextValue) for c in group.ContentSequence
                              if _code(c) == "112039"] or ["?"]
        return names


def _code(item: Dataset) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeValue) if "ConceptNameCodeSequence" in item \
        else ""


def build_study(directory: Path) -> Study:
    """Write the 4 views and every result object (SR, CAD SR, SC, GSPS) under ``directory``."""
    result = make_result_set()
    objects = [("MG", ds) for ds in result.datasets]
    objects += [(o.kind, o.dataset) for o in build_outputs(result)]
    directory.mkdir(parents=True, exist_ok=True)
    files, series = [], {}
    for number, (kind, ds) in enumerate(objects):
        path = directory / f"{number:02d}-{kind}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
        series[str(ds.SeriesInstanceUID)] = f"{kind}: {ds.get('SeriesDescription', '')}"
    sr = next(ds for kind, ds in objects if kind == "sr")
    scs = sorted((ds for kind, ds in objects if kind == "sc"), key=lambda ds: ds.InstanceNumber)
    return Study(study_uid=str(sr.StudyInstanceUID), files=files, sr=sr, series=series,
                 sc_uids=[str(ds.SOPInstanceUID) for ds in scs],
                 sc_series_number=int(scs[0].SeriesNumber))
