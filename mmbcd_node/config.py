"""The node's configuration: one TOML file loaded once into typed, frozen objects.

The file is named by ``--config PATH`` or ``MMBCD_NODE_CONFIG``; without either the
embedded defaults apply (SQLite and storage under ``var/``). Any key may be overridden
from the environment as ``MMBCD_NODE__SECTION__KEY`` (``MMBCD_NODE__DATABASE__URL``,
``MMBCD_NODE__DICOM__TLS__CERT``); the value is read as a TOML literal when it parses
as one, else as a plain string.

Every error names the key and the file. Unknown keys are errors, so a typo never
passes silently.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmbcd_node.output_kinds import DEFAULT_KINDS, RESULT_KINDS, SR_CLASS_UIDS, unknown_kinds

ENV_FILE = "MMBCD_NODE_CONFIG"
ENV_PREFIX = "MMBCD_NODE__"


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names key and source."""


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///var/mmbcd-node.db"


@dataclass(frozen=True)
class StorageConfig:
    root: Path = Path("var/storage")


@dataclass(frozen=True)
class TlsConfig:
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    require_client_cert: bool = False

    @property
    def enabled(self) -> bool:
        return self.cert is not None


MIN_PDU_SIZE, MAX_PDU_SIZE = 4096, 16 << 20


@dataclass(frozen=True)
class DicomConfig:
    ae_title: str = "MMBCD"
    host: str = "0.0.0.0"
    port: int = 11112
    # Entries are "AE" or "AE@address". An empty list admits any AE from loopback only.
    allowed_calling_aes: list[str] = field(default_factory=list)
    max_associations: int = 10
    # Connections whose A-ASSOCIATE-RQ has not been accepted yet, in all and per peer
    # address: they never take the slots of max_associations.
    max_unauthenticated: int = 8
    max_unauthenticated_per_peer: int = 4
    # The Maximum Length Received the node announces: a longer P-DATA-TF is aborted.
    max_pdu_size: int = 1_048_576
    # What the receiver's connections may make it hold at once, worst case; a node whose
    # limits could exceed it refuses to start (receive/memory_budget.py).
    memory_budget_bytes: int = 1 << 30
    min_free_bytes: int = 1_000_000_000
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    uid_root: str = "1.2.826.0.1.3680043.10.1453."
    tls: TlsConfig = field(default_factory=TlsConfig)

    def __post_init__(self) -> None:
        # 0 (no limit) is refused: the PDU is what a connection holds in memory.
        if not MIN_PDU_SIZE <= self.max_pdu_size <= MAX_PDU_SIZE:
            raise ConfigError(f"dicom.max_pdu_size must be {MIN_PDU_SIZE} .. {MAX_PDU_SIZE} "
                              f"bytes, not {self.max_pdu_size}")


@dataclass(frozen=True)
class CompletionConfig:
    expected_views_quiet_seconds: float = 5.0
    quiet_seconds: float = 120.0
    check_interval_seconds: float = 1.0


@dataclass(frozen=True)
class Hl7Config:
    host: str = "0.0.0.0"
    port: int = 2575
    max_message_bytes: int = 1_048_576
    read_timeout_seconds: float = 60.0
    # Addresses or networks the RIS may connect from; loopback is always served.
    allowed_senders: list[str] = field(default_factory=list)
    # Connections open at once; more are closed at once (and audited).
    max_connections: int = 32
    # MSH-11 processing ids accepted; others are answered AR 202 ("T" on a test node).
    processing_ids: list[str] = field(default_factory=lambda: ["P"])
    tls: TlsConfig = field(default_factory=TlsConfig)
    # Target name -> ordered list of HL7 field paths tried in turn ("IPC-1", "OBR-18").
    mapping: dict[str, list[str]] = field(default_factory=dict)
    results: Hl7ResultsConfig | None = None


@dataclass(frozen=True)
class Hl7ResultsConfig:
    host: str = "127.0.0.1"
    port: int = 2576
    timeout_seconds: float = 30.0
    max_attempts: int = 20
    backoff_seconds: float = 10.0
    receiving_application: str = "RIS"  # MSH-5
    receiving_facility: str = ""  # MSH-6


@dataclass(frozen=True)
class OrdersConfig:
    wait_seconds: float = 600.0
    no_order_policy: str = "hold"  # hold | run_without_history
    date_window_days: int = 3
    check_interval_seconds: float = 1.0  # how often complete studies are matched

    def __post_init__(self) -> None:
        if self.no_order_policy not in ("hold", "run_without_history"):
            raise ConfigError(
                f"orders.no_order_policy must be 'hold' or 'run_without_history', "
                f"not {self.no_order_policy!r}"
            )


@dataclass(frozen=True)
class ModelConfig:
    bundle: Path | None = None  # None = the bundle shipped with the package
    device: str = "auto"  # auto | cpu | cuda | cuda:N


@dataclass(frozen=True)
class WorkerConfig:
    lease_seconds: float = 120.0
    heartbeat_seconds: float = 10.0
    max_attempts: int = 3
    backoff_seconds: float = 30.0
    batch_size: int = 4
    poll_seconds: float = 1.0
    # A job's queue position ages by one priority level per this many seconds waited.
    priority_aging_seconds: float = 300.0


@dataclass(frozen=True)
class ResultsConfig:
    series_numbers: int = 9900  # first series number of the block used for our outputs
    kinds: list[str] = field(default_factory=lambda: list(DEFAULT_KINDS))
    sr_class: str = "comprehensive"  # comprehensive | comprehensive3d

    def __post_init__(self) -> None:
        _check_sr_class("results.sr_class", self.sr_class)
        _check_kinds("results.kinds", self.kinds)
        # The block holds SR, CAD SR, SC, GSPS and rejection-note series (offsets 0-4).
        if not 1 <= self.series_numbers <= 2**31 - 5:
            raise ConfigError(f"results.series_numbers must be 1 .. {2**31 - 5}, "
                              f"not {self.series_numbers}")


@dataclass(frozen=True)
class DestinationConfig:
    name: str
    ae_title: str
    host: str
    port: int
    storage_commitment: bool = False
    kinds: list[str] = field(default_factory=lambda: list(DEFAULT_KINDS))
    sr_class: str | None = None
    max_attempts: int = 20
    backoff_seconds: float = 10.0
    # With storage_commitment: objects without a commitment report this long are resent.
    commitment_timeout_seconds: float = 3600.0
    # Before sending again what a dead sender may have sent, ask by C-FIND (Study Root,
    # IMAGE level) whether the destination has it already.
    query_before_resend: bool = False

    def __post_init__(self) -> None:
        _check_kinds(f"destinations.{self.name}.kinds", self.kinds)
        if self.sr_class is not None:
            _check_sr_class(f"destinations.{self.name}.sr_class", self.sr_class)


def _check_kinds(key: str, kinds: list[str]) -> None:
    unknown = unknown_kinds(kinds)
    if unknown:
        raise ConfigError(f"{key} has unknown kind(s) {', '.join(unknown)} "
                          f"(known: {', '.join(kind.value for kind in RESULT_KINDS)})")


def _check_sr_class(key: str, sr_class: str) -> None:
    if sr_class not in SR_CLASS_UIDS:
        raise ConfigError(f"{key} must be one of {', '.join(map(repr, SR_CLASS_UIDS))}, "
                          f"not {sr_class!r}")


@dataclass(frozen=True)
class RetentionConfig:
    delivered_days: int = 30
    undelivered_days: int = 180
    schedule: str = "0 3 * * *"  # cron, local time


@dataclass(frozen=True)
class SyslogConfig:
    host: str = "127.0.0.1"
    port: int = 514
    transport: str = "udp"  # udp | tcp | tls
    ca: Path | None = None

    def __post_init__(self) -> None:
        if self.transport not in ("udp", "tcp", "tls"):
            raise ConfigError(f"audit.syslog.transport must be 'udp', 'tcp' or 'tls', "
                              f"not {self.transport!r}")


@dataclass(frozen=True)
class AuditConfig:
    syslog: SyslogConfig | None = None


@dataclass(frozen=True)
class HttpConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True)
class LoggingConfig:
    format: str = "keyvalue"  # keyvalue | json
    level: str = "INFO"


@dataclass(frozen=True)
class NodeConfig:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    dicom: DicomConfig = field(default_factory=DicomConfig)
    completion: CompletionConfig = field(default_factory=CompletionConfig)
    hl7: Hl7Config = field(default_factory=Hl7Config)
    orders: OrdersConfig = field(default_factory=OrdersConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    results: ResultsConfig = field(default_factory=ResultsConfig)
    destinations: list[DestinationConfig] = field(default_factory=list)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source: str = "<defaults>"

    def destination(self, name: str) -> DestinationConfig:
        """The destination called ``name``; ``KeyError`` naming the known ones if absent."""
        for dest in self.destinations:
            if dest.name == name:
                return dest
        known = ", ".join(d.name for d in self.destinations) or "none configured"
        raise KeyError(f"no destination {name!r} (known: {known})")


def load_config(path: str | Path | None = None,
                environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Load the configuration from ``path`` (or ``$MMBCD_NODE_CONFIG``, or defaults).

    Environment overrides ``MMBCD_NODE__SECTION__KEY`` are applied on top.
    Raises ``ConfigError`` naming the offending key and the file.
    """
    env = os.environ if environ is None else environ
    if path is None and env.get(ENV_FILE):
        path = env[ENV_FILE]
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{source}: file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    _apply_env_overrides(raw, env, source)
    config = _build(NodeConfig, raw, "", source)
    return dataclasses.replace(config, source=source)


def _apply_env_overrides(raw: dict[str, Any], env: Mapping[str, str], source: str) -> None:
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__") if k]
        if not keys:
            continue
        target = raw
        for key in keys[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{name}: {'.'.join(keys)} does not name a table in {source}")
        try:
            target[keys[-1]] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            target[keys[-1]] = value


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where} must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    for key in raw:
        if key not in fields:
            raise ConfigError(f"{source}: unknown key {prefix}{key}")
    kwargs = {name: _convert(hints[name], raw[name], f"{prefix}{name}", source)
              for name in fields if name in raw}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        missing = [n for n, f in fields.items() if n not in raw
                   and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        needed = ", ".join(prefix + m for m in missing)
        raise ConfigError(f"{source}: {where} needs key(s) {needed}") from exc
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _convert(hint: Any, value: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], value, key, source)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{key}.", source)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} must be a list")
        (item,) = typing.get_args(hint)
        return [_convert(item, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a table")
        _, item = typing.get_args(hint)
        return {k: _convert(item, v, f"{key}.{k}", source) for k, v in value.items()}
    if hint is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key} must be a path string")
        return Path(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (str, int, float, bool) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{source}: {key} must be {hint.__name__}, not {value!r}")
    return value
