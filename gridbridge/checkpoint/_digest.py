"""Array digests as the COMMIT object records them: ``<algorithm>:<lowercase hex>``.

Invariant: a digest covers an array's whole raw little-endian C-order bytes, fed in order, so it
does not depend on the chunking. Writers use ``blake3`` (cryptographic, several GB/s per core,
and it releases the GIL while hashing, so hashing overlaps I/O); readers also accept ``sha256``,
which checkpoints written before the switch carry.
"""

from __future__ import annotations

import hashlib
import importlib
from typing import Any, Protocol

WRITE_ALGORITHM = "blake3"
ALGORITHMS = ("blake3", "sha256")


class Hasher(Protocol):
    """The streaming interface both hashlib and blake3 objects offer."""

    def update(self, data: Any, /) -> Any: ...

    def hexdigest(self) -> str: ...


def _blake3_module() -> Any:
    try:
        return importlib.import_module("blake3")
    except ImportError:
        raise ImportError(
            "gridbridge.checkpoint needs the 'blake3' package to write or verify blake3 "
            "digests; install it with: pip install blake3"
        ) from None


def algorithm_of(digest: str) -> str:
    """The algorithm named in a digest string; ValueError when it is not one we know."""
    algorithm, sep, hexpart = digest.partition(":")
    if not sep or algorithm not in ALGORITHMS or not hexpart:
        raise ValueError(f"unsupported digest {digest[:40]!r} (known: {', '.join(ALGORITHMS)})")
    return algorithm


def new_hasher(algorithm: str, *, parallel: bool = False) -> Hasher:
    """A streaming hasher; ``parallel`` lets blake3 spread one large update over all cores."""
    if algorithm == "blake3":
        blake3 = _blake3_module()
        threads = blake3.blake3.AUTO if parallel else 1
        hasher: Hasher = blake3.blake3(max_threads=threads)
        return hasher
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unsupported digest algorithm {algorithm!r}")


def format_digest(algorithm: str, hasher: Hasher) -> str:
    return f"{algorithm}:{hasher.hexdigest()}"


def digest_bytes(data: Any, algorithm: str = WRITE_ALGORITHM, *, parallel: bool = False) -> str:
    """Digest string of one bytes-like object."""
    hasher = new_hasher(algorithm, parallel=parallel)
    hasher.update(data)
    return format_digest(algorithm, hasher)
