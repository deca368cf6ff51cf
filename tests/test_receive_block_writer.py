"""Received bytes reach the disk whole, in order, with their digest, whatever the
fragment sizes, through O_DIRECT where the file system allows it and the page cache
where it does not."""

from __future__ import annotations

import gc
import os
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path

import blake3
import pytest

from mmbcd_node.receive.block_writer import ALIGNMENT, BLOCK, BlockWriter
from mmbcd_node.receive.digest import digest_file
from mmbcd_node.receive.incoming import HEAD_BYTES, DigestingFile, take_received

SHM = Path("/dev/shm")


def write_in_fragments(writer: BlockWriter, data: bytes, sizes: list[int]) -> None:
    offset, turn = 0, 0
    while offset < len(data):
        size = sizes[turn % len(sizes)]
        writer.write(memoryview(data)[offset:offset + size])
        offset += size
        turn += 1


@pytest.mark.parametrize("length", [
    0, 1, ALIGNMENT - 1, ALIGNMENT, BLOCK - 1, BLOCK, BLOCK + 1,
    3 * BLOCK + 5 * ALIGNMENT + 123,
])
def test_file_on_disk_equals_the_bytes_written_and_their_digest(
        tmp_path: Path, length: int) -> None:
    data = os.urandom(length)
    fd, name = tempfile.mkstemp(dir=tmp_path)
    writer = BlockWriter(fd)
    write_in_fragments(writer, data, [131060, 1, 4096, 6, 700_001])
    size, digest = writer.finish()
    writer.close()
    assert Path(name).read_bytes() == data
    assert (size, digest) == (length, "blake3:" + blake3.blake3(data).hexdigest())
    assert writer.finish() == (size, digest)  # idempotent


class FakeSocket:
    """``recv_into`` over ``data``: at most ``chunk`` bytes a call, as a socket gives
    them; ``read_fully`` fills the view as ``ReceiverSocket.recv_into`` does."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data, self.chunk, self.offset = data, chunk, 0

    def read_fully(self, view: memoryview) -> int:
        done = 0
        while done < len(view):
            count = min(len(view) - done, self.chunk, len(self.data) - self.offset)
            if count == 0:
                break  # the peer closed
            view[done:done + count] = self.data[self.offset:self.offset + count]
            self.offset += count
            done += count
        return done


def test_fragments_received_straight_into_the_blocks_make_the_same_file(
        tmp_path: Path) -> None:
    data = os.urandom(3 * BLOCK + 5000)
    sock = FakeSocket(data, chunk=65_536)
    fd, name = tempfile.mkstemp(dir=tmp_path)
    writer = BlockWriter(fd)
    writer.write(data[:100])  # mixed with copied fragments, across block boundaries
    sock.offset = 100
    for size in (131_060, BLOCK, 7, len(data)):
        remaining = len(data) - sock.offset
        if remaining:
            writer.write_from(sock.read_fully, min(size, remaining))
    size, digest = writer.finish()
    writer.close()
    assert Path(name).read_bytes() == data
    assert (size, digest) == (len(data), "blake3:" + blake3.blake3(data).hexdigest())


def test_fragment_cut_short_by_the_peer_raises_and_keeps_what_arrived(tmp_path: Path) -> None:
    data = os.urandom(BLOCK + 10)
    fd, _ = tempfile.mkstemp(dir=tmp_path)
    writer = BlockWriter(fd)
    with pytest.raises(ConnectionError, match="short"):
        writer.write_from(FakeSocket(data, chunk=4096).read_fully, len(data) + 500)
    assert writer.size == len(data)
    writer.close()


def test_direct_io_is_used_on_a_disk_file_system(tmp_path: Path) -> None:
    fd, _ = tempfile.mkstemp(dir=tmp_path)
    writer = BlockWriter(fd)
    writer.finish()
    writer.close()
    assert writer.direct, "the test folder's file system refused O_DIRECT"


@pytest.mark.skipif(not SHM.is_dir(), reason="no /dev/shm")
def test_without_direct_io_the_page_cache_path_writes_the_same_file() -> None:
    data = os.urandom(2 * BLOCK + 777)
    fd, name = tempfile.mkstemp(dir=SHM)
    try:
        writer = BlockWriter(fd)
        write_in_fragments(writer, data, [65536 + 3])
        assert writer.finish() == (len(data), "blake3:" + blake3.blake3(data).hexdigest())
        writer.close()
        assert Path(name).read_bytes() == data
    finally:
        os.unlink(name)


def test_a_failed_write_is_raised_by_finish(tmp_path: Path) -> None:
    path = tmp_path / "read-only"
    path.write_bytes(b"")
    writer = BlockWriter(os.open(path, os.O_RDONLY))
    writer.write(os.urandom(2 * BLOCK + 10))
    with pytest.raises(OSError):
        writer.finish()
    writer.close()


def test_an_abandoned_file_releases_its_thread_and_descriptor(tmp_path: Path) -> None:
    # An aborted association drops its file half-written, without finish or close.
    fd, _ = tempfile.mkstemp(dir=tmp_path)
    writer = BlockWriter(fd)
    writer.write(os.urandom(BLOCK + 1))
    assert digest_threads() == 1
    del writer
    gc.collect()
    assert digest_threads() == 0
    with pytest.raises(OSError):
        os.fstat(fd)


def test_received_file_gives_size_and_digest_once_complete(tmp_path: Path) -> None:
    data = os.urandom(BLOCK + 4097)
    received = DigestingFile(tmp_path)
    received.write(data[:100])
    received.write_fragment(memoryview(data)[100:])
    received.file.flush()
    path = Path(received.name)
    # What the store asks for before it reads the header: the file is complete.
    taken = take_received(path)
    assert (taken.size, taken.digest) == (len(data), digest_file_of(data))
    assert taken.head == data[:HEAD_BYTES]
    assert path.read_bytes() == data
    received.close()
    # A file the receiver did not write (a restart) is digested from disk.
    again = take_received(path)
    assert (again.size, again.digest) == digest_file(path)
    assert again.head == b"" and again.preparation is None


def test_received_file_hands_its_head_over_once_it_has_arrived(tmp_path: Path) -> None:
    data = os.urandom(HEAD_BYTES + 5000)
    heads: list[bytes] = []

    def on_head(head: bytes) -> Future[int]:
        heads.append(head)
        started: Future[int] = Future()
        started.set_result(len(head))
        return started

    received = DigestingFile(tmp_path, on_head=on_head)
    received.write_fragment(memoryview(data)[:HEAD_BYTES - 1])
    assert heads == [] and received.preparation is None
    received.write_fragment(memoryview(data)[HEAD_BYTES - 1:HEAD_BYTES + 10])
    received.write(data[HEAD_BYTES + 10:])
    assert heads == [data[:HEAD_BYTES]]  # once, with exactly the first bytes
    taken = take_received(Path(received.name))
    assert taken.preparation is not None and taken.preparation.result() == HEAD_BYTES
    received.close()


def test_small_object_never_calls_on_head_but_keeps_its_bytes(tmp_path: Path) -> None:
    def on_head(head: bytes) -> Future[int]:
        raise AssertionError("an object shorter than HEAD_BYTES has no head to hand over")

    received = DigestingFile(tmp_path, on_head=on_head)
    received.write(b"small object")
    taken = take_received(Path(received.name))
    assert taken.preparation is None
    assert taken.head == b"small object"
    received.close()


def digest_threads() -> int:
    return sum(thread.name == "recv-digest" for thread in threading.enumerate())


def digest_file_of(data: bytes) -> str:
    return "blake3:" + blake3.blake3(data).hexdigest()
