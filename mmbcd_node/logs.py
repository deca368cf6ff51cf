"""Structured logging: one line per event, ``key=value`` or JSON (``[logging] format``).

Callers log events with their fields as fields, never formatted into the message::

    log = get_logger(__name__)
    log.info("job_done", job=job.id, study_id=job.study_id, probability=0.1234)

The record carries the event name and the fields as they are; the formatters render
them (``event=job_done job=7 ...`` or ``{"event": "job_done", "job": 7, ...}``) and
never parse a message, so a value with spaces, quotes or ``=`` comes out whole: bare
in ``key=value`` when it has none of those, JSON-quoted when it has. Lines logged by
other libraries (plain messages) come out as ``msg="..."``. Patient names and
history text never go into log lines at INFO level.

Work on one study runs inside ``study_context(correlation_id)`` (the study's
``correlation_id`` column); every line logged in that context, in any module, carries
``correlation_id=...``, so one grep follows a study through receive, job and delivery.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import Enum

from mmbcd_node.config import LoggingConfig

_CORRELATION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mmbcd_correlation_id", default=None)

#: Keys every line has; a field of the same name is written with a ``_`` after it.
RESERVED_KEYS = frozenset({"ts", "level", "logger", "event", "msg", "exc"})


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


class EventMessage:
    """A record's message: the event's name and its fields, kept apart.

    ``str()`` gives the ``key=value`` rendering, so a handler with another formatter
    (pytest's log capture, say) still shows every field.
    """

    __slots__ = ("event", "fields")

    def __init__(self, event: str, fields: Mapping[str, object]) -> None:
        self.event = event
        self.fields = dict(fields)

    def __str__(self) -> str:
        return " ".join(f"{key}={_text(value)}"
                        for key, value in _event_items(self.event, self.fields))


class EventLogger:
    """A stdlib logger that takes an event name and keyword fields.

    ``log.warning("tls_failure", peer=address, reason=reason)``; ``exception`` adds the
    traceback. The record goes through the stdlib logging tree as usual.
    """

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def debug(self, event: str, /, **fields: object) -> None:
        self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, /, **fields: object) -> None:
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, /, **fields: object) -> None:
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, /, **fields: object) -> None:
        self._emit(logging.ERROR, event, fields)

    def exception(self, event: str, /, **fields: object) -> None:
        """At ERROR, with the exception being handled."""
        self._emit(logging.ERROR, event, fields, exc_info=True)

    def _emit(self, level: int, event: str, fields: dict[str, object], *,
              exc_info: bool = False) -> None:
        if self.logger.isEnabledFor(level):
            # stacklevel 3: the record names the caller of info()/warning()/...
            self.logger.log(level, EventMessage(event, fields), exc_info=exc_info,
                            stacklevel=3)


def get_logger(name: str) -> EventLogger:
    """The event logger for module ``name`` (``get_logger(__name__)``)."""
    return EventLogger(name)


def _event_items(event: str, fields: Mapping[str, object]) -> Iterator[tuple[str, object]]:
    yield "event", event
    for key, value in fields.items():
        yield (f"{key}_" if key in RESERVED_KEYS else key), value


def _record_items(record: logging.LogRecord) -> list[tuple[str, object]]:
    """The line's keys and values in order, without ``exc``."""
    items: list[tuple[str, object]] = [
        ("ts", datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")),
        ("level", record.levelname.lower()), ("logger", record.name)]
    if isinstance(record.msg, EventMessage):
        items += _event_items(record.msg.event, record.msg.fields)
    else:
        items.append(("msg", record.getMessage()))
    correlation_id = _CORRELATION.get()
    if correlation_id is not None and all(key != "correlation_id" for key, _ in items):
        items.append(("correlation_id", correlation_id))
    return items


def _json_value(value: object) -> object:
    """``value`` as JSON has it: scalars and containers as they are, others as text."""
    if isinstance(value, Enum):
        value = value.value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_value(item) for item in value]
    return str(value)


def _text(value: object) -> str:
    """``value`` for a ``key=value`` line: bare when it can be, JSON-quoted when not."""
    plain = _json_value(value)
    if isinstance(plain, (list, dict)):
        text = json.dumps(plain, ensure_ascii=False, separators=(",", ":"))
    else:
        text = str(plain)
    if text and not any(c.isspace() or c in '"=\\' or not c.isprintable() for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = " ".join(f"{key}={_text(value)}" for key, value in _record_items(record))
        if record.exc_info:
            line += " exc=" + json.dumps(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {key: _json_value(value) for key, value in _record_items(record)}
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
