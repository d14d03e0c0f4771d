"""How a compare-and-set on an object store retries: a lost race from a broken store.

Invariant: a *conflict* (another writer's update landed between our read and our conditional
write: the precondition failed, or the object we meant to create exists) is retried after a
pause drawn with full jitter from a window that doubles from ``base_s`` up to ``cap_s``, for at
most ``conflicts`` tries and ``budget_s`` seconds, then raises ``TimeoutError``. An *I/O error*
(anything else) is never counted as a conflict: one that cannot pass (no permission, no such
bucket or folder) is raised at once, any other is retried the same way at most ``io_errors``
times; either is raised as the same kind of error (so callers still tell a denied store from
a flaky one), its message naming the URL, without credentials::

    try ──written──────> done
        ──conflict─────> pause U(0, min(cap_s, base_s·2^n)) ──> try again   ≤ conflicts, budget_s
        ──I/O error────> pause likewise                    ──> try again   ≤ io_errors
                                                            ──> the same error type:
                                                                "could not update URL: ..."
        ──denied, no such bucket or folder ───────────────────> the same, at once

Jitter keeps racing writers from retrying in lockstep; the cap and the budget bound the wait.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gridbridge.units import redact_url, redact_urls

__all__ = ["Retry", "RetryPolicy", "is_conflict", "public_url"]

_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
"""S3 error codes of a conditional write that lost: ``If-Match``/``If-None-Match`` failed (412),
or another conditional write to the same key was in flight (409)."""

_PERMANENT = (PermissionError, FileNotFoundError, NotADirectoryError, IsADirectoryError)
"""I/O errors another try cannot mend: raised at once."""

_CONFLICT_WORDS = ("pre-condition", "precondition", "conflicting conditional operation")
"""How the same answers read once a client library turned them into an ``OSError`` (s3fs gives
a 412 as ``EINVAL`` with S3's message, "At least one of the pre-conditions ... did not hold")."""


@dataclass(frozen=True)
class RetryPolicy:
    """How many tries and how long a compare-and-set may take."""

    conflicts: int = 50
    """Tries in all before giving up on contention."""
    io_errors: int = 4
    """Tries that end in an I/O error before it is raised."""
    base_s: float = 0.01
    """The first pause's window; it doubles with every retry."""
    cap_s: float = 1.0
    """The widest window."""
    budget_s: float = 30.0
    """The most time one compare-and-set spends, pauses included."""

    def window(self, retry: int) -> float:
        """The upper end of the pause before retry number ``retry`` (0 is the first)."""
        return min(self.cap_s, self.base_s * 2.0 ** min(retry, 60))


class Retry:
    """The retries of one compare-and-set: call :meth:`failed` or :meth:`conflict` after each
    try that did not write; it pauses, or raises once the policy's bounds are reached."""

    def __init__(self, policy: RetryPolicy, url: Callable[[], str]) -> None:
        self.policy = policy
        self._url = url  # built only for the error message
        self._start = time.monotonic()
        self._conflicts = 0
        self._io_errors = 0

    def failed(self, exc: OSError) -> None:
        """A try raised ``exc``: a conflict or an I/O error, whichever it is."""
        if is_conflict(exc):
            self.conflict()
            return
        self._io_errors += 1
        if (isinstance(exc, _PERMANENT) or self._io_errors >= self.policy.io_errors
                or not self._pause()):
            tries = "1 try" if self._io_errors == 1 else f"{self._io_errors} tries"
            raise _same_kind(exc, f"could not update {self._url()}: {type(exc).__name__}: "
                                  f"{redact_urls(str(exc))} ({tries})") from exc

    def conflict(self) -> None:
        """Another writer won this try."""
        self._conflicts += 1
        if self._conflicts >= self.policy.conflicts or not self._pause():
            raise TimeoutError(f"could not update {self._url()}: too much contention "
                               f"({self._conflicts} conflicting tries in "
                               f"{time.monotonic() - self._start:.1f}s)")

    def _pause(self) -> bool:
        """Sleep before the next try; False (no sleep) if that would overrun the budget."""
        retries = self._conflicts + self._io_errors - 1
        pause = random.random() * self.policy.window(retries)  # jitter, not a secret
        if time.monotonic() + pause - self._start > self.policy.budget_s:
            return False
        time.sleep(pause)
        return True


def _same_kind(exc: OSError, message: str) -> OSError:
    """An error of ``exc``'s type (and errno) that says ``message``."""
    try:
        return type(exc)(exc.errno, message) if exc.errno is not None else type(exc)(message)
    except Exception:  # a library's OSError whose constructor wants other arguments
        return OSError(exc.errno, message) if exc.errno is not None else OSError(message)


def is_conflict(exc: BaseException) -> bool:
    """Whether a failed conditional write lost to another writer (not an I/O error)."""
    seen: BaseException | None = exc
    for _ in range(5):  # the client library's error, then what it wrapped
        if seen is None:
            return False
        if isinstance(seen, FileExistsError) or _error_code(seen) in _CONFLICT_CODES:
            return True
        if any(word in str(seen).lower() for word in _CONFLICT_WORDS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _error_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ``ClientError`` (read without importing botocore)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return None
    error: Any = response.get("Error") or {}
    code = error.get("Code") if isinstance(error, Mapping) else None
    return str(code) if code is not None else None


def public_url(fs: Any, path: str) -> str:
    """``path`` on ``fs`` as a URL fit for an error message (:func:`gridbridge.units.redact_url`:
    no ``user:password@``, no query on an http(s) URL)."""
    return redact_url(str(fs.unstrip_protocol(path)))
