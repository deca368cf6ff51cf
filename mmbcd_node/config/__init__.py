"""The node's configuration: one TOML file loaded once into typed, frozen objects.

The file is named by ``--config PATH`` or ``MMBCD_NODE_CONFIG``; without either the
embedded defaults apply (SQLite and storage under ``var/``). Any key may be overridden
from the environment as ``MMBCD_NODE__SECTION__KEY`` (``MMBCD_NODE__DATABASE__URL``,
``MMBCD_NODE__DICOM__TLS__CERT``); the value is read as a TOML literal when it parses
as one, else as a plain string. The environment wins over the file.

Every key is checked (type, range, choice, address, AE title); every error names the
key and the file, or the variable. Unknown keys, in the file or under ``MMBCD_NODE__``,
are errors, so a typo never passes silently.

``sections`` holds the frozen pydantic dataclasses, ``values`` the checked value types,
``loader`` the pydantic-settings sources and the error messages.
"""

from mmbcd_node.config.errors import ConfigError
from mmbcd_node.config.loader import ENV_FILE, ENV_PREFIX, load_config
from mmbcd_node.config.sections import (
    MAX_PDU_SIZE,
    MIN_PDU_SIZE,
    AuditConfig,
    ClientTlsConfig,
    CompletionConfig,
    DatabaseConfig,
    DestinationConfig,
    DicomConfig,
    Hl7Config,
    Hl7ResultsConfig,
    HttpConfig,
    LoggingConfig,
    ModelConfig,
    NodeConfig,
    OrdersConfig,
    ResultsConfig,
    RetentionConfig,
    StorageConfig,
    SyslogConfig,
    TlsConfig,
    WorkerConfig,
)

__all__ = [
    "ENV_FILE", "ENV_PREFIX", "MAX_PDU_SIZE", "MIN_PDU_SIZE", "AuditConfig", "ClientTlsConfig",
    "CompletionConfig",
    "ConfigError", "DatabaseConfig", "DestinationConfig", "DicomConfig", "Hl7Config",
    "Hl7ResultsConfig", "HttpConfig", "LoggingConfig", "ModelConfig", "NodeConfig",
    "OrdersConfig", "ResultsConfig", "RetentionConfig", "StorageConfig", "SyslogConfig",
    "TlsConfig", "WorkerConfig", "load_config",
]
