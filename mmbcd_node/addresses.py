"""Peer addresses as the listeners' allow-lists name them: an IP address or a network.

Shared by the DICOM receiver (``[dicom] allowed_calling_aes`` entries ``AE@address``)
and the MLLP listener (``[hl7] allowed_senders``).
"""

from __future__ import annotations

import ipaddress

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(text: str, *, where: str) -> IpNetwork:
    """``text`` as a network (a bare address is a network of one); ``ValueError``
    naming ``where`` (the config key and entry) when it is neither."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not an IP address or network") from None


def peer_ip(address: str) -> IpAddress | None:
    """The peer's IP address (IPv4-mapped IPv6 as IPv4), or None when unparseable."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
