"""The example configuration is the reference: it and the model agree key for key.

Every key of the model is in ``conf/mmbcd-node.example.toml`` (set, or shown as a
comment when optional) with a comment saying what it is; every key there is in the
model; every value shown is the default, except the ones listed in ``DIFFERENT``.
The checker runs on altered copies of the example too, so it is seen to fail.
"""

from __future__ import annotations

import re
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from pydantic.dataclasses import is_pydantic_dataclass
from pydantic.fields import FieldInfo

from mmbcd_node.config import NodeConfig, load_config
from mmbcd_node.orders.mapping import DEFAULT_MAPPING

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "conf" / "mmbcd-node.example.toml"

# Values the example shows deliberately other than the default: what a site would write
# for a key that is off (None) by default, or an alternative to the default.
DIFFERENT = {
    "dicom.tls.cert", "dicom.tls.key", "dicom.tls.ca",  # TLS is off by default
    "hl7.tls.cert", "hl7.tls.key", "hl7.tls.ca",
    "hl7.results.host",  # a RIS rather than loopback
    "model.bundle",  # default: the bundle shipped with the package
    "destinations.sr_class",  # default: [results] sr_class
    "audit.syslog.host", "audit.syslog.ca",  # a collector, its CA
    "audit.syslog.cert", "audit.syslog.key",  # the node's certificate for tls
    "hl7.results.tls.ca", "hl7.results.tls.cert", "hl7.results.tls.key",  # client TLS is off
    "destinations.tls.ca", "destinations.tls.cert", "destinations.tls.key",
}
REQUIRED = object()  # a key without default (a destination's name, AE title, host, port)


def _section(annotation: Any) -> Any:
    """The section type of a key holding a table (or a list of tables), else None."""
    for arg in (annotation, *typing.get_args(annotation)):
        if is_pydantic_dataclass(arg):
            return arg
    return None


def model_keys(cls: Any = NodeConfig, prefix: str = "") -> dict[str, FieldInfo]:
    """Every key of the model, dotted (``dicom.tls.cert``, ``destinations.port``)."""
    keys: dict[str, FieldInfo] = {}
    for name, info in cls.__pydantic_fields__.items():
        if name == "source":
            continue
        section = _section(info.annotation)
        if section is not None:
            keys.update(model_keys(section, f"{prefix}{name}."))
        else:
            keys[prefix + name] = info
    return keys


def default_of(info: FieldInfo) -> Any:
    return REQUIRED if info.is_required() else info.get_default(call_default_factory=True)


HEADER = re.compile(r"^(#\s*)?\[\[?([a-z0-9_.]+)\]\]?\s*(#.*)?$")
SETTING = re.compile(r"^(# ?)?([a-z_][a-z0-9_]*)\s*=\s*(.+)$")


class Shown(typing.NamedTuple):
    line: int
    value: Any
    documented: bool


def _has_comment(rest: str) -> bool:
    """Whether a ``#`` outside strings follows the value."""
    quote = None
    for i, char in enumerate(rest):
        if quote:
            if char == quote and (quote == "'" or rest[i - 1] != "\\"):
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#":
            return True
    return False


def read_example(text: str) -> tuple[dict[str, Shown], dict[str, Shown]]:
    """The example's keys (set or shown as comments) and its tables, by dotted name."""
    keys: dict[str, Shown] = {}
    tables: dict[str, Shown] = {}
    section = ""
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        before = lines[number - 2].strip() if number > 1 else ""
        prose_above = before.startswith("#") and not SETTING.match(before) \
            and not HEADER.match(before)
        header = HEADER.match(line)
        if header:
            section = header[2]
            after = lines[number].strip() if number < len(lines) else ""
            tables[section] = Shown(number, None, bool(header[3]) or after.startswith("#"))
            continue
        setting = SETTING.match(line)
        if not setting:
            continue
        commented, name, rest = setting.groups()
        try:
            value = tomllib.loads(f"v = {rest}")["v"]
        except tomllib.TOMLDecodeError:
            continue  # prose that happens to hold "="
        key = f"{section}.{name}" if section else name
        if commented and key in keys:
            continue  # an alternative to a value already set
        keys[key] = Shown(number, value, _has_comment(rest) or prose_above)
    return keys, tables


def example_problems(text: str) -> list[str]:
    """Where the example and the model disagree, one line each."""
    model = model_keys()
    shown, tables = read_example(text)
    mapping = {k.removeprefix("hl7.mapping."): v.value for k, v in shown.items()
               if k.startswith("hl7.mapping.")}
    shown = {k: v for k, v in shown.items() if not k.startswith("hl7.mapping.")}
    shown.update({k: v for k, v in tables.items() if k in model})  # tables that are keys
    problems = [f"{key}: in the model, not in the example" for key in model if key not in shown]
    problems += [f"{key} (line {s.line}): in the example, not in the model"
                 for key, s in shown.items() if key not in model]
    for key, info in model.items():
        if key not in shown:
            continue
        seen = shown[key]
        if not seen.documented:
            problems.append(f"{key} (line {seen.line}): no comment says what it is")
        default = default_of(info)
        if default is REQUIRED or seen.value is None:
            continue
        value = TypeAdapter(info.rebuild_annotation()).validate_python(seen.value)
        if key in DIFFERENT and value == default:
            problems.append(f"{key} (line {seen.line}): listed in DIFFERENT but shows the "
                            f"default {default!r}")
        elif key not in DIFFERENT and value != default:
            problems.append(f"{key} (line {seen.line}): shows {value!r}, the default is "
                            f"{default!r}")
    if mapping != DEFAULT_MAPPING:
        problems.append(f"hl7.mapping: the defaults shown {mapping} are not "
                        f"orders.mapping.DEFAULT_MAPPING {DEFAULT_MAPPING}")
    return problems


def test_the_example_and_the_model_agree_key_for_key() -> None:
    assert example_problems(EXAMPLE.read_text(encoding="utf-8")) == []


def test_every_listed_difference_is_a_key() -> None:
    assert set(model_keys()) >= DIFFERENT


def test_the_example_loads_as_its_defaults_plus_its_destination() -> None:
    loaded = load_config(EXAMPLE, environ={})
    assert loaded == NodeConfig(destinations=loaded.destinations, source=str(EXAMPLE))
    assert [d.name for d in loaded.destinations] == ["pacs"]


def test_the_compose_configuration_loads() -> None:
    config = load_config(ROOT / "deploy" / "compose-node.toml", environ={
        "MMBCD_NODE__DATABASE__URL": "postgresql+psycopg://mmbcd:mmbcd@db/mmbcd",
        "MMBCD_NODE__STORAGE__ROOT": "/var/lib/mmbcd-node/storage",
        "MMBCD_NODE__HTTP__HOST": "0.0.0.0"})
    assert config.destination("pacs").storage_commitment


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.mark.parametrize("change, problem", [
    (lambda t: re.sub(r"(?m)^max_connections = .*\n", "", t),
     "hl7.max_connections: in the model, not in the example"),
    (lambda t: _replace(t, "# ca = \"/etc/mmbcd-node/audit-ca.pem\"", "# cafile = \"x.pem\""),
     "audit.syslog.ca: in the model, not in the example"),
    (lambda t: _replace(t, "[http]\n", "[http]\nbind = \"::\"  # where\n"),
     "http.bind (line"),
    (lambda t: _replace(t, "port = 8080 ", "port = 8081 "),
     "http.port (line"),
    (lambda t: _replace(t, "# port = 2576 ", "# port = 2577 "),
     "hl7.results.port (line"),
    (lambda t: _replace(t, "device = \"auto\"               # auto | cpu | cuda | cuda:N",
                        "device = \"auto\""),
     "model.device (line"),
    (lambda t: _replace(t, "# bundle = \"/opt", "bundle = \"/opt"),
     None),  # set rather than shown: still deliberately different, still fine
    (lambda t: _replace(t, "# history = [\"OBR-13\", ", "# history = ["),
     "hl7.mapping: the defaults shown"),
])
def test_the_agreement_check_finds_what_was_changed(change: Any, problem: str | None) -> None:
    problems = example_problems(change(EXAMPLE.read_text(encoding="utf-8")))
    if problem is None:
        assert problems == []
    else:
        assert any(p.startswith(problem) for p in problems), problems
