"""Storage primitives the commit protocol needs, for each kind of fsspec filesystem.

Invariant: ``create`` makes an object appear whole or not at all and succeeds for exactly one
of any number of racing callers; ``compare_and_set`` applies an update only to the version it
read. On object stores these map to ``If-None-Match: *`` and ``If-Match: <etag>``; on local
disks to ``link(2)`` (fails if the name exists) and an ``flock`` on the prefix folder; on the
process-global in-memory filesystem to a lock held around check-then-write. On object stores a
compare-and-set that lost a race is retried after a jittered pause, and an I/O error is never
taken for a lost race (``_retry``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import fsspec

from gridbridge.fsowner import as_owner

from ._retry import Retry, RetryPolicy, public_url

Update = Callable[[dict[str, Any] | None], dict[str, Any] | None]

# fsspec's memory filesystem is one store shared by the whole process, so its conditional
# writes are serialised by one lock shared the same way.
_MEMORY_LOCK = threading.RLock()


class Backend:
    """Generic object-store behaviour (s3 and other fsspec backends)."""

    batched_reads = True
    """Reads go faster as few large concurrent batches (``get_many``) than one by one."""
    retry = RetryPolicy()
    """How ``compare_and_set`` retries a lost race or an I/O error."""

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")

    def get_many(self, paths: list[str]) -> dict[str, bytes | BaseException]:
        """Fetch many objects concurrently; a failed one maps to its exception.

        ``cat_ranges`` rather than ``cat``: ``cat`` first asks for every path's info, one HEAD
        request each unless a listing is cached, which made restores about 40% slower.
        """
        none: list[int | None] = [None] * len(paths)
        found = self.fs.cat_ranges(paths, none, none, on_error="return")
        return dict(zip(paths, found, strict=True))

    def put(self, path: str, data: bytes | memoryview) -> None:
        self.fs.pipe_file(path, bytes(data) if isinstance(data, memoryview) else data)

    def put_padded(self, path: str, data: memoryview, size: int) -> None:
        """Write ``data`` followed by zero bytes up to ``size`` (a Zarr edge chunk)."""
        padded = bytearray(size)
        padded[: len(data)] = data
        self.put(path, memoryview(padded))

    def get(self, path: str) -> bytes:
        data: bytes = self.fs.cat_file(path)
        return data

    def read_into(self, path: str, out: memoryview) -> int:
        data = self.get(path)
        n = min(len(data), len(out))
        out[:n] = data[:n]
        return len(data)

    def exists(self, path: str) -> bool:
        self.fs.invalidate_cache(path)
        return bool(self.fs.exists(path))

    def create(self, path: str, data: bytes) -> bool:
        """Write ``path`` only if it does not exist; False if another writer got there first.

        A failed create whose object exists holding exactly ``data`` counts as success: the
        client library retries a PUT whose reply was lost, and the retry's precondition then
        fails on the object the first try created (``data`` is unique per writer: a COMMIT
        names its writer and time).
        """
        try:
            self.fs.pipe_file(path, data, mode="create")
        except (OSError, ValueError):
            self.fs.invalidate_cache(path)
            try:
                existing = self.get(path)
            except FileNotFoundError:
                existing = None
            if existing is None:
                raise
            return existing == data
        return True

    def compare_and_set(self, path: str, update: Update) -> dict[str, Any] | None:
        """Apply ``update`` to the JSON object at ``path`` with an ETag precondition.

        A try that loses to another writer is retried after a jittered, growing pause; an I/O
        error is retried a few times and then raised, naming the URL (see ``_retry``)."""
        retry = Retry(self.retry, lambda: public_url(self.fs, path))
        while True:
            try:
                etag, current = self._read_versioned(path)
            except OSError as exc:
                retry.failed(exc)
                continue
            new = update(current)
            if new is None:
                return dict(current) if current is not None else None
            try:
                written = self._write_if(path, json.dumps(new).encode(), etag)
            except OSError as exc:
                retry.failed(exc)
                continue
            if written:
                return new
            retry.conflict()

    def _read_versioned(self, path: str) -> tuple[str | None, dict[str, Any] | None]:
        """The object's ETag and JSON body, ``(None, None)`` when there is none."""
        self.fs.invalidate_cache(path)
        try:
            etag = self.fs.info(path)["ETag"]  # HEAD before GET: a stale body fails If-Match
            current: dict[str, Any] = json.loads(self.get(path))
        except FileNotFoundError:
            return None, None
        return etag, current

    def _write_if(self, path: str, data: bytes, etag: str | None) -> bool:
        """Write ``data`` only over version ``etag`` (None: only if there is no object); False
        when the create found another writer's object, an error when the ``If-Match`` failed."""
        if etag is None:
            return self.create(path, data)
        self.fs.pipe_file(path, data, IfMatch=etag)
        return True

    def listdir(self, path: str) -> list[str]:
        """Base names directly under ``path`` (fresh, never from a listing cache)."""
        self.fs.invalidate_cache(path)
        try:
            entries = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        return [str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries]

    def remove(self, path: str, recursive: bool = False) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(path, recursive=recursive)
        self.fs.invalidate_cache(path)

    def newest_mtime(self, path: str) -> float | None:
        """Newest modification time (epoch seconds) of any object under ``path``.

        None when no object is left there (some stores keep empty folder markers).
        """
        self.fs.invalidate_cache(path)
        try:
            infos = self.fs.find(path, detail=True).values()
        except FileNotFoundError:
            return None
        files = [i for i in infos if i.get("type", "file") == "file"]
        times = [t for t in (_mtime(i) for i in files) if t is not None]
        return max(times) if times else None


def _mtime(info: Mapping[str, Any]) -> float | None:
    for key in ("mtime", "LastModified", "last_modified", "created", "modified"):
        value = info.get(key)
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
    return None


class MemoryBackend(Backend):
    """fsspec ``memory://``: process-global, conditional writes under a process-wide lock."""

    batched_reads = False

    def put(self, path: str, data: bytes | memoryview) -> None:
        with _MEMORY_LOCK:
            self.fs.pipe_file(path, bytes(data))

    def create(self, path: str, data: bytes) -> bool:
        with _MEMORY_LOCK:
            if self.fs.exists(path):
                return False
            self.fs.pipe_file(path, data)
            return True

    def compare_and_set(self, path: str, update: Update) -> dict[str, Any] | None:
        with _MEMORY_LOCK:
            current = json.loads(self.get(path)) if self.fs.exists(path) else None
            new = update(current)
            if new is None:
                return current
            self.fs.pipe_file(path, json.dumps(new).encode())
            return new


class LocalBackend(Backend):
    """Local disk through plain system calls (fastest path; paths are absolute).

    Under a control plane that runs as root, each call touches a job's folder as the job's
    own user (:func:`gridbridge.fsowner.as_owner`), so a link the job planted leads nowhere
    its user could not go."""

    batched_reads = False

    def put(self, path: str, data: bytes | memoryview) -> None:
        self.put_padded(path, memoryview(data), 0)

    def put_padded(self, path: str, data: memoryview, size: int) -> None:
        """Write ``data``; extend the file with zeros up to ``size`` without copying it."""
        with as_owner(path):
            self._put_padded(path, data, size)

    @staticmethod
    def _put_padded(path: str, data: memoryview, size: int) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o666)
        except FileNotFoundError:  # first object in its folder
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, flags, 0o666)
        try:
            view = memoryview(data).cast("B")
            done = 0
            while done < len(view):  # straight from the caller's buffer, no copy
                done += os.write(fd, view[done:])
            if size > done:
                os.ftruncate(fd, size)  # the kernel fills the tail with zeros
        finally:
            os.close(fd)

    def get(self, path: str) -> bytes:
        with as_owner(path), open(path, "rb") as f:
            return f.read()

    def read_into(self, path: str, out: memoryview) -> int:
        with as_owner(path):
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            size = os.fstat(fd).st_size
            want = min(size, len(out))
            got = 0
            while got < want:  # straight into the destination array
                n = os.readv(fd, [out[got:want]])
                if not n:
                    break
                got += n
            return size
        finally:
            os.close(fd)

    def exists(self, path: str) -> bool:
        with as_owner(path):
            return os.path.exists(path)

    def create(self, path: str, data: bytes) -> bool:
        with as_owner(path):
            return self._create(path, data)

    @staticmethod
    def _create(path: str, data: bytes) -> bool:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic, and fails if the name exists
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def compare_and_set(self, path: str, update: Update) -> dict[str, Any] | None:
        with as_owner(path):
            return self._compare_and_set(path, update)

    def _compare_and_set(self, path: str, update: Update) -> dict[str, Any] | None:
        with self._locked(os.path.dirname(path)):
            current = json.loads(self.get(path)) if os.path.exists(path) else None
            new = update(current)
            if new is None:
                return current
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            with open(tmp, "wb") as f:
                f.write(json.dumps(new).encode())
            os.replace(tmp, path)
            return new

    @contextlib.contextmanager
    def _locked(self, folder: str) -> Iterator[None]:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def listdir(self, path: str) -> list[str]:
        try:
            with as_owner(path):
                return os.listdir(path)
        except FileNotFoundError:
            return []

    def remove(self, path: str, recursive: bool = False) -> None:
        with as_owner(path):
            super().remove(path, recursive)

    def newest_mtime(self, path: str) -> float | None:
        with as_owner(path):
            return super().newest_mtime(path)


def open_backend(url: str, storage_options: Mapping[str, Any] | None) -> Backend:
    """Pick the backend for ``url`` (``file://``, ``memory://``, ``s3://`` or any fsspec URL)."""
    options = dict(storage_options or {})
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    fs, root = fsspec.core.url_to_fs(url, **options)
    if protocol in ("file", "local"):
        return LocalBackend(fs, root)
    if protocol == "memory":
        return MemoryBackend(fs, root)
    return Backend(fs, root)
