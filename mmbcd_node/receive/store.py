"""Keeping a received object durably: the file, then its row, then (only then) Success.

The network layer has already written the received bytes to a temporary file under
``<storage root>/.incoming/<receiver>`` (same file system as the final place). ``InstanceStore``
checks the header, decides whether the object is kept, then

1. renames the temporary file to ``<study>/<series>/<sop>.dcm`` and fsyncs the file and
   the directories it touched together, so the file survives a power cut;
2. commits the study/series/instance rows and the audit event in one transaction,
   which waits for step 1;
3. only then returns, so the C-STORE answer is Success.

When step 2 fails the file is removed again, so a failure leaves neither file nor row.
A crash before 2 may leave a file without a row, which the peer was never told is
stored; it sends it again and the rename replaces it.

Most of the header work is done before the object has arrived: ``prepare`` receives
the first bytes of each object from the network layer and, while the pixel data
still arrives, parses the header, looks the study and instance up and creates the
object's directories. The handler then only checks the object is whole and writes
the rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.db.audit import record_event
from mmbcd_node.db.models import utcnow
from mmbcd_node.db.session import transaction
from mmbcd_node.logs import get_logger, study_context
from mmbcd_node.receive.admission import free_bytes, free_space_shortfall
from mmbcd_node.receive.catalogue import (
    Peer,
    StoredFile,
    find_instance,
    lookup_instance,
    record_instance,
)
from mmbcd_node.receive.classify import ObjectKind, classify
from mmbcd_node.receive.digest import algorithm_of, digest_file
from mmbcd_node.receive.header import (
    InstanceHeader,
    ParsedHeader,
    ReceiveError,
    StorageFailure,
    UnreadableDataset,
    instance_header,
    parse_head,
    read_header,
    require_series_uid,
)
from mmbcd_node.receive.incoming import Received, take_received

log = get_logger(__name__)

INCOMING = ".incoming"
# fsyncs of the directories a stored file entered, issued together.
_SYNCS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="store-sync")


@dataclass(frozen=True)
class Preparation:
    """What ``InstanceStore.prepare`` learnt from an object's head."""

    parsed: ParsedHeader
    # A mammogram's study correlation id (None: a new study) and whether the instance
    # is stored already, when it was looked up.
    lookup: tuple[str | None, bool] | None = None


@dataclass(frozen=True)
class StoreOutcome:
    """What happened to an object answered with Success."""

    kind: ObjectKind
    action: str  # stored | duplicate | acknowledged | ignored
    study_uid: str | None
    path: Path | None = None


def incoming_dir(storage_root: Path, receiver: str) -> Path:
    """Where the receiver named ``receiver`` writes objects while they arrive.

    One folder per receiver (host and port), so that receivers sharing a storage
    root never clear each other's objects in flight.
    """
    return storage_root / INCOMING / receiver


def clear_incoming(storage_root: Path, receiver: str) -> int:
    """Remove partial files left by a crash or an aborted association; return how many.

    Called when the receiver starts, before it accepts anything: nothing in there
    was ever acknowledged.
    """
    folder = incoming_dir(storage_root, receiver)
    folder.mkdir(parents=True, exist_ok=True)
    removed = 0
    for leftover in folder.iterdir():
        if leftover.is_file():
            leftover.unlink()
            removed += 1
    return removed


class InstanceStore:
    """Turns a received file into a stored, committed instance (or an audited no-op)."""

    def __init__(self, storage_root: Path, uid_root: str,
                 sessions: sessionmaker[Session], *, min_free_bytes: int = 0,
                 free_space: Callable[[Path], int] = free_bytes) -> None:
        self.storage_root = storage_root
        self.uid_root = uid_root
        self.sessions = sessions
        # Checked before each object is kept, not only when an association starts: a
        # long push cannot fill the disk half-way through a study.
        self.min_free_bytes = min_free_bytes
        self._free_space = free_space
        self._placer = ThreadPoolExecutor(max_workers=4, thread_name_prefix="store-place")
        self._preparer = ThreadPoolExecutor(max_workers=4, thread_name_prefix="store-prepare")

    def prepare(self, head: bytes) -> Future[Preparation | None]:
        """Start the work on an object that its first bytes allow (``head``, the
        ``on_head`` of ``receive_into``): parse its header and, for a mammogram, look
        it up and create its directories. The future's result is None when the header
        does not lie within ``head``, and nothing is ever raised: whatever fails here is
        done again, and reported, by ``receive``."""
        return self._preparer.submit(self._prepare, head)

    def _prepare(self, head: bytes) -> Preparation | None:
        parsed = parse_head(head)
        if parsed is None:
            return None
        try:
            header = instance_header(parsed, has_pixels=True)  # a pixel element follows
            if classify(header, self.uid_root) is not ObjectKind.MAMMOGRAM \
                    or header.series_uid is None or header.study_uid is None:
                return Preparation(parsed)
            lookup = self._lookup(header)
            if not lookup[1]:
                _prepare_folder(self._final(header, header.series_uid)[1].parent)
            return Preparation(parsed, lookup)
        except (ReceiveError, SQLAlchemyError, OSError) as exc:
            log.debug("prepare_skipped", error=str(exc))
            return Preparation(parsed)

    def receive(self, path: Path, *, sop_class_uid: str, sop_instance_uid: str,
                peer: Peer) -> StoreOutcome:
        """Handle the object received into ``path`` under the request's Affected UIDs.

        Returns the outcome for a Success answer. Raises ``InvalidIdentifiers``
        (0xA900), ``UnreadableDataset`` (0xC000) or ``StorageFailure`` (0xA700); in
        every failure case nothing of the object is left in storage or SQL.
        """
        try:
            return self._receive(path, sop_class_uid, sop_instance_uid, peer)
        except SQLAlchemyError as exc:
            raise StorageFailure(f"database error: {type(exc).__name__}") from exc
        except OSError as exc:
            raise StorageFailure(f"storage error: {exc}") from exc

    def _receive(self, path: Path, sop_class_uid: str, sop_instance_uid: str,
                 peer: Peer) -> StoreOutcome:
        # The received bytes are completely on disk (not yet fsynced) from here on.
        received = take_received(path)
        shortfall = free_space_shortfall(self._free_space(self.storage_root),
                                         self.min_free_bytes) if self.min_free_bytes else None
        if shortfall is not None:
            raise StorageFailure(f"{shortfall}: not kept, send it again later")
        size, digest = received.size, received.digest
        preparation = _prepared(received)
        header = read_header(path, sop_class_uid=sop_class_uid,
                             sop_instance_uid=sop_instance_uid,
                             parsed=preparation.parsed if preparation else None,
                             head=received.head)
        kind = classify(header, self.uid_root)
        if kind is ObjectKind.OWN:
            self._audit_only("own_object_ignored", header, peer)
            return StoreOutcome(kind, "ignored", header.study_uid)
        if kind is ObjectKind.OTHER:
            self._audit_only("non_mammography_acknowledged", header, peer)
            return StoreOutcome(kind, "acknowledged", header.study_uid)
        series_uid = require_series_uid(header)
        if not header.has_pixels:
            raise UnreadableDataset("mammogram without Pixel Data (7FE0,0010): data set "
                                    "truncated before the image")
        lookup = preparation.lookup if preparation is not None else None
        correlation_id, exists = lookup if lookup is not None else self._lookup(header)
        # Log lines about a study already known carry its correlation id from here on.
        with study_context(correlation_id):
            if exists:
                duplicate = self._duplicate(path, header, peer, digest)
                if duplicate is not None:
                    return duplicate
            return self._store(path, header, series_uid, kind, peer, size, digest)

    def _store(self, path: Path, header: InstanceHeader, series_uid: str, kind: ObjectKind,
               peer: Peer, size: int, digest: str) -> StoreOutcome:
        relative, final = self._final(header, series_uid)
        stored = StoredFile(relative_path=relative.as_posix(), size_bytes=size, digest=digest)
        # The file's fsync and rename run while the rows are written; the commit waits
        # for them, so a committed row always names a durable file.
        placing = self._placer.submit(_place, path, final)
        try:
            with transaction(self.sessions) as session:
                outcome = record_instance(session, header, series_uid, stored, peer, utcnow())
                correlation_id = outcome.correlation_id
                if outcome.created:
                    record_event(session, "instance_stored", **_audit_fields(header, peer),
                                 detail={"sop_class_uid": header.sop_class_uid,
                                         "transfer_syntax_uid": header.transfer_syntax_uid,
                                         "size_bytes": size, "digest": digest,
                                         "laterality": header.laterality,
                                         "view": header.view})
                _placed(placing, final, relative)
        except SQLAlchemyError as exc:
            _placed(placing, final, relative)
            if self._committed_by_other(header):
                return StoreOutcome(kind, "duplicate", header.study_uid, final)
            _remove(final)
            raise StorageFailure(f"database error, {relative} not kept: "
                                 f"{type(exc).__name__}") from exc
        except StorageFailure:
            raise
        except Exception:
            # Whatever went wrong, no file may stay without its row.
            placing.exception()
            _remove(final)
            raise
        if not outcome.created:
            # A concurrent association committed the same instance first; its row
            # describes the file now in place.
            return StoreOutcome(kind, "duplicate", header.study_uid, final)
        with study_context(correlation_id):
            log.info("instance_stored", study_uid=header.study_uid,
                     sop_instance_uid=header.sop_instance_uid, calling_ae=peer.calling_ae,
                     laterality=header.laterality, view=header.view, bytes=size)
        return StoreOutcome(kind, "stored", header.study_uid, final)

    def _final(self, header: InstanceHeader, series_uid: str) -> tuple[Path, Path]:
        """Where a stored object lies: relative to the storage root, and absolute."""
        relative = Path(header.study_uid or "", series_uid, f"{header.sop_instance_uid}.dcm")
        return relative, self.storage_root / relative

    def _lookup(self, header: InstanceHeader) -> tuple[str | None, bool]:
        """The correlation id of the object's study (None for a new study) and whether
        the instance is stored already, in one short read."""
        with self.sessions() as session:
            return lookup_instance(session, header.study_uid or "", header.sop_instance_uid)

    def _duplicate(self, path: Path, header: InstanceHeader, peer: Peer,
                   digest: str) -> StoreOutcome | None:
        with transaction(self.sessions) as session:
            existing = find_instance(session, header.sop_instance_uid)
            if existing is None:
                return None
            identical = existing.digest == _in_algorithm_of(existing.digest, path, digest)
            # The first copy stays; a differing re-send is kept out and audited.
            record_event(session, "instance_duplicate", **_audit_fields(header, peer),
                         outcome="success" if identical else "warning",
                         detail={"identical": identical})
        log.info("instance_duplicate", sop_instance_uid=header.sop_instance_uid,
                 identical=identical)
        return StoreOutcome(ObjectKind.MAMMOGRAM, "duplicate", header.study_uid,
                            self.storage_root / existing.path)

    def _committed_by_other(self, header: InstanceHeader) -> bool:
        try:
            with self.sessions() as session:
                return find_instance(session, header.sop_instance_uid) is not None
        except SQLAlchemyError:
            return False

    def _audit_only(self, action: str, header: InstanceHeader, peer: Peer) -> None:
        try:
            with transaction(self.sessions) as session:
                record_event(session, action, **_audit_fields(header, peer),
                             detail={"sop_class_uid": header.sop_class_uid,
                                     "modality": header.modality})
        except SQLAlchemyError as exc:
            # Acknowledging without the audit row would lose the trace: refuse instead.
            raise StorageFailure(f"database error while auditing: {type(exc).__name__}") from exc
        log.info(action, study_uid=header.study_uid, sop_instance_uid=header.sop_instance_uid,
                 sop_class_uid=header.sop_class_uid, calling_ae=peer.calling_ae)


def _audit_fields(header: InstanceHeader, peer: Peer) -> dict[str, Any]:
    return {"calling_ae": peer.calling_ae, "called_ae": peer.called_ae,
            "peer_address": peer.address, "study_uid": header.study_uid,
            "sop_instance_uid": header.sop_instance_uid,
            "patient_id": (header.text("PatientID") or "")[:64] or None,
            "accession_number": (header.text("AccessionNumber") or "")[:64] or None}


def _in_algorithm_of(stored: str, path: Path, digest: str) -> str:
    """``digest`` of the file at ``path``, recomputed when ``stored`` (an older row's
    digest) was made with another algorithm."""
    algorithm = algorithm_of(stored)
    if algorithm == algorithm_of(digest):
        return digest
    return digest_file(path, algorithm)[1]


def _placed(placing: Future[None], final: Path, relative: Path) -> None:
    """Wait for the file to be in place; ``StorageFailure`` (file removed) if it failed."""
    try:
        placing.result()
    except OSError as exc:
        if final.exists():
            _remove(final)
        raise StorageFailure(f"cannot write {relative}: {exc}") from exc


def _prepared(received: Received) -> Preparation | None:
    """The result of the work ``prepare`` started on ``received``; None when there was
    none or it has not started yet (cancelled: the handler does it sooner itself)."""
    preparation = received.preparation
    if preparation is None or preparation.cancel():
        return None
    try:
        result = preparation.result()
    except Exception:
        log.exception("prepare_failed")  # a defect; receive does it all again
        return None
    return result if isinstance(result, Preparation) else None


def _place(temporary: Path, final: Path) -> None:
    """Rename ``temporary`` to ``final``, then fsync the file and every directory that
    received a new entry, all at once (the file system commits them together).

    Renamed before its fsync, the file can be incomplete at ``final`` after a power
    cut; it never has a row then, and the peer, never answered, sends it again.
    """
    created = _make_dirs(final.parent)
    os.replace(temporary, final)
    syncs = [_SYNCS.submit(_fsync, final, os.O_RDONLY)]
    syncs += [_SYNCS.submit(_fsync_dir, directory) for directory in {final.parent, *created}]
    for sync in syncs:
        sync.result()


def _prepare_folder(folder: Path) -> None:
    """Create ``folder`` and its missing parents durably (each new entry fsynced)."""
    syncs = [_SYNCS.submit(_fsync_dir, directory) for directory in _make_dirs(folder)]
    for sync in syncs:
        sync.result()


def _make_dirs(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the parents that received a
    new entry (each must be fsynced for the new entry to be durable)."""
    touched: list[Path] = []
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        touched.append(directory.parent)
    return touched


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    _fsync(directory, os.O_RDONLY | os.O_DIRECTORY)


def _remove(final: Path) -> None:
    if not final.exists():
        return
    try:
        final.unlink()
        _fsync_dir(final.parent)
    except OSError:
        log.exception("store_cleanup_failed", path=final)
