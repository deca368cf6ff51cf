"""The sections of the node's configuration: frozen pydantic dataclasses, one per table.

Each key's type carries its check (``values``), so an object built in code is checked
as one loaded from the file is. Unknown keys are refused (``extra="forbid"``).
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Annotated

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.dataclasses import dataclass

from mmbcd_node.config.errors import ConfigError
from mmbcd_node.config.values import (
    AeTitle,
    Amount,
    BindAddress,
    Bool,
    CallingAe,
    Count,
    DatabaseUrl,
    Delay,
    Device,
    FilePath,
    Hl7Text,
    Host,
    Int,
    LogLevel,
    Network,
    Port,
    ProcessingId,
    Seconds,
    Str,
    UidRoot,
    at_least,
    between,
    check,
    kinds_problem,
    not_empty,
    one_of,
    sr_class_problem,
)
from mmbcd_node.output_kinds import DEFAULT_KINDS

STRICT = ConfigDict(extra="forbid")


@dataclass(frozen=True, config=STRICT)
class DatabaseConfig:
    url: DatabaseUrl = "sqlite:///var/mmbcd-node.db"


@dataclass(frozen=True, config=STRICT)
class StorageConfig:
    root: FilePath = Path("var/storage")


def _key_needs_cert(cls: type, key: Path | None, info: ValidationInfo) -> Path | None:
    """A key without its certificate is a mistake, in a server's TLS and a client's."""
    if key is not None and info.data.get("cert") is None:
        raise ValueError("is set but cert is not (the key belongs to the certificate)")
    return key


@dataclass(frozen=True, config=STRICT)
class TlsConfig:
    cert: FilePath | None = None
    key: FilePath | None = None
    ca: FilePath | None = None
    require_client_cert: Bool = False

    @property
    def enabled(self) -> bool:
        return self.cert is not None

    _key = field_validator("key")(_key_needs_cert)

    @field_validator("require_client_cert")
    @classmethod
    def _client_certs_need_ca(cls, required: bool, info: ValidationInfo) -> bool:
        if required and info.data.get("ca") is None:
            raise ValueError("needs ca (the CA that peers' certificates are verified against)")
        return required


@dataclass(frozen=True, config=STRICT)
class ClientTlsConfig:
    """TLS to a peer the node connects to (a destination, the RIS, the audit repository).

    ``enabled`` turns it on; the peer's certificate is verified against ``ca`` (else the
    system's trust store) and its host; ``cert``/``key`` are presented when set.
    """

    enabled: Bool = False
    ca: FilePath | None = None
    cert: FilePath | None = None
    key: FilePath | None = None

    _key = field_validator("key")(_key_needs_cert)

    @model_validator(mode="after")
    def _consistent(self) -> ClientTlsConfig:
        if not self.enabled and (self.ca or self.cert):
            raise ValueError("ca or cert is set but enabled is false (TLS would not be used)")
        return self


MIN_PDU_SIZE, MAX_PDU_SIZE = 4096, 16 << 20


@dataclass(frozen=True, config=STRICT)
class DicomConfig:
    ae_title: AeTitle = "MMBCD"
    host: BindAddress = "0.0.0.0"
    port: Port = 11112
    # Entries are "AE" or "AE@address". An empty list admits any AE from loopback only.
    allowed_calling_aes: list[CallingAe] = field(default_factory=list)
    max_associations: Count = 10
    # Connections whose A-ASSOCIATE-RQ has not been accepted yet, in all and per peer
    # address: they never take the slots of max_associations.
    max_unauthenticated: Count = 8
    max_unauthenticated_per_peer: Count = 4
    # The Maximum Length Received the node announces: a longer P-DATA-TF is aborted.
    # 0 (no limit) is refused: the PDU is what a connection holds in memory.
    max_pdu_size: Annotated[Int, between(MIN_PDU_SIZE, MAX_PDU_SIZE)] = 1_048_576
    # What the receiver's connections may make it hold at once, worst case; a node whose
    # limits could exceed it refuses to start (receive/memory_budget.py).
    memory_budget_bytes: Annotated[Int, at_least(1)] = 1 << 30
    min_free_bytes: Amount = 1_000_000_000
    acse_timeout: Seconds = 30.0
    dimse_timeout: Seconds = 60.0
    network_timeout: Seconds = 60.0
    uid_root: UidRoot = "1.2.826.0.1.3680043.10.1453."
    tls: TlsConfig = field(default_factory=TlsConfig)


@dataclass(frozen=True, config=STRICT)
class CompletionConfig:
    expected_views_quiet_seconds: Delay = 5.0
    quiet_seconds: Delay = 120.0
    check_interval_seconds: Seconds = 1.0


@dataclass(frozen=True, config=STRICT)
class Hl7ResultsConfig:
    host: Host = "127.0.0.1"
    port: Port = 2576
    timeout_seconds: Seconds = 30.0
    max_attempts: Count = 20
    backoff_seconds: Delay = 10.0
    receiving_application: Hl7Text = "RIS"  # MSH-5
    receiving_facility: Hl7Text = ""  # MSH-6
    tls: ClientTlsConfig = field(default_factory=ClientTlsConfig)


@dataclass(frozen=True, config=STRICT)
class Hl7Config:
    host: BindAddress = "0.0.0.0"
    port: Port = 2575
    max_message_bytes: Count = 1_048_576
    read_timeout_seconds: Seconds = 60.0
    # Addresses or networks the RIS may connect from; loopback is always served.
    allowed_senders: list[Network] = field(default_factory=list)
    # Connections open at once; more are closed at once (and audited).
    max_connections: Count = 32
    # MSH-11 processing ids accepted; others are answered AR 202 ("T" on a test node).
    processing_ids: Annotated[list[ProcessingId], check(not_empty)] = field(
        default_factory=lambda: ["P"])
    tls: TlsConfig = field(default_factory=TlsConfig)
    # Target name -> ordered list of HL7 field paths tried in turn ("IPC-1", "OBR-18");
    # targets and paths are checked by orders/mapping.py when the HL7 roles start.
    mapping: dict[Str, list[Str]] = field(default_factory=dict)
    results: Hl7ResultsConfig | None = None


@dataclass(frozen=True, config=STRICT)
class OrdersConfig:
    wait_seconds: Delay = 600.0
    no_order_policy: Annotated[Str, one_of("hold", "run_without_history")] = "hold"
    date_window_days: Amount = 3
    check_interval_seconds: Seconds = 1.0  # how often complete studies are matched


@dataclass(frozen=True, config=STRICT)
class ModelConfig:
    bundle: FilePath | None = None  # None = the bundle shipped with the package
    device: Device = "auto"  # auto | cpu | cuda | cuda:N (ml.pipeline.resolve_device)


@dataclass(frozen=True, config=STRICT)
class WorkerConfig:
    lease_seconds: Seconds = 120.0
    # Checked against lease_seconds even when left at its default.
    heartbeat_seconds: Seconds = Field(default=10.0, validate_default=True)
    max_attempts: Count = 3
    backoff_seconds: Delay = 30.0
    batch_size: Count = 4
    poll_seconds: Seconds = 1.0
    # A job's queue position ages by one priority level per this many seconds waited.
    priority_aging_seconds: Seconds = 300.0

    @field_validator("heartbeat_seconds")
    @classmethod
    def _heartbeat_within_lease(cls, heartbeat: float, info: ValidationInfo) -> float:
        lease = info.data.get("lease_seconds")
        if lease is not None and heartbeat >= lease:
            raise ValueError(f"must be less than lease_seconds ({lease}), not {heartbeat}: "
                             f"leases would lapse between renewals")
        return heartbeat


@dataclass(frozen=True, config=STRICT)
class ResultsConfig:
    # First series number of the block used for our outputs; the block holds SR, CAD SR,
    # SC, GSPS and rejection-note series (offsets 0-4).
    series_numbers: Annotated[Int, between(1, 2**31 - 5)] = 9900
    kinds: Annotated[list[Str], check(kinds_problem)] = field(
        default_factory=lambda: list(DEFAULT_KINDS))
    sr_class: Annotated[Str, check(sr_class_problem)] = "comprehensive"


@dataclass(frozen=True, config=STRICT)
class DestinationConfig:
    name: Annotated[Str, check(lambda v: None if v.strip() else "must not be empty")]
    ae_title: AeTitle
    host: Host
    port: Port
    storage_commitment: Bool = False
    kinds: list[Str] = field(default_factory=lambda: list(DEFAULT_KINDS))
    sr_class: Str | None = None
    max_attempts: Count = 20
    backoff_seconds: Delay = 10.0
    # With storage_commitment: objects without a commitment report this long are resent.
    commitment_timeout_seconds: Seconds = 3600.0
    # Before sending again what a dead sender may have sent, ask by C-FIND (Study Root,
    # IMAGE level) whether the destination has it already.
    query_before_resend: Bool = False
    # TLS for the C-STORE, storage commitment and C-FIND associations to this destination.
    tls: ClientTlsConfig = field(default_factory=ClientTlsConfig)

    @model_validator(mode="after")
    def _kinds_and_sr_class(self) -> DestinationConfig:
        # Named by the destination's name, which the site knows it by.
        problem = kinds_problem(self.kinds)
        if problem is not None:
            raise ConfigError(f"destinations.{self.name}.kinds {problem}")
        if self.sr_class is not None and (problem := sr_class_problem(self.sr_class)):
            raise ConfigError(f"destinations.{self.name}.sr_class {problem}")
        return self


def _unique_names(destinations: list[DestinationConfig]) -> str | None:
    names = [dest.name for dest in destinations]
    twice = sorted({name for name in names if names.count(name) > 1})
    return f"has the name(s) {', '.join(map(repr, twice))} more than once" if twice else None


@dataclass(frozen=True, config=STRICT)
class RetentionConfig:
    delivered_days: Amount = 30
    undelivered_days: Amount = 180
    # Cron, local time. Parsed by the retention pass; `mmbcd-node doctor` reports a
    # wrong one with its fix, so it is not refused here.
    schedule: Str = "0 3 * * *"


@dataclass(frozen=True, config=STRICT)
class SyslogConfig:
    host: Host = "127.0.0.1"
    port: Port = 514
    transport: Annotated[Str, one_of("udp", "tcp", "tls")] = "udp"
    ca: FilePath | None = None
    # With tls: the node's certificate, presented to the audit repository (ATNA's secure
    # node authenticates both ends).
    cert: FilePath | None = None
    key: FilePath | None = None

    @model_validator(mode="after")
    def _client_certificate_for_tls(self) -> SyslogConfig:
        if self.transport == "tls" and self.cert is None:
            raise ValueError("transport tls needs cert (and key): ATNA authenticates the "
                             "node to the audit repository")
        if self.transport != "tls" and (self.ca or self.cert):
            raise ValueError("ca and cert are used with transport tls only")
        return self


@dataclass(frozen=True, config=STRICT)
class AuditConfig:
    syslog: SyslogConfig | None = None


@dataclass(frozen=True, config=STRICT)
class HttpConfig:
    enabled: Bool = True
    host: BindAddress = "127.0.0.1"
    port: Port = 8080


@dataclass(frozen=True, config=STRICT)
class LoggingConfig:
    format: Annotated[Str, one_of("keyvalue", "json")] = "keyvalue"
    level: LogLevel = "INFO"


@dataclass(frozen=True, config=STRICT)
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
    destinations: Annotated[list[DestinationConfig], check(_unique_names)] = field(
        default_factory=list)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source: str = "<defaults>"  # the file loaded, for messages; not a key

    def destination(self, name: str) -> DestinationConfig:
        """The destination called ``name``; ``KeyError`` naming the known ones if absent."""
        for dest in self.destinations:
            if dest.name == name:
                return dest
        known = ", ".join(d.name for d in self.destinations) or "none configured"
        raise KeyError(f"no destination {name!r} (known: {known})")
