"""Structured logging: one line per event, ``key=value`` or JSON (``[logging] format``).

Callers log ``event=name key=value ...`` messages; patient names and history text
never go into log lines at INFO level.

Work on one study runs inside ``study_context(correlation_id)`` (the study's
``correlation_id`` column); every line logged in that context, in any module, carries
``correlation_id=...``, so one grep follows a study through receive, job and delivery.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from mmbcd_node.config import LoggingConfig

_CORRELATION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mmbcd_correlation_id", default=None)


@contextmanager
def study_context(correlation_id: str | None) -> Iterator[None]:
    """Tag every log line written inside the block with the study's correlation id."""
    token = _CORRELATION.set(correlation_id)
    try:
        yield
    finally:
        _CORRELATION.reset(token)


def current_correlation_id() -> str | None:
    """The correlation id of the study being worked on in this context, if any."""
    return _CORRELATION.get()


def _with_correlation(message: str) -> str:
    correlation_id = _CORRELATION.get()
    if correlation_id is None or "correlation_id=" in message:
        return message
    return f"{message} correlation_id={correlation_id}"


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        level = record.levelname.lower()
        message = _with_correlation(record.getMessage())
        line = f"ts={stamp} level={level} logger={record.name} {message}"
        if record.exc_info:
            line += " exc=" + json.dumps(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name,
        }
        message = _with_correlation(record.getMessage())
        for token in message.split(" "):
            key, sep, value = token.partition("=")
            if sep and key.isidentifier():
                fields[key] = value
            else:
                fields.setdefault("msg", "")
                fields["msg"] = f"{fields['msg']} {token}".strip()
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return json.dumps(fields)


def configure_logging(config: LoggingConfig) -> None:
    """Install the configured formatter on the root logger (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if config.format == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level.upper())
    for noisy in ("pynetdicom", "apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
