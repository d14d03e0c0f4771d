"""Checkpoint prefixes compared as the storage reads them, not as they are spelt.

Invariant: two URLs that reach the same storage object compare equal here, so no spelling
takes a job's checkpoint URL out from under ``checkpoint_root`` or into a prefix it was not
allowed: a prefix test is made on :func:`canonical` forms, segment by segment::

    url ──> scheme lower-cased, aliases to one name (gcs -> gs; az, abfss -> abfs)
        ──> percent-encoding decoded (%2f is a '/', %2e%2e a '..': refused as such)
        ──> bucket lower-cased (bucket and container names are lower-case on every store)
        ──> '//' collapsed, trailing '/' dropped (memory: leading '/' too, as fsspec does)
        ──> file: symlinks of the part that exists resolved (a link inside an allowed
            prefix that points elsewhere is judged where it points)

``s3a``/``s3n`` are not mapped: they are not in ``gridbridge.spec.CHECKPOINT_SCHEMES`` and are
refused, so each store has one spelling a reader of the config must know.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from urllib.parse import unquote

from gridbridge.spec import checkpoint_url_problem, checkpoint_url_refusal

__all__ = ["SCHEME_ALIASES", "canonical", "refusal", "under"]

SCHEME_ALIASES = {"gcs": "gs", "az": "abfs", "abfss": "abfs"}
"""Schemes fsspec serves with the same filesystem, to the one name compared."""


def canonical(url: str) -> str:
    """``url`` as the storage reads it (see the module's flow); ``url`` must have no
    :func:`~gridbridge.spec.checkpoint_url_problem`."""
    if url.startswith("/"):
        scheme, rest = "file", url
    else:
        scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    scheme = SCHEME_ALIASES.get(scheme, scheme)
    rest = re.sub("/+", "/", unquote(rest))
    if scheme == "file":
        return "file://" + os.path.realpath(rest)
    if scheme == "memory":
        return "memory://" + rest.strip("/")
    bucket, _, path = rest.partition("/")
    return f"{scheme}://{bucket.lower()}/{path}".rstrip("/")


def under(url: str, prefix: str) -> bool:
    """Whether ``url`` is ``prefix`` or below it, on a segment boundary, both canonical."""
    return url == prefix or url.startswith(prefix.rstrip("/") + "/")


def refusal(url: str, *, allowed: Sequence[str] | None, team: str, root: str,
            job_id: str | None = None) -> str | None:
    """:func:`gridbridge.spec.checkpoint_url_refusal` on canonical forms: why a job of
    ``team`` may not keep checkpoints at ``url`` (naming the field and the prefixes as
    configured), or None."""
    problem = checkpoint_url_problem(url)
    if problem:
        return problem
    decoded = unquote(url)
    if decoded != url and checkpoint_url_problem(decoded):
        return "checkpoint.url must not hide '.', '..', '/' or other characters in %-escapes"
    mine, home = canonical(url), canonical(root)
    own = None if job_id is None else canonical(f"{root.rstrip('/')}/{job_id}")
    if mine == own:
        return None
    refused = checkpoint_url_refusal(mine, allowed=None, team=team, root=home)
    if refused or allowed is None:
        return refused
    if any(under(mine, canonical(prefix)) for prefix in allowed):
        return None
    return (f"checkpoint.url must lie under a prefix allowed for team {team!r} "
            f"(checkpoint.allowed_prefixes: {', '.join(allowed) or 'none'})")
