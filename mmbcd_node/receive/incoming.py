"""Files that pynetdicom receives C-STORE data sets into, digested while they arrive.

With ``STORE_RECV_CHUNKED_DATASET`` pynetdicom writes each received data set into a
``NamedTemporaryFile``. ``receive_into`` points it at our factory instead: the file
lies in ``<storage root>/.incoming`` (same file system as its final place, so the store
renames rather than copies, and a crash leaves partial files only there), and its
SHA-256 and size are computed from the bytes as they are written, so the store never
reads a 500 MB object back just to digest it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pynetdicom import _config, dimse_messages

log = logging.getLogger(__name__)

PREFIX = "recv-"
SYNC_EVERY = 4 << 20

_lock = threading.Lock()
# Early fsyncs of received files, off the thread that reads the socket.
_syncer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="recv-sync")
_open: weakref.WeakValueDictionary[str, DigestingFile] = weakref.WeakValueDictionary()


class DigestingFile:
    """A temporary file that keeps the SHA-256 and size of everything written to it.

    Offers what pynetdicom uses of a ``NamedTemporaryFile``: ``name``, ``write``,
    ``file.flush()`` and ``close``. The digest is updated as the bytes are written, on
    the thread that reads the socket (hashlib releases the GIL; a thread of its own
    measured slower, its hand-offs costing more than they saved). Every ``SYNC_EVERY``
    bytes the kernel is asked to start writing the file out, and once the file is
    closed a background fsync begins, so the fsync that must precede the Success
    answer finds little or nothing left to write.
    """

    def __init__(self, folder: Path, **kwargs: Any) -> None:
        kwargs.update(dir=folder, prefix=PREFIX, delete=False)
        self._temporary = tempfile.NamedTemporaryFile(**kwargs)  # noqa: SIM115 - closed by pynetdicom
        self.name: str = self._temporary.name
        self.file = self._temporary.file
        self.size = 0
        self._digest = hashlib.sha256()
        self._unsynced = 0
        with _lock:
            _open[self.name] = self

    def write(self, data: bytes) -> int:
        written = int(self._temporary.write(data))
        self._add(data)
        return written

    def write_fragment(self, data: memoryview) -> None:
        """Append ``data`` (a data set fragment, as a view of the received PDU)."""
        self._temporary.write(data)
        self._add(data)

    def close(self) -> None:
        """Close the file and start its fsync in the background."""
        self._temporary.flush()  # what is buffered must reach the kernel before the fsync
        _syncer.submit(_sync_and_close, os.dup(self.file.fileno()), self.name)
        self._temporary.close()

    def hexdigest(self) -> str:
        """The SHA-256 of all bytes written."""
        return self._digest.hexdigest()

    def _add(self, data: bytes | memoryview) -> None:
        self._digest.update(data)
        self.size += len(data)
        self._unsynced += len(data)
        if self._unsynced >= SYNC_EVERY:
            _start_writeback(self.file.fileno())
            self._unsynced = 0


def _sync_and_close(fd: int, name: str) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        # The store fsyncs the file again before answering and fails there.
        log.warning("event=incoming_sync_failed path=%s error=%r", name, str(exc))
    finally:
        os.close(fd)


def _start_writeback(fd: int) -> None:
    """Have the kernel start writing the file's dirty pages to disk, without waiting.

    On Linux ``POSIX_FADV_DONTNEED`` starts writeback of dirty pages (and drops only
    clean ones), so the digest thread never blocks on the disk the way ``fdatasync``
    would; the fsync before the Success answer then waits only for what is in flight.
    The whole file is named each time, so pages written back since the last call are
    dropped too: received images then do not crowd the page cache (naming only the new
    range measured slower from the second batch of a benchmark on).
    """
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        os.fdatasync(fd)


def receive_into(folder: Path) -> None:
    """Make pynetdicom receive C-STORE data sets straight into ``DigestingFile``s in
    ``folder``, and accept every storage SOP class (process-wide settings)."""
    folder.mkdir(parents=True, exist_ok=True)
    _config.STORE_RECV_CHUNKED_DATASET = True
    _config.UNRESTRICTED_STORAGE_SERVICE = True
    dimse_messages.NamedTemporaryFile = functools.partial(  # type: ignore[assignment]
        DigestingFile, folder)


def size_and_digest(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of the received file at ``path``: from the bytes seen while it
    was written when it is a ``DigestingFile``, else by reading it."""
    with _lock:
        received = _open.pop(str(path), None)
    if received is not None and received.size == path.stat().st_size:
        return received.size, received.hexdigest()
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fp:
        while chunk := fp.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
