"""A job's output, attempt by attempt, as a stream of text pieces: what ``gridbridge logs``
prints and :meth:`gridbridge.Client.logs` joins.

Invariant: a finished attempt's log is read from storage part by part
(:func:`gridbridge.logparts.iter_log`), so at most one piece of it is in memory whatever its
size; an attempt without a stored log (one still running, or killed before its first upload)
is asked of its site, which knows only what the host keeps::

    store.attempts(job) ──> per attempt: "--- attempt N on SITE (STATE) ---"
                              ├─ finished, stored ──> output.log, output.log.000001, ... in pieces
                              └─ otherwise ─────────> adapter.logs(native_id) (sites with LOGS)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from gridbridge.adapter import Adapter, Capability, LogsAdapter
from gridbridge.logparts import iter_log
from gridbridge.views import escape_controls

if TYPE_CHECKING:
    from gridbridge.scheduler.store import Attempt

__all__ = ["escaped", "iter_logs"]


class _Attempts(Protocol):
    def attempts(self, job_id: str) -> list[Attempt]: ...


def iter_logs(store: _Attempts, adapters: Mapping[str, Adapter], job_id: str) -> Iterator[str]:
    """Every attempt's output, in order, each under a header line; ``"".join`` of it is what
    ``Client.logs`` returns."""
    for i, a in enumerate(store.attempts(job_id)):
        yield f"{chr(10) if i else ''}--- attempt {a.number} on {a.site} ({a.state}) ---\n"
        yield from _attempt_log(a, adapters.get(a.site))


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
