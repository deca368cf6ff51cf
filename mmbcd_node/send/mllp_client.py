"""The connection to the RIS for HL7 results: python-hl7's MLLP client, with a timeout
from the first byte and TLS when ``[hl7.results.tls]`` asks for it."""

from __future__ import annotations

import socket

from hl7.client import MLLPClient  # pinned: this class sets its socket and encoding

from mmbcd_node.config import Hl7ResultsConfig
from mmbcd_node.tls import client_context


class RisClient(MLLPClient):  # type: ignore[misc]
    """An MLLP client connected to ``config``'s RIS: ``send_message`` and ``close`` as
    python-hl7 has them, the connection opened with the configured timeout and TLS."""

    def __init__(self, config: Hl7ResultsConfig) -> None:
        sock = socket.create_connection((config.host, config.port),
                                        timeout=config.timeout_seconds)
        if config.tls.enabled:
            try:
                sock = client_context(config.tls, "hl7.results.tls").wrap_socket(
                    sock, server_hostname=config.host)
            except OSError:
                sock.close()
                raise
        self.socket = sock
        self.encoding = "utf-8"
