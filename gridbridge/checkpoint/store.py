"""The checkpoint store: atomic, fenced, verified, incremental saves of pytrees to Zarr v3.

Invariant: a step exists for readers exactly when its COMMIT object exists, and the COMMIT is
the last object a save writes, with a conditional create, so readers never see half a step.

A save::

    fence check ─> hash arrays that may be unchanged ─> upload changed arrays (chunks in
    parallel, hashed in order) ─> group zarr.json ─> fence check ─> create COMMIT
    (If-None-Match: *; exists already -> CommitConflict) ─> re-read the fence: a newer attempt
    opened meanwhile -> retract the COMMIT, FencedError
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ._backend import Backend
from ._digest import WRITE_ALGORITHM, algorithm_of
from ._io import ReadItem, digest_of, read_arrays, write_arrays
from ._layout import (
    Paths,
    chunk_shape,
    group_metadata,
    parse_commit_name,
    parse_step_name,
    step_name,
)
from ._model import (
    FENCE_FORMAT,
    FORMAT,
    Checkpoint,
    CommitConflict,
    CommitInfo,
    CorruptCheckpoint,
    CorruptCheckpointWarning,
    FencedError,
    NoCheckpoint,
    VerifyResult,
)
from ._tree import Leaf, flatten, logical_array, unflatten

EventHook = Callable[[str, Mapping[str, Any]], None]
IO_THREADS = 8


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _safe_name(name: Any) -> bool:
    return isinstance(name, str) and bool(name) and "/" not in name and name not in (".", "..")


class CheckpointStore:
    """Checkpoints of one job under one prefix URL. Create it with ``gridbridge.checkpoint.open``.

    Not meant to be shared between threads; one store per writer process.
    """

    def __init__(
        self,
        url: str,
        backend: Backend,
        *,
        token: int | None = None,
        retention: tuple[int | None, int | None] = (None, None),
        on_event: EventHook | None = None,
    ) -> None:
        self.url = url
        self._backend = backend
        self._paths = Paths(backend.root)
        self._token = token
        self._keep_last, self._keep_every = retention
        self._on_event = on_event
        self._io = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="gridbridge-ckpt-io")
        self._bg = ThreadPoolExecutor(1, thread_name_prefix="gridbridge-ckpt-save")
        self._pending: Future[CommitInfo] | None = None
        self._staging: dict[str, Any] = {}  # host copies of the last save_async, reused
        self._lock = threading.Lock()
        self._writer = uuid.uuid4().hex
        if token is not None:
            self._bump_fence(token)

    # ----------------------------------------------------------------- public: writing
    def save(self, step: int, state: Any, metadata: Mapping[str, Any] | None = None) -> CommitInfo:
        """Save ``state`` as ``step`` and return once it is committed.

        Raises ``CommitConflict`` if the step is already committed (by anyone) and
        ``FencedError`` if a newer attempt owns the prefix. Waits for an in-flight
        ``save_async`` first and re-raises its error, if it had one.
        """
        self._take_pending()
        tree, leaves = flatten(state)
        return self._save(step, tree, leaves, metadata)

    def save_async(self, step: int, state: Any, metadata: Mapping[str, Any] | None = None) -> None:
        """Copy ``state`` to host memory and upload it in the background.

        At most one save is in flight: this first waits for the previous one and re-raises
        its error, if any. The state may be changed as soon as this returns.
        """
        self._take_pending()  # after this no upload reads the staging buffers any more
        tree, leaves = flatten(state, copy=True, staging=self._staging)
        self._staging = {leaf.name: leaf.data for leaf in leaves}
        meta = dict(metadata or {})
        with self._lock:
            self._pending = self._bg.submit(self._save_reporting, step, tree, leaves, meta)

    def wait(self) -> None:
        """Block until the in-flight asynchronous save (if any) is done; re-raise its error."""
        self._take_pending()

    def checkpoint_now(
        self,
        step: int,
        state: Any,
        metadata: Mapping[str, Any] | None = None,
        *,
        deadline_s: float,
    ) -> CommitInfo | None:
        """Save synchronously within ``deadline_s`` seconds (for preemption handlers).

        Waits for an in-flight save first (its failure is reported as an event, not raised, so
        the newer state still gets its chance). Returns None and emits
        ``checkpoint.deadline_missed`` when the deadline passes; the save then continues in the
        background and ``wait``/``close`` report its outcome. Do not change ``state`` meanwhile.
        """
        deadline = time.monotonic() + deadline_s
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None and not self._wait_for(pending, deadline, step, "previous save"):
            with self._lock:
                self._pending = pending
            return None
        tree, leaves = flatten(state)
        future = self._bg.submit(self._save, step, tree, leaves, metadata)
        if not self._wait_for(future, deadline, step, "save"):
            with self._lock:
                self._pending = future
            return None
        return future.result()

    # ----------------------------------------------------------------- public: reading
    def steps(self) -> list[int]:
        """Committed steps, ascending (one listing of ``commits/``)."""
        names = self._backend.listdir(self._paths.commits)
        return sorted(s for s in (parse_commit_name(n) for n in names) if s is not None)

    def latest(self) -> int | None:
        """The newest committed step, or None when nothing is committed."""
        steps = self.steps()
        return steps[-1] if steps else None

    def restore(self, step: int | None = None) -> Checkpoint:
        """Read a committed step back, verifying every array's digest.

        With ``step=None`` the newest intact step is returned: a corrupt newer step is skipped
        with a ``CorruptCheckpointWarning`` and a ``checkpoint.corrupt`` event. With an explicit
        step, corruption raises ``CorruptCheckpoint``. ``NoCheckpoint`` when nothing fits.
        """
        if step is not None:
            return self._restore(step)
        for candidate in reversed(self.steps()):
            try:
                return self._restore(candidate)
            except CorruptCheckpoint as exc:
                self._emit("checkpoint.corrupt", {"step": candidate, "error": str(exc)})
                warnings.warn(
                    f"checkpoint step {candidate} of {self.url} is corrupt, falling back: {exc}",
                    CorruptCheckpointWarning,
                    stacklevel=2,
                )
        raise NoCheckpoint(f"no intact committed checkpoint under {self.url}")

    def commit_record(self, step: int) -> dict[str, Any]:
        """The parsed COMMIT object of a committed step (for tools such as the CLI)."""
        return self._load_commit(step)

    def verify(self, step: int | None = None) -> list[VerifyResult]:
        """Check one committed step (or all): every object present, every digest matching."""
        results = []
        for s in [step] if step is not None else self.steps():
            try:
                commit = self._load_commit(s)
                items = self._read_items(commit)
                _, problems = read_arrays(self._backend, self._io, items)
                nbytes = sum(int(e.get("nbytes", 0)) for e in commit["arrays"].values())
                results.append(VerifyResult(s, not problems, tuple(problems), len(items), nbytes))
            except (CorruptCheckpoint, NoCheckpoint) as exc:
                results.append(VerifyResult(s, False, (str(exc),)))
        return results

    # ----------------------------------------------------------------- public: housekeeping
    def sweep(self, older_than_s: float = 3600) -> list[str]:
        """Remove uncommitted step folders whose newest object is older than ``older_than_s``.

        Folders that a COMMIT references are kept. Returns the removed folders' paths.
        """
        self._take_pending()
        committed = self.steps()
        keep = set(committed) | self._referenced(committed)
        removed = []
        now = time.time()
        for name in self._backend.listdir(self._paths.steps):
            step = parse_step_name(name)
            if step is None or step in keep:
                continue
            folder = self._paths.step(step)
            mtime = self._backend.newest_mtime(folder)
            if mtime is None:  # an empty folder marker: tidy it away, nothing to report
                self._backend.remove(folder, recursive=True)
            elif now - mtime >= older_than_s:
                self._backend.remove(folder, recursive=True)
                removed.append(folder)
        if removed:
            self._emit("checkpoint.swept", {"folders": list(removed)})
        return removed

    def gc(self) -> list[int]:
        """Apply retention (``keep_last``, ``keep_every``); return the steps deleted.

        The newest step and every step a kept COMMIT references are always kept. A step's
        COMMIT is deleted before its data, so readers never see a committed step without data.
        """
        self._take_pending()
        if self._keep_last is None and self._keep_every is None:
            return []
        steps = self.steps()
        keep = set(steps[-1:])
        if self._keep_last:
            keep |= set(steps[-self._keep_last :])
        if self._keep_every:
            keep |= {s for s in steps if s % self._keep_every == 0}
        keep |= self._referenced(sorted(keep))
        deleted = [s for s in steps if s not in keep]
        for step in deleted:
            self._backend.remove(self._paths.commit(step))
            self._backend.remove(self._paths.step(step), recursive=True)
        if deleted:
            self._emit("checkpoint.gc", {"deleted": deleted})
        return deleted

    def close(self) -> None:
        """Wait for the in-flight save (re-raising its error) and release the worker threads."""
        try:
            self._take_pending()
        finally:
            self._bg.shutdown(wait=True)
            self._io.shutdown(wait=True)

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CheckpointStore({self.url!r}, token={self._token!r})"

    # ----------------------------------------------------------------- saving
    def _save_reporting(
        self, step: int, tree: dict[str, Any], leaves: list[Leaf], meta: dict[str, Any]
    ) -> CommitInfo:
        try:
            return self._save(step, tree, leaves, meta)
        except BaseException as exc:
            self._emit("checkpoint.save_failed", {"step": step, "error": repr(exc)})
            raise

    def _save(
        self,
        step: int,
        tree: dict[str, Any],
        leaves: list[Leaf],
        metadata: Mapping[str, Any] | None,
    ) -> CommitInfo:
        meta = json.loads(json.dumps(dict(metadata or {})))  # fail early on non-JSON metadata
        step_name(step)
        committed = self.steps()
        if step in committed:
            raise CommitConflict(f"step {step} is already committed under {self.url}")
        self._check_fence(committed)
        older = [s for s in committed if s < step]
        previous = self._load_commit(older[-1])["arrays"] if older else {}
        entries, written = self._write_step(step, leaves, previous)
        self._backend.put(f"{self._paths.step(step)}/zarr.json", group_metadata(meta))
        token = self._token if self._token is not None else 0
        commit = {
            "format": FORMAT,
            "step": step,
            "time": _now_iso(),
            "token": token,
            "writer": self._writer,
            "tree": tree,
            "arrays": entries,
            "metadata": meta,
        }
        self._check_fence(None)
        if not self._backend.create(self._paths.commit(step), json.dumps(commit).encode()):
            raise CommitConflict(f"another writer committed step {step} under {self.url} first")
        self._retract_if_fenced(step)
        reused = sum(1 for e in entries.values() if e["step"] != step)
        info = CommitInfo(step, token, written, len(entries) - reused, reused)
        self._emit("checkpoint.saved", {"step": step, "token": token, "bytes": written})
        return info

    def _write_step(
        self, step: int, leaves: list[Leaf], previous: Mapping[str, Any]
    ) -> tuple[dict[str, Any], int]:
        """Upload the leaves that changed since ``previous``; return COMMIT entries and bytes."""
        candidates = [
            leaf
            for leaf in leaves
            if (old := previous.get(leaf.name)) is not None
            and old.get("dtype") == leaf.dtype
            and old.get("storage_dtype") == leaf.data.dtype.name
            and list(old.get("shape", ())) == list(leaf.data.shape)
        ]
        algorithms = [_algorithm_or_default(previous[leaf.name]) for leaf in candidates]
        known = {
            leaf.name: d
            for leaf, d in zip(
                candidates, self._io.map(_digest, candidates, algorithms), strict=True
            )
        }
        reused = {n for n, d in known.items() if previous[n]["digest"] == d}
        changed = [leaf for leaf in leaves if leaf.name not in reused]
        digests, written = write_arrays(
            self._backend,
            self._io,
            [(lf.name, self._paths.array(step, lf.name), lf.data, lf.dtype) for lf in changed],
            {n: d for n, d in known.items() if n not in reused},
        )
        entries = {}
        for leaf in leaves:
            if leaf.name in reused:
                entries[leaf.name] = dict(previous[leaf.name])
            else:
                entries[leaf.name] = _entry(leaf, step, digests[leaf.name])
        return entries, written

    # ----------------------------------------------------------------- fencing
    def _bump_fence(self, token: int) -> None:
        def update(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is not None and int(current.get("token", -1)) >= token:
                return None
            return {"format": FENCE_FORMAT, "token": token, "time": _now_iso()}

        fence = self._backend.compare_and_set(self._paths.fence, update)
        newest = int(fence["token"]) if fence else token
        if newest > token:
            self._emit("checkpoint.fenced", {"token": token, "fence": newest})

    def _fence_token(self) -> int:
        try:
            return int(json.loads(self._backend.get(self._paths.fence))["token"])
        except FileNotFoundError:
            return -1

    def _check_fence(self, committed: list[int] | None) -> None:
        if self._token is None:
            return
        if committed is None:
            committed = self.steps()
        newest = max(self._fence_token(), self._commit_token(committed))
        if newest > self._token:
            self._emit("checkpoint.fenced", {"token": self._token, "fence": newest})
            raise FencedError(
                f"attempt token {self._token} is older than token {newest} under {self.url}"
            )

    def _commit_token(self, committed: list[int]) -> int:
        if not committed:
            return -1
        try:
            return int(self._load_commit(committed[-1]).get("token", 0))
        except (NoCheckpoint, CorruptCheckpoint):
            return -1

    def _retract_if_fenced(self, step: int) -> None:
        """Undo our COMMIT if a newer attempt opened between the last check and the create."""
        if self._token is None:
            return
        newest = self._fence_token()
        if newest > self._token:
            self._backend.remove(self._paths.commit(step))
            self._emit("checkpoint.fenced", {"token": self._token, "fence": newest, "step": step})
            raise FencedError(f"attempt token {self._token} was fenced by {newest} during commit")

    # ----------------------------------------------------------------- reading
    def _load_commit(self, step: int) -> dict[str, Any]:
        try:
            raw = self._backend.get(self._paths.commit(step))
        except FileNotFoundError:
            raise NoCheckpoint(f"step {step} is not committed under {self.url}") from None
        try:
            commit = json.loads(raw)
            if commit.get("format") != FORMAT or commit.get("step") != step:
                raise ValueError("wrong format tag or step")
            for name, entry in commit["arrays"].items():
                if not (_safe_name(name) and _safe_name(entry["path"])):
                    raise ValueError(f"unsafe array name {name!r}")
                step_name(int(entry["step"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptCheckpoint(f"COMMIT of step {step} is unreadable: {exc}") from None
        return dict(commit)

    def _read_items(self, commit: Mapping[str, Any]) -> list[ReadItem]:
        return [
            ReadItem(
                name=name,
                path=self._paths.array(int(e["step"]), e["path"]),
                shape=tuple(int(n) for n in e["shape"]),
                storage_dtype=str(e["storage_dtype"]),
                chunks=tuple(int(n) for n in e["chunks"]),
                digest=str(e["digest"]),
            )
            for name, e in commit["arrays"].items()
        ]

    def _restore(self, step: int) -> Checkpoint:
        commit = self._load_commit(step)
        arrays, problems = read_arrays(self._backend, self._io, self._read_items(commit))
        if problems:
            raise CorruptCheckpoint(f"step {step}: " + "; ".join(problems))
        raw_names = set(_torch_leaves(commit["tree"]))
        logical = {
            name: arr if name in raw_names else logical_array(arr, commit["arrays"][name]["dtype"])
            for name, arr in arrays.items()
        }
        state = unflatten(commit["tree"], logical)
        return Checkpoint(step=step, state=state, metadata=dict(commit.get("metadata") or {}))

    def _referenced(self, steps: list[int]) -> set[int]:
        refs: set[int] = set()
        for step in steps:
            try:
                refs |= {int(e["step"]) for e in self._load_commit(step)["arrays"].values()}
            except (NoCheckpoint, CorruptCheckpoint):
                continue
        return refs

    # ----------------------------------------------------------------- plumbing
    def _take_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()  # re-raises the background save's error here

    def _wait_for(self, future: Future[Any], deadline: float, step: int, what: str) -> bool:
        try:
            future.exception(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            self._emit("checkpoint.deadline_missed", {"step": step, "waiting_for": what})
            return False
        exc = future.exception()
        if exc is not None and what == "previous save":
            self._emit("checkpoint.save_failed", {"step": step, "error": repr(exc)})
        return True

    def _emit(self, name: str, payload: Mapping[str, Any]) -> None:
        if self._on_event is not None:
            self._on_event(name, {"url": self.url, **payload})


def _digest(leaf: Leaf, algorithm: str) -> str:
    return digest_of(leaf.data, algorithm)


def _algorithm_or_default(entry: Mapping[str, Any]) -> str:
    """Hash a possibly unchanged array the way the previous COMMIT did, so digests compare."""
    try:
        return algorithm_of(str(entry.get("digest", "")))
    except ValueError:
        return WRITE_ALGORITHM  # unreadable old digest: the array is simply rewritten


def _entry(leaf: Leaf, step: int, digest: str) -> dict[str, Any]:
    data = leaf.data
    return {
        "path": leaf.name,
        "step": step,
        "dtype": leaf.dtype,
        "storage_dtype": data.dtype.name,
        "shape": list(data.shape),
        "chunks": chunk_shape(data.shape, data.itemsize),
        "nbytes": int(data.nbytes),
        "digest": digest,
    }


def _torch_leaves(tree: Mapping[str, Any]) -> Iterator[str]:
    kind = tree.get("t")
    if kind == "torch":
        yield str(tree["a"])
    elif kind in ("dict", "odict"):
        for _, _, node in tree["items"]:
            yield from _torch_leaves(node)
    elif kind in ("list", "tuple"):
        for node in tree["v"]:
            yield from _torch_leaves(node)
