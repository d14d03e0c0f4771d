"""Memory: the job is held to the ``memory_gb`` it asked for, and running out is told apart.

Invariant: with ``--memory-gb`` the runtime limits ``RLIMIT_DATA`` (and joins the adapter's
cgroup when it made one) before the job starts, and a failed attempt is reported with the
reason ``out_of_memory`` only on evidence: a ``MemoryError`` in a function job, the cgroup's
``oom_kill`` count, or a failed allocation in the tail of the attempt's log::

    join_cgroup(dir) ──> limit_memory(gb) ──> run the job ──> lift the limit
                                                  │ failed
             oom_killed(cgroup) or oom_in_log(attempt.log) ──> reason out_of_memory
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Callable
from pathlib import Path

from gridbridge.wire import out_of_memory_message

__all__ = ["join_cgroup", "limit_memory", "oom_in_log", "oom_words"]

_OOM_SIGNS = (b"MemoryError", b"Cannot allocate memory", b"std::bad_alloc",
              b"Unable to allocate", b"out of memory")
"""How a command that ran out of memory usually says so on its way out (Python, libc, C++,
NumPy, CUDA): the limit makes allocations fail, and the process reports it and exits."""


def limit_memory(memory_gb: float | None) -> Callable[[], None]:
    """Hold the job to ``memory_gb`` (None: no limit); returns what lifts the limit again.

    The limit is ``RLIMIT_DATA`` (private writable memory: heap, anonymous mappings, thread
    stacks) over what the runtime already uses, set on this process so that a function job
    and a command started now both get it. Not ``RLIMIT_AS``: address space counts what is
    only reserved (64 MiB per thread's malloc arena, shared libraries), so a job that imports
    ``distributed`` and starts a few threads failed to allocate 76 MB under a 1 GiB limit."""
    if memory_gb is None:
        return lambda: None
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = _data_bytes() + int(memory_gb * 2**30)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    return lambda: resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def join_cgroup(group: str | None) -> bool:
    """Move this process into ``group`` (a cgroup directory the adapter made and limited), so
    that it and every process the job starts are counted there; False if it could not."""
    if group is None:
        return False
    try:
        with open(os.path.join(group, "cgroup.procs"), "w") as f:
            f.write("0")  # 0: the writing process
    except OSError as exc:
        print(f"gridbridge-run: cannot join memory cgroup {group} ({exc.strerror or exc}); "
              "holding the job to its memory by RLIMIT_DATA alone", file=sys.stderr, flush=True)
        return False
    return True


def _data_bytes() -> int:
    """This process's private writable memory now (``VmData``), 0 if unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def oom_words() -> str:
    """What the result's error says of an out-of-memory end (``main`` sets the variable)."""
    gb = os.environ.get("GRIDBRIDGE_MEMORY_GB")
    return out_of_memory_message(float(gb) if gb else None)


def oom_in_log(path: Path) -> bool:
    """Whether the tail of the attempt's log shows an allocation that failed."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
            tail = f.read()
    except OSError:
        return False
    return any(sign in tail for sign in _OOM_SIGNS)
