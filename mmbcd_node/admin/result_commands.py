"""``results``, ``resend`` and ``echo``: what the model found and where it went."""

from __future__ import annotations

import json

import typer
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mmbcd_node.admin.context import cli_context
from mmbcd_node.admin.output import emit_records
from mmbcd_node.db.audit import os_user, record_event
from mmbcd_node.db.models import Study
from mmbcd_node.db.result_models import Delivery, OutputObject, Result, ResultState
from mmbcd_node.db.session import transaction
from mmbcd_node.send.deliveries import requeue_deliveries
from mmbcd_node.send.store_scu import DestinationUnavailable, echo

SCORE_COLUMNS = ("result", "state", "study", "right", "left", "threshold", "history",
                 "views", "not_attempted", "model", "created_at", "operating_point")
ROI_COLUMNS = ("view", "laterality", "rank", "box", "detector_score", "attention")
DELIVERY_COLUMNS = ("destination", "kind", "state", "count")


def result_records(session: Session, study_id: int, *, include_old: bool = False
                   ) -> list[dict[str, object]]:
    """One record per result of the study (newest first): scores and provenance."""
    query = select(Result).where(Result.study_id == study_id).order_by(Result.id.desc())
    if not include_old:
        query = query.where(Result.state == ResultState.ACTIVE)
    records = []
    for result in session.execute(query).scalars():
        sources = json.loads(result.history_sources or "[]")
        records.append({
            "result": result.id, "state": result.state,
            "study": None if result.probability is None else round(result.probability, 4),
            "right": None if result.right_probability is None
            else round(result.right_probability, 4),
            "left": None if result.left_probability is None
            else round(result.left_probability, 4),
            "threshold": result.operating_threshold,
            "breast_threshold": result.breast_threshold,
            "operating_point": result.operating_point,
            "history": ", ".join(sources) if result.history_used else "none available",
            "views": "all" if result.all_views_used else "partial",
            "not_attempted": result.not_attempted_reason,
            "model": result.model_version, "created_at": result.created_at,
            "rois": [{"view": roi.view_sop_instance_uid, "laterality": roi.laterality,
                      "rank": roi.rank,
                      "box": [round(v, 1) for v in (roi.x0, roi.y0, roi.x1, roi.y1)],
                      "detector_score": round(roi.detector_score, 4),
                      "attention": round(roi.attention, 4)} for roi in result.rois],
        })
    return records


def register(app: typer.Typer) -> None:
    @app.command("results")
    def results(ctx: typer.Context, study_uid: str,
                include_old: bool = typer.Option(False, "--all",
                                                 help="Include superseded and withdrawn."),
                json_lines: bool = typer.Option(False, "--json", help="JSON lines.")) -> None:
        """The model's scores and ROIs for a study, and where its objects went."""
        with cli_context(ctx).sessions() as session:
            study = session.execute(select(Study).where(Study.study_uid == study_uid)
                                    ).scalar_one_or_none()
            if study is None:
                typer.echo(f"no study {study_uid}", err=True)
                raise typer.Exit(1)
            records = result_records(session, study.id, include_old=include_old)
            deliveries = session.execute(
                select(Delivery.destination, OutputObject.kind, Delivery.state,
                       func.count(Delivery.id))
                .join(OutputObject, Delivery.output_id == OutputObject.id)
                .join(Result, OutputObject.result_id == Result.id)
                .where(Result.study_id == study.id)
                .group_by(Delivery.destination, OutputObject.kind, Delivery.state)
                .order_by(Delivery.destination, OutputObject.kind)).all()
        if json_lines:
            emit_records(records, SCORE_COLUMNS, as_json=True)
            return
        if not records:
            typer.echo(f"study {study_uid} ({study.state}) has no result yet")
            raise typer.Exit(1)
        emit_records(records, SCORE_COLUMNS, title=f"Results of {study_uid} ({study.state})")
        for record in records:
            emit_records(record["rois"], ROI_COLUMNS,  # type: ignore[arg-type]
                         title=f"ROIs of result {record['result']}")
        emit_records([{"destination": d, "kind": k, "state": s, "count": n}
                      for d, k, s, n in deliveries], DELIVERY_COLUMNS, title="Deliveries")

    @app.command("resend")
    def resend(ctx: typer.Context, study_uid: str,
               destination: str | None = typer.Option(None, "--destination",
                                                      help="Only this destination.")) -> None:
        """Send a study's current result objects again (to one or all destinations)."""
        cli = cli_context(ctx)
        if destination:
            try:
                cli.config.destination(destination)
            except KeyError as exc:
                typer.echo(str(exc.args[0]), err=True)
                raise typer.Exit(2) from None
        with transaction(cli.sessions) as session:
            study = session.execute(select(Study).where(Study.study_uid == study_uid)
                                    ).scalar_one_or_none()
            if study is None:
                typer.echo(f"no study {study_uid}", err=True)
                raise typer.Exit(1)
            count = requeue_deliveries(session, study.id, destination)
            record_event(session, "results_resend_requested", actor=os_user(),
                         study_uid=study.study_uid, patient_id=study.patient_id,
                         accession_number=study.accession_number,
                         detail={"destination": destination or "all", "deliveries": count})
        if not count:
            typer.echo(f"study {study_uid} has no result objects to send", err=True)
            raise typer.Exit(1)
        typer.echo(f"{count} deliveries of {study_uid} queued again")

    @app.command("echo")
    def echo_command(ctx: typer.Context,
                     destination: str = typer.Argument(..., help="A [[destinations]] name.")
                     ) -> None:
        """C-ECHO a destination; exit 1 when it does not answer with Success."""
        cli = cli_context(ctx)
        try:
            target = cli.config.destination(destination)
        except KeyError as exc:
            typer.echo(str(exc.args[0]), err=True)
            raise typer.Exit(2) from None
        try:
            status = echo(target, cli.config.dicom)
        except (DestinationUnavailable, TimeoutError, OSError) as exc:
            typer.echo(f"{destination}: {exc}", err=True)
            raise typer.Exit(1) from None
        where = f"{target.ae_title}@{target.host}:{target.port}"
        if status != 0:
            typer.echo(f"{destination} ({where}): C-ECHO status 0x{status:04X}", err=True)
            raise typer.Exit(1)
        typer.echo(f"{destination} ({where}): C-ECHO success")
