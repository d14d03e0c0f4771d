"""A real adapter with faults injected per verb, and a clock that moves when told.

::

    reconciler ──verb──> FaultyAdapter ──(hang | raise | garbage | pass)──> real adapter
                              │
                              └─ records every call (verb, arguments, time)

Faults: ``hang(verb)`` blocks the verb until :meth:`FaultyAdapter.release` (or forever);
``fail(verb, exc)`` raises; ``garbage(verb, value)`` returns ``value`` instead of an answer;
``uncertain_submits(n)`` lets the next ``n`` submissions reach the site and then raises
``TimeoutError`` as a lost reply would; ``lose_finished()`` makes poll report LOST for attempts
the site saw finish (a node lost right after its work ended).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel

from gridbridge.adapter import (
    Adapter,
    AttemptStatus,
    Capability,
    LogsAdapter,
    Offer,
    OwnedJob,
    PreemptAdapter,
    SubmitRequest,
)
from gridbridge.states import AttemptState

__all__ = ["Call", "FaultyAdapter", "ManualClock"]


class ManualClock:
    """A clock for ``clock=`` arguments: stands still until :meth:`advance`."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@dataclass(frozen=True)
class Call:
    """One call that reached the wrapper."""

    verb: str
    args: tuple[Any, ...]
    at: float


_RAISE = object()


class FaultyAdapter:
    """Wraps ``inner`` and misbehaves on request; otherwise passes every call through."""

    CAPABILITIES: ClassVar[frozenset[Capability]] = frozenset(Capability)
    Options: ClassVar[type[BaseModel] | None] = None

    def __init__(self, inner: Adapter, *, clock: Any = time.time) -> None:
        self.inner = inner
        self.clock = clock
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._hangs: dict[str, threading.Event] = {}
        self._errors: dict[str, BaseException] = {}
        self._garbage: dict[str, Any] = {}
        self._uncertain = 0
        self._lose_finished = False

    # faults -------------------------------------------------------------------------------

    def hang(self, verb: str) -> None:
        """Block calls of ``verb`` until :meth:`release` (a site that stops answering)."""
        self._hangs[verb] = threading.Event()

    def release(self, verb: str | None = None) -> None:
        """Let hung calls of ``verb`` (or of every verb) go on, and stop hanging new ones."""
        for v in [verb] if verb else list(self._hangs):
            gate = self._hangs.pop(v, None)
            if gate is not None:
                gate.set()

    def fail(self, verb: str, exc: BaseException | None = None) -> None:
        """Raise ``exc`` (default ``ConnectionError``) from every call of ``verb``."""
        self._errors[verb] = exc or ConnectionError(f"injected failure in {verb}")

    def garbage(self, verb: str, value: Any) -> None:
        """Return ``value`` from ``verb`` instead of the site's answer."""
        self._garbage[verb] = value

    def uncertain_submits(self, n: int = 1) -> None:
        """The next ``n`` submissions reach the site, then raise ``TimeoutError``."""
        self._uncertain = n

    def lose_finished(self, on: bool = True) -> None:
        """Report LOST for attempts the site says finished (their result records stay)."""
        self._lose_finished = on

    def heal(self) -> None:
        """Drop every fault (and release hung calls)."""
        self.release()
        self._errors.clear()
        self._garbage.clear()
        self._uncertain = 0
        self._lose_finished = False

    def count(self, verb: str, since: float | None = None) -> int:
        """How many calls of ``verb`` reached the wrapper (after ``since``, if given)."""
        with self._lock:
            return sum(1 for c in self.calls if c.verb == verb and (since is None or c.at > since))

    def _enter(self, verb: str, *args: Any) -> Any:
        with self._lock:
            self.calls.append(Call(verb, args, self.clock()))
        gate = self._hangs.get(verb)
        if gate is not None:
            gate.wait()
        if verb in self._errors:
            raise self._errors[verb]
        return self._garbage.get(verb, _RAISE)

    # the verbs ----------------------------------------------------------------------------

    def submit(self, request: SubmitRequest) -> str:
        canned = self._enter("submit", request.attempt_id)
        if canned is not _RAISE:
            return canned  # type: ignore[no-any-return]
        native_id = self.inner.submit(request)
        if self._uncertain > 0:
            self._uncertain -= 1
            raise TimeoutError(f"no reply to the submission of {request.attempt_id}")
        return native_id

    def poll(self, native_ids: Sequence[str]) -> Mapping[str, AttemptStatus]:
        canned = self._enter("poll", tuple(native_ids))
        if canned is not _RAISE:
            return canned  # type: ignore[no-any-return]
        statuses = dict(self.inner.poll(native_ids))
        if self._lose_finished:
            for nid, status in statuses.items():
                if status.state in {AttemptState.SUCCEEDED, AttemptState.FAILED}:
                    statuses[nid] = AttemptStatus(state=AttemptState.LOST, native_state="gone",
                                                  reason="node lost")
        return statuses

    def cancel(self, native_ids: Sequence[str]) -> None:
        if self._enter("cancel", tuple(native_ids)) is _RAISE:
            self.inner.cancel(native_ids)

    def owned(self) -> Sequence[OwnedJob]:
        canned = self._enter("owned")
        return self.inner.owned() if canned is _RAISE else canned

    def offers(self) -> Sequence[Offer]:
        canned = self._enter("offers")
        return self.inner.offers() if canned is _RAISE else canned

    def capabilities(self) -> frozenset[Capability]:
        return self.inner.capabilities()

    def logs(self, native_id: str) -> str:
        self._enter("logs", native_id)
        if not isinstance(self.inner, LogsAdapter):
            raise NotImplementedError("the wrapped adapter has no logs()")
        return self.inner.logs(native_id)

    def preempt(self, native_id: str, *, wait: bool = False) -> None:
        self._enter("preempt", native_id)
        if not isinstance(self.inner, PreemptAdapter):
            raise NotImplementedError("the wrapped adapter has no preempt()")
        self.inner.preempt(native_id, wait=wait)
