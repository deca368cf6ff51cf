"""Configuration: one TOML file, typed, strict about unknown keys, every error names the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmbcd_node.config import ConfigError, load_config

EXAMPLE = Path(__file__).resolve().parents[1] / "conf" / "mmbcd-node.example.toml"


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(body)
    return path


def test_defaults_are_the_embedded_setup() -> None:
    config = load_config(environ={})
    assert config.database.url.startswith("sqlite:///var/")
    assert config.storage.root == Path("var/storage")
    assert config.dicom.port == 11112 and config.hl7.port == 2575


def test_example_config_loads_and_documents_every_section() -> None:
    config = load_config(EXAMPLE, environ={})
    assert config.source == str(EXAMPLE)
    assert config.destinations and config.destinations[0].name


def test_unknown_key_is_an_error_naming_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[dicom]\nae_titel = 'X'\n")
    with pytest.raises(ConfigError, match=r"node\.toml: unknown key dicom\.ae_titel"):
        load_config(path, environ={})


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[dicom]\nport = 'eleven'\n")
    with pytest.raises(ConfigError, match=r"dicom\.port must be int"):
        load_config(path, environ={})


def test_destination_needs_its_required_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "[[destinations]]\nname = 'pacs'\nport = 104\n")
    with pytest.raises(ConfigError, match=r"destinations\[0\]\.ae_title"):
        load_config(path, environ={})


@pytest.mark.parametrize("line, message", [
    ("kinds = ['sr', 'pdf']", r"destinations\.pacs\.kinds has unknown kind\(s\) pdf"),
    ("sr_class = 'enhanced'", r"destinations\.pacs\.sr_class must be one of"),
])
def test_destination_kinds_and_sr_class_are_the_node_s_own(tmp_path: Path, line: str,
                                                           message: str) -> None:
    path = write(tmp_path, "[[destinations]]\nname = 'pacs'\nae_title = 'PACS'\n"
                           f"host = '127.0.0.1'\nport = 104\n{line}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[dicom]\nport = 104\n")
    config = load_config(path, environ={"MMBCD_NODE__DICOM__PORT": "11113",
                                        "MMBCD_NODE__DATABASE__URL": "sqlite:///x.db",
                                        "MMBCD_NODE__DICOM__TLS__CERT": "/etc/node.pem"})
    assert config.dicom.port == 11113
    assert config.database.url == "sqlite:///x.db"
    assert config.dicom.tls.cert == Path("/etc/node.pem")


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[dicom]\nae_title = 'FROMENV'\n")
    assert load_config(environ={"MMBCD_NODE_CONFIG": str(path)}).dicom.ae_title == "FROMENV"


def test_invalid_policy_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "[orders]\nno_order_policy = 'guess'\n")
    with pytest.raises(ConfigError, match="no_order_policy"):
        load_config(path, environ={})


def test_a_pdu_size_without_limit_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[dicom]\nmax_pdu_size = 0\n")
    with pytest.raises(ConfigError, match=r"dicom\.max_pdu_size must be 4096 \.\. 16777216"):
        load_config(path, environ={})


def test_limits_beyond_the_memory_budget_stop_the_receiver_naming_the_figures(
        tmp_path: Path) -> None:
    from mmbcd_node.receive.memory_budget import check_memory_budget

    fits = load_config(EXAMPLE, environ={}).dicom
    assert check_memory_budget(fits).total <= fits.memory_budget_bytes
    path = write(tmp_path, "[dicom]\nmax_associations = 40\n")
    with pytest.raises(ConfigError, match=r"worst case of \d+ bytes .*max_associations 40 x"):
        check_memory_budget(load_config(path, environ={}).dicom)


# -- Strict keys: unknown ones are refused, in the file and in the environment -----------


@pytest.mark.parametrize("body, message", [
    ("[dicom]\nprot = 104\n",
     r"node\.toml: unknown key dicom\.prot \(did you mean dicom\.port\?\)"),
    ("[dicom.tls]\ncrt = 'x.pem'\n", r"node\.toml: unknown key dicom\.tls\.crt"),
    ("[dicomm]\nport = 104\n", r"node\.toml: unknown key dicomm"),
    ("[[destinations]]\nname = 'p'\nae_title = 'P'\nhost = 'h'\nport = 1\nqueries = true\n",
     r"node\.toml: unknown key destinations\[0\]\.queries"),
    ("[audit.syslog]\nhots = 'x'\n", r"node\.toml: unknown key audit\.syslog\.hots"),
])
def test_unknown_keys_anywhere_are_refused_naming_key_and_file(tmp_path: Path, body: str,
                                                               message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, body), environ={})


@pytest.mark.parametrize("name, message", [
    ("MMBCD_NODE__DICOM__PROT", r"^MMBCD_NODE__DICOM__PROT: unknown key dicom\.prot"),
    ("MMBCD_NODE__DICOMM__PORT", r"^MMBCD_NODE__DICOMM__PORT: unknown key dicomm"),
    ("MMBCD_NODE__DICOM__TLS__CRT", r"^MMBCD_NODE__DICOM__TLS__CRT: unknown key dicom\.tls\.crt"),
    ("MMBCD_NODE__DICOM__PORT__NUMBER", r"^MMBCD_NODE__DICOM__PORT__NUMBER: dicom\.port is not "
                                        r"a table"),
    ("MMBCD_NODE__DESTINATIONS__0__PORT", r"^MMBCD_NODE__DESTINATIONS__0__PORT: destinations is "
                                          r"a list; set it whole as MMBCD_NODE__DESTINATIONS"),
    ("MMBCD_NODE__", r"^MMBCD_NODE__: names no key"),
])
def test_unknown_environment_overrides_are_refused_naming_the_variable(
        tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, "[dicom]\nport = 104\n"), environ={name: "1"})


def test_other_variables_are_not_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "[dicom]\nport = 104\n")
    config = load_config(path, environ={"MMBCD_NODEX__DICOM__PORT": "1", "MMBCD_NODE_X": "1",
                                        "mmbcd_node__dicom__port": "1", "PATH": "/bin"})
    assert config.dicom.port == 104


# -- Every key checked ------------------------------------------------------------------


DESTINATION = "[[destinations]]\nname = 'pacs'\nae_title = 'PACS'\nhost = 'pacs.example.org'\n"


@pytest.mark.parametrize("body, message", [
    ("[dicom]\nport = 0\n", r"dicom\.port must be 1 \.\. 65535, not 0"),
    ("[hl7]\nport = 65536\n", r"hl7\.port must be 1 \.\. 65535, not 65536"),
    ("[http]\nport = -1\n", r"http\.port must be 1 \.\. 65535"),
    (DESTINATION + "port = 0\n", r"destinations\[0\]\.port must be 1 \.\. 65535"),
    ("[audit.syslog]\nport = 100000\n", r"audit\.syslog\.port must be 1 \.\. 65535"),
    ("[hl7.results]\nport = true\n", r"hl7\.results\.port must be int, not True"),
    ("[logging]\nformat = 'xml'\n", r"logging\.format must be 'keyvalue' or 'json', not 'xml'"),
    ("[logging]\nlevel = 'loud'\n", r"logging\.level must be one of CRITICAL"),
    ("[model]\ndevice = 'gpu'\n", r"model\.device must be auto, cpu, cuda or cuda:N, not 'gpu'"),
    ("[model]\ndevice = 'cuda:x'\n", r"model\.device must be auto, cpu, cuda or cuda:N"),
    ("[model]\nbundle = ''\n", r"model\.bundle must be a path, not an empty string"),
    ("[storage]\nroot = 7\n", r"storage\.root must be a path string, not 7"),
    (DESTINATION + "port = 104\nkinds = ['sr', 'ko']\n",
     r"destinations\.pacs\.kinds has unknown kind\(s\) ko \(known: sr, cad_sr, sc, gsps\)"),
    ("[results]\nkinds = ['pdf']\n", r"results\.kinds has unknown kind\(s\) pdf"),
    ("[dicom]\nae_title = 'A\\\\B'\n", r"dicom\.ae_title must be printable ASCII without "
                                       r"backslash"),
    ("[dicom]\nae_title = '    '\n", r"dicom\.ae_title must not be all spaces"),
    ("[dicom]\nae_title = ''\n", r"dicom\.ae_title must be 1 to 16 characters, not 0"),
    (DESTINATION.replace("'PACS'", "'A_VERY_LONG_AE_TITLE'") + "port = 104\n",
     r"destinations\[0\]\.ae_title must be 1 to 16 characters, not 20"),
    ("[dicom]\nallowed_calling_aes = ['PACS', 'CT@ct.example.org']\n",
     r"dicom\.allowed_calling_aes\[1\] must be 'AE' or 'AE@address' with an IP address or "
     r"network, not 'CT@ct\.example\.org'"),
    ("[dicom]\nacse_timeout = -1\n", r"dicom\.acse_timeout must be more than 0 seconds, not -1"),
    ("[dicom]\ndimse_timeout = 0\n", r"dicom\.dimse_timeout must be more than 0 seconds"),
    ("[hl7]\nread_timeout_seconds = inf\n", r"hl7\.read_timeout_seconds must be more than 0"),
    ("[completion]\nquiet_seconds = -5.0\n",
     r"completion\.quiet_seconds must be 0 seconds or more"),
    ("[worker]\nbackoff_seconds = nan\n", r"worker\.backoff_seconds must be 0 seconds or more"),
    ("[worker]\nlease_seconds = 5\n", r"worker\.heartbeat_seconds must be less than "
                                      r"lease_seconds \(5\.0\), not 10\.0"),
    ("[worker]\nbatch_size = 0\n", r"worker\.batch_size must be at least 1, not 0"),
    ("[dicom]\nmax_associations = 0\n", r"dicom\.max_associations must be at least 1"),
    (DESTINATION + "port = 104\nmax_attempts = 0\n",
     r"destinations\[0\]\.max_attempts must be at least 1"),
    ("[retention]\ndelivered_days = -1\n", r"retention\.delivered_days must be at least 0"),
    ("[dicom]\nhost = 'localhost'\n", r"dicom\.host must be an IP address to listen on, "
                                      r"not 'localhost'"),
    ("[http]\nhost = '0.0.0.0.0'\n", r"http\.host must be an IP address to listen on"),
    (DESTINATION.replace("'pacs.example.org'", "'pacs server'") + "port = 104\n",
     r"destinations\[0\]\.host must be a host name or an IP address, not 'pacs server'"),
    ("[hl7.results]\nhost = '300.1.1.1'\n", r"hl7\.results\.host must be a host name or an IP"),
    ("[hl7]\nallowed_senders = ['10.0.0.0/8', 'ris']\n",
     r"hl7\.allowed_senders\[1\] must be an IP address or network, not 'ris'"),
    ("[hl7]\nprocessing_ids = []\n", r"hl7\.processing_ids must name at least one value"),
    ("[hl7]\nprocessing_ids = ['X']\n", r"hl7\.processing_ids\[0\] must be 'P', 'T' or 'D'"),
    ("[hl7.results]\nreceiving_facility = 'A|B'\n",
     r"hl7\.results\.receiving_facility must be printable ASCII without the HL7 delimiters"),
    ("[audit.syslog]\ntransport = 'relp'\n",
     r"audit\.syslog\.transport must be 'udp', 'tcp' or 'tls', not 'relp'"),
    ("[database]\nurl = 'var/node.db'\n", r"database\.url must be a database URL"),
    ("[dicom]\nuid_root = '1.02.3'\n", r"dicom\.uid_root must be a UID root"),
    ("[dicom]\nuid_root = '1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17'\n",
     r"dicom\.uid_root must be a UID root \(digits and dots, at most 40 characters\)"),
    ("[dicom.tls]\nkey = 'node.key'\n", r"dicom\.tls\.key is set but cert is not"),
    ("[hl7.tls]\ncert = 'node.pem'\nrequire_client_cert = true\n",
     r"hl7\.tls\.require_client_cert needs ca"),
    (DESTINATION + "port = 104\n" + DESTINATION + "port = 105\n",
     r"destinations has the name\(s\) 'pacs' more than once"),
    (DESTINATION.replace("'pacs'", "' '") + "port = 104\n",
     r"destinations\[0\]\.name must not be empty"),
    ("[http]\nenabled = 'yes'\n", r"http\.enabled must be bool \(true or false\), not 'yes'"),
    ("[hl7.mapping]\naccession = 'OBR-3'\n", r"hl7\.mapping\.accession must be a list"),
    ("dicom = 3\n", r"dicom must be a table, not 3"),
])
def test_each_key_is_checked_naming_file_key_and_problem(tmp_path: Path, body: str,
                                                         message: str) -> None:
    with pytest.raises(ConfigError, match=r"node\.toml: " + message):
        load_config(write(tmp_path, body), environ={})


def test_every_problem_is_named_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "[dicom]\nport = 0\nae_title = ''\n[logging]\nformat = 'xml'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    lines = str(caught.value).splitlines()
    assert len(lines) == 3 and all(line.startswith(f"{path}: ") for line in lines)


def test_a_file_that_is_not_toml_or_not_there_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"node\.toml: not valid TOML"):
        load_config(write(tmp_path, "[dicom\n"), environ={})
    with pytest.raises(ConfigError, match=r"absent\.toml: file not found"):
        load_config(tmp_path / "absent.toml", environ={})


# -- The environment ----------------------------------------------------------------------


def test_a_bad_override_names_the_variable_not_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[dicom]\nport = 104\n")
    with pytest.raises(ConfigError, match=r"^MMBCD_NODE__DICOM__PORT: dicom\.port must be "
                                          r"1 \.\. 65535, not 0$"):
        load_config(path, environ={"MMBCD_NODE__DICOM__PORT": "0"})
    with pytest.raises(ConfigError, match=r"^MMBCD_NODE__WORKER__LEASE_SECONDS: "
                                          r"worker\.heartbeat_seconds must be less than"):
        load_config(environ={"MMBCD_NODE__WORKER__LEASE_SECONDS": "5"})


def test_nested_and_list_overrides_are_read_as_toml_literals(tmp_path: Path) -> None:
    path = write(tmp_path, "[dicom]\nport = 104\nae_title = 'FILE'\nmax_associations = 3\n"
                           "[hl7]\nallowed_senders = ['10.0.0.1']\n")
    config = load_config(path, environ={
        "MMBCD_NODE__DICOM__ALLOWED_CALLING_AES": "['PACS', \"CT@10.1.0.0/16\"]",
        "MMBCD_NODE__DICOM__ACSE_TIMEOUT": "5",
        "MMBCD_NODE__DICOM__TLS__REQUIRE_CLIENT_CERT": "true",
        "MMBCD_NODE__DICOM__TLS__CA": "/etc/ca.pem",
        "MMBCD_NODE__HL7__ALLOWED_SENDERS": "[]",
        "MMBCD_NODE__HL7__PROCESSING_IDS": '["P", "T"]',
        "MMBCD_NODE__HL7__MAPPING__ACCESSION": '["OBR-3"]',
        "MMBCD_NODE__HL7__RESULTS__HOST": "ris.example.org",
        "MMBCD_NODE__AUDIT__SYSLOG": '{host = "10.0.0.9", transport = "tcp"}',
        "MMBCD_NODE__AUDIT__SYSLOG__PORT": "1514",
        "MMBCD_NODE__HTTP__ENABLED": "false",
        "MMBCD_NODE__RETENTION__SCHEDULE": '"0 4 * * *"',
        "MMBCD_NODE__DESTINATIONS": '[{name = "pacs", ae_title = "PACS", host = "pacs", '
                                    'port = 104, kinds = ["sr"]}]',
    })
    assert config.dicom.allowed_calling_aes == ["PACS", "CT@10.1.0.0/16"]
    assert config.dicom.acse_timeout == 5.0 and isinstance(config.dicom.acse_timeout, float)
    assert config.dicom.tls.require_client_cert and config.dicom.tls.ca == Path("/etc/ca.pem")
    assert (config.dicom.port, config.dicom.ae_title, config.dicom.max_associations) == (
        104, "FILE", 3)  # the rest of the file's table stays
    assert config.hl7.allowed_senders == [] and config.hl7.processing_ids == ["P", "T"]
    assert config.hl7.mapping == {"accession": ["OBR-3"]}
    assert config.hl7.results is not None and config.hl7.results.host == "ris.example.org"
    assert config.audit.syslog is not None
    assert (config.audit.syslog.host, config.audit.syslog.port,
            config.audit.syslog.transport) == ("10.0.0.9", 1514, "tcp")
    assert config.http.enabled is False
    assert config.retention.schedule == "0 4 * * *"
    assert config.destinations[0].kinds == ["sr"] and config.destinations[0].port == 104


def test_a_text_key_keeps_the_text_as_written() -> None:
    config = load_config(environ={"MMBCD_NODE__DICOM__AE_TITLE": "1234",
                                  "MMBCD_NODE__HTTP__HOST": "0.0.0.0",
                                  "MMBCD_NODE__HL7__RESULTS__RECEIVING_FACILITY": "true",
                                  "MMBCD_NODE__STORAGE__ROOT": "2026"})
    assert config.dicom.ae_title == "1234" and config.http.host == "0.0.0.0"
    assert config.hl7.results is not None and config.hl7.results.receiving_facility == "true"
    assert config.storage.root == Path("2026")


@pytest.mark.parametrize("name, value, message", [
    ("MMBCD_NODE__DICOM__ALLOWED_CALLING_AES", "PACS",
     r"dicom\.allowed_calling_aes must be a list, not 'PACS'"),
    ("MMBCD_NODE__HTTP__ENABLED", "yes", r"http\.enabled must be bool"),
    ("MMBCD_NODE__MODEL__DEVICE", "gpu", r"model\.device must be auto, cpu, cuda or cuda:N"),
    ("MMBCD_NODE__DICOM__TLS", "{cret = 'x'}", r"unknown key dicom\.tls\.cret"),
])
def test_bad_override_values_are_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}: {message}"):
        load_config(environ={name: value})


# -- Frozen objects, checked however they are made -------------------------------------------


def test_configuration_objects_are_frozen_and_checked_when_built_in_code() -> None:
    import dataclasses

    from pydantic import ValidationError

    from mmbcd_node.config import DestinationConfig, NodeConfig, SyslogConfig, WorkerConfig

    config = load_config(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.dicom.port = 1  # type: ignore[misc]
    assert config == NodeConfig()
    faster = dataclasses.replace(config, worker=WorkerConfig(lease_seconds=30))
    assert faster.worker.lease_seconds == 30.0 and config.worker.lease_seconds == 120.0
    with pytest.raises(ValidationError, match="transport"):
        SyslogConfig(transport="relp")
    with pytest.raises(ValidationError, match="port"):
        DestinationConfig(name="pacs", ae_title="PACS", host="127.0.0.1", port=0)
    with pytest.raises(ValidationError, match="destinations.pacs.kinds"):
        DestinationConfig(name="pacs", ae_title="PACS", host="127.0.0.1", port=1, kinds=["x"])
