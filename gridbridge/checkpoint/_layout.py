"""Object names and Zarr v3 metadata of the checkpoint layout.

Invariant: the COMMIT name is derived from the job prefix and the step number alone, and the
COMMIT names the folder that holds the step's data, so any reader that knows the prefix finds the
same objects::

    <prefix>/fence.json                        the attempt fence (newest token that opened it)
    <prefix>/commits/<step:010d>.json          COMMIT object; its existence makes a step exist
    <prefix>/steps/<step:010d>.<writer>/       Zarr v3 group (zarr.json, attributes = metadata)
    <prefix>/steps/<step:010d>.<writer>/<a>/   one Zarr v3 array per leaf: zarr.json + c/<i>/...

Every writer saves into its own folder, so two writers racing for one step never touch each
other's objects. Checkpoints of format ``/1`` keep their data in ``steps/<step:010d>/`` (no
writer suffix) and their COMMITs name no folder; readers still follow them.

Arrays are uncompressed (one ``bytes`` codec, little-endian) and chunked along their leading axes
only, so each chunk is one contiguous slice of the array's C-order bytes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

CHUNK_BYTES = 16 * 1024 * 1024
STEP_DIGITS = 10
_COMMIT_NAME = re.compile(r"^(\d{10})\.json$")
_FOLDER_NAME = re.compile(r"(\d{10})(?:\.([A-Za-z0-9_-]{1,64}))?")
_WRITER = re.compile(r"[A-Za-z0-9_-]{1,64}")


def step_name(step: int) -> str:
    """Zero-padded name of a step, e.g. ``0000000042``."""
    if step < 0 or step >= 10**STEP_DIGITS:
        raise ValueError(f"step must be in [0, 1e10), got {step}")
    return f"{step:0{STEP_DIGITS}d}"


def parse_commit_name(basename: str) -> int | None:
    """Step number of a ``commits/`` object name, or None for foreign objects."""
    m = _COMMIT_NAME.match(basename)
    return int(m.group(1)) if m else None


def folder_name(step: int, writer: str) -> str:
    """Name of a writer's folder for a step under ``steps/``, e.g. ``0000000042.t7-5f0c1a2b``."""
    if not _WRITER.fullmatch(writer):
        raise ValueError(f"writer id must be 1-64 of [A-Za-z0-9_-], got {writer!r}")
    return f"{step_name(step)}.{writer}"


def parse_folder_name(basename: str) -> tuple[int, str | None] | None:
    """``(step, writer)`` of a ``steps/`` folder name (writer None for the format-1 name
    ``<step:010d>``), or None for foreign entries."""
    m = _FOLDER_NAME.fullmatch(basename)
    return (int(m.group(1)), m.group(2)) if m else None


def checked_folder(value: Any, step: int) -> str:
    """``value`` if it names a folder of ``step`` (a single safe path segment), else ValueError."""
    parsed = parse_folder_name(value) if isinstance(value, str) else None
    if parsed is None or parsed[0] != step:
        raise ValueError(f"folder {value!r} is not a folder name of step {step}")
    return str(value)


def entry_folder(entry: Any) -> str:
    """Folder (under ``steps/``) holding the array of a COMMIT ``arrays`` entry.

    Entries without ``folder`` (format 1) live in the step's format-1 folder ``<step:010d>``.
    """
    folder = entry.get("folder")
    return str(folder) if folder is not None else step_name(int(entry["step"]))


def commit_folder(commit: Any) -> str:
    """Folder (under ``steps/``) holding the group and the new arrays of a COMMIT's step."""
    folder = commit.get("folder")
    return str(folder) if folder is not None else step_name(int(commit["step"]))


@dataclass(frozen=True)
class Paths:
    """Object paths under one job prefix (paths as the fsspec filesystem spells them)."""

    root: str

    def join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    @property
    def fence(self) -> str:
        return self.join("fence.json")

    @property
    def commits(self) -> str:
        return self.join("commits")

    @property
    def steps(self) -> str:
        return self.join("steps")

    def commit(self, step: int) -> str:
        return self.join("commits", f"{step_name(step)}.json")

    def folder(self, folder: str) -> str:
        return self.join("steps", folder)

    def array(self, folder: str, name: str) -> str:
        return self.join("steps", folder, name)


def chunk_shape(shape: Sequence[int], itemsize: int, target: int | None = None) -> list[int]:
    """Chunk shape whose chunks are contiguous C-order slices of about ``target`` bytes.

    Trailing axes are kept whole; the first axis whose inner block fits the target is split;
    axes before it get chunk length 1.
    """
    target = CHUNK_BYTES if target is None else target
    shape = [int(n) for n in shape]
    inner = itemsize
    for axis in range(len(shape) - 1, -1, -1):
        if inner * max(shape[axis], 1) > target:
            # Split the axis into equal pieces of at most ``target`` bytes: Zarr stores an edge
            # chunk at full size, so a 10,000-row split into 4,096-row chunks would write 2,288
            # rows of padding, where 3 chunks of 3,334 rows write 2.
            per_chunk = max(1, target // inner)
            pieces = -(-shape[axis] // per_chunk)
            rows = -(-shape[axis] // pieces)
            return [1] * axis + [rows] + shape[axis + 1 :]
        inner *= max(shape[axis], 1)
    return [max(n, 1) for n in shape]


def chunk_slices(shape: Sequence[int], chunks: Sequence[int]) -> Iterator[tuple[str, int, int]]:
    """Yield ``(chunk key, element offset, element count)`` for every chunk.

    Offsets count elements of the flattened C-order array; the last chunk along the split axis
    may be short (it is stored zero-padded to the full chunk size, as Zarr requires).
    """
    if any(n == 0 for n in shape):
        return
    grid = [math.ceil(n / c) for n, c in zip(shape, chunks, strict=True)]
    full = math.prod(chunks)
    strides = [math.prod(shape[i + 1 :]) for i in range(len(shape))]
    total = math.prod(shape)
    for index in _grid_indices(grid):
        offset = sum(i * c * s for i, c, s in zip(index, chunks, strides, strict=True))
        key = "/".join(["c", *(str(i) for i in index)])
        yield key, offset, min(full, total - offset)


def _grid_indices(grid: Sequence[int]) -> Iterator[tuple[int, ...]]:
    if not grid:
        yield ()
        return
    for head in range(grid[0]):
        for tail in _grid_indices(grid[1:]):
            yield (head, *tail)


_FILL: dict[str, Any] = {"b": False, "i": 0, "u": 0, "f": 0.0, "c": [0.0, 0.0]}


def array_metadata(
    shape: Sequence[int], storage_dtype: str, kind: str, chunks: Sequence[int], logical: str
) -> bytes:
    """Zarr v3 ``zarr.json`` of one uncompressed array."""
    attrs = {} if logical == storage_dtype else {"gridbridge_dtype": logical}
    meta = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(shape),
        "data_type": storage_dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": _FILL[kind],
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "attributes": attrs,
    }
    return json.dumps(meta, separators=(",", ":")).encode()


def group_metadata(attributes: Any) -> bytes:
    """Zarr v3 ``zarr.json`` of a step group; its attributes are the user metadata."""
    meta = {"zarr_format": 3, "node_type": "group", "attributes": attributes}
    return json.dumps(meta, separators=(",", ":")).encode()
