"""The text of a view: the history, with the side in front under the ``side`` context;
the cache's texts per study side, masked and dropped histories included."""

from __future__ import annotations

import pytest
import torch

from ml.train.view_cache import ViewCache
from ml.train.view_texts import cache_texts, without_history
from ml.view_text import ContextError, view_text


def test_view_text_names_the_side_before_the_history() -> None:
    assert view_text("lump left breast", "L", "none") == "lump left breast"
    assert view_text("lump left breast", "L", "side") == "left breast. lump left breast"
    assert view_text("lump left breast", "R", "side") == "right breast. lump left breast"
    assert view_text("  ", "R", "side") == "right breast."
    assert view_text("pain", None, "side") == "breast of unknown side. pain"
    with pytest.raises(ContextError):
        view_text("pain", "R", "view")


def cache() -> ViewCache:
    n = 6
    return ViewCache(crops=torch.zeros(n, 1, 2, 2), mask=torch.ones(n, 1, dtype=torch.bool),
                     boxes=torch.zeros(n, 1, 4), scores=torch.zeros(n, 1),
                     labels=torch.zeros(n, dtype=torch.long),
                     study=torch.tensor([0, 0, 0, 1, 1, 1]),
                     histories=["lump left", "screening"], study_uids=["a", "b"],
                     lateralities=["R", "L", "L", "R", "L", "R"],
                     views=["CC", "CC", "MLO", "CC", "CC", "MLO"], paths=[""] * n,
                     breast_labels={})


def test_cache_texts_one_per_study_or_per_study_side() -> None:
    plain = cache_texts(cache(), "none")
    assert plain.texts == ["lump left", "screening"]
    assert plain.index.tolist() == [0, 0, 0, 1, 1, 1]
    sided = cache_texts(cache(), "side")
    assert sided.texts == ["right breast. lump left", "left breast. lump left",
                           "right breast. screening", "left breast. screening"]
    assert sided.index.tolist() == [0, 1, 1, 2, 3, 2]
    masked = cache_texts(cache(), "side", histories=["lump", "screening"])
    assert masked.texts[0] == "right breast. lump"


def test_dropped_views_read_no_history_but_keep_their_side() -> None:
    dropped = torch.tensor([True, False, False, False, True, False])
    texts = cache_texts(cache(), "side", dropped=dropped)
    rows = [texts.texts[i] for i in texts.index.tolist()]
    assert rows == ["right breast.", "left breast. lump left", "left breast. lump left",
                    "right breast. screening", "left breast.", "right breast. screening"]
    bare = without_history(cache(), "none")
    assert bare.texts == [""] and bare.index.tolist() == [0] * 6
