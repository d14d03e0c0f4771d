"""Concurrent chunk transfer with digests computed on the fly.

Invariant: an array's digest is the hash (blake3 when writing; blake3 or sha256 when reading, as
the COMMIT names it) of its whole little-endian C-order bytes, fed to the hash in chunk order
while chunks move concurrently; on write the bytes hashed are the in-memory bytes being
uploaded, on read they are the bytes that came back from storage.
"""

from __future__ import annotations

import math
import mmap
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._backend import Backend
from ._digest import WRITE_ALGORITHM, algorithm_of, digest_bytes, format_digest, new_hasher
from ._layout import array_metadata, chunk_shape, chunk_slices


def digest_of(data: np.ndarray[Any, Any], algorithm: str = WRITE_ALGORITHM) -> str:
    """Digest of an array's raw C-order bytes, as stored in the COMMIT."""
    return digest_bytes(_bytes_view(data), algorithm)


def _bytes_view(data: np.ndarray[Any, Any]) -> memoryview:
    flat: Any = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return memoryview(flat)


class _OrderedHasher:
    """Hashes parts strictly in order although they complete in any order, on any thread."""

    def __init__(
        self, parts: Sequence[memoryview], algorithm: str = WRITE_ALGORITHM, parallel: bool = False
    ) -> None:
        self._algorithm = algorithm
        self._hash = new_hasher(algorithm, parallel=parallel)
        self._parts = parts
        self._done: set[int] = set()
        self._next = 0
        self._busy = False
        self._lock = threading.Lock()

    def completed(self, index: int) -> None:
        with self._lock:
            self._done.add(index)
            if self._busy:
                return  # the thread already draining will pick this part up
            self._busy = True
        while True:
            with self._lock:
                if self._next not in self._done:
                    self._busy = False
                    return
                part = self._parts[self._next]
                self._next += 1
            self._hash.update(part)  # releases the GIL for large buffers

    def hexdigest(self) -> str:
        if self._next != len(self._parts):
            raise RuntimeError("digest requested before every part was hashed")
        return format_digest(self._algorithm, self._hash)


@dataclass
class _Plan:
    name: str
    path: str
    data: np.ndarray[Any, Any]
    chunks: list[int]
    parts: list[tuple[str, memoryview, int]] = field(default_factory=list)
    hasher: _OrderedHasher | None = None


def _plan(name: str, path: str, data: np.ndarray[Any, Any]) -> _Plan:
    chunks = chunk_shape(data.shape, data.itemsize)
    plan = _Plan(name, path, data, chunks)
    flat = _bytes_view(data)
    full = math.prod(chunks) * data.itemsize
    size = data.itemsize
    for key, offset, count in chunk_slices(data.shape, chunks):
        plan.parts.append((key, flat[offset * size : (offset + count) * size], full))
    return plan


def write_arrays(
    backend: Backend,
    pool: Executor,
    arrays: Iterable[tuple[str, str, np.ndarray[Any, Any], str]],
    known_digests: dict[str, str],
) -> tuple[dict[str, str], int]:
    """Upload ``(name, array path, storage array, logical dtype)`` items; return digests, bytes.

    Arrays whose digest is already known are not hashed again.
    """
    futures: list[Future[int]] = []
    plans: list[_Plan] = []
    for name, path, data, logical in arrays:
        plan = _plan(name, path, data)
        plans.append(plan)
        if name not in known_digests:
            plan.hasher = _OrderedHasher([p[1] for p in plan.parts])
        meta = array_metadata(data.shape, data.dtype.name, data.dtype.kind, plan.chunks, logical)
        futures.append(pool.submit(_put, backend, f"{path}/zarr.json", meta, None))
        for index, (key, view, full) in enumerate(plan.parts):
            done = _completion(plan.hasher, index)
            futures.append(pool.submit(_put_chunk, backend, f"{path}/{key}", view, full, done))
    written = sum(f.result() for f in futures)
    digests = dict(known_digests)
    for plan in plans:
        if plan.hasher is not None:
            digests[plan.name] = plan.hasher.hexdigest()
    return digests, written


def _completion(hasher: _OrderedHasher | None, index: int) -> Callable[[], None] | None:
    if hasher is None:
        return None
    return lambda: hasher.completed(index)


def _put(backend: Backend, path: str, data: bytes, done: Callable[[], None] | None) -> int:
    backend.put(path, data)
    if done is not None:
        done()
    return len(data)


def _put_chunk(
    backend: Backend, path: str, view: memoryview, full: int, done: Callable[[], None] | None
) -> int:
    if len(view) < full:  # Zarr stores edge chunks at full size; pad with the fill value 0
        backend.put_padded(path, view, full)
    else:
        backend.put(path, view)
    if done is not None:
        done()
    return full


_MAPPED_BYTES = 1 << 20


def fresh_array(shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """An uninitialised array to read into. From 1 MiB up its memory is an anonymous mapping
    of its own, as a ``bytes`` object's is: numpy asks the kernel for transparent huge pages
    for large arrays, and where huge pages must first be compacted the first touch of each
    stalls (reading into ``np.empty`` ran at a fifth of the speed of ``fs.cat`` here)."""
    count = math.prod(shape)
    if count * dtype.itemsize < _MAPPED_BYTES:
        return np.empty(shape, dtype=dtype)
    memory = mmap.mmap(-1, count * dtype.itemsize)
    return np.frombuffer(memory, dtype=dtype, count=count).reshape(shape)


@dataclass(frozen=True)
class ReadItem:
    """One array to read back: where it lives and what the COMMIT says about it."""

    name: str
    path: str
    shape: tuple[int, ...]
    storage_dtype: str
    chunks: tuple[int, ...]
    digest: str


_Errors = dict[str, list[str]]
"""Problems found while reading, by array name."""


@dataclass(frozen=True)
class _ChunkRead:
    """One chunk object to read into its slice of the destination array."""

    name: str
    path: str
    view: memoryview
    full: int
    hasher: _OrderedHasher
    index: int


def read_arrays(
    backend: Backend, pool: Executor, items: Iterable[ReadItem]
) -> tuple[dict[str, np.ndarray[Any, Any]], list[str]]:
    """Read arrays concurrently, verifying sizes and digests; return arrays and problems."""
    jobs: list[tuple[ReadItem, np.ndarray[Any, Any], _OrderedHasher]] = []
    chunks: list[_ChunkRead] = []
    problems: list[str] = []
    for item in items:
        try:
            algorithm = algorithm_of(item.digest)
        except ValueError as exc:
            problems.append(f"{item.name}: {exc}")
            continue
        out = fresh_array(item.shape, np.dtype(item.storage_dtype).newbyteorder("<"))
        flat = _bytes_view(out)
        size = out.itemsize
        full = math.prod(item.chunks) * size
        slices = list(chunk_slices(item.shape, item.chunks))
        views = [flat[o * size : (o + c) * size] for _, o, c in slices]
        hasher = _OrderedHasher(views, algorithm)  # one core: measured faster than parallel
        chunks.extend(
            _ChunkRead(item.name, f"{item.path}/{key}", view, full, hasher, i)
            for i, ((key, _, _), view) in enumerate(zip(slices, views, strict=True))
        )
        jobs.append((item, out, hasher))
    reader = _read_batched if backend.batched_reads else _read_pooled
    errors = reader(backend, pool, chunks)
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for item, out, hasher in jobs:
        if errors.get(item.name):
            problems.extend(f"{item.name}: {e}" for e in errors[item.name])
            continue
        got = hasher.hexdigest()
        if got != item.digest:
            problems.append(f"{item.name}: digest mismatch (committed {item.digest}, read {got})")
            continue
        arrays[item.name] = out
    return arrays, problems


def _read_pooled(backend: Backend, pool: Executor, chunks: list[_ChunkRead]) -> _Errors:
    """One task per chunk on the pool, each reading straight into its slice."""
    futures = [(c.name, pool.submit(_get_chunk, backend, c)) for c in chunks]
    errors: _Errors = {}
    for name, future in futures:
        if problem := future.result():
            errors.setdefault(name, []).append(problem)
    return errors


_BATCH_BYTES = 128 * 1024 * 1024


def _read_batched(backend: Backend, pool: Executor, chunks: list[_ChunkRead]) -> _Errors:
    """Object stores: fetch chunks in large concurrent batches (as ``fs.cat`` does), the next
    batch in flight while this one is copied and hashed; about 256 MiB in flight at most."""
    if not chunks:
        return {}
    batches: list[list[_ChunkRead]] = [[]]
    size = 0
    for chunk in chunks:
        if size >= _BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(chunk)
        size += chunk.full
    errors: _Errors = {}
    ahead = pool.submit(backend.get_many, [c.path for c in batches[0]])
    for i, batch in enumerate(batches):
        fetched = ahead.result()
        if i + 1 < len(batches):
            ahead = pool.submit(backend.get_many, [c.path for c in batches[i + 1]])
        for c in batch:
            if problem := _fill(c, fetched.get(c.path)):
                errors.setdefault(c.name, []).append(problem)
        del fetched
    return errors


def _fill(chunk: _ChunkRead, data: bytes | BaseException | None) -> str:
    if isinstance(data, FileNotFoundError) or data is None:
        return f"missing chunk object {chunk.path}"
    if isinstance(data, BaseException):
        return f"cannot read chunk {chunk.path}: {data}"
    if len(data) != chunk.full:
        return f"chunk {chunk.path} has {len(data)} bytes, expected {chunk.full}"
    # numpy copies without holding the GIL, which the object store client's I/O thread needs
    np.copyto(np.frombuffer(chunk.view, np.uint8), np.frombuffer(data, np.uint8, len(chunk.view)))
    chunk.hasher.completed(chunk.index)
    return ""


def _get_chunk(backend: Backend, chunk: _ChunkRead) -> str:
    path, full = chunk.path, chunk.full
    try:
        size = backend.read_into(path, chunk.view)
    except FileNotFoundError:
        return f"missing chunk object {path}"
    except OSError as exc:
        return f"cannot read chunk {path}: {exc}"
    if size != full:
        return f"chunk {path} has {size} bytes, expected {full}"
    chunk.hasher.completed(chunk.index)
    return ""
