"""The receiver's memory budget: the most its connections can make it hold at once.

Every buffer a connection can fill has a bound that does not depend on what a peer
announces (see ``transport``, ``structure`` and ``block_writer``), so the worst case
follows from the configuration alone:

- a connection not yet associated: its A-ASSOCIATE-RQ, at most ``MAX_ASSOCIATE_RQ``;
- an association: one P-DATA-TF PDU (``[dicom] max_pdu_size``, the length the node
  announces; a longer one is aborted), the head of the object being received, its
  header as pydicom builds it (``MAX_HEADER_BYTES`` of values and ``MAX_ELEMENTS``
  elements at ``ELEMENT_OVERHEAD`` each) and the file's blocks in flight;
- the receiver: the pool of free file blocks it keeps.

``[dicom] memory_budget_bytes`` is what the operator grants the receiver; a node whose
limits could exceed it refuses to start, naming the figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmbcd_node.config import ConfigError, DicomConfig
from mmbcd_node.receive.block_writer import BLOCK, DEPTH, POOL_KEEP
from mmbcd_node.receive.incoming import HEAD_BYTES
from mmbcd_node.receive.structure import MAX_ELEMENTS, MAX_HEADER_BYTES
from mmbcd_node.receive.transport import MAX_ASSOCIATE_RQ

# What pydicom holds per element beyond its value (element object, tag, dictionary slot),
# rounded up from measurement (about 300 bytes on CPython 3.12).
ELEMENT_OVERHEAD = 512


@dataclass(frozen=True)
class MemoryBudget:
    """The receiver's worst case, in bytes, and what it is made of."""

    per_waiting_connection: int
    per_association: int
    shared: int
    total: int


def worst_case(dicom: DicomConfig) -> MemoryBudget:
    per_association = (dicom.max_pdu_size + HEAD_BYTES + MAX_HEADER_BYTES
                       + MAX_ELEMENTS * ELEMENT_OVERHEAD + (DEPTH + 1) * BLOCK)
    shared = POOL_KEEP * BLOCK
    total = (dicom.max_unauthenticated * MAX_ASSOCIATE_RQ
             + dicom.max_associations * per_association + shared)
    return MemoryBudget(MAX_ASSOCIATE_RQ, per_association, shared, total)


def check_memory_budget(dicom: DicomConfig) -> MemoryBudget:
    """The worst case of ``dicom``; ``ConfigError`` when it exceeds the budget."""
    budget = worst_case(dicom)
    if budget.total > dicom.memory_budget_bytes:
        mib = 1 << 20
        raise ConfigError(
            f"dicom.memory_budget_bytes {dicom.memory_budget_bytes} is below the receiver's "
            f"worst case of {budget.total} bytes ({budget.total // mib} MiB): "
            f"max_associations {dicom.max_associations} x {budget.per_association // mib} MiB "
            f"(max_pdu_size {dicom.max_pdu_size} and the header and file buffers) + "
            f"max_unauthenticated {dicom.max_unauthenticated} x "
            f"{budget.per_waiting_connection >> 10} KiB + {budget.shared // mib} MiB of "
            "buffers kept; raise the budget or lower those limits")
    return budget
