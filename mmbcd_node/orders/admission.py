"""Whether to serve an MLLP connection: sender allow-list and connection cap.

``[hl7] allowed_senders`` lists the addresses or networks the RIS (or its interface
engine) connects from. Loopback peers are always served (the node's own ``status`` and
``doctor`` probe the port), so an empty list serves loopback only, as the DICOM receiver
does without ``allowed_calling_aes``. ``max_connections`` bounds the connections open
at once, so a misbehaving sender cannot exhaust the listener.
"""

from __future__ import annotations

from mmbcd_node.addresses import parse_network, peer_ip
from mmbcd_node.config import Hl7Config


class SenderAdmission:
    """The connection policy of the MLLP listener, built once from ``[hl7]``."""

    def __init__(self, config: Hl7Config) -> None:
        self.max_connections = config.max_connections
        self.allowed = [parse_network(entry, where=f"hl7.allowed_senders entry {entry!r}")
                        for entry in config.allowed_senders]

    def check(self, host: str | None, open_connections: int) -> str | None:
        """Why a new connection from ``host`` is refused, or None to serve it.

        ``open_connections`` counts those already being served.
        """
        ip = peer_ip(host or "")
        if ip is None or not (ip.is_loopback or any(ip in net for net in self.allowed)):
            if not self.allowed:
                return f"no allowed_senders configured: only loopback peers are served, not {host}"
            return f"{host} is not in allowed_senders"
        if open_connections >= self.max_connections:
            return f"max_connections ({self.max_connections}) connections already open"
        return None
