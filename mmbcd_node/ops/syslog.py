"""Syslog transport for audit messages: RFC 5424 over UDP, TCP or TLS.

The standard library's ``SysLogHandler`` writes BSD (RFC 3164) lines and has no TLS,
so the few lines of RFC 5424 framing are here: ``<PRI>1 TIMESTAMP HOST APP PROCID
MSGID - BOM MSG``. UDP sends one message per datagram (RFC 5426); TCP and TLS prefix
each message with its length (octet counting, RFC 6587 / RFC 5425).
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime

from mmbcd_node.config import SyslogConfig
from mmbcd_node.tls import client_context

# Facility 10 (security/authorization) x 8 + severity 5 (notice), as IHE ATNA asks.
AUDIT_PRI = 10 * 8 + 5
MSGID = "DICOM+RFC3881"
APP_NAME = "mmbcd-node"
BOM = b"\xef\xbb\xbf"


def rfc5424_frame(message: bytes, *, host: str, when: datetime | None = None,
                  msgid: str = MSGID, pri: int = AUDIT_PRI) -> bytes:
    """One RFC 5424 syslog message carrying ``message`` (UTF-8) as MSG."""
    stamp = (when or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    header = f"<{pri}>1 {stamp} {host[:255] or '-'} {APP_NAME} {os.getpid()} {msgid} -"
    return header.encode("ascii", "replace") + b" " + BOM + message


class SyslogSender:
    """Sends framed messages to the collector of ``[audit.syslog]``; raises ``OSError`` on failure.

    A stream connection is opened on first use and kept; after an error it is dropped
    and the next ``send`` reconnects.
    """

    def __init__(self, config: SyslogConfig, *, timeout: float = 10.0) -> None:
        self.config = config  # transport is udp, tcp or tls: SyslogConfig checks it
        self.timeout = timeout
        self.host = socket.gethostname()
        self._stream: socket.socket | None = None

    def send(self, messages: Sequence[bytes]) -> None:
        """Frame and send every message, in order."""
        frames = [rfc5424_frame(m, host=self.host) for m in messages]
        if self.config.transport == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for frame in frames:
                    sock.sendto(frame, (self.config.host, self.config.port))
            return
        try:
            stream = self._stream or self._connect()
            self._stream = stream
            stream.sendall(b"".join(b"%d %s" % (len(f), f) for f in frames))
        except OSError:
            self.close()
            raise

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.config.host, self.config.port),
                                        timeout=self.timeout)
        if self.config.transport != "tls":
            return sock
        context = client_context(self.config, "audit.syslog")
        try:
            return context.wrap_socket(sock, server_hostname=self.config.host)
        except (ssl.SSLError, OSError):
            sock.close()
            raise

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            finally:
                self._stream = None
