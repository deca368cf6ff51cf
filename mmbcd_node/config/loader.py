"""Loading the configuration: pydantic-settings over the TOML file and the environment.

Two sources, merged key by key, the environment first: ``MMBCD_NODE__SECTION__KEY``
variables (``EnvOverrides``) and the TOML file (pydantic-settings' own
``TomlConfigSettingsSource``). Every error becomes one ``ConfigError`` whose lines each
name where the value came from (the file, or the variable), the key and the problem.
"""

from __future__ import annotations

import difflib
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError, create_model
from pydantic.dataclasses import is_pydantic_dataclass
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from mmbcd_node.config.errors import ConfigError
from mmbcd_node.config.sections import NodeConfig

ENV_FILE = "MMBCD_NODE_CONFIG"
ENV_PREFIX = "MMBCD_NODE__"
NESTING = "__"


class _SettingsBase(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid", frozen=True)


def _dataclass_fields(cls: Any) -> dict[str, FieldInfo]:
    return dict(cls.__pydantic_fields__)


# The settings model: NodeConfig's sections, with their types and defaults (not ``source``).
_SECTIONS: dict[str, Any] = {name: (info.annotation, info)
                             for name, info in _dataclass_fields(NodeConfig).items()
                             if name != "source"}
NodeSettings = create_model("NodeSettings", __base__=_SettingsBase, **_SECTIONS)


def load_config(path: str | Path | None = None,
                environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Load the configuration from ``path`` (or ``$MMBCD_NODE_CONFIG``, or defaults).

    Environment overrides ``MMBCD_NODE__SECTION__KEY`` are applied on top.
    Raises ``ConfigError`` naming the offending key and the file (or the variable).
    """
    env = os.environ if environ is None else environ
    if path is None and env.get(ENV_FILE):
        path = env[ENV_FILE]
    source = "<defaults>" if path is None else str(path)
    file = None if path is None else _toml_source(Path(path), source)
    overrides = EnvOverrides(NodeSettings, env)
    # Highest priority first; pydantic-settings merges them table by table, key by key.
    sources: list[PydanticBaseSettingsSource] = [overrides] + ([file] if file is not None else [])

    class Loaded(NodeSettings):  # type: ignore[misc, valid-type]  # a class made at import
        """The settings read from this load's sources (and no others)."""

        @classmethod
        def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                       **defaults: PydanticBaseSettingsSource,
                                       ) -> tuple[PydanticBaseSettingsSource, ...]:
            return tuple(sources)

    try:
        settings = Loaded()
        return NodeConfig(**{name: getattr(settings, name) for name in NodeSettings.model_fields},
                          source=source)
    except ValidationError as exc:
        raise ConfigError(describe(exc, source, overrides.origins)) from None


def _toml_source(path: Path, source: str) -> TomlConfigSettingsSource:
    if not path.exists():
        raise ConfigError(f"{source}: file not found")
    if not path.is_file():
        raise ConfigError(f"{source}: not a file")
    try:
        return TomlConfigSettingsSource(NodeSettings, toml_file=path)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not valid TOML: not UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot be read: {exc.strerror or exc}") from None


class EnvOverrides(PydanticBaseSettingsSource):
    """``MMBCD_NODE__SECTION__KEY`` variables of ``environ`` as nested tables.

    The name below the prefix is the key path, ``__`` between levels, any case
    (``MMBCD_NODE__DICOM__TLS__CERT`` is ``dicom.tls.cert``). A name that is no key is
    refused, naming the variable. The value is read as a TOML literal (``11112``,
    ``true``, ``["A", "B"]``, ``{host = "x"}``); what does not parse stays a string, and a
    key that takes a string or a path keeps the text as written unless it is quoted.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.values: dict[str, Any] = {}
        self.origins: dict[tuple[str, ...], str] = {}  # key path -> the variable that set it
        names = [name for name in environ if name.startswith(ENV_PREFIX)]
        for name in sorted(names, key=lambda n: (n.count(NESTING), n)):  # tables before keys
            self._add(name, environ[name])

    def _add(self, name: str, text: str) -> None:
        keys = tuple(name[len(ENV_PREFIX):].lower().split(NESTING))
        annotation: Any = self.settings_cls
        for depth, key in enumerate(keys):
            here = ".".join(keys[:depth + 1])
            if not key:
                raise ConfigError(f"{name}: names no key (MMBCD_NODE__SECTION__KEY)")
            container = _unwrap(annotation)
            if typing.get_origin(container) is dict:
                annotation = typing.get_args(container)[1]
                continue
            if typing.get_origin(container) is list:
                whole = ENV_PREFIX + NESTING.join(keys[:depth]).upper()
                raise ConfigError(f"{name}: {'.'.join(keys[:depth])} is a list; set it whole "
                                  f"as {whole}='[...]'")
            fields = _fields_of(container)
            if fields is None:
                raise ConfigError(f"{name}: {'.'.join(keys[:depth])} is not a table")
            if key not in fields:
                raise ConfigError(f"{name}: {_unknown(here, fields)}")
            annotation = fields[key].annotation
        table = self.values
        for depth, key in enumerate(keys[:-1]):
            table = table.setdefault(key, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{name}: {'.'.join(keys[:depth + 1])} is set by "
                                  f"{self.origins[keys[:depth + 1]]}, not as a table")
        table[keys[-1]] = _parse(text, _unwrap(annotation) in (str, Path))
        self.origins[keys] = name

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self.values


def _parse(text: str, textual: bool) -> Any:
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    return text if textual and not isinstance(value, str) else value


def _unwrap(annotation: Any) -> Any:
    """``annotation`` without ``Annotated`` and ``| None``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _fields_of(annotation: Any) -> dict[str, FieldInfo] | None:
    """The keys of a table type (a section or the settings), or None if not a table."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return dict(annotation.model_fields)
    if is_pydantic_dataclass(annotation):
        return _dataclass_fields(annotation)
    return None


def _fields_at(loc: tuple[int | str, ...]) -> dict[str, FieldInfo] | None:
    annotation: Any = NodeSettings
    for key in loc:
        container = _unwrap(annotation)
        origin = typing.get_origin(container)
        if origin in (list, dict):
            annotation = typing.get_args(container)[-1]
            continue
        fields = _fields_of(container)
        if fields is None or key not in fields:
            return None
        annotation = fields[str(key)].annotation
    return _fields_of(_unwrap(annotation))


def _unknown(key: str, fields: Mapping[str, FieldInfo]) -> str:
    parent, _, last = key.rpartition(".")
    close = difflib.get_close_matches(last, list(fields), n=1)
    hint = f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close else ""
    return f"unknown key {key}{hint}"


def render(loc: tuple[int | str, ...]) -> str:
    """A location as the file names it: ``destinations[0].ae_title``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


_TYPES = {"int": "int", "float": "float", "bool": "bool (true or false)", "string": "str",
          "list": "a list", "dict": "a table", "dataclass": "a table", "model": "a table",
          "path": "a path string"}


def describe(exc: ValidationError, source: str,
             origins: Mapping[tuple[str, ...], str]) -> str:
    """One line per problem: where the value came from, the key, what is wrong."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        cross = error["type"] == "value_error"  # a check may read the keys beside it
        lines.append(f"{_origin(loc, source, origins, cross)}: {_problem(error, loc)}")
    return "\n".join(dict.fromkeys(lines))


def _origin(loc: tuple[int | str, ...], source: str,
            origins: Mapping[tuple[str, ...], str], cross: bool) -> str:
    """The variable that set ``loc`` or a table above it; else the file, with the
    variables that set keys below ``loc`` (or beside it, for a check across keys)."""
    for depth in range(len(loc), 0, -1):
        if loc[:depth] in origins:
            return origins[loc[:depth]]  # type: ignore[index]
    near = loc[:-1] if cross and len(loc) > 1 else loc
    others = [name for keys, name in origins.items() if keys[:len(near)] == near]
    if not others:
        return source
    return ", ".join(others if source == "<defaults>" else [source, *others])


def _problem(error: Any, loc: tuple[int | str, ...]) -> str:
    key, kind, value = render(loc), error["type"], error.get("input")
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return _unknown(key, _fields_at(loc[:-1]) or {})
    if kind == "missing":
        return f"{render(loc[:-1]) or 'the top level'} needs key {key}"
    if kind == "value_error":
        problem = error["ctx"]["error"]
        return str(problem) if isinstance(problem, ConfigError) else f"{key} {problem}"
    expected = _TYPES.get(kind.split("_")[0])
    if expected is not None and kind.endswith(("_type", "_parsing", "_from_float")):
        shown = repr(value)
        return f"{key} must be {expected}, not {shown if len(shown) <= 60 else shown[:57] + '...'}"
    return f"{key}: {error['msg']}"
