"""The attempt fence of a job prefix: ``<prefix>/fence.json``, a token that only ever grows,
and the job that owns the prefix.

Invariant: every update is a compare-and-set on the version read (``If-Match`` on object
stores, ``flock`` locally), and an update never lowers the token, so any number of writers and
control-plane callers raising the fence concurrently end with the largest token any of them asked
for. Once a fence names its job (``"job"``), no update removes or changes that name, and a
caller raising the fence for another job is refused (``PrefixOwned``) with nothing written.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from ._backend import Backend, open_backend
from ._layout import Paths
from ._model import FENCE_FORMAT, PrefixOwned


def now_iso() -> str:
    """The current UTC time as the format writes it, e.g. ``2025-01-31T12:00:00.123Z``."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_token(token: Any) -> int:
    """``token`` if it is a non-negative int (not a bool), else ValueError."""
    if isinstance(token, bool) or not isinstance(token, int) or token < 0:
        raise ValueError(f"token must be a non-negative int, got {token!r}")
    return token


def bump_fence(backend: Backend, paths: Paths, token: int, job: str | None = None) -> int:
    """Raise the fence of the prefix to ``token`` (never lower it); return the fence after.

    With ``job``, the fence is raised for that job: an unowned fence is claimed for it (its
    token kept when higher), and a fence that names another job raises ``PrefixOwned``.
    Without ``job`` (a writer opening with its token) the owner, if any, is kept."""

    def update(current: dict[str, Any] | None) -> dict[str, Any] | None:
        owner = None if current is None else current.get("job")
        if job is not None and owner is not None and owner != job:
            raise PrefixOwned(f"{paths.fence} belongs to job {owner}, not {job}: the fence "
                              "of another job's prefix is never raised")
        higher = current is None or int(current.get("token", -1)) < token
        if not higher and (job is None or owner == job):
            return None
        new = {**(current or {}), "format": FENCE_FORMAT}
        if higher:
            new.update(token=token, time=now_iso())
        if job is not None:
            new["job"] = job
        return new

    fence = backend.compare_and_set(paths.fence, update)
    return int(fence["token"]) if fence else token


def fence_token(backend: Backend, paths: Paths) -> int:
    """The fence token of the prefix, -1 when no fence object exists."""
    try:
        return int(json.loads(backend.get(paths.fence))["token"])
    except FileNotFoundError:
        return -1


def raise_fence(
    url: str, token: int, storage_options: Mapping[str, Any] | None = None, *,
    job: str | None = None,
) -> int:
    """Raise the fence of the job prefix ``url`` to ``token`` without opening a store.

    For the control plane: call it before submitting attempt N+1 with token N+1, or with a
    token above attempt N's once N is declared lost, so that attempt N can no longer commit
    (its saves raise ``FencedError``). The fence never goes down: a ``token`` at or below the
    current fence leaves it unchanged. Returns the fence token after the call.

    ``job`` names the job that owns the prefix: the fence records it (claiming a fence that
    names no job), and a fence that already names another job is left untouched and
    ``PrefixOwned`` raised.
    """
    check_token(token)
    backend = open_backend(url.rstrip("/"), storage_options)
    return bump_fence(backend, Paths(backend.root), token, job)
