"""``audit`` (query, study story, verify), ``doctor`` and ``purge``: operating the node."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import typer
from rich.console import Console
from rich.progress import track

from mmbcd_node.admin.context import cli_context
from mmbcd_node.admin.output import emit_records
from mmbcd_node.config import ConfigError, load_config
from mmbcd_node.db.audit import os_user, verify_chain
from mmbcd_node.db.utc import as_utc
from mmbcd_node.ops.audit_queries import (
    EVENT_COLUMNS,
    STORY_COLUMNS,
    AuditFilter,
    UnknownStudy,
    find_events,
    flatten,
    study_story,
)
from mmbcd_node.ops.doctor import LISTENERS, Finding, run_doctor
from mmbcd_node.ops.retention import find_candidates, run_purge

# The terminal table shows the who/what/when; CSV and JSON carry every column.
TABLE_COLUMNS = ("id", "occurred_at", "action", "outcome", "actor", "calling_ae", "called_ae",
                 "patient_id", "study_uid", "accession_number")
_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_when(value: str | None, option: str) -> datetime | None:
    """``--since``/``--until``: ISO 8601 (``2026-11-30``, ``2026-11-30T08:00``; UTC when no
    offset is given) or an age such as ``30m``, ``24h``, ``7d`` before now."""
    if value is None:
        return None
    match = _RELATIVE.match(value.strip())
    if match:
        return datetime.now(UTC) - timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither ISO 8601 nor an age like 24h or 7d",
                                 param_hint=option) from None
    return as_utc(moment)  # an ISO time without a zone is UTC, as everywhere in the node


def register(app: typer.Typer) -> None:
    audit = typer.Typer(help="Audit trail: query it, tell a study's story, verify the chain.")
    app.add_typer(audit, name="audit")

    @audit.callback(invoke_without_command=True)
    def audit_events(
            ctx: typer.Context,
            patient_id: str | None = typer.Option(None, "--patient-id"),
            study_uid: str | None = typer.Option(None, "--study-uid"),
            accession: str | None = typer.Option(None, "--accession"),
            calling_ae: str | None = typer.Option(None, "--calling-ae"),
            called_ae: str | None = typer.Option(None, "--called-ae"),
            ae: str | None = typer.Option(None, "--ae", help="Calling or called AE title."),
            action: str | None = typer.Option(None, "--action"),
            outcome: str | None = typer.Option(None, "--outcome"),
            actor: str | None = typer.Option(None, "--actor", help="User or process."),
            since: str | None = typer.Option(None, "--since", help="ISO 8601 or age (24h, 7d)."),
            until: str | None = typer.Option(None, "--until", help="ISO 8601 or age (24h, 7d)."),
            limit: int = typer.Option(1000, help="At most this many events."),
            newest_first: bool = typer.Option(False, "--newest-first"),
            json_lines: bool = typer.Option(False, "--json", help="JSON lines."),
            as_csv: bool = typer.Option(False, "--csv", help="CSV with a header row.")) -> None:
        """List audit events matching every given filter, oldest first."""
        if ctx.invoked_subcommand is not None:
            return
        criteria = AuditFilter(patient_id=patient_id, study_uid=study_uid, accession=accession,
                               calling_ae=calling_ae, called_ae=called_ae, ae=ae, action=action,
                               outcome=outcome, actor=actor,
                               since=parse_when(since, "--since"),
                               until=parse_when(until, "--until"))
        with cli_context(ctx).sessions() as session:
            records = find_events(session, criteria, limit=limit, newest_first=newest_first)
        emit_records(records if json_lines else flatten(records),
                     EVENT_COLUMNS if as_csv else TABLE_COLUMNS,
                     title="Audit events", as_json=json_lines, as_csv=as_csv)

    @audit.command("study")
    def audit_study(ctx: typer.Context, study_uid: str = typer.Argument(...),
                    json_lines: bool = typer.Option(False, "--json", help="JSON lines."),
                    as_csv: bool = typer.Option(False, "--csv", help="CSV.")) -> None:
        """The whole story of one study in time order: audit events and every stage's rows."""
        with cli_context(ctx).sessions() as session:
            try:
                story = study_story(session, study_uid)
            except UnknownStudy as exc:
                typer.echo(str(exc), err=True)
                raise typer.Exit(1) from None
        emit_records(story if json_lines else flatten(story), STORY_COLUMNS,
                     title=f"Study {study_uid}", as_json=json_lines, as_csv=as_csv)

    @app.command("doctor")
    def doctor(ctx: typer.Context,
               expect: list[str] = typer.Option(
                   list(LISTENERS), "--expect",
                   help="Listeners the running node should have (repeatable): dicom, hl7, http."),
               json_lines: bool = typer.Option(False, "--json", help="JSON lines.")) -> None:
        """Check config, database, storage, the running node, bundle, destinations; exit 1 on
        any problem, saying how to fix it."""
        cli = cli_context(ctx)
        try:
            config = load_config(cli.config_path)
        except ConfigError as exc:
            findings = [Finding("config", False, str(exc), "correct the key named above")]
        else:
            findings = run_doctor(config, cli.engine, expect)
        records = [{"check": f.check, "status": "ok" if f.ok else "FAIL", "detail": f.detail,
                    "fix": f.fix} for f in findings]
        emit_records(records, ("check", "status", "detail", "fix"), title="mmbcd-node doctor",
                     as_json=json_lines)
        if not all(f.ok for f in findings):
            raise typer.Exit(1)

    @app.command("purge")
    def purge(ctx: typer.Context,
              dry_run: bool = typer.Option(False, "--dry-run",
                                           help="List what would be deleted; delete nothing."),
              json_lines: bool = typer.Option(False, "--json", help="JSON lines.")) -> None:
        """Delete received images that the retention policy lets go (results and audit stay)."""
        cli = cli_context(ctx)
        if dry_run:
            now = datetime.now(UTC)
            with cli.sessions() as session:
                candidates = find_candidates(session, cli.config.retention, now)
            records = [{"study_uid": c.study_uid, "patient_id": c.patient_id,
                        "accession_number": c.accession_number, "state": c.state,
                        "rule": c.rule, "age_days": round(c.age_days(now), 1),
                        "files": c.files, "bytes": c.bytes} for c in candidates]
            emit_records(records, ("study_uid", "patient_id", "accession_number", "state",
                                   "rule", "age_days", "files", "bytes"),
                         title="Would purge (dry run)", as_json=json_lines)
            return
        report = run_purge(cli.config, cli.sessions, actor=os_user(), progress=lambda c: track(
            c, description="purging studies", console=Console(stderr=True)))
        emit_records([{"studies": report.studies, "files": report.files,
                       "bytes": report.bytes}], ("studies", "files", "bytes"),
                     title="Purged", as_json=json_lines)

    @audit.command("verify")
    def verify(ctx: typer.Context) -> None:
        """Check the audit hash chain; exit 1 naming the first broken row."""
        with cli_context(ctx).sessions() as session:
            checked, broken = verify_chain(session)
        if broken is not None:
            Console(stderr=True, soft_wrap=True).print(
                f"[red]audit chain broken at row {broken.row_id}[/red]: {broken.reason} "
                f"({checked} rows before it verified)")
            raise typer.Exit(1)
        Console().print(f"audit chain intact: {checked} rows verified")
