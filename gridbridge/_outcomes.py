"""How a job's ending reaches the caller of ``result()``: the errors it raises and the lines
of a job's story, in the caller's terms.

Invariant: nothing here unpickles. A function's exception crosses from its site as the
traceback text its attempt recorded, and comes back as a :class:`RemoteError` built from that
text, chained under :class:`JobFailed`::

    site: fn raises ValueError ─> attempt.reason = "Traceback ... ValueError: bad"
    here: result() ─> raise JobFailed("job j1 failed: ... ValueError: bad")
                          from RemoteError("Traceback ... ValueError: bad")
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gridbridge.scheduler.records import Attempt, Event

__all__ = ["JobCancelled", "JobFailed", "RemoteError", "StoryEvent", "remote_error"]


class JobFailed(RuntimeError):
    """The job ended FAILED or TIMEOUT; the message carries its last error. When the job's
    function raised, the exception is chained (``__cause__``) to a :class:`RemoteError`, so
    the traceback prints as submitit's and concurrent.futures' do: the remote one first, then
    "The above exception was the direct cause of the following exception"."""

    def __init__(self, message: str, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class RemoteError(Exception):
    """What a job's function raised on its site, rebuilt from the traceback text its attempt
    recorded (never unpickled: a pickled exception is code). ``type_name`` is the exception's
    class name (``"ValueError"``), ``message`` its text, ``summary`` the traceback's last line
    (``"ValueError: bad input"``), ``traceback`` the whole text."""

    def __init__(self, traceback: str) -> None:
        super().__init__(traceback)  # the one argument, so that it pickles as it is
        last = traceback.rstrip().splitlines()[-1] if traceback.strip() else ""
        type_name, _, message = last.partition(": ")
        self.summary = last
        self.type_name = type_name.rsplit(".", 1)[-1]
        self.message = message
        self.traceback = traceback

    def __str__(self) -> str:
        return self.traceback.rstrip()


_TRACEBACK = "Traceback (most recent call last):"
"""How the traceback text of a job's exception starts, in its attempt's reason."""


def remote_error(attempt: Attempt | None) -> RemoteError | None:
    """The exception the function raised in ``attempt``, if it failed with a traceback."""
    if attempt is None or _TRACEBACK not in (attempt.reason or ""):
        return None
    return RemoteError(attempt.reason[attempt.reason.index(_TRACEBACK):])


@dataclass(frozen=True)
class StoryEvent:
    """One line of a job's story (:meth:`JobFuture.story`): a state change of the job or of
    one of its attempts, or a note (``kind``), when (``at``, a timezone-aware UTC datetime),
    who made it (``actor``) and why."""

    at: datetime
    job_id: str
    attempt_id: str | None
    kind: str
    old: str
    new: str
    reason: str
    actor: str
    site: str | None = None

    @classmethod
    def of(cls, event: Event) -> StoryEvent:
        """The event as the store keeps it (``at`` in seconds since the epoch), with a date."""
        return cls(datetime.fromtimestamp(event.at, UTC), event.job_id, event.attempt_id,
                   event.kind, event.old, event.new, event.reason, event.actor, event.site)


class JobCancelled(RuntimeError):
    """The job was cancelled."""
