"""gridbridge's checkpoint store: pytrees saved as Zarr v3 groups on any fsspec URL.

Invariant: under a job prefix, a step exists exactly when ``commits/<step:010d>.json`` exists;
that COMMIT object is written last, with a conditional create, names the writer-unique folder
that holds the step's data and lists every array's digest (blake3; sha256 in older checkpoints),
so a reader never sees a half-written step, never sees a losing racer's bytes, and detects any
altered byte.

    import gridbridge.checkpoint as ckpt
    store = ckpt.open("s3://bucket/jobs/job-1", token=attempt)
    store.save(step, {"model": weights, "epoch": 3})
    state = store.restore().state
    # control plane: fence the attempt off (PrefixOwned if fence.json names another job)
    ckpt.raise_fence("s3://bucket/jobs/job-1", attempt + 1, job="job-1")

See ``docs/checkpoint-format.md`` for the layout and the commit and fencing protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._backend import open_backend
from ._fence import raise_fence
from ._model import (
    FORMAT,
    Checkpoint,
    CheckpointError,
    CommitConflict,
    CommitInfo,
    CorruptCheckpoint,
    CorruptCheckpointWarning,
    FencedError,
    NoCheckpoint,
    PrefixOwned,
    VerifyResult,
)
from .store import CheckpointStore

__all__ = [
    "FORMAT",
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "CommitConflict",
    "CommitInfo",
    "CorruptCheckpoint",
    "CorruptCheckpointWarning",
    "FencedError",
    "NoCheckpoint",
    "PrefixOwned",
    "VerifyResult",
    "open",
    "raise_fence",
]


def open(
    url: str,
    *,
    token: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    keep_last: int | None = None,
    keep_every: int | None = None,
    auto_gc: bool = False,
    on_event: Callable[[str, Mapping[str, Any]], None] | None = None,
) -> CheckpointStore:
    """Open the checkpoint store of one job at the prefix ``url``.

    ``token`` is the attempt's fencing token: opening bumps ``<prefix>/fence.json`` to it (never
    down), and saves with a token older than the fence or the newest COMMIT raise
    ``FencedError``. ``None`` disables fencing (token 0 is recorded). ``keep_last`` and
    ``keep_every`` configure ``gc()``; with ``auto_gc`` the store also applies them after every
    successful ``save``/``save_async`` (never deleting the step just committed; a fenced store
    skips it; a failure is reported as ``checkpoint.gc_failed``, the save still succeeds).
    ``on_event(name, payload)`` receives events such as
    ``checkpoint.saved``, ``checkpoint.corrupt``, ``checkpoint.fenced`` and
    ``checkpoint.deadline_missed``.
    """
    if token is not None and (isinstance(token, bool) or token < 0):
        raise ValueError(f"token must be a non-negative int or None, got {token!r}")
    for name, value in (("keep_last", keep_last), ("keep_every", keep_every)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1 or None, got {value!r}")
    backend = open_backend(url, storage_options)
    return CheckpointStore(
        url.rstrip("/"),
        backend,
        token=token,
        retention=(keep_last, keep_every),
        auto_gc=auto_gc,
        on_event=on_event,
    )
