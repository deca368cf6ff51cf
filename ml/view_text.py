"""The text the text encoder reads for one view: the study's clinical history, and with
the ``side`` context the view's breast in front of it.

A history that says "lump left breast" means something for the left views and something
else for the right ones; with ``side`` the encoder reads ``left breast. lump left
breast`` and ``right breast. lump left breast``. A study without a history still names
the side. The context is a property of the trained model (``model.text_encoder.context``
in the bundle manifest): training, evaluation and the node build the text here alone.
"""

from __future__ import annotations

CONTEXTS = ("none", "side")
SIDE_WORDS = {"R": "right breast", "L": "left breast"}
UNKNOWN_SIDE = "breast of unknown side"


class ContextError(ValueError):
    """An unknown text context."""


def check_context(context: str) -> str:
    if context not in CONTEXTS:
        raise ContextError(f"text context must be one of {CONTEXTS}, not {context!r}")
    return context


def view_text(history: str, laterality: str | None, context: str) -> str:
    """What the text encoder reads for a view of ``laterality`` ("R", "L" or None)."""
    if check_context(context) == "none":
        return history
    side = SIDE_WORDS.get(laterality or "", UNKNOWN_SIDE)
    history = history.strip()
    return f"{side}. {history}" if history else f"{side}."
