"""The digest kept for every stored instance, written ``<algorithm>:<hex>``.

New objects are digested with BLAKE3 (a 256-bit cryptographic hash, checked from the
shell with ``b3sum``): at mammography sizes SHA-256 cost more time per image than
writing it to disk (the figures are in the README's Benchmarks section). Rows written
before the change keep their ``sha256:`` digests; comparing a new object with one of
those digests the new file with SHA-256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

import blake3

ALGORITHM = "blake3"
_READ = 4 << 20


class _Hash(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...
    def hexdigest(self) -> str: ...


def _new_hash(algorithm: str) -> _Hash:
    if algorithm == "blake3":
        return blake3.blake3()
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown digest algorithm {algorithm!r}")


class FileDigest:
    """An incremental digest of a file's bytes (BLAKE3 unless told otherwise)."""

    def __init__(self, algorithm: str = ALGORITHM) -> None:
        self.algorithm = algorithm
        self._hash = _new_hash(algorithm)

    def update(self, data: bytes | memoryview) -> None:
        self._hash.update(data)

    def hexdigest(self) -> str:
        """``<algorithm>:<hex>``."""
        return f"{self.algorithm}:{self._hash.hexdigest()}"


def algorithm_of(digest: str) -> str:
    """The algorithm named by a ``<algorithm>:<hex>`` digest."""
    algorithm, _, _ = digest.partition(":")
    return algorithm


def digest_file(path: Path, algorithm: str = ALGORITHM) -> tuple[int, str]:
    """Size and digest of the file at ``path``, read from disk."""
    digest = FileDigest(algorithm)
    size = 0
    with path.open("rb") as fp:
        while chunk := fp.read(_READ):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
