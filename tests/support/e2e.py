"""What the end-to-end tests and the end-to-end benchmark share: a modality and a RIS.

``make_study(...)`` writes a synthetic 4-view mammography study (R/L x CC/MLO) to a
folder; ``push_study`` sends it to the node with dcmtk ``storescu`` as a modality
would; ``send_order`` sends its order over MLLP as a RIS would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from mmbcd_node.db.models import Job, JobState
from mmbcd_node.db.result_models import Delivery, DeliveryState
from tests.support.dicom_peers import db_rows, storescu
from tests.support.hl7_client import order_message, send_one
from tests.support.mammo import make_mammogram, write_mammogram

FOUR_VIEWS = (("R", "CC"), ("R", "MLO"), ("L", "CC"), ("L", "MLO"))
HISTORY = "palpable lump upper outer quadrant right breast"


@dataclass
class SyntheticStudy:
    study_uid: str
    accession: str
    patient_id: str
    files: list[Path] = field(default_factory=list)


def make_study(folder: Path, index: int, *, seed: int | None = None, rows: int = 320,
               cols: int = 256, transfer_syntax: str = ExplicitVRLittleEndian) -> SyntheticStudy:
    """A new 4-view study under ``folder``, written in ``transfer_syntax``; ``seed`` fixes
    the pixels (default: index)."""
    study = SyntheticStudy(study_uid=generate_uid(), accession=f"ACC{index:05d}",
                           patient_id=f"PAT{index:05d}")
    for n, (laterality, view) in enumerate(FOUR_VIEWS):
        ds = make_mammogram(study_uid=study.study_uid, patient_id=study.patient_id,
                            accession=study.accession, laterality=laterality, view=view,
                            seed=(index if seed is None else seed) * 10 + n, rows=rows,
                            cols=cols)
        study.files.append(write_mammogram(folder / study.accession / f"{laterality}_{view}.dcm",
                                           ds, transfer_syntax))
    return study


def push_study(port: int, files: list[Path]) -> None:
    """C-STORE ``files`` to the node in one association with dcmtk ``storescu``."""
    run = storescu(port, files, calling_ae="MODALITY")
    if run.returncode != 0:
        raise AssertionError(f"storescu failed:\n{run.stdout}\n{run.stderr}")


def send_order(port: int, study: SyntheticStudy, *, history: str = HISTORY) -> None:
    """The study's new order (ORM^O01 with its accession and Study Instance UID) over MLLP."""
    text = order_message(f"MSG{study.accession}", placer=f"PL{study.accession}",
                         patient_id=study.patient_id, accession=study.accession,
                         study_uid=study.study_uid, clinical=history)
    ack = send_one(port, text)
    if ack.code != "AA":
        raise AssertionError(f"order for {study.accession} answered {ack.code}: {ack.raw!r}")


def settled(db_url: str) -> bool:
    """Every job has ended and no delivery is outstanding: nothing more will be sent, so
    what a PACS holds now is final (what tests check "nothing sent twice" against)."""
    jobs = db_rows(db_url, Job)
    return bool(jobs) and all(j.state in (JobState.DONE, JobState.FAILED) for j in jobs) \
        and all(d.state != DeliveryState.PENDING for d in db_rows(db_url, Delivery))
