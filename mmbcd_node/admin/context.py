"""What every admin command needs: the loaded configuration and a database session factory."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import typer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import ConfigError, NodeConfig, load_config
from mmbcd_node.db.session import make_engine, make_sessionmaker


@dataclass
class CliContext:
    config_path: Path | None = None
    _config: NodeConfig | None = field(default=None, repr=False)

    @property
    def config(self) -> NodeConfig:
        if self._config is None:
            try:
                self._config = load_config(self.config_path)
            except ConfigError as exc:
                typer.echo(f"configuration error: {exc}", err=True)
                raise typer.Exit(2) from None
        return self._config

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.config.database.url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_sessionmaker(self.engine)


def cli_context(ctx: typer.Context) -> CliContext:
    """The ``CliContext`` set by the top-level callback."""
    obj = ctx.find_root().obj
    assert isinstance(obj, CliContext)
    return obj
