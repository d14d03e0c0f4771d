"""A job's output, attempt by attempt, as a stream of text pieces: what ``gridbridge logs``
prints and :meth:`gridbridge.Client.logs` joins.

Invariant: a finished attempt's log is read from storage part by part
(:func:`gridbridge.logparts.iter_log`), so at most one piece of it is in memory whatever its
size; an attempt without a stored log (one still running, or killed before its first upload)
is asked of its site, which knows only what the host keeps::

    store.attempts(job) ──> per attempt: "--- attempt N on SITE (STATE) ---"
                              ├─ finished, stored ──> output.log, output.log.000001, ... in pieces
                              └─ otherwise ─────────> adapter.logs(native_id) (sites with LOGS)

:func:`follow_logs` reads storage only, for every attempt, running ones too: the runtime
uploads what is new in the log with each heartbeat, so a line reaches a follower within a
heartbeat and a poll of it being written, whichever site runs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from gridbridge.adapter import Adapter, Capability, LogsAdapter
from gridbridge.logparts import LogTail, iter_log
from gridbridge.views import escape_controls

if TYPE_CHECKING:
    from gridbridge.scheduler.records import Job
    from gridbridge.scheduler.store import Attempt

__all__ = ["FOLLOW_EVERY_S", "escaped", "follow_logs", "iter_logs"]

FOLLOW_EVERY_S = 0.5
"""How often :func:`follow_logs` looks for new output (one read per running attempt)."""


class _Attempts(Protocol):
    def attempts(self, job_id: str) -> list[Attempt]: ...


class _Jobs(_Attempts, Protocol):
    def job(self, job_id: str) -> Job: ...


def iter_logs(store: _Attempts, adapters: Mapping[str, Adapter], job_id: str) -> Iterator[str]:
    """Every attempt's output, in order, each under a header line; ``"".join`` of it is what
    ``Client.logs`` returns."""
    for i, a in enumerate(store.attempts(job_id)):
        yield f"{chr(10) if i else ''}--- attempt {a.number} on {a.site} ({a.state}) ---\n"
        yield from _attempt_log(a, adapters.get(a.site))


def follow_logs(store: _Jobs, job_id: str, *, every_s: float = FOLLOW_EVERY_S,
                sleep: Callable[[float], None] = time.sleep) -> Iterator[str]:
    """Every attempt's output as :func:`iter_logs` gives it, then what each attempt uploads
    next, as it comes, until the job has ended (and its last output is out). Each attempt
    starts with its header line, when it first appears."""
    tails: dict[str, LogTail] = {}
    while True:
        ended = store.job(job_id).state.terminal  # before the reads: none of the end is lost
        for a in store.attempts(job_id):
            tail = tails.get(a.id)
            if tail is None:
                yield (f"{chr(10) if tails else ''}--- attempt {a.number} on {a.site} "
                       f"({a.state}) ---\n")
                tail = tails[a.id] = LogTail(a.attempt_url)
            if text := tail.read_new(final=ended or a.state.terminal):
                yield text
        if ended:
            return
        sleep(every_s)


def _attempt_log(a: Attempt, adapter: Adapter | None) -> Iterator[str]:
    stored = iter_log(a.attempt_url) if a.state.terminal else None
    if stored is not None:
        yield from stored
    elif a.native_id and isinstance(adapter, LogsAdapter) and (
        Capability.LOGS in adapter.capabilities()
    ):
        yield adapter.logs(a.native_id)


def escaped(pieces: Iterable[str]) -> Iterator[str]:
    """:func:`gridbridge.views.escape_controls` of the pieces joined, piece by piece: a
    ``\\r`` that ends a piece waits for the next, since ``\\r\\n`` is a line ending."""
    held = ""
    for piece in pieces:
        text = held + piece
        held = "\r" if text.endswith("\r") else ""
        yield escape_controls(text[:len(text) - len(held)])
    yield escape_controls(held)
