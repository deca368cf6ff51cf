"""``status``, ``studies`` and ``complete``: what the node holds and forcing a study on."""

from __future__ import annotations

import socket
from pathlib import Path

import typer
from rich.console import Console
from sqlalchemy import func, select

from mmbcd_node.admin.context import cli_context
from mmbcd_node.admin.output import emit_records
from mmbcd_node.config import NodeConfig
from mmbcd_node.db.audit import os_user
from mmbcd_node.db.models import Instance, Study, StudyState
from mmbcd_node.match.completion import force_complete
from mmbcd_node.ops.cluster import Backlog, RoleProcess, backlogs, role_processes
from mmbcd_node.receive.admission import free_bytes

STUDY_COLUMNS = ("study_uid", "state", "patient_id", "accession_number", "study_date",
                 "instances", "last_received_at", "state_reason")
STATUS_COLUMNS = ("kind", "name", "value")


def listeners(config: NodeConfig) -> list[tuple[str, str, int]]:
    """(name, host, port) of every listener the configuration defines."""
    found = [("dicom", config.dicom.host, config.dicom.port),
             ("hl7", config.hl7.host, config.hl7.port)]
    if config.http.enabled:
        found.append(("http", config.http.host, config.http.port))
    return found


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a TCP connection to host:port succeeds (0.0.0.0 means this machine)."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    try:
        with socket.create_connection((target, port), timeout=timeout):
            return True
    except OSError:
        return False


def process_record(process: RoleProcess) -> dict[str, object]:
    """One ``status`` row for a role process; JSON lines carry every field."""
    beat = process.beat
    leases = ", ".join(f"{n} {kind}" for kind, n in sorted(process.leases.items()) if n)
    if process.up:
        offset = ("" if beat.clock_offset_ms is None
                  else f", clock {beat.clock_offset_ms:+.0f} ms from the database's")
        value = (f"up since {beat.started_at:%Y-%m-%d %H:%M:%S}Z, version {beat.version or '?'}, "
                 f"last beat {process.age_seconds:.0f} s ago{offset}; "
                 f"leases: {leases or 'none'}")
    else:
        value = (f"DEAD: last beat {beat.beat_at:%Y-%m-%d %H:%M:%S}Z "
                 f"({process.age_seconds:.0f} s ago)"
                 + (f"; its leases run out: {leases}" if leases else ""))
    return {"kind": "process", "name": beat.process, "value": value, "host": beat.host,
            "role": beat.role, "pid": beat.pid, "up": process.up, "version": beat.version,
            "started_at": beat.started_at, "beat_at": beat.beat_at,
            "clock_offset_ms": beat.clock_offset_ms, "storage_id": beat.storage_id,
            "bundle_digest": beat.bundle_digest, "leases": process.leases}


def backlog_record(backlog: Backlog) -> dict[str, object]:
    """One ``status`` row for a destination's backlog."""
    if backlog.pending:
        value = (f"{backlog.pending} waiting, oldest since "
                 f"{backlog.oldest_pending_at:%Y-%m-%d %H:%M:%S}Z")
    else:
        value = "nothing waiting"
    if backlog.failed:
        value += f"; {backlog.failed} failed for good"
    if backlog.last_error and (backlog.pending or backlog.failed):
        value += f"; last error: {backlog.last_error[:200]}"
    return {"kind": "backlog", "name": backlog.destination, "value": value,
            "pending": backlog.pending, "oldest_pending_at": backlog.oldest_pending_at,
            "failed": backlog.failed, "last_error": backlog.last_error}


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status(ctx: typer.Context,
               json_lines: bool = typer.Option(False, "--json", help="JSON lines.")) -> None:
        """Studies by state, every role process of every host (up or dead, with the leases
        it holds), each destination's backlog, whether the listeners answer, free disk."""
        cli = cli_context(ctx)
        config = cli.config
        with cli.sessions() as session:
            counts = dict(session.execute(
                select(Study.state, func.count(Study.id)).group_by(Study.state)).all())
            processes = role_processes(session, config.worker.heartbeat_seconds)
            waiting = backlogs(session, [d.name for d in config.destinations])
        records: list[dict[str, object]] = [
            {"kind": "studies", "name": state.value, "value": counts.get(state.value, 0)}
            for state in StudyState]
        records += [process_record(p) for p in processes]
        records += [backlog_record(b) for b in waiting]
        for name, host, port in listeners(config):
            up = reachable(host, port)
            records.append({"kind": "listener", "name": f"{name} {host}:{port}",
                            "value": "listening" if up else "not reachable"})
        root = Path(config.storage.root)
        free = free_bytes(root if root.exists() else Path("."))
        records.append({"kind": "disk", "name": f"free bytes at {root}", "value": free})
        records.append({"kind": "disk", "name": "min_free_bytes (dicom)",
                        "value": config.dicom.min_free_bytes})
        emit_records(records, STATUS_COLUMNS, title="mmbcd-node status", as_json=json_lines)

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
                    "instances": n, "last_received_at": s.last_received_at,
                    "completed_by": s.completed_by, "reopen_count": s.reopen_count,
                    "rerun_requested": s.rerun_requested,
                    "state_reason": s.state_reason} for s, n in rows]
        emit_records(records, STUDY_COLUMNS, title="Studies", as_json=json_lines)

    @app.command("complete")
    def complete(ctx: typer.Context,
                 study_uid: str = typer.Argument(..., help="Study Instance UID.")) -> None:
        """Mark a receiving study complete now (audited with the OS user)."""
        outcome = force_complete(cli_context(ctx).sessions, study_uid, actor=os_user())
        console = Console()
        if outcome.state is None:
            Console(stderr=True).print(f"[red]no study {study_uid}[/red]")
            raise typer.Exit(1)
        if not outcome.completed:
            Console(stderr=True).print(
                f"[red]study {study_uid} is {outcome.state}, not receiving: not changed[/red]")
            raise typer.Exit(1)
        console.print(f"study {study_uid} complete")
