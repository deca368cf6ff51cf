"""The value types of the configuration's keys, each with its check.

A check raises ``ValueError`` saying what is wrong ("must be 1 .. 65535, not 0"); the
loader puts the file (or the environment variable) and the key in front of it. Numbers,
booleans and strings are strict: TOML ``port = "104"`` is refused, not converted.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Strict

from mmbcd_node.addresses import parse_network
from mmbcd_node.output_kinds import RESULT_KINDS, SR_CLASS_UIDS, unknown_kinds

Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]  # an integer is taken as a float
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]


def check(test: Callable[[Any], str | None]) -> AfterValidator:
    """A validator from ``test``, which returns the problem in words or None."""

    def validate(value: Any) -> Any:
        problem = test(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    return AfterValidator(validate)


def between(low: int, high: int) -> AfterValidator:
    return check(lambda v: None if low <= v <= high else f"must be {low} .. {high}, not {v}")


def at_least(low: int) -> AfterValidator:
    return check(lambda v: None if v >= low else f"must be at least {low}, not {v}")


def one_of(*choices: str) -> AfterValidator:
    return check(lambda v: None if v in choices else f"must be {_alternatives(choices)}, not {v!r}")


def _alternatives(choices: Sequence[str]) -> str:
    quoted = [repr(c) for c in choices]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _seconds(value: float) -> str | None:
    if math.isfinite(value) and value > 0:
        return None
    return f"must be more than 0 seconds, not {value}"


def _delay(value: float) -> str | None:
    if math.isfinite(value) and value >= 0:
        return None
    return f"must be 0 seconds or more, not {value}"


Port = Annotated[int, Strict(), between(1, 65535)]
Count = Annotated[int, Strict(), at_least(1)]  # connections, attempts, jobs: at least one
Amount = Annotated[int, Strict(), at_least(0)]  # bytes, days: 0 allowed
Seconds = Annotated[float, Strict(), check(_seconds)]  # timeouts, intervals: more than 0
Delay = Annotated[float, Strict(), check(_delay)]  # waits and back-offs: 0 allowed


def _ae_title(value: str) -> str | None:
    """PS3.5 AE: 1-16 characters of the default repertoire, no backslash, not all spaces."""
    if not 1 <= len(value) <= 16:
        return f"must be 1 to 16 characters, not {len(value)} ({value!r})"
    if "\\" in value or not all(" " <= c <= "~" for c in value):
        return f"must be printable ASCII without backslash, not {value!r}"
    if not value.strip():
        return "must not be all spaces"
    return None


AeTitle = Annotated[str, Strict(), check(_ae_title)]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _host(value: str) -> str | None:
    """A host to connect to: an IP address or an RFC 1123 host name."""
    if _is_ip(value):
        return None
    labels = value.removesuffix(".").split(".")
    if (len(value) <= 253 and all(_LABEL.fullmatch(label) for label in labels)
            and not all(label.isdigit() for label in labels)):
        return None
    return f"must be a host name or an IP address, not {value!r}"


Host = Annotated[str, Strict(), check(_host)]
BindAddress = Annotated[str, Strict(), check(
    lambda v: None if _is_ip(v) else f"must be an IP address to listen on, not {v!r}")]


def _network(value: str) -> str | None:
    try:
        parse_network(value, where="")
    except ValueError:
        return f"must be an IP address or network, not {value!r}"
    return None


Network = Annotated[str, Strict(), check(_network)]


def _calling_ae(value: str) -> str | None:
    """``AE`` or ``AE@address`` (an IP address or network), as the receiver reads it."""
    title, at, address = value.partition("@")
    problem = _ae_title(title.strip() or title)
    if problem is not None:
        return f"{problem} (entries are 'AE' or 'AE@address')"
    if at and _network(address) is not None:
        return f"must be 'AE' or 'AE@address' with an IP address or network, not {value!r}"
    return None


CallingAe = Annotated[str, Strict(), check(_calling_ae)]


def _path(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must be a path, not an empty string")
    return value


FilePath = Annotated[Path, BeforeValidator(_path)]  # a string in the file; not checked to exist

_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
Device = Annotated[str, Strict(), check(lambda v: None if _DEVICE.fullmatch(v) else
                                        f"must be auto, cpu, cuda or cuda:N, not {v!r}")]

_LEVELS = [name for name in logging.getLevelNamesMapping() if name not in ("WARN", "FATAL")]
LogLevel = Annotated[str, Strict(), check(
    lambda v: None if v.upper() in _LEVELS else
    f"must be one of {', '.join(_LEVELS)} (any case), not {v!r}")]

_UID_ROOT = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*\.?")


def uid_root_problem(value: str) -> str | None:
    """What is wrong with a UID root, or None: digits and dots, at most 40 characters so
    the UIDs made under it fit in 64."""
    if _UID_ROOT.fullmatch(value) and len(value) <= 40:
        return None
    return f"must be a UID root (digits and dots, at most 40 characters), not {value!r}"


UidRoot = Annotated[str, Strict(), check(uid_root_problem)]


def _database_url(value: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(value)
    except ArgumentError:
        return f"must be a database URL (sqlite:///path, postgresql+psycopg://...), not {value!r}"
    return None


DatabaseUrl = Annotated[str, Strict(), check(_database_url)]


_HL7_SPECIAL = set("|^~\\&")
Hl7Text = Annotated[str, Strict(), check(
    lambda v: None if not (_HL7_SPECIAL & set(v)) and all(" " <= c <= "~" for c in v) else
    f"must be printable ASCII without the HL7 delimiters |^~\\&, not {v!r}")]
ProcessingId = Annotated[str, Strict(), one_of("P", "T", "D")]  # HL7 table 0103


def not_empty(value: list[Any]) -> str | None:
    return None if value else "must name at least one value"


def kinds_problem(kinds: Sequence[str]) -> str | None:
    """What is wrong with a list of result kinds (``output_kinds``), or None."""
    unknown = unknown_kinds(kinds)
    if unknown:
        return (f"has unknown kind(s) {', '.join(unknown)} "
                f"(known: {', '.join(kind.value for kind in RESULT_KINDS)})")
    return None


def sr_class_problem(sr_class: str) -> str | None:
    """What is wrong with an SR class name (``output_kinds.SR_CLASS_UIDS``), or None."""
    if sr_class not in SR_CLASS_UIDS:
        return f"must be one of {', '.join(map(repr, SR_CLASS_UIDS))}, not {sr_class!r}"
    return None
