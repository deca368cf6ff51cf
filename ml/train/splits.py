"""Which studies train, which choose the checkpoint and which measure the result.

Studies (and so patients) never straddle splits. The validation split serves early
stopping, checkpoint choice and the operating threshold; the test split is a separate
data set (made with another seed) or the studies marked ``test`` in a manifest, and is
never looked at while training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ml.synth.dataset import StudyRecord


class SplitError(ValueError):
    """Splits that overlap or are empty; the message names the split and a shared study."""


@dataclass(frozen=True)
class Splits:
    train: list[StudyRecord]
    val: list[StudyRecord]


def training_splits(studies: Sequence[StudyRecord], val_fraction: float, seed: int) -> Splits:
    """Train and validation studies of a data set.

    Uses the manifest's ``train``/``val`` marks when it has a ``val`` split; otherwise
    draws ``val_fraction`` of the unmarked and ``train`` studies, stratified by label, with
    ``seed``. Studies marked ``test`` are never used. Raises ``SplitError`` if either
    split ends up empty.
    """
    usable = [s for s in studies if s.split != "test"]
    if any(s.split == "val" for s in usable):
        train = [s for s in usable if s.split == "train"]
        val = [s for s in usable if s.split == "val"]
    else:
        rng = np.random.default_rng([seed, 7])
        val_ids: set[str] = set()
        for label in (0, 1):
            members = [s.study_uid for s in usable if s.label == label]
            picked = rng.permutation(len(members))[:int(round(val_fraction * len(members)))]
            val_ids.update(members[i] for i in picked)
        train = [s for s in usable if s.study_uid not in val_ids]
        val = [s for s in usable if s.study_uid in val_ids]
    for name, part in (("train", train), ("val", val)):
        if not part:
            raise SplitError(f"the {name} split is empty ({len(usable)} usable studies)")
    check_disjoint({"train": train, "val": val})
    return Splits(train, val)


def test_studies(studies: Sequence[StudyRecord], separate: bool) -> list[StudyRecord]:
    """The test studies: all of a separate test data set, else those marked ``test``."""
    return list(studies) if separate else [s for s in studies if s.split == "test"]


def check_disjoint(splits: dict[str, Sequence[StudyRecord]]) -> None:
    """Raise ``SplitError`` if two splits share a study UID or a patient ID."""
    names = list(splits)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            for attribute in ("study_uid", "patient_id"):
                shared = ({getattr(s, attribute) for s in splits[first]}
                          & {getattr(s, attribute) for s in splits[second]})
                if shared:
                    raise SplitError(f"the {first} and {second} splits share "
                                     f"{attribute} {sorted(shared)[0]}")
