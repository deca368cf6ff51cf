"""Text values cut to what their Value Representation holds, saying so when cut.

A PACS or validator refuses a value longer than its VR allows (PS3.5 Table 6.2-1), and
order fields from a RIS often are. ``fit`` keeps the start of the value and ends it with
a marker, so a reader sees that it was shortened; where a template allows, the builder
also writes the whole text into a TEXT item.
"""

from __future__ import annotations

MAX_LENGTH = {"SH": 16, "LO": 64, "PN": 64, "ST": 1024, "LT": 10240, "UT": 2**32 - 2}
MARKER = "..."


def fit(value: str, vr: str) -> str:
    """``value`` as it can be written in ``vr``: unchanged when it fits, else cut so that
    it ends with ``MARKER`` within the VR's maximum length."""
    limit = MAX_LENGTH[vr]
    if len(value) <= limit:
        return value
    return value[:limit - len(MARKER)].rstrip() + MARKER


def was_cut(value: str, vr: str) -> bool:
    """Whether ``fit`` shortens ``value`` for ``vr``."""
    return fit(value, vr) != value
