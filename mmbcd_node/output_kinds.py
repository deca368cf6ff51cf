"""The kinds of object the node makes for a result, and the SR classes of its report.

One enum serves the configuration check (``[results] kinds``, destinations' ``kinds``),
the result builders (each kind's series in the block ``[results] series_numbers``), the
``output_objects.kind`` column and the sender's routing. ``SR_CLASS_UIDS`` is the one map
of ``sr_class`` names to SOP Classes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from pydicom.uid import Comprehensive3DSRStorage, ComprehensiveSRStorage


class OutputKind(enum.StrEnum):
    """A kind of result object; its value is the name the configuration uses."""

    SR = "sr"  # TID 1500 Comprehensive SR (or Comprehensive 3D SR)
    CAD_SR = "cad_sr"  # Mammography CAD SR (TID 4000)
    SC = "sc"  # Secondary Capture with burned-in boxes
    GSPS = "gsps"  # Grayscale Softcopy Presentation State
    KO = "ko"  # IOCM rejection note withdrawing earlier objects

    @property
    def offset(self) -> int:
        """The kind's series in the block: ``series_numbers + offset``, so a PACS shows
        the same kind under the same series number in every study."""
        return _SERIES[self][0]

    @property
    def label(self) -> str:
        """What the kind's series description says after the disclaimer."""
        return _SERIES[self][1]


_SERIES = {
    OutputKind.SR: (0, "Structured report"),
    OutputKind.CAD_SR: (1, "Mammography CAD report"),
    OutputKind.SC: (2, "ROI overlay images"),
    OutputKind.GSPS: (3, "ROI annotations"),
    OutputKind.KO: (4, "Withdrawn results"),
}

# The kinds a site chooses among; rejection notes always go where their objects went.
RESULT_KINDS = (OutputKind.SR, OutputKind.CAD_SR, OutputKind.SC, OutputKind.GSPS)
DEFAULT_KINDS = ("sr", "cad_sr", "gsps", "sc")

# ``sr_class`` names -> SOP Class UID of the TID 1500 report.
SR_CLASS_UIDS = {"comprehensive": str(ComprehensiveSRStorage),
                 "comprehensive3d": str(Comprehensive3DSRStorage)}


def unknown_kinds(kinds: Iterable[str]) -> list[str]:
    """The names in ``kinds`` that are not result kinds a site can choose, sorted."""
    return sorted(set(kinds) - {kind.value for kind in RESULT_KINDS})
