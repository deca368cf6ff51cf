"""The texts of a view cache: one per study (or per study side with the ``side``
context), each view pointing at its row; in training, the epoch's masked histories and
the views whose history is dropped (history dropout: a study without an order is then
in distribution)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ml.train.view_cache import ViewCache
from ml.view_text import view_text


@dataclass(frozen=True)
class CacheTexts:
    texts: list[str]  # distinct texts, in first-seen order
    index: Tensor  # (N,) long: the row of ``texts`` of each cached view


def cache_texts(cache: ViewCache, context: str, histories: Sequence[str] | None = None,
                dropped: Tensor | None = None) -> CacheTexts:
    """The cache's texts under ``context``: ``histories`` per study (default the cache's
    own), and no history at all for the views ``dropped`` (N,) marks."""
    histories = cache.histories if histories is None else histories
    rows: dict[tuple[int, str | None], int] = {}
    texts: list[str] = []
    index = []
    for i in range(len(cache)):
        side = cache.lateralities[i] if context != "none" else None
        drop = dropped is not None and bool(dropped[i])
        study = -1 if drop else int(cache.study[i])
        key = (study, side)
        if key not in rows:
            rows[key] = len(texts)
            texts.append(view_text("" if drop else histories[study], side, context))
        index.append(rows[key])
    return CacheTexts(texts, torch.tensor(index, dtype=torch.long))


def without_history(cache: ViewCache, context: str) -> CacheTexts:
    """Every view as if its study came without an order."""
    return cache_texts(cache, context, dropped=torch.ones(len(cache), dtype=torch.bool))
