"""``studies``: what the node holds."""

from __future__ import annotations

import typer
from sqlalchemy import func, select

from mmbcd_node.admin.context import cli_context
from mmbcd_node.admin.output import emit_records
from mmbcd_node.db.models import Instance, Study

STUDY_COLUMNS = ("study_uid", "state", "patient_id", "accession_number", "study_date",
                 "instances", "last_received_at")


def register(app: typer.Typer) -> None:
    @app.command("studies")
    def studies(ctx: typer.Context,
                state: str | None = typer.Option(None, help="Only studies in this state."),
                patient_id: str | None = typer.Option(None, "--patient-id"),
                accession: str | None = typer.Option(None, "--accession"),
                date: str | None = typer.Option(None, help="Study date YYYYMMDD."),
                limit: int = typer.Option(100, help="At most this many, newest first."),
                json_lines: bool = typer.Option(False, "--json", help="JSON lines.")) -> None:
        """List studies, newest first."""
        count = (select(func.count(Instance.id)).where(Instance.study_id == Study.id)
                 .scalar_subquery())
        query = select(Study, count).order_by(Study.last_received_at.desc()).limit(limit)
        if state:
            query = query.where(Study.state == state)
        if patient_id:
            query = query.where(Study.patient_id == patient_id)
        if accession:
            query = query.where(Study.accession_number == accession)
        if date:
            query = query.where(Study.study_date == date)
        with cli_context(ctx).sessions() as session:
            rows = session.execute(query).all()
        records = [{"study_uid": s.study_uid, "state": s.state, "patient_id": s.patient_id,
                    "accession_number": s.accession_number, "study_date": s.study_date,
                    "instances": n, "last_received_at": s.last_received_at} for s, n in rows]
        emit_records(records, STUDY_COLUMNS, title="Studies", as_json=json_lines)
