"""One TLS behaviour for every listener and client (``mmbcd_node/tls.py``), shown with real
handshakes over loopback for each combination of cert, key, ca and require_client_cert."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from mmbcd_node.config import ClientTlsConfig, ConfigError, TlsConfig
from mmbcd_node.tls import client_context, server_context
from tests.support.certificates import issue, make_ca


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca(folder)
    other_ca = make_ca(folder, "Another Hospital CA")
    return {"ca": ca, "node": issue(folder, "node", ca), "modality": issue(folder, "modality", ca),
            "stranger": issue(folder, "stranger", other_ca)}


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[bool, bool]:
    """Whether the server and the client each completed a handshake and exchanged a byte
    over loopback."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    outcome: dict[str, str] = {}

    def serve() -> None:
        connection, _ = listener.accept()
        try:
            with server.wrap_socket(connection, server_side=True) as tls:
                tls.sendall(b"x")
                outcome["server"] = "ok"
        except (ssl.SSLError, OSError) as exc:
            outcome["server"] = type(exc).__name__

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.recv(1)  # TLS 1.3 reports a refused client certificate on first read
            outcome["client"] = "ok"
    except (ssl.SSLError, OSError):
        outcome["client"] = "refused"
    thread.join(10)
    listener.close()
    return outcome.get("server") == "ok", outcome["client"] == "ok"


def server_of(pki, *, ca: bool, require: bool) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    cert, key = pki["node"]
    context = server_context(TlsConfig(cert=cert, key=key, ca=pki["ca"][0] if ca else None,
                                       require_client_cert=require), "dicom.tls")
    assert context is not None
    return context


def client_of(pki, who: str | None) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    cert, key = pki[who] if who else (None, None)
    return client_context(TlsConfig(cert=cert, key=key, ca=pki["ca"][0]), "destinations.pacs")


@pytest.mark.parametrize("ca, require, who, accepted", [
    (False, False, None, True),  # no CA: any client, no certificate asked
    (False, False, "stranger", True),
    (True, False, None, True),  # CA, optional: a client without a certificate is welcome
    (True, False, "modality", True),
    (True, False, "stranger", False),  # ... but one it presents must be the CA's
    (True, True, "modality", True),  # CA, required
    (True, True, None, False),
    (True, True, "stranger", False),
])
def test_server_side_behaviour_for_each_combination(pki, ca, require, who, accepted) -> None:  # type: ignore[no-untyped-def]
    server_ok, client_ok = handshake(server_of(pki, ca=ca, require=require),
                                     client_of(pki, who))
    assert (server_ok, client_ok) == (accepted, accepted)


def test_client_certificates_required_without_a_ca_is_refused_at_start(pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from mmbcd_node.config import load_config

    cert, key = pki["node"]
    path = tmp_path / "node.toml"
    path.write_text(f"[hl7.tls]\ncert = '{cert}'\nkey = '{key}'\nrequire_client_cert = true\n")
    with pytest.raises(ConfigError, match=r"hl7\.tls\.require_client_cert.*needs ca"):
        load_config(path, environ={})


def test_tls_is_off_without_a_certificate() -> None:
    assert server_context(TlsConfig(), "dicom.tls") is None


def test_a_client_refuses_a_server_its_ca_did_not_sign(pki) -> None:  # type: ignore[no-untyped-def]
    cert, key = pki["stranger"]
    server = server_context(TlsConfig(cert=cert, key=key), "dicom.tls")
    assert server is not None
    assert handshake(server, client_of(pki, None)) == (False, False)


def test_an_unreadable_certificate_is_a_configuration_error_naming_its_section(tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match=r"audit\.syslog\.tls: cannot load"):
        client_context(TlsConfig(cert=missing), "audit.syslog.tls")


@pytest.mark.parametrize("section", [TlsConfig, ClientTlsConfig])
def test_a_key_without_its_certificate_is_refused_on_either_side(section, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="is set but cert is not"):
        section(key=tmp_path / "node.key")
