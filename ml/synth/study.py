"""One synthetic screening/diagnostic study: its plan (patient, labels, findings,
history, identifiers) and the rendering of its four views.

Each study draws from random streams keyed by (seed, study index, purpose), so study
``i`` of seed ``s`` is the same whatever the size of the data set, and switching the
findings off leaves the tissue of a view unchanged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass, field

import numpy as np

from ml.synth.anatomy import Breast, ViewAnatomy, draw_view
from ml.synth.config import SynthConfig
from ml.synth.findings import BENIGN_KINDS, MALIGNANT_KINDS, Box, Finding, draw, sample_finding
from ml.synth.history import write_history
from ml.synth.texture import tissue

LATERALITIES = ("R", "L")
VIEWS = ("CC", "MLO")
# Findings found in the wild in roughly these proportions.
_MALIGNANT_WEIGHTS = (0.27, 0.22, 0.25, 0.12, 0.14)
_BENIGN_WEIGHTS = (0.38, 0.24, 0.18, 0.20)
_FIRST_NAMES = ("ANNA", "MARIA", "SARAH", "FATIMA", "MEI", "PRIYA", "JOANNE", "ELENA", "AISHA",
                "HELEN", "SOFIA", "GRACE", "YUKI", "NADIA", "RUTH", "CLAIRE")
_LAST_NAMES = ("SMITH", "GARCIA", "O'NEILL", "NGUYEN", "KOWALSKI", "MUELLER", "OKAFOR",
               "HANSEN", "ROSSI", "PATEL", "DUBOIS", "COHEN", "TANAKA", "BROWN", "SILVA")


@dataclass(frozen=True)
class BreastPlan:
    laterality: str
    shape: Breast
    findings: tuple[Finding, ...]

    @property
    def malignant(self) -> bool:
        return any(f.malignant for f in self.findings)


@dataclass(frozen=True)
class StudyPlan:
    """Everything about a study except its pixels."""

    seed: int
    index: int
    malignant: bool
    patient_id: str
    patient_name: str
    birth_date: str
    age: int
    accession: str
    requested_procedure_id: str
    placer_order: str
    filler_order: str
    study_uid: str
    study_date: str
    study_time: str
    rows: int
    cols: int
    bits_stored: int
    photometric: str
    breasts: dict[str, BreastPlan]
    history: str
    split: str | None = None
    series_uids: dict[str, str] = field(default_factory=dict)  # "R_CC" -> UID
    sop_uids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderedFinding:
    finding: Finding
    box: Box | None  # stored pixel coordinates; None when not visible on this view


@dataclass(frozen=True)
class RenderedView:
    laterality: str
    view: str
    pixels: np.ndarray  # uint16 stored values in the study's photometric interpretation
    mask: np.ndarray  # bool breast (+ pectoral) region, stored orientation
    findings: list[RenderedFinding]


def _rng(seed: int, index: int, *purpose: str) -> np.random.Generator:
    key = [seed, index] + [int.from_bytes(hashlib.sha256(p.encode()).digest()[:4], "big")
                           for p in purpose]
    return np.random.default_rng(key)


_UID_NAMESPACE = uuid.UUID("6f1d3c1e-5b8e-4c59-9a43-2f0c4d1b7a10")


def _uid(seed: int, index: int, *purpose: str) -> str:
    """A UUID-derived UID (PS3.5 B.2) that is the same for the same seed and purpose."""
    name = "/".join(["mmbcd-synth", str(seed), str(index), *purpose])
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"


def _plan_breast(laterality: str, cancer: bool, config: SynthConfig,
                 rng: np.random.Generator) -> BreastPlan:
    findings: list[Finding] = []
    if cancer:
        kind = str(rng.choice(MALIGNANT_KINDS, p=_MALIGNANT_WEIGHTS))
        u = rng.uniform()
        visibility = "occult" if u < config.occult_fraction else (
            "subtle" if u < config.occult_fraction + config.subtle_fraction else "obvious")
        finding = sample_finding(kind, rng, visibility)
        if visibility != "occult" and rng.uniform() < config.one_view_fraction:
            finding = Finding(**{**finding.__dict__, "hidden_on": str(rng.choice(VIEWS))})
        findings.append(finding)
    if rng.uniform() < config.benign_finding_rate:
        kind = str(rng.choice(BENIGN_KINDS, p=_BENIGN_WEIGHTS))
        findings.append(sample_finding(kind, rng))
    return BreastPlan(laterality=laterality, shape=Breast.sample(rng), findings=tuple(findings))


def plan_study(seed: int, index: int, malignant: bool, config: SynthConfig,
               split: str | None = None) -> StudyPlan:
    """The plan of study ``index`` of the data set made with ``seed``.

    A malignant study has a cancer in one breast (both in ``bilateral_fraction`` of
    them); any breast may carry a benign look-alike.
    """
    rng = _rng(seed, index, "plan")
    cancer_sides: set[str] = set()
    if malignant:
        cancer_sides = set(LATERALITIES) if rng.uniform() < config.bilateral_fraction else {
            str(rng.choice(LATERALITIES))}
    breasts = {lat: _plan_breast(lat, lat in cancer_sides, config, rng) for lat in LATERALITIES}
    # Age is a risk factor, and the history states it: part of the text signal.
    age_shift = 7.0 * config.history_signal if malignant else 0.0
    age = int(np.clip(rng.normal(52.0 + age_shift, 10.0), 30, 89))
    study_day = dt.date(2024, 1, 2) + dt.timedelta(days=int(rng.integers(0, 700)))
    birth = study_day - dt.timedelta(days=int(age * 365.25 + rng.integers(0, 365)))
    seconds = int(rng.integers(7 * 3600, 19 * 3600))
    rows, cols = config.sizes[int(rng.integers(0, len(config.sizes)))]
    bits = int(config.bits_stored[int(rng.integers(0, len(config.bits_stored)))])
    photometric = "MONOCHROME1" if rng.uniform() < config.monochrome1_fraction else "MONOCHROME2"
    cancer_kind = next((f.kind for b in breasts.values() for f in b.findings if f.malignant), None)
    benign = [(f.kind, lat) for lat, b in breasts.items() for f in b.findings if not f.malignant]
    history = write_history(malignant=malignant, cancer_sides=sorted(cancer_sides),
                            cancer_kind=cancer_kind, benign_findings=benign, age=age,
                            signal=config.history_signal,
                            rng=_rng(seed, index, "history"))
    tag = f"{seed % 100000:05d}{index:06d}"
    views = [f"{lat}_{view}" for lat in LATERALITIES for view in VIEWS]
    return StudyPlan(
        seed=seed, index=index, malignant=malignant,
        patient_id=f"SYN{tag}",
        patient_name=f"{rng.choice(_LAST_NAMES)}^{rng.choice(_FIRST_NAMES)}",
        birth_date=birth.strftime("%Y%m%d"), age=age,
        accession=f"A{tag}", requested_procedure_id=f"RP{tag}",
        placer_order=f"PL{tag}", filler_order=f"FI{tag}",
        study_uid=_uid(seed, index, "study"),
        study_date=study_day.strftime("%Y%m%d"),
        study_time=f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}",
        rows=rows, cols=cols, bits_stored=bits, photometric=photometric,
        breasts=breasts, history=history, split=split,
        series_uids={v: _uid(seed, index, "series", v) for v in views},
        sop_uids={v: _uid(seed, index, "sop", v) for v in views},
    )


def _canonical_box_to_stored(box: Box, laterality: str, cols: int) -> Box:
    x0, y0, x1, y1 = box
    if laterality == "R":  # right breasts hang with the chest wall on the right
        return float(cols - x1), float(y0), float(cols - x0), float(y1)
    return float(x0), float(y0), float(x1), float(y1)


def render_view(plan: StudyPlan, laterality: str, view: str,
                with_findings: bool = True) -> RenderedView:
    """Pixels (stored values) and finding boxes (stored pixel coordinates) of one view.

    ``with_findings=False`` renders the same tissue without any finding, which lets
    tests locate exactly where the findings changed the image.
    """
    breast = plan.breasts[laterality]
    anatomy: ViewAnatomy = draw_view(breast.shape, view, plan.rows, plan.cols)
    image = tissue(anatomy, breast.shape.density,
                   _rng(plan.seed, plan.index, "tissue", laterality, view))
    rendered: list[RenderedFinding] = []
    for k, finding in enumerate(breast.findings):
        rng = _rng(plan.seed, plan.index, "finding", laterality, view, str(k))
        box = draw(image, finding, anatomy, rng) if with_findings else None
        rendered.append(RenderedFinding(finding, None if box is None else
                                        _canonical_box_to_stored(box, laterality, plan.cols)))
    noise = _rng(plan.seed, plan.index, "noise", laterality, view)
    # Quantum noise grows with signal a little; the background stays clean (air).
    image += anatomy.mask * noise.standard_normal(image.shape, dtype=np.float32) * (
        0.004 + 0.006 * np.sqrt(np.clip(image, 0.0, None)))
    top = (1 << plan.bits_stored) - 1
    values = np.clip(image / 1.15, 0.0, 1.0) * top
    stored = np.rint(values).astype(np.uint16)
    mask = anatomy.mask
    if laterality == "R":
        stored, mask = stored[:, ::-1], mask[:, ::-1]
    if plan.photometric == "MONOCHROME1":
        stored = (top - stored).astype(np.uint16)
    return RenderedView(laterality=laterality, view=view, pixels=np.ascontiguousarray(stored),
                        mask=np.ascontiguousarray(mask), findings=rendered)
