"""Storage SCU: C-STORE our output files to a destination, C-ECHO to check it.

One association per destination and batch; each file goes in the transfer syntax it
was written in, with the uncompressed syntaxes offered beside it: a destination that
accepts only those gets the object decompressed (``_as_accepted``). Where the
destination does storage commitment, the N-ACTION for the stored instances is sent
on the same association (``commitment.request_commitment``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.filereader import read_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StorageCommitmentPushModel,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from mmbcd_node.config import DestinationConfig, DicomConfig
from mmbcd_node.logs import get_logger
from mmbcd_node.send.commitment import new_transaction_uid, request_commitment
from mmbcd_node.send.outgoing import OutgoingObject
from mmbcd_node.tls import client_args

log = get_logger(__name__)

# C-STORE statuses that mean the destination kept the instance (PS3.4 B.2.3).
STORED = frozenset({0x0000, 0x0001, 0xB000, 0xB006, 0xB007})
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
PENDING_MATCH = frozenset({0xFF00, 0xFF01})  # C-FIND: a match follows (PS3.4 C.4.1.1.4)


class DestinationUnavailable(ConnectionError):
    """No association with the destination: down, refused, or not answering."""


class AssociationRejected(DestinationUnavailable):
    """The destination answered with an A-ASSOCIATE-RJ: it is up and refused us.

    ``result`` is 1 (permanent) or 2 (transient), ``source`` 1 (service user), 2 or 3
    (service provider), ``reason`` the diagnostic of PS3.8 Table 9-21.
    """

    def __init__(self, message: str, result: int, source: int, reason: int) -> None:
        super().__init__(message)
        self.result, self.source, self.reason = result, source, reason


@dataclass
class StoreOutcome:
    """What happened to each object of a batch, by SOP Instance UID."""

    stored: list[str] = field(default_factory=list)
    # Already at the destination (a C-FIND found them): not sent again.
    held: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    commitment_transaction_uid: str | None = None
    commitment_error: str | None = None


def _application_entity(dicom: DicomConfig) -> AE:
    ae = AE(ae_title=dicom.ae_title)
    ae.acse_timeout = dicom.acse_timeout
    ae.dimse_timeout = dicom.dimse_timeout
    ae.network_timeout = dicom.network_timeout
    return ae


def _associate(ae: AE, destination: DestinationConfig, contexts: list) -> Association:  # type: ignore[type-arg]
    assoc = ae.associate(destination.host, destination.port, contexts=contexts,
                         ae_title=destination.ae_title,
                         tls_args=client_args(destination.tls, destination.host,
                                              f"destinations.{destination.name}.tls"))
    if not assoc.is_established:
        where = (f"association with {destination.name} ({destination.ae_title}@"
                 f"{destination.host}:{destination.port})")
        answer = assoc.acceptor.primitive
        if assoc.is_rejected and answer is not None:
            raise AssociationRejected(
                f"{where} rejected: {answer.result_str}, {answer.source_str}, "
                f"{answer.reason_str}", int(answer.result or 0), int(answer.result_source or 0),
                int(answer.diagnostic or 0))
        state = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
        raise DestinationUnavailable(f"{where} {state}")
    return assoc


def _contexts(objects: Sequence[OutgoingObject], commitment: bool) -> list:  # type: ignore[type-arg]
    # The acceptor picks one transfer syntax per context, so each (SOP class, stored
    # syntax) pair gets its own context, and each SOP class one uncompressed context.
    pairs: dict[tuple[str, str], list[str]] = {}
    for obj in objects:
        stored_as = str(read_file_meta_info(obj.path).TransferSyntaxUID)
        pairs.setdefault((obj.sop_class_uid, "uncompressed"), [*UNCOMPRESSED])
        if stored_as not in UNCOMPRESSED:
            pairs.setdefault((obj.sop_class_uid, stored_as), [stored_as])
    contexts = [build_context(sop_class, offered) for (sop_class, _), offered in pairs.items()]
    if commitment:
        contexts.append(build_context(StorageCommitmentPushModel, list(UNCOMPRESSED)))
    if len(contexts) > 128:
        raise ValueError("more than 128 presentation contexts in one batch; send fewer kinds")
    return contexts


def _as_accepted(assoc: Association, obj: OutgoingObject) -> Path | Dataset:
    """The file as it is when the destination took its transfer syntax; else the object
    decompressed to Explicit VR Little Endian (e.g. an RLE Secondary Capture for an
    archive that accepts only uncompressed images)."""
    stored_as = str(read_file_meta_info(obj.path).TransferSyntaxUID)
    accepted = {str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts
                if cx.abstract_syntax == obj.sop_class_uid}
    if stored_as in accepted or stored_as in UNCOMPRESSED or not accepted & set(UNCOMPRESSED):
        return obj.path
    dataset = dcmread(obj.path)
    dataset.decompress(generate_instance_uid=False)  # same instance: it was never sent
    log.info("decompressed_for_destination", sop_instance_uid=obj.sop_instance_uid,
             stored_as=stored_as)
    return dataset


def store_objects(objects: Sequence[OutgoingObject], destination: DestinationConfig,
                  dicom: DicomConfig,
                  on_stored: Callable[[list[str], str | None], None] | None = None, *,
                  held: Sequence[OutgoingObject] = ()) -> StoreOutcome:
    """C-STORE ``objects`` to ``destination`` over one association.

    Returns which instances the destination kept and the error for each it refused.
    ``held`` are instances the destination already has (``instances_held``): they are
    not sent again, only counted as kept. ``on_stored(kept_uids, transaction_uid)`` is
    called once the C-STOREs are done and before any commitment request, so the caller
    can record the transaction before the destination's report (which may come at
    once, on another association) arrives. With ``destination.storage_commitment``
    commitment is then requested for the kept instances. Raises
    ``DestinationUnavailable`` when no association can be made (nothing was sent then).
    """
    outcome = StoreOutcome(held=[o.sop_instance_uid for o in held])
    ae = _application_entity(dicom)
    assoc = _associate(ae, destination,
                       _contexts([*objects, *held], destination.storage_commitment))
    try:
        for obj in objects:
            try:
                status = assoc.send_c_store(_as_accepted(assoc, obj))
            except (ValueError, RuntimeError) as exc:  # no accepted context for it
                outcome.errors[obj.sop_instance_uid] = f"not sent: {exc}"
                continue
            code = int(getattr(status, "Status", -1))
            if code in STORED:
                outcome.stored.append(obj.sop_instance_uid)
            elif code == -1:
                outcome.errors[obj.sop_instance_uid] = "no C-STORE response (association lost)"
                if not assoc.is_established:
                    break
            else:
                comment = getattr(status, "ErrorComment", "") or ""
                outcome.errors[obj.sop_instance_uid] = (
                    f"C-STORE refused with status 0x{code:04X} {comment}".strip())
        answered = set(outcome.stored) | set(outcome.errors)
        for obj in objects:
            if obj.sop_instance_uid not in answered:
                outcome.errors[obj.sop_instance_uid] = "not sent: association ended before it"
        kept_uids = {*outcome.stored, *outcome.held}
        commit = destination.storage_commitment and bool(kept_uids)
        if commit:
            outcome.commitment_transaction_uid = new_transaction_uid()
        if on_stored is not None:
            on_stored([*outcome.stored, *outcome.held], outcome.commitment_transaction_uid)
        if commit:
            kept = [o for o in [*objects, *held] if o.sop_instance_uid in kept_uids]
            try:
                if not assoc.is_established:
                    raise RuntimeError("association lost before the commitment request")
                request_commitment(assoc, kept, str(outcome.commitment_transaction_uid))
            except RuntimeError as exc:
                outcome.commitment_error = str(exc)
    finally:
        if assoc.is_established:
            assoc.release()
    log.info("store_batch", destination=destination.name, stored=len(outcome.stored),
             held=len(outcome.held), refused=len(outcome.errors),
             commitment=outcome.commitment_transaction_uid or "-")
    return outcome


def instances_held(objects: Sequence[OutgoingObject], destination: DestinationConfig,
                   dicom: DicomConfig) -> set[str]:
    """The SOP Instance UIDs of ``objects`` that ``destination`` already has.

    One Study Root C-FIND at IMAGE level per object, with its study, series and
    instance UIDs as unique keys (PS3.4 C.4.1.2.1, hierarchical as relational
    destinations answer it). Raises ``DestinationUnavailable`` when the destination
    takes no association or refuses the query model: the caller cannot know then.
    """
    ae = _application_entity(dicom)
    assoc = _associate(ae, destination, [build_context(StudyRootQueryRetrieveInformationModelFind)])
    found: set[str] = set()
    try:
        for obj in objects:
            if _find_instance(assoc, obj, destination):
                found.add(obj.sop_instance_uid)
    except (ValueError, RuntimeError) as exc:  # the query model was not accepted
        raise DestinationUnavailable(f"{destination.name} cannot be queried: {exc}") from exc
    finally:
        if assoc.is_established:
            assoc.release()
    return found


def _find_instance(assoc: Association, obj: OutgoingObject,
                   destination: DestinationConfig) -> bool:
    """Whether the C-FIND over ``assoc`` finds the object at the destination."""
    header = dcmread(obj.path, stop_before_pixels=True,
                     specific_tags=["StudyInstanceUID", "SeriesInstanceUID"])
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = header.StudyInstanceUID
    query.SeriesInstanceUID = header.SeriesInstanceUID
    query.SOPInstanceUID = obj.sop_instance_uid
    found = False
    for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
        code = int(getattr(status, "Status", -1))
        if code in PENDING_MATCH:
            found |= identifier is not None \
                and identifier.get("SOPInstanceUID") == obj.sop_instance_uid
        elif code != 0x0000:
            raise DestinationUnavailable(
                f"{destination.name} answered the C-FIND with status "
                f"{'none' if code < 0 else f'0x{code:04X}'}")
    return found


def echo(destination: DestinationConfig, dicom: DicomConfig) -> int:
    """C-ECHO the destination; return the response status (0 = success).

    Raises ``DestinationUnavailable`` when no association can be made, and
    ``TimeoutError`` when the destination does not answer the echo.
    """
    ae = _application_entity(dicom)
    assoc = _associate(ae, destination, [build_context(Verification)])
    try:
        status = assoc.send_c_echo()
    finally:
        if assoc.is_established:
            assoc.release()
    if "Status" not in status:
        raise TimeoutError(f"{destination.name} did not answer the C-ECHO")
    return int(status.Status)
