"""Alembic environment: the URL comes from the Alembic config or the node config."""

from __future__ import annotations

from alembic import context

from mmbcd_node.config import load_config
from mmbcd_node.db.schema import Base
from mmbcd_node.db.session import make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or context.get_x_argument(as_dictionary=True).get(
    "url"
) or load_config().database.url


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    engine = make_engine(url)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
