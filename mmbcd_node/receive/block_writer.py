"""Writing a received object to disk in large aligned blocks, digested on the way.

A 27 MB mammogram arrives as ~200 PDUs. Copied into the page cache and fsynced before
the answer, it is written twice over (into the cache, then out by the kernel's
writeback) and the fsync waits for most of it. ``BlockWriter`` instead gathers the
bytes into 2 MiB page-aligned buffers; each full buffer goes at once

* to the file's digest thread, which digests the blocks in order (BLAKE3), and
* to a shared pool of write threads, which ``pwrite`` it with ``O_DIRECT``: straight
  from the buffer to the disk, several blocks in flight, no page-cache copy,

so the socket is read while earlier blocks are digested and written, and the fsync
before the answer finds nothing left to write but the last few bytes and the metadata.
A buffer goes back to a shared pool once digested and written; a file holds at most
``DEPTH`` blocks in flight, so a slow disk slows the sender instead of filling memory.

Where the file system refuses ``O_DIRECT`` (tmpfs, some network file systems) the same
pipeline writes through the page cache. ``finish`` waits for the pipeline, writes the
tail (the last bytes short of the 4 KiB alignment, through the page cache) and returns
size and digest; the caller still fsyncs before it answers.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from mmbcd_node.receive.digest import FileDigest

BLOCK = 2 << 20
ALIGNMENT = 4096
DEPTH = 12  # blocks of one file being digested or written at once
POOL_KEEP = 32
_WRITERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="recv-write")


class _BufferPool:
    """Page-aligned anonymous mappings of ``BLOCK`` bytes, reused across files
    (a fresh mapping costs a page fault per 4 KiB on first touch)."""

    def __init__(self) -> None:
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, BLOCK)

    def give(self, buffer: mmap.mmap) -> None:
        with self._lock:
            if len(self._free) < POOL_KEEP:
                self._free.append(buffer)
                return
        buffer.close()


_POOL = _BufferPool()


@dataclass
class _Block:
    buffer: mmap.mmap
    offset: int  # where the block starts in the file
    digest_length: int  # bytes that belong to the file
    write_length: int  # bytes the write pool writes (aligned when O_DIRECT)
    keep: bool  # the final block: its buffer stays with the caller for the tail
    pending: int = 2  # digest and write


@dataclass
class _Pipeline:
    """The state shared with the threads. It holds no reference to the ``BlockWriter``,
    so an abandoned writer is collected and its finaliser stops the digest thread."""

    fd: int
    digest: FileDigest = field(default_factory=FileDigest)
    to_digest: queue.SimpleQueue[_Block | None] = field(default_factory=queue.SimpleQueue)
    slots: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(DEPTH))
    error: OSError | None = None
    thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, block: _Block) -> None:
        """Digest and write ``block``; waits while ``DEPTH`` blocks are in flight."""
        self.slots.acquire()
        if self.thread is None:
            self.thread = threading.Thread(target=self._digest_blocks, name="recv-digest",
                                           daemon=True)
            self.thread.start()
        self.to_digest.put(block)
        _WRITERS.submit(self._write, block)

    def drain(self) -> None:
        """Wait until every submitted block is digested and written."""
        for _ in range(DEPTH):
            self.slots.acquire()
        for _ in range(DEPTH):
            self.slots.release()

    def stop(self) -> None:
        """End the digest thread once the blocks already queued are done."""
        if self.thread is not None:
            self.to_digest.put(None)
            self.thread.join()
            self.thread = None

    def _digest_blocks(self) -> None:
        while (block := self.to_digest.get()) is not None:
            with memoryview(block.buffer) as view:
                self.digest.update(view[:block.digest_length])
            self._done(block)

    def _write(self, block: _Block) -> None:
        try:
            if self.error is None:
                write_at(self.fd, block.buffer, block.write_length, block.offset)
        except OSError as exc:
            self.error = exc
        finally:
            self._done(block)

    def _done(self, block: _Block) -> None:
        with self._lock:
            block.pending -= 1
            finished = block.pending == 0
        if finished:
            if not block.keep:
                _POOL.give(block.buffer)
            self.slots.release()


class BlockWriter:
    """Writes one file in aligned blocks: ``write`` from one thread, then ``finish``,
    then ``close``. Owns ``fd`` from here on."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.direct = _enable_direct_io(fd)
        self._pipeline = _Pipeline(fd)
        self._buffer = _POOL.take()
        self._offset = 0  # where the current buffer starts in the file
        self._filled = 0
        self._result: tuple[int, str] | None = None
        # An abandoned file (an aborted association) must not keep its thread or its
        # descriptor; the writes in flight end before the descriptor is closed.
        self._closer = weakref.finalize(self, _shut_down, self._pipeline, fd)
        self._closer.atexit = False  # at exit the process is going away with its files

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._offset + self._filled

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``; blocks only while ``DEPTH`` blocks are still on their way."""
        with memoryview(data) as view:
            total = len(view)
            start = 0
            while start < total:
                count = min(total - start, BLOCK - self._filled)
                self._buffer[self._filled:self._filled + count] = view[start:start + count]
                self._filled += count
                start += count
                if self._filled == BLOCK:
                    self._submit_full()

    def write_from(self, recv_into: Callable[[memoryview], int], count: int) -> None:
        """Append ``count`` bytes that ``recv_into`` reads straight into the block
        buffers (from the socket, without an intermediate copy). ``recv_into`` fills
        the view it is given, or returns fewer bytes when the data ends; then
        ``ConnectionError`` is raised, the bytes read so far kept."""
        while count:
            wanted = min(count, BLOCK - self._filled)
            with memoryview(self._buffer) as view:
                got = recv_into(view[self._filled:self._filled + wanted])
            self._filled += got
            count -= got
            if self._filled == BLOCK:
                self._submit_full()
            if got < wanted:
                raise ConnectionError(f"data ended {count} bytes short of the fragment")

    def _submit_full(self) -> None:
        self._pipeline.submit(_Block(self._buffer, self._offset, BLOCK, BLOCK, keep=False))
        self._buffer = _POOL.take()
        self._offset += BLOCK
        self._filled = 0

    def finish(self) -> tuple[int, str]:
        """Write everything out; return the file's size and digest.

        Raises the ``OSError`` of a failed write. Idempotent.
        """
        if self._result is not None:
            return self._result
        buffer, filled, pipeline = self._buffer, self._filled, self._pipeline
        tail_start = filled - filled % ALIGNMENT if self.direct else filled
        pipeline.submit(_Block(buffer, self._offset, filled, tail_start, keep=True))
        pipeline.drain()
        if pipeline.error is not None:
            raise pipeline.error
        if tail_start < filled:
            # The unaligned tail goes through the page cache.
            _disable_direct_io(self._fd)
            with memoryview(buffer) as view:
                _write_all(self._fd, view[tail_start:filled], self._offset + tail_start)
        _POOL.give(buffer)
        self._result = (self.size, pipeline.digest.hexdigest())
        return self._result

    def close(self) -> None:
        """Stop the digest thread and close the descriptor (``finish`` first to keep
        the data)."""
        self._closer()


def _shut_down(pipeline: _Pipeline, fd: int) -> None:
    pipeline.drain()
    pipeline.stop()
    os.close(fd)


def write_at(fd: int, buffer: mmap.mmap, length: int, offset: int) -> None:
    """``pwrite`` the first ``length`` bytes of ``buffer`` at ``offset``."""
    with memoryview(buffer) as view:
        _write_all(fd, view[:length], offset)


def _write_all(fd: int, view: memoryview, offset: int) -> None:
    while len(view):
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _enable_direct_io(fd: int) -> bool:
    direct = getattr(os, "O_DIRECT", 0)
    if not direct:
        return False
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | direct)
        return True
    return False


def _disable_direct_io(fd: int) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~getattr(os, "O_DIRECT", 0))
