"""``db upgrade``."""

from __future__ import annotations

import typer
from rich.console import Console

from mmbcd_node.admin.context import cli_context
from mmbcd_node.db import migrate


def register(app: typer.Typer) -> None:
    db = typer.Typer(help="Database schema.", no_args_is_help=True)
    app.add_typer(db, name="db")

    @db.command("upgrade")
    def upgrade(ctx: typer.Context, revision: str = typer.Argument("head")) -> None:
        """Apply the Alembic migrations up to REVISION (default: the newest)."""
        config = cli_context(ctx).config
        migrate.upgrade(config.database.url, revision)
        Console().print(f"database at revision {migrate.current_revision(cli_context(ctx).engine)}")
