"""Presentation context negotiation of the receiver: every storage SOP class, in the
transfer syntaxes the node can store and read back.

pynetdicom's unrestricted negotiation (``UNRESTRICTED_STORAGE_SERVICE``) accepts the
first transfer syntax proposed for any storage SOP class, whatever it is, and fails
without an answer on a context that proposes none. Here the proposal is filtered first:

- Explicit VR Big Endian (retired in PS3.5 since 2005) is refused, so the peer sends
  the same object in a little-endian syntax it also proposed (dcmtk ``storescu`` and
  most senders propose both and convert uncompressed objects on the fly);
- a context left with no transfer syntax is answered "transfer syntaxes not supported"
  (result 4, PS3.8 9.3.3.2); the peer sends its objects on another context or, with
  none left, learns before sending anything.

``accept_storage_contexts`` installs this in place of pynetdicom's function, a
process-wide setting like ``UNRESTRICTED_STORAGE_SERVICE`` itself (pynetdicom pinned).
"""

from __future__ import annotations

from pydicom.uid import UID, ExplicitVRBigEndian, ImplicitVRLittleEndian
from pynetdicom import acse
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
from pynetdicom.presentation import PresentationContext, negotiate_unrestricted

REFUSED_TRANSFER_SYNTAXES = frozenset({ExplicitVRBigEndian})
TRANSFER_SYNTAXES_NOT_SUPPORTED = 0x04  # PS3.8 table 9-18, result/reason

# {SOP Class UID: (SCU role, SCP role)}, as pynetdicom passes them
Roles = dict[UID, tuple[bool | None, bool | None]]


def negotiate_storage(
        rq_contexts: list[PresentationContext], ac_contexts: list[PresentationContext],
        roles: Roles | None = None,
) -> tuple[list[PresentationContext], list[SCP_SCU_RoleSelectionNegotiation]]:
    """pynetdicom's unrestricted negotiation on the contexts left with a transfer syntax
    the node takes; the others refused with "transfer syntaxes not supported"."""
    usable: list[PresentationContext] = []
    refused: list[PresentationContext] = []
    for proposed in rq_contexts:
        syntaxes: list[str | bytes | UID] = [
            ts for ts in proposed.transfer_syntax if ts not in REFUSED_TRANSFER_SYNTAXES]
        context = PresentationContext()
        context.context_id = proposed.context_id
        context.abstract_syntax = proposed.abstract_syntax
        if syntaxes:
            context.transfer_syntax = syntaxes
            usable.append(context)
            continue
        # The reply's transfer syntax of a refused context is not significant (PS3.8
        # 9.3.3.2); one is still written.
        context.transfer_syntax = list(proposed.transfer_syntax[:1]) or [ImplicitVRLittleEndian]
        context.result = TRANSFER_SYNTAXES_NOT_SUPPORTED
        refused.append(context)
    accepted, reply_roles = negotiate_unrestricted(usable, ac_contexts, roles)
    contexts = sorted([*accepted, *refused], key=lambda cx: cx.context_id or 0)
    return contexts, reply_roles


def accept_storage_contexts() -> None:
    """Make every pynetdicom acceptor in this process negotiate with ``negotiate_storage``."""
    acse.negotiate_unrestricted = negotiate_storage
