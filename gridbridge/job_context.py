"""What a job sees of gridbridge from inside: its ids, its checkpoint store, and stop requests.

A preemption reaches the job as a *stop request* (SIGTERM or SIGUSR1 from the site, or the
spot notice): :meth:`JobContext.should_stop` turns true, the job saves a checkpoint and calls
:meth:`JobContext.exit_preempted`; the runtime then records the attempt as preempted and the
scheduler resumes the job from that checkpoint in a new attempt.

The runtime describes the attempt in ``GRIDBRIDGE_*`` environment variables: ``JOB_ID``,
``ATTEMPT``, ``TOKEN`` (the fencing token, default the attempt number), ``CHECKPOINT`` (the job's
checkpoint prefix URL), ``KEEP_LAST`` (the spec's ``checkpoint.keep_last``: the job's store
keeps that many newest committed steps, deleting older ones after each save; unset: it keeps
every step) and ``CHECKPOINT_INTERVAL`` (seconds between checkpoints that placement chose for the
site it runs on, which :meth:`JobContext.should_checkpoint` applies).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from gridbridge.wire import PREEMPTED_EXIT_CODE

if TYPE_CHECKING:
    from gridbridge.checkpoint import CheckpointStore

__all__ = ["PREEMPTED_EXIT_CODE", "JobContext", "Preempted", "context"]


_stop = threading.Event()
_current: JobContext | None = None
_handlers_installed = False
_lock = threading.Lock()


class Preempted(SystemExit):
    """Raised by :meth:`JobContext.exit_preempted`; the runtime reports the attempt preempted.

    A ``SystemExit`` whose code is ``PREEMPTED_EXIT_CODE``: in a function job the runtime
    catches it; in a command job (a program of its own) nothing does, and Python leaves with
    exit status 75 and no traceback, which the runtime reads as preempted too. ``except
    Exception`` in the job's code does not swallow it."""

    def __init__(self, reason: str = "stopped on request after checkpointing") -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


def request_stop(signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
    """Mark that the site wants the job to stop (the signal handler)."""
    _stop.set()


def stop_requested() -> bool:
    """Whether a stop request has come (a signal, or the runtime's own spot notice)."""
    return _stop.is_set()


def install_stop_handlers() -> None:
    """Turn SIGTERM and SIGUSR1 into stop requests (main thread only; idempotent)."""
    global _handlers_installed
    with _lock:
        if _handlers_installed or threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGUSR1, request_stop)
        _handlers_installed = True


@dataclass
class JobContext:
    """The running attempt's view of its job."""

    job_id: str
    attempt: int
    token: int
    checkpoint_url: str
    keep_last: int | None = None
    """Committed steps the job keeps (``checkpoint.keep_last`` of its spec); None keeps all."""
    checkpoint_interval_s: float | None = None
    """Seconds between checkpoints on this site; None: only when asked to stop."""
    _store: CheckpointStore | None = field(default=None, repr=False)
    _last_due: float = field(default_factory=time.monotonic, repr=False)

    @property
    def checkpoint(self) -> CheckpointStore:
        """The job's checkpoint store, fenced with this attempt's token.

        With ``keep_last`` set, every successful save is followed by retention: the newest
        ``keep_last`` committed steps (and the older steps whose arrays they reference) stay,
        older ones are deleted.
        """
        if self._store is None:
            from gridbridge import checkpoint

            self._store = checkpoint.open(
                self.checkpoint_url,
                token=self.token,
                keep_last=self.keep_last,
                auto_gc=self.keep_last is not None,
                on_event=_log_event,
            )
        return self._store

    def should_checkpoint(self, step: int | None = None) -> bool:
        """True when the job should save a checkpoint now: the site asked it to stop, or
        ``checkpoint_interval_s`` has passed since this last said so (or since the attempt
        began). Call it once per step; after a True, the interval starts again.

        ``step`` is for the caller's own bookkeeping and logs; the answer depends on time."""
        now = time.monotonic()
        if self.should_stop():
            self._last_due = now
            return True
        interval = self.checkpoint_interval_s
        if interval is not None and now - self._last_due >= interval:
            self._last_due = now
            return True
        return False

    def should_stop(self) -> bool:
        """True once the site asked the job to stop (preemption, walltime, cancel)."""
        return _stop.is_set()

    def exit_preempted(self) -> NoReturn:
        """Leave now, to be resumed from the last committed checkpoint."""
        if self._store is not None:
            self._store.wait()
        raise Preempted("stopped on request after checkpointing")


def _log_event(name: str, fields: Mapping[str, Any]) -> None:
    """Checkpoint events (saved, corrupt step skipped, fenced) go to the attempt's log."""
    print(f"gridbridge: {name} {json.dumps(dict(fields), default=str)}", file=sys.stderr,
          flush=True)


def context() -> JobContext:
    """The current job's context; raises outside a gridbridge job."""
    global _current
    if _current is not None and _current.job_id == os.environ.get("GRIDBRIDGE_JOB_ID"):
        return _current
    try:
        job_id = os.environ["GRIDBRIDGE_JOB_ID"]
        attempt = int(os.environ["GRIDBRIDGE_ATTEMPT"])
        token = int(os.environ.get("GRIDBRIDGE_TOKEN", attempt))
        url = os.environ["GRIDBRIDGE_CHECKPOINT"]
    except KeyError as exc:
        raise RuntimeError(
            f"not inside a gridbridge job ({exc.args[0]} is not set); "
            "gridbridge.context() works only in code that gridbridge runs"
        ) from None
    keep_last = _keep_last(os.environ.get("GRIDBRIDGE_KEEP_LAST"))
    interval = _interval(os.environ.get("GRIDBRIDGE_CHECKPOINT_INTERVAL"))
    install_stop_handlers()
    _current = JobContext(
        job_id=job_id, attempt=attempt, token=token, checkpoint_url=url, keep_last=keep_last,
        checkpoint_interval_s=interval,
    )
    return _current


def _interval(raw: str | None) -> float | None:
    """``GRIDBRIDGE_CHECKPOINT_INTERVAL`` as positive seconds; unset or invalid: None."""
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


def _keep_last(raw: str | None) -> int | None:
    """``GRIDBRIDGE_KEEP_LAST`` as a positive int; unset, empty or invalid: None (keep every
    step; an invalid value is also warned about, since deleting too much cannot be undone)."""
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        warnings.warn(
            f"GRIDBRIDGE_KEEP_LAST={raw!r} is not a positive integer; keeping every checkpoint",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return value
