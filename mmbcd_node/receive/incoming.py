"""Files that pynetdicom receives C-STORE data sets into, digested while they arrive.

With ``STORE_RECV_CHUNKED_DATASET`` pynetdicom writes each received data set into a
``NamedTemporaryFile``. ``receive_into`` points it at our factory instead: the file
lies in ``<storage root>/.incoming`` (same file system as its final place, so the store
renames rather than copies, and a crash leaves partial files only there), and its
bytes go to disk through a ``BlockWriter``, which computes the digest and size as
they pass, so the store never reads a 500 MB object back just to digest it.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

from pynetdicom import _config, dimse_messages

from mmbcd_node.receive.block_writer import BlockWriter
from mmbcd_node.receive.digest import digest_file

log = logging.getLogger(__name__)

PREFIX = "recv-"

_lock = threading.Lock()
_open: weakref.WeakValueDictionary[str, DigestingFile] = weakref.WeakValueDictionary()


class DigestingFile:
    """A temporary file that keeps the digest and size of everything written to it.

    Offers what pynetdicom uses of a ``NamedTemporaryFile``: ``name``, ``write``,
    ``file.flush()`` and ``close``. pynetdicom calls ``close`` only after the C-STORE
    handler has answered, so the handler completes the file first with
    ``size_and_digest``.
    """

    def __init__(self, folder: Path, **_: Any) -> None:
        fd, self.name = tempfile.mkstemp(dir=folder, prefix=PREFIX, suffix=".dcm")
        self.file = self  # pynetdicom flushes ``file`` after each write of its own
        self._writer = BlockWriter(fd)
        with _lock:
            _open[self.name] = self

    def write(self, data: bytes) -> int:
        self._writer.write(data)
        return len(data)

    def write_fragment(self, data: memoryview) -> None:
        """Append ``data`` (a data set fragment, as a view of the received PDU)."""
        self._writer.write(data)

    def flush(self) -> None:
        """Nothing to do: blocks go to disk as they fill, the rest in ``finish``."""

    def finish(self) -> tuple[int, str]:
        """Complete the file on disk; return its size and digest."""
        return self._writer.finish()

    def close(self) -> None:
        try:
            self._writer.finish()
        except OSError as exc:
            # The handler has already answered with the failure.
            log.debug("event=incoming_write_failed path=%s error=%r", self.name, str(exc))
        finally:
            self._writer.close()


def receive_into(folder: Path) -> None:
    """Make pynetdicom receive C-STORE data sets straight into ``DigestingFile``s in
    ``folder``, and accept every storage SOP class (process-wide settings)."""
    folder.mkdir(parents=True, exist_ok=True)
    _config.STORE_RECV_CHUNKED_DATASET = True
    _config.UNRESTRICTED_STORAGE_SERVICE = True
    dimse_messages.NamedTemporaryFile = functools.partial(  # type: ignore[assignment]
        DigestingFile, folder)


def size_and_digest(path: Path) -> tuple[int, str]:
    """Size and digest of the received file at ``path``, once it is completely on
    disk: from the bytes seen while it was written when it is a ``DigestingFile``,
    else by reading it. Raises ``OSError`` when writing it failed."""
    with _lock:
        received = _open.pop(str(path), None)
    if received is not None:
        return received.finish()
    return digest_file(path)
