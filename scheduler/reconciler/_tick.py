"""What every phase of a tick shares: the world it acts on, and the report it fills.

Invariant: a phase keeps its own caches on its own object; what it shares with the others is
only this :class:`World` (configuration, store, adapters, site calls, fences, lease, clock) and
the :class:`TickReport` of the tick, so no phase reads another's private state.

A job's checkpoint fence is raised only on a prefix the config lets its job use, only for that
job, and off the site workers, each call on its own thread under ``checkpoint.fence_timeout_s``
(:class:`Fences`): a prefix whose storage never answers fails that job's attempt, and no site
waits for it::

    settle([(attempt, job, token)]) ─┬─ prefix refused ──────────────> FenceRefused (at once)
                                     ├─ answered within a short grace ─> token after | error
                                     ├─ still running ────────────────> asked again next tick
                                     └─ running past the timeout ─────> TimeoutError
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from gridbridge.adapter import Adapter, AttemptStatus
from gridbridge.config import GridConfig, SiteConfig
from gridbridge.states import AttemptState

from ..records import Job
from ..sitecalls import SiteCalls
from ..store import StateStore, StoreUnavailable
from ._lease import LeaseKeeper

__all__ = ["Avoidances", "FenceRefused", "Fences", "TickReport", "World", "one_attempt",
           "status"]

log = logging.getLogger("gridbridge.reconciler")
_FENCE_GRACE_S = 0.5
"""How long a tick waits for the fences it raised before it goes on without the slow ones
(they are asked again next tick): a typical object store answers well within it."""


@dataclass
class TickReport:
    """What one tick did, for logs and tests."""

    submitted: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    ended: dict[str, AttemptState] = field(default_factory=dict)
    placed: dict[str, str] = field(default_factory=dict)
    unplaced: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    orphans: dict[str, list[str]] = field(default_factory=dict)
    moved: dict[str, str] = field(default_factory=dict)
    """Attempts asked to stop for a move, with the trigger (drain, deadline, cheaper)."""


@dataclass
class World:
    """What the phases act on, built once by the reconciler."""

    config: GridConfig
    store: StateStore
    adapters: dict[str, Adapter]
    calls: SiteCalls
    lease: LeaseKeeper
    clock: Callable[[], float]
    """Read at every use: a clock swapped on the reconciler reaches every phase."""
    sites: dict[str, SiteConfig] = field(init=False)
    fences: Fences = field(init=False)

    def __post_init__(self) -> None:
        self.sites = {s.name: s for s in self.config.sites}
        self.fences = Fences(self.config)

    @property
    def holder(self) -> str:
        """Who acts: the lease holder's name, the actor of every store write."""
        return self.lease.holder


@contextlib.contextmanager
def one_attempt(what: str, attempt_id: str) -> Iterator[None]:
    """One attempt's record that cannot be applied must not stop the others, or the tick; a
    store that is unavailable stops the tick (the loop retries it with backoff)."""
    try:
        yield
    except StoreUnavailable:
        raise
    except Exception:
        log.exception("could not %s %s", what, attempt_id)


def status(state: AttemptState, native_state: str, reason: str) -> AttemptStatus:
    return AttemptStatus(state=state, native_state=native_state, reason=reason)


class FenceRefused(Exception):
    """The job may not have this fence raised (its prefix is not allowed it, or ``fence.json``
    names another job): its attempt fails with this reason, and nothing was written."""


@dataclass
class _Call:
    future: cf.Future[int]
    since: float


class Fences:
    """Checkpoint fences raised for jobs, each on its own daemon thread (a call that hangs
    holds only its thread), under ``checkpoint.fence_timeout_s``; owns the calls in flight."""

    def __init__(self, config: GridConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._calls: dict[str, _Call] = {}

    def refusal(self, job: Job) -> str | None:
        """Why the control plane may not fence ``job``'s prefix (the config's rules), or None."""
        return self.config.checkpoint.refusal(job.checkpoint_url, team=job.spec.owner.team,
                                              root=self.config.checkpoint_root, job_id=job.id)

    def settle(self, wanted: Sequence[tuple[str, Job, int]]) -> dict[str, int | Exception]:
        """Raise the fence of each ``(key, job, token)``; return what answered: the job's
        token after (above ``token`` when its prefix was fenced higher already), or the error.
        A key still running is left out and asked again by the next call, until it has run
        ``fence_timeout_s``: then it is a ``TimeoutError`` (its thread is abandoned)."""
        out: dict[str, int | Exception] = {}
        started = []
        for key, job, token in wanted:
            if key in self._calls:
                continue
            refusal = self.refusal(job)
            if refusal:
                out[key] = FenceRefused(refusal)
            else:
                fence = functools.partial(_fence_for, job, token)  # a new attempt's token
                self._calls[key] = _Call(_in_thread(fence, job.id), self.clock())
                started.append(self._calls[key].future)
        cf.wait(started, timeout=_FENCE_GRACE_S)  # calls of earlier ticks had theirs
        calls = {key: self._calls[key] for key, _, _ in wanted if key in self._calls}
        timeout = self.config.checkpoint.fence_timeout_s
        for key, call in calls.items():
            if call.future.done():
                exc = call.future.exception()
                out[key] = call.future.result() if exc is None else _as_exception(exc)
            elif self.clock() - call.since >= timeout:
                out[key] = TimeoutError(f"checkpoint storage did not answer within {timeout:g}s "
                                        "(checkpoint.fence_timeout_s)")
            else:
                continue
            del self._calls[key]
        for key in [k for k, c in self._calls.items() if c.future.done()]:
            del self._calls[key]  # its attempt ended meanwhile (cancelled)
        return out

    def raise_now(self, job: Job, token: int) -> int:
        """Raise ``job``'s fence to ``token`` (never lowers it; past an attempt declared lost),
        waiting at most ``fence_timeout_s`` (``TimeoutError``); ``FenceRefused`` when its
        prefix is not its own. Returns the fence after."""
        refusal = self.refusal(job)
        if refusal:
            raise FenceRefused(refusal)
        timeout = self.config.checkpoint.fence_timeout_s
        fence = functools.partial(_fence_for, job, token, past_higher=False)
        try:
            return _in_thread(fence, job.id).result(timeout=timeout)
        except cf.TimeoutError:
            raise TimeoutError(f"checkpoint storage did not answer within {timeout:g}s "
                               "(checkpoint.fence_timeout_s)") from None


def _fence_for(job: Job, token: int, *, past_higher: bool = True) -> int:
    """Raise ``job``'s fence to ``token`` for it; if its prefix was fenced higher already (by a
    writer of old, or an attempt of its own declared lost) and ``past_higher``, past that (a
    new attempt's token). Returns the token after."""
    from gridbridge import checkpoint

    try:
        after = checkpoint.raise_fence(job.checkpoint_url, token, job=job.id)
        if after > token and past_higher:
            after = checkpoint.raise_fence(job.checkpoint_url, after + 1, job=job.id)
    except checkpoint.PrefixOwned as exc:
        raise FenceRefused(str(exc)) from None
    return after


def _in_thread(fn: Callable[[], int], name: str) -> cf.Future[int]:
    """Run ``fn`` on a daemon thread of its own (a hung call never blocks exit or others)."""
    future: cf.Future[int] = cf.Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn())
            except BaseException as exc:  # delivered through the future
                future.set_exception(exc)

    threading.Thread(target=run, name=f"gridbridge-fence-{name}", daemon=True).start()
    return future


def _as_exception(exc: BaseException) -> Exception:
    return exc if isinstance(exc, Exception) else RuntimeError(repr(exc))


class Avoidances:
    """Where each job's placement should not go for a while, and why: a site that refused it
    (:class:`~._submitting.Submitting`), an offer it was lost on (:class:`~._ending.Ending`).
    Each entry lapses at its time."""

    def __init__(self) -> None:
        self._until: dict[tuple[str, str], tuple[float, str]] = {}

    def add(self, job_id: str, where: str, until: float, why: str) -> None:
        self._until[(job_id, where)] = (until, why)

    def of(self, job_id: str, now: float) -> dict[str, str]:
        """The places the job avoids at ``now``, each with why and for how long yet."""
        out = {}
        for (jid, where), (until, why) in list(self._until.items()):
            if until <= now:
                del self._until[(jid, where)]
            elif jid == job_id:
                out[where] = f"{why} (not retried there for {until - now:.0f}s)"
        return out
