"""Why a received object is refused, each with the C-STORE status it is answered with."""

from __future__ import annotations


class ReceiveError(Exception):
    """A received object is refused; ``status`` is the C-STORE status to answer."""

    status = 0xC000


class InvalidIdentifiers(ReceiveError):
    """Missing, malformed or inconsistent UIDs (0xA900: data set does not match SOP class)."""

    status = 0xA900


class UnreadableDataset(ReceiveError):
    """Truncated or unparseable data (0xC000: cannot understand)."""

    status = 0xC000


class StorageFailure(ReceiveError):
    """Disk or database failure while keeping the object (0xA700: out of resources)."""

    status = 0xA700
