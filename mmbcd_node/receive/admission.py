"""Whether to accept an association: called AE, calling-AE allow-list, free disk space.

Answers are A-ASSOCIATE-RJ (result, source, diagnostic) triples from PS3.8 §9.3.4,
each with a reason in words for the audit trail.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mmbcd_node.addresses import IpAddress, IpNetwork, parse_network, peer_ip
from mmbcd_node.config import DicomConfig

PERMANENT, TRANSIENT = 0x01, 0x02
SERVICE_USER, SERVICE_PROVIDER_PRESENTATION = 0x01, 0x03
LOCAL_LIMIT_EXCEEDED = 0x02  # diagnostic of the service-provider (presentation) source
CALLING_AE_NOT_RECOGNISED = 0x03  # diagnostic of the service-user source


@dataclass(frozen=True)
class Rejection:
    """An A-ASSOCIATE-RJ to send, and why."""

    result: int
    source: int
    diagnostic: int
    reason: str


@dataclass(frozen=True)
class AllowedPeer:
    """One ``allowed_calling_aes`` entry: ``AE`` or ``AE@address`` (address or network)."""

    ae_title: str
    network: IpNetwork | None

    @classmethod
    def parse(cls, entry: str) -> AllowedPeer:
        """Parse ``entry``; ``ValueError`` naming it when the address part is not an IP
        address or network."""
        title, _, address = entry.partition("@")
        network = None
        if address:
            network = parse_network(address, where=f"dicom.allowed_calling_aes entry {entry!r}")
        return cls(title.strip(), network)

    def admits(self, calling_ae: str, address: IpAddress | None) -> bool:
        if calling_ae != self.ae_title:
            return False
        return self.network is None or (address is not None and address in self.network)


class Admission:
    """The association policy of one receiver, built once from ``[dicom]``."""

    def __init__(self, config: DicomConfig, storage_root: Path) -> None:
        self.config = config
        self.storage_root = storage_root
        self.allowed = [AllowedPeer.parse(entry) for entry in config.allowed_calling_aes]

    def check(self, *, called_ae: str, calling_ae: str, address: str,
              established: int = 0) -> Rejection | None:
        """The rejection for this association request, or None to accept it;
        ``established`` associations are open already."""
        called, calling = called_ae.strip(), calling_ae.strip()
        if called != self.config.ae_title.strip():
            return Rejection(PERMANENT, SERVICE_USER, 0x07,
                             f"called AE title {called!r} is not {self.config.ae_title!r}")
        ip = peer_ip(address)
        if not self.allowed:
            if ip is None or not ip.is_loopback:
                return Rejection(PERMANENT, SERVICE_USER, CALLING_AE_NOT_RECOGNISED,
                                 f"no allowed_calling_aes configured: only loopback peers "
                                 f"are admitted, not {address}")
        elif not any(peer.admits(calling, ip) for peer in self.allowed):
            return Rejection(PERMANENT, SERVICE_USER, CALLING_AE_NOT_RECOGNISED,
                             f"calling AE title {calling!r} from {address} is not in "
                             f"allowed_calling_aes")
        if established >= self.config.max_associations:
            return Rejection(TRANSIENT, SERVICE_PROVIDER_PRESENTATION, LOCAL_LIMIT_EXCEEDED,
                             f"association limit (max_associations "
                             f"{self.config.max_associations}) reached")
        shortfall = (unwritable(self.storage_root)
                     or free_space_shortfall(free_bytes(self.storage_root),
                                             self.config.min_free_bytes))
        if shortfall is not None:
            return Rejection(TRANSIENT, SERVICE_PROVIDER_PRESENTATION, 0x01, shortfall)
        return None


def unwritable(root: Path) -> str | None:
    """Why nothing can be kept under the storage root (missing, read-only), or None."""
    if not os.access(root, os.W_OK):
        return f"storage root {root} is not writable (missing, read-only or no permission)"
    return None


def free_space_shortfall(free: int, min_free_bytes: int) -> str | None:
    """Why ``free`` bytes are too few to keep more objects, or None when they are not;
    checked when an association starts and again before each object is kept."""
    if free < min_free_bytes:
        return f"free space {free} bytes is below min_free_bytes {min_free_bytes}"
    return None


def free_bytes(folder: Path) -> int:
    """Free bytes for unprivileged writers on the file system holding ``folder``."""
    return shutil.disk_usage(folder).free
