"""``db upgrade`` and ``audit verify``."""

from __future__ import annotations

import typer
from rich.console import Console

from mmbcd_node.admin.context import cli_context
from mmbcd_node.db import migrate
from mmbcd_node.db.audit import verify_chain


def register(app: typer.Typer) -> None:
    db = typer.Typer(help="Database schema.", no_args_is_help=True)
    audit = typer.Typer(help="Audit trail.", no_args_is_help=True)
    app.add_typer(db, name="db")
    app.add_typer(audit, name="audit")

    @db.command("upgrade")
    def upgrade(ctx: typer.Context, revision: str = typer.Argument("head")) -> None:
        """Apply the Alembic migrations up to REVISION (default: the newest)."""
        config = cli_context(ctx).config
        migrate.upgrade(config.database.url, revision)
        Console().print(f"database at revision {migrate.current_revision(cli_context(ctx).engine)}")

    @audit.command("verify")
    def verify(ctx: typer.Context) -> None:
        """Check the audit hash chain; exit 1 naming the first broken row."""
        with cli_context(ctx).sessions() as session:
            checked, broken = verify_chain(session)
        if broken is not None:
            Console(stderr=True).print(
                f"[red]audit chain broken at row {broken.row_id}[/red]: {broken.reason} "
                f"({checked} rows before it verified)")
            raise typer.Exit(1)
        Console().print(f"audit chain intact: {checked} rows verified")
