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
import queue
import tempfile
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pynetdicom import _config, dimse_messages

log = logging.getLogger(__name__)

PREFIX = "recv-"
SYNC_EVERY = 4 << 20

_lock = threading.Lock()
_open: weakref.WeakValueDictionary[str, DigestingFile] = weakref.WeakValueDictionary()


class DigestingFile:
    """A temporary file that keeps the SHA-256 and size of everything written to it.

    Offers what pynetdicom uses of a ``NamedTemporaryFile``: ``name``, ``write``,
    ``file.flush()`` and ``close``. pynetdicom calls ``write`` from the thread that
    also reads the socket; the digest is computed on a thread of its own (hashlib
    releases the GIL), so hashing overlaps with receiving instead of slowing it. The
    same thread starts the kernel's writeback every ``SYNC_EVERY`` bytes and fsyncs the
    file once it is closed, so the fsync that must precede the Success answer finds
    little or nothing left to write.
    """

    def __init__(self, folder: Path, **kwargs: Any) -> None:
        kwargs.update(dir=folder, prefix=PREFIX, delete=False)
        self._temporary = tempfile.NamedTemporaryFile(**kwargs)  # noqa: SIM115 - closed by pynetdicom
        self.name: str = self._temporary.name
        self.file = self._temporary.file
        self.size = 0
        self._digest = hashlib.sha256()
        # The digest thread's own descriptor: it syncs the file after pynetdicom closed it.
        self._fd = os.dup(self.file.fileno())
        self._chunks: queue.SimpleQueue[bytes | memoryview | None] = queue.SimpleQueue()
        self._closing = False
        self._hasher = threading.Thread(target=self._hash, name="recv-digest", daemon=True)
        self._hasher.start()
        with _lock:
            _open[self.name] = self

    def write(self, data: bytes) -> int:
        written = int(self._temporary.write(data))
        self.size += len(data)
        self._chunks.put(bytes(data))
        return written

    def write_fragment(self, data: memoryview) -> None:
        """Append ``data``, a view of a buffer that is never written again, so the digest
        thread may read it without a copy."""
        self._temporary.write(data)
        self.size += len(data)
        self._chunks.put(data)

    def close(self) -> None:
        """Close the file; the digest thread finishes and fsyncs it in the background,
        while pynetdicom hands the data set to the C-STORE handler."""
        self._temporary.close()  # flushes what is buffered before the final fsync
        self._end()

    def hexdigest(self) -> str:
        """The SHA-256 of all bytes written (waits for the digest thread to finish)."""
        self._end()
        self._hasher.join()
        return self._digest.hexdigest()

    def _end(self) -> None:
        if not self._closing:
            self._closing = True
            self._chunks.put(None)

    def _hash(self) -> None:
        try:
            unsynced = 0
            while (chunk := self._chunks.get()) is not None:
                self._digest.update(chunk)
                unsynced += len(chunk)
                if unsynced >= SYNC_EVERY:
                    _start_writeback(self._fd)
                    unsynced = 0
            # Early, so the store's own fsync before Success finds nothing left to do.
            os.fsync(self._fd)
        except OSError as exc:
            # The store fsyncs the file again before answering and fails there.
            log.warning("event=incoming_sync_failed path=%s error=%r", self.name, str(exc))
        finally:
            os.close(self._fd)


def _start_writeback(fd: int) -> None:
    """Have the kernel start writing the file's dirty pages to disk, without waiting.

    On Linux ``POSIX_FADV_DONTNEED`` starts writeback of dirty pages (and drops only
    clean ones), so the digest thread never blocks on the disk the way ``fdatasync``
    would; the fsync before the Success answer then waits only for what is in flight.
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


def digest_of(path: Path) -> Callable[[], tuple[int, str]]:
    """How to get the size and SHA-256 of the received file now at ``path``.

    For a ``DigestingFile`` the answer comes from the bytes seen while it was written,
    and calling it waits for the digest thread; the file may be renamed meanwhile.
    Any other file is read now, so the answer is ready before it moves.
    """
    with _lock:
        received = _open.pop(str(path), None)
    if received is not None and received.size == path.stat().st_size:
        return lambda: (received.size, received.hexdigest())
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fp:
        while chunk := fp.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    result = (size, digest.hexdigest())
    return lambda: result
