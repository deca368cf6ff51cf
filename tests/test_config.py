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
