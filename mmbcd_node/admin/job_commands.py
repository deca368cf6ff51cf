"""``jobs``, ``reprocess`` and ``cancel``: the job queue as an admin sees it."""

from __future__ import annotations

import json

import typer
from sqlalchemy import select

from mmbcd_node.admin.context import cli_context
from mmbcd_node.admin.output import emit_records
from mmbcd_node.db.audit import os_user, record_event
from mmbcd_node.db.models import Job, Priority, Study, StudyState
from mmbcd_node.db.session import transaction
from mmbcd_node.db.study_state import change_state
from mmbcd_node.job_queue import cancel_pending_jobs, enqueue_job
from mmbcd_node.results.rejection_note import RejectionReason
from mmbcd_node.work.result_records import active_result
from mmbcd_node.work.withdrawal import withdraw_result

JOB_COLUMNS = ("id", "study_uid", "state", "priority", "reason", "attempts", "lease_owner",
               "created_at", "finished_at", "error")
PRIORITIES = {p.name.lower(): p for p in Priority}
# A study still receiving images is left alone: completion queues it when it is whole.
REPROCESSABLE = (StudyState.COMPLETE, StudyState.HELD, StudyState.QUEUED, StudyState.DONE,
                 StudyState.DELIVERED, StudyState.FAILED, StudyState.NOT_ANALYSABLE,
                 StudyState.CANCELLED)


def _job_record(job: Job, study_uid: str) -> dict[str, object]:
    return {"id": job.id, "study_uid": study_uid, "state": job.state,
            "priority": Priority(job.priority).name.lower(), "reason": job.reason,
            "attempts": job.attempts, "lease_owner": job.lease_owner,
            "lease_expires_at": job.lease_expires_at, "not_before": job.not_before,
            "created_at": job.created_at, "started_at": job.started_at,
            "finished_at": job.finished_at, "bundle_digest": job.bundle_digest,
            "without_history": job.without_history, "error": job.error}


def _study(session, study_uid: str) -> Study:  # type: ignore[no-untyped-def]
    study = session.execute(select(Study).where(Study.study_uid == study_uid)).scalar_one_or_none()
    if study is None:
        typer.echo(f"no study {study_uid}", err=True)
        raise typer.Exit(1)
    return study


def register(app: typer.Typer) -> None:
    jobs_app = typer.Typer(help="Model jobs (list; `jobs show ID` with the error).")
    app.add_typer(jobs_app, name="jobs")

    @jobs_app.callback(invoke_without_command=True)
    def jobs(ctx: typer.Context,
             state: str | None = typer.Option(None, help="queued|running|done|failed|cancelled"),
             study_uid: str | None = typer.Option(None, "--study-uid"),
             priority: str | None = typer.Option(None, help="urgent|normal|background"),
             limit: int = typer.Option(100, help="At most this many, newest first."),
             json_lines: bool = typer.Option(False, "--json", help="JSON lines.")) -> None:
        """List jobs, newest first."""
        if ctx.invoked_subcommand is not None:
            return
        query = (select(Job, Study.study_uid).join(Study, Job.study_id == Study.id)
                 .order_by(Job.id.desc()).limit(limit))
        if state:
            query = query.where(Job.state == state)
        if study_uid:
            query = query.where(Study.study_uid == study_uid)
        if priority:
            if priority not in PRIORITIES:
                raise typer.BadParameter(f"priority must be one of {', '.join(PRIORITIES)}")
            query = query.where(Job.priority == int(PRIORITIES[priority]))
        with cli_context(ctx).sessions() as session:
            rows = session.execute(query).all()
        records = [_job_record(job, uid) for job, uid in rows]
        for record in records:
            if not json_lines and record["error"]:
                record["error"] = str(record["error"])[:60]
        emit_records(records, JOB_COLUMNS, title="Jobs", as_json=json_lines)

    @jobs_app.command("show")
    def show(ctx: typer.Context, job_id: int = typer.Argument(..., help="Job id."),
             json_out: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
        """Every field of one job, the full error included."""
        with cli_context(ctx).sessions() as session:
            row = session.execute(select(Job, Study.study_uid).join(Study)
                                  .where(Job.id == job_id)).first()
        if row is None:
            typer.echo(f"no job {job_id}", err=True)
            raise typer.Exit(1)
        record = _job_record(*row)
        if json_out:
            typer.echo(json.dumps(record, default=str))
            return
        for key, value in record.items():
            typer.echo(f"{key}: {'' if value is None else value}")

    @app.command("reprocess")
    def reprocess(ctx: typer.Context, study_uid: str,
                  priority: str = typer.Option("background",
                                               help="urgent|normal|background")) -> None:
        """Run the model on a study again; its new result supersedes the current one."""
        if priority not in PRIORITIES:
            raise typer.BadParameter(f"priority must be one of {', '.join(PRIORITIES)}")
        with transaction(cli_context(ctx).sessions) as session:
            study = _study(session, study_uid)
            if study.state not in REPROCESSABLE:
                typer.echo(f"study {study_uid} is {study.state}; it is queued by itself once "
                           "complete", err=True)
                raise typer.Exit(1)
            job = enqueue_job(session, study.id, priority=PRIORITIES[priority],
                              reason="reprocess")
            change_state(session, study, StudyState.QUEUED,
                         only_from=set(REPROCESSABLE) - {StudyState.QUEUED})
            record_event(session, "study_reprocess_requested", actor=os_user(),
                         study_uid=study.study_uid, patient_id=study.patient_id,
                         accession_number=study.accession_number,
                         detail={"job_id": job.id, "priority": priority})
        typer.echo(f"job {job.id} queued for {study_uid} ({priority})")

    @app.command("cancel")
    def cancel(ctx: typer.Context, study_uid: str,
               withdraw: bool = typer.Option(False, "--withdraw",
                                             help="Also withdraw results already delivered "
                                                  "(IOCM rejection note; an ORU cancelling "
                                                  "the result at the RIS).")) -> None:
        """Stop a study's pending work (and with --withdraw, withdraw its results)."""
        cli = cli_context(ctx)
        with transaction(cli.sessions) as session:
            study = _study(session, study_uid)
            cancelled = cancel_pending_jobs(session, study.id, f"cancelled by {os_user()}")
            withdrawn = None
            if withdraw:
                result = active_result(session, study.id)
                if result is not None:
                    withdraw_result(session, cli.config, result, study,
                                           RejectionReason.ORDER_CANCELLED, actor=os_user())
                    withdrawn = result.id
            change_state(session, study, StudyState.CANCELLED)
            record_event(session, "study_cancelled", actor=os_user(), study_uid=study.study_uid,
                         patient_id=study.patient_id, accession_number=study.accession_number,
                         detail={"jobs_cancelled": list(cancelled),
                                 "result_withdrawn": withdrawn})
        typer.echo(f"study {study_uid} cancelled; {len(cancelled)} job(s) stopped"
                   + (f"; result {withdrawn} withdrawn" if withdrawn else ""))
