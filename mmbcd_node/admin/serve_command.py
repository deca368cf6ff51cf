"""``serve``: run the node (all roles, or the ones named with ``--role``)."""

from __future__ import annotations

import typer

from mmbcd_node.admin.context import cli_context
from mmbcd_node.config import ConfigError
from mmbcd_node.db import migrate
from mmbcd_node.logs import configure_logging
from mmbcd_node.serve import ROLE_ORDER, role_factories, run_roles


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(ctx: typer.Context,
              role: list[str] = typer.Option(
                  [], "--role", help=f"Run only this role (repeatable): {', '.join(ROLE_ORDER)}."),
              upgrade: bool = typer.Option(False, "--upgrade-db",
                                           help="Apply migrations before starting.")) -> None:
        """Run the node until SIGINT/SIGTERM."""
        cli = cli_context(ctx)
        config = cli.config
        configure_logging(config.logging)
        available = role_factories()
        names = role or [r for r in ROLE_ORDER if r in available]
        unknown = [r for r in names if r not in available]
        if unknown:
            typer.echo(f"unknown role(s): {', '.join(unknown)}; known: {', '.join(available)}",
                       err=True)
            raise typer.Exit(2)
        if upgrade:
            migrate.upgrade(config.database.url)
        head = migrate.head_revision(config.database.url)
        current = migrate.current_revision(cli.engine)
        if current != head:
            typer.echo(f"database is at revision {current}, not {head}: "
                       f"run `mmbcd-node db upgrade` first", err=True)
            raise typer.Exit(1)
        try:
            run_roles(config, cli.sessions, names)
        except ConfigError as exc:  # found when a role starts, e.g. the memory budget
            typer.echo(f"{config.source}: {exc}", err=True)
            raise typer.Exit(2) from exc
