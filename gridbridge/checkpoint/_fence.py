"""The attempt fence of a job prefix: ``<prefix>/fence.json``, a token that only ever grows.

Invariant: every update is a compare-and-set on the version read (``If-Match`` on object
stores, ``flock`` locally), and an update never lowers the token, so any number of writers and
control-plane callers raising the fence concurrently end with the largest token any of them asked
for.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from ._backend import Backend, open_backend
from ._layout import Paths
from ._model import FENCE_FORMAT


def now_iso() -> str:
    """The current UTC time as the format writes it, e.g. ``2025-01-31T12:00:00.123Z``."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_token(token: Any) -> int:
    """``token`` if it is a non-negative int (not a bool), else ValueError."""
    if isinstance(token, bool) or not isinstance(token, int) or token < 0:
        raise ValueError(f"token must be a non-negative int, got {token!r}")
    return token


def bump_fence(backend: Backend, paths: Paths, token: int) -> int:
    """Raise the fence of the prefix to ``token`` (never lower it); return the fence after."""

    def update(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is not None and int(current.get("token", -1)) >= token:
            return None
        return {"format": FENCE_FORMAT, "token": token, "time": now_iso()}

    fence = backend.compare_and_set(paths.fence, update)
    return int(fence["token"]) if fence else token


def fence_token(backend: Backend, paths: Paths) -> int:
    """The fence token of the prefix, -1 when no fence object exists."""
    try:
        return int(json.loads(backend.get(paths.fence))["token"])
    except FileNotFoundError:
        return -1


def raise_fence(url: str, token: int, storage_options: Mapping[str, Any] | None = None) -> int:
    """Raise the fence of the job prefix ``url`` to ``token`` without opening a store.

    For the control plane: call it before submitting attempt N+1 with token N+1, or with a
    token above attempt N's once N is declared lost, so that attempt N can no longer commit
    (its saves raise ``FencedError``). The fence never goes down: a ``token`` at or below the
    current fence leaves it unchanged. Returns the fence token after the call.
    """
    check_token(token)
    backend = open_backend(url.rstrip("/"), storage_options)
    return bump_fence(backend, Paths(backend.root), token)
