"""A mammogram's view, coded as the SR templates want it (CID 4014 and CID 4015).

Units and archives still write the SNOMED RT codes of older editions (``R-10242``,
``SRT`` or ``SNM3``, "cranio-caudal"); PS3.16 has since moved to SNOMED CT. The image
libraries of the SR documents carry the current code: a legacy one is translated with
pydicom's SNOMED RT to CT table, and an image without a View Code Sequence gets the
code of the view its header names.
"""

from __future__ import annotations

from highdicom.sr import CodedConcept
from pydicom import Dataset
from pydicom.sr._snomed_dict import mapping as SNOMED_MAPPING  # pinned with pydicom

from mmbcd_node.results import codes

LEGACY_SNOMED = frozenset({"SRT", "SNM3", "99SDM"})


def current_code(item: Dataset) -> CodedConcept | None:
    """The code of a Code Sequence item, in SNOMED CT where it was SNOMED RT; None for an
    item without a value and a scheme."""
    value, scheme = str(item.get("CodeValue") or ""), str(item.get("CodingSchemeDesignator")
                                                          or "")
    if not value or not scheme:
        return None
    meaning = str(item.get("CodeMeaning") or value)
    if scheme in LEGACY_SNOMED and value in SNOMED_MAPPING["SRT"]:
        return CodedConcept(SNOMED_MAPPING["SRT"][value], "SCT", meaning)
    return CodedConcept(value, scheme, meaning)


def image_view(ds: Dataset, view_name: str | None) -> tuple[CodedConcept | None,
                                                           list[CodedConcept]]:
    """The image's view and view modifiers, current codes; the view from ``view_name``
    (``CC``, ``MLO``, ...) when the image codes none."""
    for item in ds.get("ViewCodeSequence", [])[:1]:
        view = current_code(item)
        if view is not None:
            modifiers = [current_code(m) for m in item.get("ViewModifierCodeSequence", [])]
            return view, [m for m in modifiers if m is not None]
    return codes.MAMMOGRAPHY_VIEW.get(view_name or ""), []
