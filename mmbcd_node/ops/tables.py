"""Reading tables that other stages own, at whatever stage of the schema a database is.

Operations code reports on orders, results and deliveries without importing those
stages' models: it reflects the tables that exist and reads only the columns present,
so the same code works on a database before and after their migrations.
"""

from __future__ import annotations

from sqlalchemy import Connection, MetaData, Table, inspect


def reflect_table(connection: Connection, name: str) -> Table | None:
    """The table ``name`` as it is in the database, or ``None`` when it does not exist."""
    if not inspect(connection).has_table(name):
        return None
    return Table(name, MetaData(), autoload_with=connection)

