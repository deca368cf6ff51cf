"""Keeping a received object durably: the file, then its row, then (only then) Success.

The network layer has already written the received bytes to a temporary file under
``<storage root>/.incoming/<receiver>`` (same file system as the final place). ``InstanceStore``
checks the header, decides whether the object is kept, then

1. fsyncs the temporary file and renames it to ``<study>/<series>/<sop>.dcm``,
   fsyncing the directories it touched, so the file survives a power cut;
2. commits the study/series/instance rows and the audit event in one transaction;
3. only then returns, so the C-STORE answer is Success.

When step 2 fails the file is removed again, so a failure leaves neither file nor row.
A crash between 1 and 2 leaves a complete file without a row, which the peer was never
told is stored; it sends it again and the rename replaces it.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.db.audit import record_event
from mmbcd_node.db.models import Study, utcnow
from mmbcd_node.db.session import transaction
from mmbcd_node.logs import study_context
from mmbcd_node.receive.catalogue import Peer, StoredFile, find_instance, record_instance
from mmbcd_node.receive.classify import ObjectKind, classify
from mmbcd_node.receive.digest import algorithm_of, digest_file
from mmbcd_node.receive.header import (
    InstanceHeader,
    StorageFailure,
    UnreadableDataset,
    read_header,
    require_series_uid,
)
from mmbcd_node.receive.incoming import size_and_digest

log = logging.getLogger(__name__)

INCOMING = ".incoming"
# fsyncs of the directories a stored file entered, issued together.
_SYNCS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="store-sync")


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
                 sessions: sessionmaker[Session]) -> None:
        self.storage_root = storage_root
        self.uid_root = uid_root
        self.sessions = sessions
        self._placer = ThreadPoolExecutor(max_workers=4, thread_name_prefix="store-place")

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
        size, digest = size_and_digest(path)
        header = read_header(path, sop_class_uid=sop_class_uid,
                             sop_instance_uid=sop_instance_uid)
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
        correlation_id, exists = self._lookup(header)
        # Log lines about a study already known carry its correlation id from here on.
        with study_context(correlation_id):
            if exists:
                duplicate = self._duplicate(path, header, peer, digest)
                if duplicate is not None:
                    return duplicate
            return self._store(path, header, series_uid, kind, peer, size, digest)

    def _store(self, path: Path, header: InstanceHeader, series_uid: str, kind: ObjectKind,
               peer: Peer, size: int, digest: str) -> StoreOutcome:
        relative = Path(header.study_uid or "", series_uid, f"{header.sop_instance_uid}.dcm")
        final = self.storage_root / relative
        stored = StoredFile(relative_path=relative.as_posix(), size_bytes=size, digest=digest)
        # The file's fsync and rename run while the rows are written; the commit waits
        # for them, so a committed row always names a durable file.
        placing = self._placer.submit(_place, path, final)
        try:
            with transaction(self.sessions) as session:
                outcome = record_instance(session, header, series_uid, stored, peer, utcnow())
                correlation_id = outcome.study.correlation_id
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
            log.info("event=instance_stored study_uid=%s sop_instance_uid=%s calling_ae=%s "
                     "laterality=%s view=%s bytes=%d", header.study_uid,
                     header.sop_instance_uid, peer.calling_ae, header.laterality, header.view,
                     size)
        return StoreOutcome(kind, "stored", header.study_uid, final)

    def _lookup(self, header: InstanceHeader) -> tuple[str | None, bool]:
        """The correlation id of the object's study (None for a new study) and whether
        the instance is stored already, in one short read."""
        with self.sessions() as session:
            correlation_id = session.execute(select(Study.correlation_id).where(
                Study.study_uid == (header.study_uid or ""))).scalar_one_or_none()
            exists = find_instance(session, header.sop_instance_uid) is not None
        return correlation_id, exists

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
        log.info("event=instance_duplicate sop_instance_uid=%s identical=%s",
                 header.sop_instance_uid, identical)
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
        log.info("event=%s study_uid=%s sop_instance_uid=%s sop_class_uid=%s calling_ae=%s",
                 action, header.study_uid, header.sop_instance_uid, header.sop_class_uid,
                 peer.calling_ae)


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


def _place(temporary: Path, final: Path) -> None:
    """fsync ``temporary``, rename it to ``final``, then fsync every directory that
    received a new entry, all at once (the file system commits them together)."""
    _fsync(temporary, os.O_RDONLY)
    created = _make_dirs(final.parent)
    os.replace(temporary, final)
    syncs = [_SYNCS.submit(_fsync_dir, directory) for directory in {final.parent, *created}]
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
        log.exception("event=store_cleanup_failed path=%s", final)
