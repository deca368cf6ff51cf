"""``orders`` and ``reconcile``: what orders arrived, and deciding what the matcher left open.

Every decision (link, reject, run without history) is a conditional change in SQL and
an audit event carrying the OS user.
"""

from __future__ import annotations

import json

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

from mmbcd_node.admin.context import cli_context
from mmbcd_node.admin.output import emit_records
from mmbcd_node.db.audit import os_user, record_event
from mmbcd_node.db.models import Study, StudyState
from mmbcd_node.db.order_models import Hl7Message, MatchState, Order, OrderMessage, StudyOrder
from mmbcd_node.db.session import transaction
from mmbcd_node.match.matcher import (
    AWAITING,
    MANUAL,
    Match,
    advance_study,
    queue_study,
    record_match,
)
from mmbcd_node.orders.text import codec_for

ORDER_COLUMNS = ("id", "control", "cancelled", "accession_number", "patient_id",
                 "placer_number", "filler_number", "study_uid", "priority", "updated_at")
RECONCILE_COLUMNS = ("kind", "study_uid", "study_state", "patient_id", "accession_number",
                     "order_id", "order_accession", "order_patient_id", "rule", "note")


def register(app: typer.Typer) -> None:
    app.add_typer(_orders_app(), name="orders")
    app.add_typer(_reconcile_app(), name="reconcile")


def _orders_app() -> typer.Typer:
    orders_app = typer.Typer(help="HL7 orders received (list; `orders show ID`).")

    @orders_app.callback(invoke_without_command=True)
    def orders(ctx: typer.Context,
               accession: str | None = typer.Option(None, "--accession"),
               patient_id: str | None = typer.Option(None, "--patient-id"),
               placer: str | None = typer.Option(None, "--placer", help="Placer order number."),
               study_uid: str | None = typer.Option(None, "--study-uid"),
               cancelled: bool | None = typer.Option(None, "--cancelled/--live",
                                                     help="Only cancelled / only live orders."),
               limit: int = typer.Option(100, help="At most this many, newest first."),
               json_lines: bool = typer.Option(False, "--json", help="JSON lines.")) -> None:
        """List orders, newest first."""
        if ctx.invoked_subcommand is not None:
            return
        query = select(Order).order_by(Order.updated_at.desc(), Order.id.desc()).limit(limit)
        if accession:
            query = query.where(Order.accession_number == accession)
        if patient_id:
            query = query.where(Order.patient_id == patient_id)
        if placer:
            query = query.where(Order.placer_number == placer)
        if study_uid:
            query = query.where(Order.study_uid == study_uid)
        if cancelled is not None:
            query = query.where(Order.cancelled.is_(cancelled))
        with cli_context(ctx).sessions() as session:
            rows = session.execute(query).scalars().all()
            records = [_order_record(o) for o in rows]
        emit_records(records, ORDER_COLUMNS, title="Orders", as_json=json_lines)

    @orders_app.command("show")
    def show(ctx: typer.Context, order_id: int = typer.Argument(..., help="Order id."),
             json_out: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
        """Print an order's parsed fields, its matches and every raw message that shaped it."""
        with cli_context(ctx).sessions() as session:
            order = session.get(Order, order_id)
            if order is None:
                typer.echo(f"no order {order_id}", err=True)
                raise typer.Exit(1)
            record = _order_record(order, full=True)
            sources: list[list[str]] = json.loads(order.history_sources or "[]")
            matches: list[dict[str, object]] = [
                {"study_uid": uid, "state": m.state, "rule": m.rule, "note": m.note,
                 "decided_by": m.decided_by, "decided_at": m.decided_at.isoformat()}
                for m, uid in session.execute(
                    select(StudyOrder, Study.study_uid).join(Study, Study.id == StudyOrder.study_id)
                    .where(StudyOrder.order_id == order.id).order_by(StudyOrder.id)).all()]
            messages: list[dict[str, object]] = [
                {"message_id": msg.id, "control": link.control, "control_id": msg.control_id,
                 "type": msg.message_type, "version": msg.version, "charset": msg.charset,
                 "received_at": msg.received_at.isoformat(), "raw": _raw_text(msg)}
                for link, msg in session.execute(
                    select(OrderMessage, Hl7Message)
                    .join(Hl7Message, Hl7Message.id == OrderMessage.message_id)
                    .where(OrderMessage.order_id == order.id).order_by(OrderMessage.id)).all()]
        record["matches"], record["messages"] = matches, messages
        if json_out:
            typer.echo(json.dumps(record, default=str, ensure_ascii=False))
            return
        for key, value in record.items():
            if key not in ("matches", "messages", "history_sources"):
                typer.echo(f"{key}: {'' if value is None else value}")
        typer.echo("history sources:")
        for name, text in sources:
            typer.echo(f"  {name}: {text}")
        typer.echo("matches:")
        for match in matches:
            note = f" - {match['note']}" if match["note"] else ""
            typer.echo(f"  {match['study_uid']} {match['state']} by {match['rule']} "
                       f"({match['decided_by']}){note}")
        for message in messages:
            typer.echo(f"message {message['message_id']} ({message['control']}, MSH-10 "
                       f"{message['control_id']}, {message['type']} v{message['version']}, "
                       f"{message['charset']}, received {message['received_at']}):")
            for segment in str(message["raw"]).split("\r"):
                if segment:
                    typer.echo(f"  {segment}")

    return orders_app


def _reconcile_app() -> typer.Typer:
    app = typer.Typer(help="Held studies and candidate orders an admin must decide.")

    @app.callback(invoke_without_command=True)
    def reconcile(ctx: typer.Context,
                  json_lines: bool = typer.Option(False, "--json", help="JSON lines.")) -> None:
        """List held studies, and candidate orders of studies not yet processed."""
        if ctx.invoked_subcommand is not None:
            return
        records = []
        with cli_context(ctx).sessions() as session:
            for match, study, order in session.execute(
                    select(StudyOrder, Study, Order).join(Study, Study.id == StudyOrder.study_id)
                    .join(Order, Order.id == StudyOrder.order_id)
                    .where(StudyOrder.state == MatchState.CANDIDATE,
                           Study.state.in_(AWAITING)).order_by(StudyOrder.id)):
                records.append({"kind": "candidate", "study_uid": study.study_uid,
                                "study_state": study.state, "patient_id": study.patient_id,
                                "accession_number": study.accession_number,
                                "order_id": order.id, "order_accession": order.accession_number,
                                "order_patient_id": order.patient_id, "rule": match.rule,
                                "note": match.note})
            for study in session.execute(select(Study).where(Study.state == StudyState.HELD)
                                         .order_by(Study.state_changed_at)).scalars():
                records.append({"kind": "held", "study_uid": study.study_uid,
                                "study_state": study.state, "patient_id": study.patient_id,
                                "accession_number": study.accession_number})
        emit_records(records, RECONCILE_COLUMNS, title="Reconciliation", as_json=json_lines)

    @app.command("link")
    def link(ctx: typer.Context, study_uid: str, order_id: int) -> None:
        """Link ORDER_ID to STUDY_UID (its history will be used) and queue the study."""
        cli = cli_context(ctx)
        with transaction(cli.sessions) as session:
            study, order = _study_and_order(session, study_uid, order_id)
            if order.cancelled:
                typer.echo(f"order {order_id} is cancelled; it cannot be linked", err=True)
                raise typer.Exit(1)
            actor = os_user()
            record_match(session, study, order, Match(MANUAL, MatchState.LINKED,
                                                      "linked by an admin"), actor=actor)
            record_event(session, "order_reconciled", actor=actor, study_uid=study.study_uid,
                         accession_number=order.accession_number,
                         detail={"decision": "link", "order_id": order.id})
            queued = queue_study(session, study, without_history=False,
                                 why=f"order {order.id} linked by {actor}", actor=actor)
            if not queued:
                advance_study(session, study, cli.config)
        typer.echo(f"order {order_id} linked to {study_uid}; study is {study.state}")

    @app.command("reject")
    def reject(ctx: typer.Context, study_uid: str, order_id: int) -> None:
        """Mark ORDER_ID as not belonging to STUDY_UID; the matcher never proposes it again."""
        cli = cli_context(ctx)
        with transaction(cli.sessions) as session:
            study, order = _study_and_order(session, study_uid, order_id)
            actor = os_user()
            record_match(session, study, order, Match(MANUAL, MatchState.REJECTED,
                                                      "rejected by an admin"), actor=actor)
            record_event(session, "order_reconciled", actor=actor, study_uid=study.study_uid,
                         accession_number=order.accession_number,
                         detail={"decision": "reject", "order_id": order.id})
        typer.echo(f"order {order_id} rejected for {study_uid}")

    @app.command("run-without-history")
    def run_without_history(ctx: typer.Context, study_uid: str) -> None:
        """Queue a complete or held STUDY_UID with an empty history (the result says so)."""
        cli = cli_context(ctx)
        with transaction(cli.sessions) as session:
            study = _study(session, study_uid)
            actor = os_user()
            if not queue_study(session, study, without_history=True,
                               why=f"run without history by {actor}", actor=actor):
                typer.echo(f"study {study_uid} is {study.state}; only complete or held "
                           "studies can be queued", err=True)
                raise typer.Exit(1)
            record_event(session, "order_reconciled", actor=actor, study_uid=study.study_uid,
                         detail={"decision": "run_without_history"})
        typer.echo(f"study {study_uid} queued without history")

    return app


def _study(session: Session, study_uid: str) -> Study:
    study = session.execute(select(Study).where(Study.study_uid == study_uid)
                            ).scalar_one_or_none()
    if study is None:
        typer.echo(f"no study {study_uid}", err=True)
        raise typer.Exit(1)
    return study


def _study_and_order(session: Session, study_uid: str, order_id: int) -> tuple[Study, Order]:
    study = _study(session, study_uid)
    order = session.get(Order, order_id)
    if order is None:
        typer.echo(f"no order {order_id}", err=True)
        raise typer.Exit(1)
    return study, order


def _order_record(order: Order, full: bool = False) -> dict[str, object]:
    record: dict[str, object] = {
        "id": order.id, "control": order.control, "status": order.status,
        "cancelled": order.cancelled, "accession_number": order.accession_number,
        "issuer_of_accession": order.issuer_of_accession, "patient_id": order.patient_id,
        "issuer_of_patient_id": order.issuer_of_patient_id,
        "placer_number": order.placer_number, "filler_number": order.filler_number,
        "study_uid": order.study_uid, "requested_procedure_id": order.requested_procedure_id,
        "priority": order.priority, "order_date": order.order_date,
        "created_at": order.created_at, "updated_at": order.updated_at,
    }
    if full:
        record.update({"procedure": order.procedure, "reason": order.reason,
                       "history_text": order.history_text,
                       "history_sources": json.loads(order.history_sources or "[]")})
    return record


def _raw_text(message: Hl7Message) -> str:
    codec = codec_for("" if message.charset == "ASCII" else message.charset) or "latin-1"
    return message.raw.decode(codec, errors="replace")
