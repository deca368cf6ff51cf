"""Clinical histories as a referrer writes them on an imaging order.

Templates mix the complaint (with side and quadrant), prior history, screening
context, family history, noise words, abbreviations and typos. The words carry part of
the malignancy signal, not all of it: suspicious complaints are more frequent, not
certain, for cancers; plenty of cancers arrive as routine screens and plenty of benign
studies carry alarming words. With ``signal=1`` a bag-of-words classifier reaches a
study-level ROC AUC of about 0.86, with the default ``signal=1.2`` about 0.92;
``signal=0`` makes the text independent of the label.
"""

from __future__ import annotations

import numpy as np

_SUSPICIOUS = ("hard painless lump", "firm irregular lump", "fixed hard mass",
               "new nipple retraction", "bloody nipple discharge", "skin dimpling",
               "peau d'orange", "lump size ^ over weeks", "palpable mass, ?malignant",
               "hard lump & axillary node", "nipple inversion, new")
_REASSURING = ("cyclical breast pain", "tender lumpiness before menses", "mastalgia",
               "clear discharge both nipples", "soft mobile lump", "known fibroadenoma f/u",
               "simple cyst aspirated before", "generalised lumpiness", "breast pain, no lump",
               "tender swelling after trauma")
_NEUTRAL = ("lump", "breast lump", "discomfort", "asymmetry noted by GP", "thickening",
            "lump felt on self exam", "area of concern", "nodularity")
_SCREENING = ("Routine screening mammogram", "Screening, asymptomatic", "Annual screen",
              "Biennial screening round", "Screening mammography", "Asymptomatic screening")
_RECALL = ("Recalled from screening for assessment", "Recall: ?abnormality on screen")
_PRIOR_RISKY = ("prev lumpectomy for DCIS", "h/o atypical ductal hyperplasia",
                "BRCA2 carrier", "prior chest irradiation", "on HRT 10 yrs")
_PRIOR_PLAIN = ("previous mammo normal", "prior benign biopsy", "no previous imaging",
                "post menopausal", "nulliparous", "implants - none", "G2P2",
                "last mammo 2 yrs ago - normal")
_FAMILY_POSITIVE = ("mother breast ca at {n}", "sister breast cancer age {n}",
                    "FH: maternal aunt breast ca", "strong FH breast/ovarian ca",
                    "mother & sister breast ca")
_FAMILY_NEGATIVE = ("no FH", "FH negative", "FHx: nil", "no family history of breast ca",
                    "FH: father colon ca")
_NOISE = ("please assess", "kindly evaluate", "r/o malignancy", "thanks", "pt anxious",
          "ref by GP", "see prev report", "?cyst", "urgent pls", "query", "for review",
          "pt requests imaging")
_AGE = ("{a}F", "{a} yo female", "{a}-year-old woman", "F {a}", "Age {a}", "{a}y F")
_SIDE = {"R": ("right", "R", "rt"), "L": ("left", "L", "lt")}
_PLACE = ("upper outer quadrant", "UOQ", "at 2 o'clock", "retroareolar", "inner quadrant",
          "at 10 o'clock", "lower outer", "axillary tail")
_DURATION = ("for 3 weeks", "x 2/12", "since 1 month", "~6 weeks", "for few days",
             "since last month")
_EXPLAINED = {
    "circumscribed_mass": ("known fibroadenoma {side} breast", "FA {side} breast, stable",
                           "simple cyst {side} on US", "known cysts {side} breast"),
    "coarse_calcifications": ("benign calcs on prior mammo", "known calcified FA {side}",
                              "previous: benign coarse calcification"),
    "lymph_node": ("known intramammary LN {side}", "benign {side} axillary node on US"),
    "post_surgical_scar": ("prev benign excision {side} breast", "s/p {side} biopsy, scar",
                           "surgical scar {side} breast (benign FA removed)"),
}
_SEPARATORS = (". ", "; ", ", ", " - ", ". ")


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(0, len(options)))]


def _typos(text: str, rng: np.random.Generator, rate: float) -> str:
    """Swap, drop or double letters in a few words, as hurried typing does."""
    words = text.split(" ")
    for i, word in enumerate(words):
        if len(word) > 3 and word.isalpha() and rng.uniform() < rate:
            j = int(rng.integers(1, len(word) - 1))
            action = int(rng.integers(0, 3))
            if action == 0:
                word = word[:j] + word[j + 1] + word[j] + word[j + 2:]
            elif action == 1:
                word = word[:j] + word[j + 1:]
            else:
                word = word[:j] + word[j] + word[j:]
            words[i] = word
    return " ".join(words)


def write_history(malignant: bool, cancer_sides: list[str], cancer_kind: str | None,
                  benign_findings: list[tuple[str, str]], age: int, signal: float,
                  rng: np.random.Generator) -> str:
    """One clinical-history text for a study.

    ``signal`` (0..1) scales how much the label shifts the choice of phrases;
    ``cancer_sides`` is where the cancer is (the complaint names that side more often
    than not); ``benign_findings`` are (kind, side) of the benign look-alikes, which the
    history often explains (a known fibroadenoma, a previous excision). Returns a single
    line of free text, possibly with HL7 special characters (``&``, ``^``, ``~``) that
    the order writer must escape.
    """
    def leaning(p_malignant: float, p_benign: float) -> float:
        base = 0.5 * (p_malignant + p_benign)
        return base + signal * ((p_malignant if malignant else p_benign) - base)

    parts: list[str] = [_pick(rng, _AGE).format(a=age)]
    # Calcification cancers are mostly found on screening; masses are mostly felt.
    screened = 0.5 if cancer_kind == "fine_calcifications" else 0.25
    if rng.uniform() < leaning(screened, 0.55):
        parts.append(_pick(rng, _SCREENING))
        if rng.uniform() < leaning(0.2, 0.05):
            parts.append(_pick(rng, _NEUTRAL))
    else:
        if rng.uniform() < leaning(0.15, 0.05):
            parts.append(_pick(rng, _RECALL))
        u = rng.uniform()
        p_susp, p_reassure = leaning(0.78, 0.08), leaning(0.06, 0.60)
        pool = _SUSPICIOUS if u < p_susp else (
            _REASSURING if u < p_susp + p_reassure else _NEUTRAL)
        complaint = _pick(rng, pool)
        if cancer_sides and rng.uniform() < leaning(0.8, 0.5):
            side = cancer_sides[int(rng.integers(0, len(cancer_sides)))]
        else:
            side = _pick(rng, ("R", "L"))
        if rng.uniform() < 0.8:
            complaint += f" {_pick(rng, _SIDE[side])} breast"
            if rng.uniform() < 0.5:
                complaint += f" {_pick(rng, _PLACE)}"
        if rng.uniform() < 0.6:
            complaint += f" {_pick(rng, _DURATION)}"
        parts.append(("c/o " if rng.uniform() < 0.4 else "") + complaint)
    for kind, side in benign_findings:
        # The explanation is there whatever the label: benign look-alikes are as
        # frequent in cancer studies; ``signal`` only says how often it is written.
        if rng.uniform() < min(0.85 * signal, 0.9):
            parts.append(_pick(rng, _EXPLAINED[kind]).format(side=_pick(rng, _SIDE[side])))
    if rng.uniform() < 0.5:
        risky = rng.uniform() < leaning(0.40, 0.08)
        parts.append(_pick(rng, _PRIOR_RISKY if risky else _PRIOR_PLAIN))
    if rng.uniform() < 0.65:
        positive = rng.uniform() < leaning(0.55, 0.12)
        parts.append(_pick(rng, _FAMILY_POSITIVE if positive else _FAMILY_NEGATIVE).format(
            n=int(rng.integers(38, 75))))
    for _ in range(int(rng.integers(0, 3))):
        parts.append(_pick(rng, _NOISE))
    head, tail = parts[0], parts[1:]
    order = rng.permutation(len(tail))
    text = head + _pick(rng, _SEPARATORS) + _pick(rng, _SEPARATORS).join(tail[i] for i in order)
    text = _typos(text, rng, rate=0.04)
    if rng.uniform() < 0.1:
        text = text.upper()
    return text
