"""The coded requested procedure of an order (OBR-4), as a DICOM code reads it.

The order keeps OBR-4 as ER7 in the standard delimiters (``orders.procedure_code``). Its
first triplet (identifier, text, name of coding system: HL7 CE/CWE) becomes the
Requested Procedure Code of the result objects; the alternate triplet stands in when the
first has no coding system. A code without a coding system cannot be a DICOM code and
gives none.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmbcd_node.orders.text import unescape

STANDARD_SEPARATORS = "|^~\\&"


@dataclass(frozen=True)
class ProcedureCode:
    value: str
    scheme: str
    meaning: str


def procedure_code(er7: str | None) -> ProcedureCode | None:
    """The code of an OBR-4 value (``code^text^system^alt code^alt text^alt system``)."""
    if not er7:
        return None
    first = er7.split("~", 1)[0]
    parts = [unescape(part, separators=STANDARD_SEPARATORS, codec="utf-8").strip()
             for part in first.split("^")]
    parts += [""] * (6 - len(parts))
    for value, meaning, scheme in (parts[0:3], parts[3:6]):
        if value and scheme:
            return ProcedureCode(value=value, scheme=scheme, meaning=meaning or value)
    return None
