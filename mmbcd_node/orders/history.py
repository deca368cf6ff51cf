"""The clinical history a study is run with: from its newest live linked order.

The worker calls ``history_for_study`` when it starts a job, not when the job is
queued, so an order update (XO/XX) that arrives before processing changes the history
the model reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from mmbcd_node.match.matcher import live_orders
from mmbcd_node.orders.procedure_code import ProcedureCode, procedure_code


@dataclass(frozen=True)
class StudyHistory:
    """The history text and where it came from, plus what a result cites of the order."""

    text: str
    sources: list[tuple[str, str]] = field(default_factory=list)  # (HL7 field, text)
    order_id: int | None = None
    accession_number: str | None = None
    issuer_of_accession: str | None = None
    placer_number: str | None = None
    filler_number: str | None = None
    reason: str | None = None
    procedure: str | None = None
    requested_procedure_id: str | None = None
    procedure_code: ProcedureCode | None = None  # OBR-4 as a code

    @property
    def source_fields(self) -> list[str]:
        """The HL7 fields the text was taken from, e.g. ``["OBR-13", "NTE-3"]``."""
        return [name for name, _ in self.sources]


def history_for_study(session: Session, study_id: int) -> StudyHistory | None:
    """The history of the newest non-cancelled order linked to the study.

    Returns None when no live order is linked (the job then runs without history and
    the result says so). ``text`` is OBR-13, OBR-31 and NTE-3 (or what ``[hl7.mapping]
    history`` names), unescaped, one part per line; it may be empty when the order
    carries no history. Reads only; never fails for a study without orders.
    """
    orders = live_orders(session, study_id)
    if not orders:
        return None
    order = orders[0]
    sources = [(str(name), str(text)) for name, text in json.loads(order.history_sources or "[]")]
    return StudyHistory(
        text=order.history_text, sources=sources, order_id=order.id,
        accession_number=order.accession_number, issuer_of_accession=order.issuer_of_accession,
        placer_number=order.placer_number, filler_number=order.filler_number,
        reason=order.reason, procedure=order.procedure,
        requested_procedure_id=order.requested_procedure_id,
        procedure_code=procedure_code(order.procedure_code))
