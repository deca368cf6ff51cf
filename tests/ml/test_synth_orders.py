"""Synthetic clinical histories carry part of the signal, not all of it, and every study
comes with an HL7 v2.3.1 ORM^O01 order that a real parser reads back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import hl7
import numpy as np
import pytest
from hl7apy.parser import parse_message
from sklearn.metrics import roc_auc_score

from ml.synth.config import SynthConfig
from ml.synth.generate import assign_labels, generate_dataset
from ml.synth.order import order_message
from ml.synth.study import plan_study

# What a reader would count as worrying or reassuring, written independently of the
# generator's phrase lists.
_WORRYING = ("hard", "irregular", "fixed", "retraction", "inversion", "bloody", "dimpling",
             "orange", "malignant", "recall", "dcis", "atypical", "brca", "irradiation",
             "mother", "sister", "aunt", "strong")
_REASSURING = ("cyclical", "menses", "mastalgia", "clear", "mobile", "fibroadenoma", "cyst",
               "screening", "screen", "asymptomatic", "normal", "trauma", "negative", "nil")


def _keyword_score(text: str) -> int:
    words = text.lower()
    return sum(w in words for w in _WORRYING) - sum(w in words for w in _REASSURING)


def _histories(count: int, signal: float, seed: int = 31) -> tuple[list[str], list[int]]:
    config = SynthConfig(history_signal=signal)
    labels = assign_labels(count, 0.5, seed)
    plans = [plan_study(seed, i, labels[i], config) for i in range(count)]
    return [p.history for p in plans], [int(p.malignant) for p in plans]


def test_keywords_in_histories_predict_cancer_but_imperfectly() -> None:
    texts, labels = _histories(200, 1.0)
    auc = roc_auc_score(labels, [_keyword_score(t) for t in texts])
    assert 0.6 < auc < 0.95


def test_a_stronger_signal_makes_the_words_more_telling_but_never_certain() -> None:
    def keyword_auc(signal: float) -> float:
        texts, labels = _histories(200, signal)
        return roc_auc_score(labels, [_keyword_score(t) for t in texts])

    default = SynthConfig().history_signal
    assert keyword_auc(1.0) < keyword_auc(default) < keyword_auc(1.5) < 0.95
    with pytest.raises(ValueError, match="history_signal"):
        SynthConfig(history_signal=1.6)


def test_without_signal_histories_say_nothing_about_the_label() -> None:
    texts, labels = _histories(200, 0.0)
    auc = roc_auc_score(labels, [_keyword_score(t) for t in texts])
    assert 0.35 < auc < 0.65


def test_histories_vary() -> None:
    texts, _ = _histories(200, 1.0)
    assert len(set(texts)) == 200
    starts = {t.split()[0].strip(".,;-").lower() for t in texts}
    assert len(starts) > 20  # ages and age formats differ
    assert any(t.isupper() for t in texts) and any(not t.isupper() for t in texts)


def _order(plan) -> tuple[str, object, hl7.Message]:
    text = order_message(plan)
    return text, parse_message(text, find_groups=False), hl7.parse(text)


def test_order_parses_and_carries_patient_accession_uid_and_history() -> None:
    plan = plan_study(12, 3, malignant=True, config=SynthConfig())
    text, message, plain = _order(plan)
    assert "\n" not in text and text.count("\r") == 5
    assert [s.name for s in message.children] == ["MSH", "PID", "PV1", "ORC", "OBR", "ZDS"]
    assert message.msh.msh_9.to_er7() == "ORM^O01"
    assert message.msh.msh_12.value == "2.3.1"
    assert message.pid.pid_3.pid_3_1.value == plan.patient_id
    assert message.pid.pid_5.to_er7() == plan.patient_name
    assert message.orc.orc_1.value == "NW"
    assert message.orc.orc_2.to_er7().split("^")[0] == plan.placer_order
    assert message.orc.orc_3.to_er7().split("^")[0] == plan.filler_order
    assert message.obr.obr_18.value == plan.accession
    assert message.obr.obr_19.value == plan.requested_procedure_id
    assert message.zds.zds_1.to_er7().split("^")[0] == plan.study_uid
    assert plain.unescape(str(plain.segment("OBR")[13])) == plan.history


def test_special_characters_in_the_history_are_escaped() -> None:
    plan = plan_study(12, 4, malignant=False, config=SynthConfig())
    history = "lump R^L | pain & swelling ~2/52 \\ see notes"
    plan = dataclasses.replace(plan, history=history)
    text, message, plain = _order(plan)
    obr13 = message.obr.obr_13.to_er7()
    assert obr13 == r"lump R\S\L \F\ pain \T\ swelling \R\2/52 \E\ see notes"
    assert len(plain.segment("OBR")) == len(_order(plan_study(12, 4, False, SynthConfig()))[2]
                                            .segment("OBR"))  # no field was split
    assert plain.unescape(str(plain.segment("OBR")[13])) == history


def test_every_study_has_an_order_file_framable_for_mllp(tmp_path: Path) -> None:
    studies = generate_dataset(tmp_path / "set", 3, seed=2,
                               config=SynthConfig(sizes=((128, 104),)))
    for study in studies:
        raw = study.order_path.read_bytes()
        assert not set(raw) & {0x0B, 0x1C}  # MLLP start / end block bytes never occur
        parsed = hl7.parse(raw.decode("latin-1"))
        assert str(parsed.segment("OBR")[18]) == study.accession
        assert plain_history(parsed) == study.history


def plain_history(message: hl7.Message) -> str:
    return message.unescape(str(message.segment("OBR")[13]))


@pytest.mark.parametrize("fraction", [0.0, 0.3, 1.0])
def test_label_assignment_is_exact(fraction: float) -> None:
    labels = assign_labels(50, fraction, seed=1)
    assert sum(labels) == round(50 * fraction)
    assert labels == assign_labels(50, fraction, seed=1)
    if 0 < fraction < 1:
        assert labels != assign_labels(50, fraction, seed=2)


def test_cancers_come_with_suspicious_words_more_often_than_benign_studies() -> None:
    texts, labels = _histories(200, 1.0)
    scores = np.array([_keyword_score(t) for t in texts])
    y = np.array(labels)
    assert scores[y == 1].mean() > scores[y == 0].mean()
    # ... but not always: some cancers read as routine screens.
    assert (scores[y == 1] <= 0).any()


def test_benign_look_alikes_are_often_explained_whatever_the_label() -> None:
    explained = {0: [], 1: []}
    config = SynthConfig()
    for i in range(300):
        plan = plan_study(41, i, malignant=i % 2 == 0, config=config)
        benign = [f.kind for b in plan.breasts.values() for f in b.findings if not f.malignant]
        if "circumscribed_mass" in benign or "post_surgical_scar" in benign:
            text = plan.history.lower()
            words = ("fibroadenoma", "fa ", "cyst", "excision", "scar", "biopsy")
            explained[int(plan.malignant)].append(any(w in text for w in words))
    for label in (0, 1):
        assert len(explained[label]) > 20
        assert 0.55 < np.mean(explained[label]) < 0.95
