"""Storage records the runtime reads and writes, without the storage library for local ones.

Invariant: a local URL (``file:///p`` or a plain path) is read and written with plain system
calls, never through fsspec, since a trivial job's start-up is mostly imports; every other URL
goes through :mod:`gridbridge.wire`. A local file is replaced atomically, never half-written,
and is readable by its owner only (0600, less under a stricter umask), as
:func:`gridbridge.wire.put_bytes` writes records.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from gridbridge.wire import get_bytes

__all__ = ["local_dir", "read_bytes", "write_atomic"]


def local_dir(url: str) -> Path | None:
    """The path of a local storage URL (``file:///p`` or a plain path), else None."""
    if url.startswith("file:///"):
        return Path(url[len("file://"):])
    if "://" in url or "::" in url:
        return None
    return Path(url)


def read_bytes(url: str) -> bytes:
    """Read a record; a local one without importing the storage library."""
    local = local_dir(url)
    return local.read_bytes() if local is not None else get_bytes(url)


def write_atomic(path: Path, text: str) -> None:
    """Replace the local file ``path`` with ``text`` in one step (mode 0600 less the umask)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a leftover of a crash may have another mode; O_CREAT would keep it
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)
    os.replace(tmp, path)
