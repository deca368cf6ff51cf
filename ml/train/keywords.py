"""Keyword masking (paper Sec. 3): the top tf-idf words of the training histories are
each dropped with probability ``p`` per sample per epoch, so the model cannot lean on a
handful of words.

The draw for (epoch, sample) comes from its own generator seeded by (seed, epoch,
sample), so a run is reproducible and every epoch masks afresh.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

# The token pattern of the vectorizer, reused to find words to drop in a text.
WORD = re.compile(r"(?u)\b\w\w+\b")


def top_keywords(histories: Sequence[str], count: int = 100) -> list[str]:
    """The ``count`` words with the highest summed tf-idf over ``histories`` (lowercased),
    highest first; ties broken alphabetically."""
    vectorizer = TfidfVectorizer(lowercase=True, token_pattern=WORD.pattern)
    matrix = vectorizer.fit_transform(list(histories))
    totals = np.asarray(matrix.sum(axis=0)).ravel()
    words = vectorizer.get_feature_names_out()
    order = sorted(range(len(words)), key=lambda i: (-totals[i], words[i]))
    return [str(words[i]) for i in order[:count]]


@dataclass(frozen=True)
class KeywordMasker:
    """Drops each keyword present in a text with probability ``p`` (all its occurrences)."""

    keywords: frozenset[str]
    p: float = 0.2
    seed: int = 0

    def mask(self, text: str, epoch: int, sample: int) -> str:
        """``text`` without the keywords drawn for (``epoch``, ``sample``); other words,
        spacing and punctuation are kept."""
        present = sorted({w.lower() for w in WORD.findall(text)} & self.keywords)
        if not present or self.p <= 0:
            return text
        rng = np.random.default_rng([self.seed, epoch, sample])
        dropped = {w for w, u in zip(present, rng.uniform(size=len(present)), strict=True)
                   if u < self.p}
        if not dropped:
            return text
        return WORD.sub(lambda m: "" if m.group(0).lower() in dropped else m.group(0), text)
