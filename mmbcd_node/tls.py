"""TLS for every connection the node makes or takes: one place, one documented behaviour.

Server side (``[dicom.tls]``, ``[hl7.tls]``), by what is configured:

====================  =====================  =========================================
``ca``                ``require_client_cert`` peers
====================  =====================  =========================================
not set               false                  any client; no certificate asked
set                   false                  a client may present a certificate; one
                                             that does must be signed by ``ca``
set                   true                   a client must present one signed by ``ca``
not set               true                   refused when the configuration is loaded
                                             (``TlsConfig``): nothing to verify with
====================  =====================  =========================================

TLS is on when ``cert`` is set; ``key`` may be left out when the certificate file holds
it. Client side (destinations, the ORU client, the syslog forwarder): the server is
verified against ``ca`` (else the system's trust store) and its name or address; the
node presents ``cert``/``key`` when given (ATNA syslog requires it). TLS 1.2 at least.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from mmbcd_node.config import ClientTlsConfig, ConfigError, SyslogConfig, TlsConfig


def server_context(tls: TlsConfig, section: str) -> ssl.SSLContext | None:
    """The server context of ``section`` (e.g. ``dicom.tls``), or None when TLS is off.

    Raises ``ConfigError`` naming the section for files that cannot be loaded.
    """
    if not tls.enabled:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(context, section, tls.cert, tls.key, tls.ca)
    if tls.ca is None:
        context.verify_mode = ssl.CERT_NONE
    else:
        context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert \
            else ssl.CERT_OPTIONAL
    return context


def client_context(tls: ClientTlsConfig | SyslogConfig, section: str) -> ssl.SSLContext:
    """The client context of ``section``: the server verified against ``ca`` (else the
    system's trust store) and its host name; our certificate presented when set."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(context, section, tls.cert, tls.key, tls.ca)
    return context


def client_args(tls: ClientTlsConfig, host: str, section: str
                ) -> tuple[ssl.SSLContext, str] | None:
    """pynetdicom's ``tls_args`` for an association to ``host``: None without TLS."""
    return (client_context(tls, section), host) if tls.enabled else None


def _load(context: ssl.SSLContext, section: str, cert: Path | None, key: Path | None,
          ca: Path | None) -> None:
    try:
        if cert is not None:
            context.load_cert_chain(str(cert), str(key) if key else None)
        if ca is not None:
            context.load_verify_locations(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{section}: cannot load its certificate, key or CA: {exc}") from exc
