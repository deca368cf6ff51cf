"""Laterality and view of a mammogram from its DICOM header (no pixel data needed).

Shared by the node's receiver (study completion) and the model's preprocessing, so
both read the header the same way.
"""

from __future__ import annotations

import re
from typing import Any

from pydicom import Dataset

# SNOMED / DICOM codes of CID 4014 (View for Mammography) for the views we use.
_VIEW_CODES = {
    "399162004": "CC", "R-10242": "CC",
    "399368009": "MLO", "R-10226": "MLO",
    "399260004": "ML", "R-10224": "ML",
    "399352003": "LM", "R-10228": "LM",
    "399099002": "XCCL", "R-1024A": "XCCL",
    "441555000": "XCCM", "R-1024B": "XCCM",
    "399110001": "SIO",
    "399196006": "FB",
}
# A view token, alone or glued to its side as archives write it: "CC", "R CC", "LMLO".
_TOKEN = re.compile(r"(?<![A-Z])[RL]?(XCCL|XCCM|MLO|CC|ML|LM)(?![A-Z])")
_SIDE = re.compile(r"(?<![A-Z])(?:(RIGHT|LEFT)|([RL])(?:XCCL|XCCM|MLO|CC|ML|LM)?)(?![A-Z])")


def laterality_of(ds: Dataset) -> str | None:
    """'R' or 'L' from Image Laterality, else the series Laterality, else one side named
    in the Series Description ("RIGHT CC", "L MLO", "RCC"); None if none says."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(getattr(ds, keyword, "") or "").strip().upper()
        if value in ("R", "L"):
            return value
    description = str(getattr(ds, "SeriesDescription", "") or "").upper()
    sides = {(word or letter)[0] for word, letter in _SIDE.findall(description)}
    return sides.pop() if len(sides) == 1 else None


def view_of(ds: Dataset) -> str | None:
    """The view (CC, MLO, ML, ...) from View Code Sequence, else View Position, else a
    CC/MLO token in Patient Orientation or Series Description; None if none says."""
    for item in getattr(ds, "ViewCodeSequence", None) or []:
        view = _VIEW_CODES.get(str(getattr(item, "CodeValue", "")).strip())
        if view:
            return view
    position = str(getattr(ds, "ViewPosition", "") or "").strip().upper()
    if position:
        match = _TOKEN.search(position)
        if match:
            return match.group(1)
    for keyword in ("PatientOrientation", "SeriesDescription"):
        raw: Any = getattr(ds, keyword, None)
        # multi-valued elements (MultiValue) join like their DICOM encoding
        text = "\\".join(str(v) for v in raw) if hasattr(raw, "__iter__") and \
            not isinstance(raw, str) else str(raw or "")
        match = _TOKEN.search(text.upper())
        if match:
            return match.group(1)
    return None
