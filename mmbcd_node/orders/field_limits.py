"""Whether HL7 values fit the columns the node keeps them in, checked before the database
sees them: a value too long is the sender's content error (AE 102 naming the field) on
SQLite and PostgreSQL alike, never a database failure (AR 207, "resend later", which a
RIS would follow forever)."""

from __future__ import annotations

from typing import Any

from mmbcd_node.orders.errors import DATA_TYPE_ERROR, ErrorLocation, content_error


def column_length(model: Any, column: str) -> int | None:
    """The length of ``model``'s column ``column`` (None: unbounded text)."""
    return getattr(model.__table__.c[column].type, "length", None)


def check_fits(value: str | None, model: Any, column: str, field_name: str,
               location: ErrorLocation) -> None:
    """Raise the AE for ``value`` (the field ``field_name`` at ``location``) when it is
    longer than ``model.column`` keeps."""
    length = column_length(model, column)
    if value is not None and length is not None and len(value) > length:
        raise content_error(DATA_TYPE_ERROR, f"{field_name} is {len(value)} characters long; "
                            f"this node keeps at most {length}", location)
