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
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

from pynetdicom import _config, dimse_messages

PREFIX = "recv-"

_lock = threading.Lock()
_open: weakref.WeakValueDictionary[str, DigestingFile] = weakref.WeakValueDictionary()


class DigestingFile:
    """A temporary file that keeps the SHA-256 and size of everything written to it.

    Offers what pynetdicom uses of a ``NamedTemporaryFile``: ``name``, ``write``,
    ``file.flush()`` and ``close``.
    """

    def __init__(self, folder: Path, **kwargs: Any) -> None:
        kwargs.update(dir=folder, prefix=PREFIX, delete=False)
        self._temporary = tempfile.NamedTemporaryFile(**kwargs)  # noqa: SIM115 - closed by pynetdicom
        self.name: str = self._temporary.name
        self.file = self._temporary.file
        self._digest = hashlib.sha256()
        self.size = 0
        with _lock:
            _open[self.name] = self

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._digest.update(data)
        self.size += len(data)
        return int(self._temporary.write(data))

    def close(self) -> None:
        self._temporary.close()

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def receive_into(folder: Path) -> None:
    """Make pynetdicom receive C-STORE data sets straight into ``DigestingFile``s in
    ``folder``, and accept every storage SOP class (process-wide settings)."""
    folder.mkdir(parents=True, exist_ok=True)
    _config.STORE_RECV_CHUNKED_DATASET = True
    _config.UNRESTRICTED_STORAGE_SERVICE = True
    dimse_messages.NamedTemporaryFile = functools.partial(  # type: ignore[attr-defined]
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
