"""Keyword masking: only the top tf-idf words of the training histories are dropped, each
with its probability, and the draw changes from epoch to epoch (reproducibly)."""

from __future__ import annotations

from ml.train.keywords import WORD, KeywordMasker, top_keywords

HISTORIES = [
    "hard lump right breast, family history",
    "hard lump left breast",
    "screening, no complaints",
    "screening mammogram, family history of breast cancer",
    "nipple discharge right",
]


def test_top_keywords_are_ranked_by_summed_tfidf() -> None:
    keywords = top_keywords(HISTORIES, count=3)
    assert len(keywords) == 3
    # 'breast' (4 histories), then the words of two histories each
    assert keywords[0] == "breast"
    assert set(keywords) <= {"breast", "hard", "lump", "screening", "family", "history", "right"}
    assert top_keywords(HISTORIES, count=100)[:3] == keywords  # count only cuts the list


def test_masking_drops_only_top_keywords_and_keeps_everything_else() -> None:
    masker = KeywordMasker(frozenset({"lump", "family", "breast"}), p=0.5, seed=3)
    text = "Hard LUMP right breast, family history; lump again"
    for epoch in range(40):
        masked = masker.mask(text, epoch, sample=0)
        kept = [w.lower() for w in WORD.findall(masked)]
        assert [w for w in kept if w not in {"lump", "family", "breast"}] == \
            ["hard", "right", "history", "again"]
        # a dropped keyword goes with all its occurrences
        assert kept.count("lump") in (0, 2)


def test_masking_changes_between_epochs_and_repeats_for_the_same_epoch() -> None:
    masker = KeywordMasker(frozenset(top_keywords(HISTORIES, 100)), p=0.2, seed=0)
    text = HISTORIES[3]
    per_epoch = [masker.mask(text, epoch, sample=7) for epoch in range(12)]
    assert len(set(per_epoch)) > 2
    assert per_epoch == [masker.mask(text, epoch, sample=7) for epoch in range(12)]
    # and samples of one epoch draw independently
    assert any(masker.mask(text, e, 7) != masker.mask(text, e, 8) for e in range(12))


def test_each_keyword_is_dropped_with_the_configured_probability() -> None:
    masker = KeywordMasker(frozenset({"lump"}), p=0.2, seed=1)
    dropped = sum("lump" not in masker.mask("hard lump", epoch, s)
                  for epoch in range(20) for s in range(100))
    assert 0.17 < dropped / 2000 < 0.23


def test_no_masking_when_p_is_zero() -> None:
    masker = KeywordMasker(frozenset({"lump"}), p=0.0)
    assert masker.mask("hard lump", 5, 5) == "hard lump"
