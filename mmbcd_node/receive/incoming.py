"""Files that pynetdicom receives C-STORE data sets into, digested while they arrive.

With ``STORE_RECV_CHUNKED_DATASET`` pynetdicom writes each received data set into a
``NamedTemporaryFile``. ``receive_into`` points it at our factory instead: the file
lies in ``<storage root>/.incoming`` (same file system as its final place, so the store
renames rather than copies, and a crash leaves partial files only there), and its
bytes go to disk through a ``BlockWriter``, which computes the digest and size as
they pass, so the store never reads a 500 MB object back just to digest it.

The file also keeps its first ``HEAD_BYTES`` in memory. Once they have arrived it hands
them to the ``on_head`` callback of ``receive_into``, which starts reading the header
while the pixel data still arrives (see ``InstanceStore.prepare``); the handler
collects that work with ``take_received``.
"""

from __future__ import annotations

import functools
import tempfile
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pynetdicom import _config, dimse_messages

from mmbcd_node.logs import get_logger
from mmbcd_node.receive.block_writer import BlockWriter
from mmbcd_node.receive.digest import digest_file
from mmbcd_node.receive.negotiation import accept_storage_contexts

log = get_logger(__name__)

PREFIX = "recv-"
# Enough for the header of any image we have seen (an MG header with an ICC profile
# and private tags is a few tens of KiB); two PDUs of dcmtk's 128 KiB.
HEAD_BYTES = 256 << 10

HeadHandler = Callable[[bytes], "Future[Any]"]

_lock = threading.Lock()
_open: weakref.WeakValueDictionary[str, DigestingFile] = weakref.WeakValueDictionary()


class DigestingFile:
    """A temporary file that keeps the digest and size of everything written to it.

    Offers what pynetdicom uses of a ``NamedTemporaryFile``: ``name``, ``write``,
    ``file.flush()`` and ``close``. pynetdicom calls ``close`` only after the C-STORE
    handler has answered, so the handler completes the file first with
    ``take_received``.
    """

    def __init__(self, folder: Path, on_head: HeadHandler | None = None, **_: Any) -> None:
        fd, self.name = tempfile.mkstemp(dir=folder, prefix=PREFIX, suffix=".dcm")
        self.file = self  # pynetdicom flushes ``file`` after each write of its own
        self._writer = BlockWriter(fd)
        self._head = bytearray()
        self._on_head = on_head
        self.preparation: Future[Any] | None = None
        with _lock:
            _open[self.name] = self

    @property
    def head(self) -> bytes:
        """The file's first bytes (up to ``HEAD_BYTES``)."""
        return bytes(self._head)

    def write(self, data: bytes) -> int:
        self.write_fragment(memoryview(data))
        return len(data)

    def write_fragment(self, data: memoryview) -> None:
        """Append ``data`` (a data set fragment, as a view of the received PDU)."""
        missing = HEAD_BYTES - len(self._head)
        if missing > 0:
            self._head += data[:missing]
            if len(self._head) == HEAD_BYTES and self._on_head is not None:
                self.preparation = self._on_head(self.head)
        self._writer.write(data)

    def receive_fragment(self, recv_into: Callable[[memoryview], int], count: int) -> None:
        """Append a fragment of ``count`` bytes that ``recv_into`` reads from the socket:
        straight into the file's blocks once the head is complete, through the head
        before. Raises ``ConnectionError`` when the data ends short of ``count``."""
        if len(self._head) < HEAD_BYTES:
            # Through the head: only as many bytes as it still needs, whatever ``count``.
            wanted = min(count, HEAD_BYTES - len(self._head))
            fragment = memoryview(bytearray(wanted))
            got = recv_into(fragment)
            self.write_fragment(fragment[:got])
            if got < wanted:
                raise ConnectionError(f"data ended {count - got} bytes short of the fragment")
            count -= wanted
        if count:
            self._writer.write_from(recv_into, count)

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
            log.debug("incoming_write_failed", path=self.name, error=str(exc))
        finally:
            self._writer.close()


def receive_into(folder: Path, on_head: HeadHandler | None = None) -> None:
    """Make pynetdicom receive C-STORE data sets straight into ``DigestingFile``s in
    ``folder``, and accept every storage SOP class (process-wide settings).

    Contexts are negotiated by ``negotiation.negotiate_storage``. ``on_head`` receives
    the first ``HEAD_BYTES`` of each object as soon as they have arrived and returns a
    future; ``take_received`` hands it to the handler.
    """
    folder.mkdir(parents=True, exist_ok=True)
    _config.STORE_RECV_CHUNKED_DATASET = True
    _config.UNRESTRICTED_STORAGE_SERVICE = True
    accept_storage_contexts()
    dimse_messages.NamedTemporaryFile = functools.partial(  # type: ignore[assignment]
        DigestingFile, folder, on_head=on_head)


@dataclass(frozen=True)
class Received:
    """A received file, complete on disk (not yet fsynced)."""

    size: int
    digest: str
    head: bytes = b""  # its first bytes; empty when it was not received here
    preparation: Future[Any] | None = None  # what ``on_head`` started, if it was called


def take_received(path: Path) -> Received:
    """Complete the received file at ``path`` and return what is known of it: size and
    digest from the bytes seen while it was written when it is a ``DigestingFile``
    (else by reading it), its head and the work started on it. Raises ``OSError`` when
    writing it failed."""
    with _lock:
        received = _open.pop(str(path), None)
    if received is None:
        return Received(*digest_file(path))
    size, digest = received.finish()
    return Received(size, digest, received.head, received.preparation)

