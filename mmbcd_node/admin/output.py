"""Listings for the terminal (rich tables) or for scripts (JSON lines, CSV)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def emit_records(records: Sequence[Mapping[str, Any]], columns: Sequence[str], *,
                 title: str | None = None, as_json: bool = False, as_csv: bool = False) -> None:
    """Print ``records``: JSON lines (one object per line), CSV, or a rich table."""
    if as_json:
        for record in records:
            sys.stdout.write(json.dumps({k: _plain(v) for k, v in record.items()}, default=str))
            sys.stdout.write("\n")
        return
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({k: _plain(record.get(k)) for k in columns})
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for record in records:
        table.add_row(*("" if record.get(c) is None else str(_plain(record.get(c)))
                        for c in columns))
    Console().print(table)
