"""A fresh prefix on fsspec's ``memory://`` filesystem, which is one per process: each test
takes a unique name and leaves nothing behind."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator


@contextlib.contextmanager
def fresh_memory_prefix(stem: str) -> Iterator[str]:
    """``/<stem>-<random>``, removed with all under it afterwards."""
    import fsspec

    name = f"/{stem}-{uuid.uuid4().hex}"
    try:
        yield name
    finally:
        fs = fsspec.filesystem("memory")
        if fs.exists(name):
            fs.rm(name, recursive=True)
