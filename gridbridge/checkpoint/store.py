"""The checkpoint store: atomic, fenced, verified, incremental saves of pytrees to Zarr v3.

Invariant: a step exists for readers exactly when its COMMIT object exists, and the COMMIT is
the last object a save writes, with a conditional create, so readers never see half a step.

Every store instance writes into its own step folders (``steps/<step:010d>.<writer>/``) and
the COMMIT names the folder it commits, so writers racing for one step never touch each other's
objects; readers, ``gc`` and ``sweep`` follow the COMMITs.

A save::

    fence check ─> hash arrays that may be unchanged ─> upload changed arrays into this
    writer's folder (chunks in parallel, hashed in order) ─> group zarr.json ─> fence check ─>
    create COMMIT naming the folder (If-None-Match: *; exists already -> CommitConflict) ─>
    re-read the fence: a newer attempt opened meanwhile -> retract the COMMIT, FencedError ─>
    retention (only with ``auto_gc``)
"""

from __future__ import annotations

import json
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ._backend import Backend
from ._commit import (
    entry_algorithm,
    new_entry,
    parse_commit,
    read_items,
    reused_entry,
    torch_leaves,
)
from ._fence import bump_fence, fence_token, now_iso
from ._io import digest_of, read_arrays, write_arrays
from ._layout import (
    Paths,
    commit_folder,
    folder_name,
    group_metadata,
    parse_commit_name,
    step_name,
)
from ._model import (
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
from ._retention import (
    Commits,
    folders_of,
    referenced_folders,
    steps_to_delete,
    sweep_candidates,
)
from ._tree import Leaf, flatten, logical_array, unflatten

EventHook = Callable[[str, Mapping[str, Any]], None]
IO_THREADS = 8


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
        auto_gc: bool = False,
        on_event: EventHook | None = None,
    ) -> None:
        self.url = url
        self._backend = backend
        self._paths = Paths(backend.root)
        self._token = token
        self._keep_last, self._keep_every = retention
        self._auto_gc = auto_gc
        self._on_event = on_event
        self._io = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="gridbridge-ckpt-io")
        self._bg = ThreadPoolExecutor(1, thread_name_prefix="gridbridge-ckpt-save")
        self._pending: Future[CommitInfo] | None = None
        self._staging: dict[str, Any] = {}  # host copies of the last save_async, reused
        self._lock = threading.Lock()
        self._writer = f"t{0 if token is None else token}"[:40] + f"-{uuid.uuid4().hex[:16]}"
        if token is not None:
            newest = bump_fence(backend, self._paths, token)
            if newest > token:
                self._emit("checkpoint.fenced", {"token": token, "fence": newest})

    @property
    def writer(self) -> str:
        """This store's writer id: recorded in its COMMITs and in its step folders' names."""
        return self._writer

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
        Retention (``auto_gc``) is left to the next save, to spend the deadline on the save only.
        """
        deadline = time.monotonic() + deadline_s
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None and not self._wait_for(pending, deadline, step, "previous save"):
            with self._lock:
                self._pending = pending
            return None
        tree, leaves = flatten(state)
        future = self._bg.submit(self._save, step, tree, leaves, metadata, False)
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

    def step_url(self, step: int) -> str:
        """URL of the folder holding a committed step's Zarr group (the folder its COMMIT names).

        ``zarr.open_group(store.step_url(step), mode="r")`` reads the arrays written in that
        step with plain Zarr; unchanged arrays live in older steps' folders (see the COMMIT).
        """
        return f"{self.url}/steps/{commit_folder(self._load_commit(step))}"

    def verify(self, step: int | None = None) -> list[VerifyResult]:
        """Check one committed step (or all): every object present, every digest matching."""
        results = []
        for s in [step] if step is not None else self.steps():
            try:
                commit = self._load_commit(s)
                items = read_items(self._paths, commit)
                _, problems = read_arrays(self._backend, self._io, items)
                nbytes = sum(int(e.get("nbytes", 0)) for e in commit["arrays"].values())
                results.append(VerifyResult(s, not problems, tuple(problems), len(items), nbytes))
            except (CorruptCheckpoint, NoCheckpoint) as exc:
                results.append(VerifyResult(s, False, (str(exc),)))
        return results

    # ----------------------------------------------------------------- public: housekeeping
    def sweep(self, older_than_s: float = 3600) -> list[str]:
        """Remove uncommitted step folders whose newest object is older than ``older_than_s``.

        Uncommitted folders are those of interrupted saves and of writers that lost a race for
        a step. Folders that a COMMIT references are kept, and so are all folders of a step
        whose COMMIT cannot be read. Returns the removed folders' paths.
        """
        self._take_pending()
        commits = self._load_commits(self.steps())
        removed = []
        now = time.time()
        for name in sweep_candidates(self._backend.listdir(self._paths.steps), commits):
            folder = self._paths.folder(name)
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
        Stores opened with ``auto_gc`` run this after every successful ``save``/``save_async``.
        """
        self._take_pending()
        return self._gc(())

    def _gc(self, protect: tuple[int, ...]) -> list[int]:
        if self._keep_last is None and self._keep_every is None:
            return []
        steps = self.steps()
        commits = self._load_commits(steps)
        deleted = steps_to_delete(steps, commits, self._keep_last, self._keep_every, protect)
        if not deleted:
            return []
        kept = [c for s, c in commits.items() if c is not None and s not in deleted]
        needed = referenced_folders(kept)
        for step in deleted:
            self._backend.remove(self._paths.commit(step))
            for folder in sorted(folders_of(step, commits[step]) - needed):
                self._backend.remove(self._paths.folder(folder), recursive=True)
        self._emit("checkpoint.gc", {"deleted": deleted})
        return deleted

    def _retain(self, step: int) -> None:
        """Retention after committing ``step`` (``auto_gc``); a failure is reported, not raised:
        the step is committed either way."""
        try:
            self._check_fence(None)  # a fenced (zombie) attempt leaves retention to its successor
            self._gc((step,))
        except FencedError:
            return
        except Exception as exc:
            self._emit("checkpoint.gc_failed", {"step": step, "error": repr(exc)})

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
        retain: bool = True,
    ) -> CommitInfo:
        started = time.monotonic()
        meta = json.loads(json.dumps(dict(metadata or {})))  # fail early on non-JSON metadata
        step_name(step)
        committed = self.steps()
        if step in committed:
            raise CommitConflict(f"step {step} is already committed under {self.url}")
        self._check_fence(committed)
        older = [s for s in committed if s < step]
        previous = self._load_commit(older[-1])["arrays"] if older else {}
        folder = folder_name(step, self._writer)
        entries, written = self._write_step(step, folder, leaves, previous)
        self._backend.put(f"{self._paths.folder(folder)}/zarr.json", group_metadata(meta))
        token = self._token if self._token is not None else 0
        commit = {
            "format": FORMAT,
            "step": step,
            "folder": folder,
            "time": now_iso(),
            "save_s": round(time.monotonic() - started, 3),
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
        self._emit(
            "checkpoint.saved", {"step": step, "token": token, "bytes": written, "folder": folder}
        )
        if retain and self._auto_gc:
            self._retain(step)
        return info

    def _write_step(
        self, step: int, folder: str, leaves: list[Leaf], previous: Mapping[str, Any]
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
        algorithms = [entry_algorithm(previous[leaf.name]) for leaf in candidates]
        arrays = [leaf.data for leaf in candidates]
        known = {
            leaf.name: d
            for leaf, d in zip(
                candidates, self._io.map(digest_of, arrays, algorithms), strict=True
            )
        }
        reused = {n for n, d in known.items() if previous[n]["digest"] == d}
        changed = [leaf for leaf in leaves if leaf.name not in reused]
        digests, written = write_arrays(
            self._backend,
            self._io,
            [(lf.name, self._paths.array(folder, lf.name), lf.data, lf.dtype) for lf in changed],
            {n: d for n, d in known.items() if n not in reused},
        )
        entries = {}
        for leaf in leaves:
            if leaf.name in reused:
                entries[leaf.name] = reused_entry(previous[leaf.name])
            else:
                entries[leaf.name] = new_entry(leaf, step, folder, digests[leaf.name])
        return entries, written

    # ----------------------------------------------------------------- fencing
    def _check_fence(self, committed: list[int] | None) -> None:
        if self._token is None:
            return
        if committed is None:
            committed = self.steps()
        newest = max(fence_token(self._backend, self._paths), self._commit_token(committed))
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
        newest = fence_token(self._backend, self._paths)
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
            return parse_commit(raw, step)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptCheckpoint(f"COMMIT of step {step} is unreadable: {exc}") from None

    def _load_commits(self, steps: list[int]) -> Commits:
        """COMMITs of ``steps`` read concurrently; None for one that is unreadable or gone."""

        def load(step: int) -> dict[str, Any] | None:
            try:
                return self._load_commit(step)
            except (NoCheckpoint, CorruptCheckpoint):
                return None

        return dict(zip(steps, self._io.map(load, steps), strict=True))

    def _restore(self, step: int) -> Checkpoint:
        commit = self._load_commit(step)
        arrays, problems = read_arrays(self._backend, self._io, read_items(self._paths, commit))
        if problems:
            raise CorruptCheckpoint(f"step {step}: " + "; ".join(problems))
        raw_names = set(torch_leaves(commit["tree"]))
        logical = {
            name: arr if name in raw_names else logical_array(arr, commit["arrays"][name]["dtype"])
            for name, arr in arrays.items()
        }
        state = unflatten(commit["tree"], logical)
        return Checkpoint(step=step, state=state, metadata=dict(commit.get("metadata") or {}))

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

