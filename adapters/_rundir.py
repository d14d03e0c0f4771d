"""The run-folder protocol: the files an attempt's run folder (its ``--scratch``) holds on the
host that runs it, who writes each, and how the control plane reads them.

One table, :class:`RunFile`, names every file; the local adapter reads the folder with the
functions here, and the edge adapter's node scripts (``adapters/edge/*.sh``) read and write the
same names, which a test checks against :data:`USED_BY`. Invariant: the adapter writes
``spawned`` only after it started the runtime, the runtime writes ``pid`` before the job starts
and ``result.json`` last, and a marker (``cancelled``, ``preempted``, ``walltime``) is written
before the signal it explains, so a reader that looks at the processes before the result never
mistakes a finished attempt for a lost one::

    adapter:  mkdir <id>/ ─ resources ─ spawn ─► spawned          markers ─► SIGTERM ─► SIGKILL
    runtime:                          started ─ pid ─ attempt.log ─ ... ─ result.json ─ exit
    reader:   alive(pid)? ─ result.json? ─ markers ─► AttemptState
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

from gridbridge.fsowner import as_owner
from gridbridge.procinfo import proc_start_time
from gridbridge.states import AttemptState
from gridbridge.wire import OUT_OF_MEMORY, ScratchFile

__all__ = ["LAST_WORDS", "MARKERS", "REASONS", "TAG", "USED_BY", "RunFile", "age", "alive",
           "alive_spawned", "group_alive", "last_words", "pid_of", "read_text", "result_of",
           "runtime_alive", "starting", "vanished"]

TAG = "GRIDBRIDGE_ATTEMPT_ID"
"""Set in the runtime's environment; every process the attempt starts inherits it, so a
process group id reused by strangers is never taken for the attempt's."""


class RunFile(StrEnum):
    """A file (or folder) in an attempt's run folder."""

    SPAWNED = "spawned"
    """The adapter, once the runtime is started: ``PID EPOCH`` (local) or ``PID STARTTIME
    EPOCH`` (edge; the kernel's start time tells a reused pid apart)."""
    # the runtime's own files: their names are the wire's (gridbridge.wire.ScratchFile)
    STARTED = ScratchFile.STARTED.value
    """The runtime's claim on this host, created exclusively: a second launch exits 76."""
    PID = ScratchFile.PID.value
    """The runtime: ``PID STARTTIME``, written before the job starts."""
    RESULT = ScratchFile.RESULT.value
    """The runtime, last: its result record (:class:`gridbridge.wire.Result`)."""
    ATTEMPT_LOG = ScratchFile.ATTEMPT_LOG.value
    """The runtime: its own log of the attempt."""
    OUTPUT_LOG = "output.log"
    """The adapter points the runtime's stdout and stderr here (``logs()`` reads it)."""
    WORK = "work"
    """The job's working folder, so its files never pass for the adapter's."""
    CANCELLED = ScratchFile.CANCELLED.value
    """Marker, written before SIGTERM on cancel (the runtime reads it too): ``EPOCH``."""
    PREEMPTED = "preempted"
    """Marker, written before SIGTERM on a preemption or at the walltime: ``EPOCH``."""
    WALLTIME = "walltime"
    """Marker beside ``preempted`` when the walltime was the reason: ``EPOCH``."""
    RESOURCES_JSON = "resources.json"
    """Local: the attempt's resources (walltime capped by the site) as JSON."""
    CGROUP = "cgroup"
    """Local: the path of the attempt's memory cgroup, when the adapter made one."""
    RESOURCES = "resources"
    """Edge: ``CPUS MEMORY_GB GPUS WALLTIME_S`` on one line (read by ``sh``'s ``read``)."""
    OWNER = "owner"
    """Edge: ``ATTEMPT_ID FEDERATION_TAG``, what ``owned()`` claims the folder by."""
    REAPING = "reaping"
    """Edge: a reaper was started for a runtime that wrote its result but has not exited."""
    REAPED = "reaped"
    """Edge: what the exited runtime left in its group was killed (once)."""


MARKERS = (RunFile.CANCELLED, RunFile.PREEMPTED, RunFile.WALLTIME)
"""What the site did, in the order a poll reports them; they outrank how the process ended,
unless it succeeded."""

_BOTH = frozenset({"local", "edge"})
USED_BY: Mapping[RunFile, frozenset[str]] = {
    RunFile.SPAWNED: _BOTH, RunFile.STARTED: _BOTH, RunFile.PID: _BOTH, RunFile.RESULT: _BOTH,
    RunFile.ATTEMPT_LOG: _BOTH, RunFile.OUTPUT_LOG: _BOTH, RunFile.WORK: _BOTH,
    RunFile.CANCELLED: _BOTH, RunFile.PREEMPTED: _BOTH, RunFile.WALLTIME: _BOTH,
    RunFile.RESOURCES_JSON: frozenset({"local"}), RunFile.CGROUP: frozenset({"local"}),
    RunFile.RESOURCES: frozenset({"edge"}), RunFile.OWNER: frozenset({"edge"}),
    RunFile.REAPING: frozenset({"edge"}), RunFile.REAPED: frozenset({"edge"}),
}
"""Which adapters' run folders hold each file (the runtime's own files are in every one)."""

REASONS: Mapping[str, AttemptState] = {
    "succeeded": AttemptState.SUCCEEDED,
    "failed": AttemptState.FAILED,
    "preempted": AttemptState.PREEMPTED,
    OUT_OF_MEMORY: AttemptState.FAILED,
}
"""The result record's ``reason`` as an attempt state; any other reason is FAILED."""


def result_of(text: str) -> tuple[int, AttemptState, dict[str, object]]:
    """``result.json``'s exit code, the state its reason says, and the whole record. Raises
    ValueError, KeyError or TypeError on a record that cannot be read (the callers name the
    exception in the attempt's reason)."""
    import json

    data = json.loads(text)
    code = int(data["exit_code"])
    return code, REASONS.get(str(data["reason"]), AttemptState.FAILED), data


LAST_WORDS = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*(Error|Exception)(:.*)?"
                        r"|gridbridge-run: (cannot|could not|refusing) .*)")
"""A line of the runtime's log that says why it died: an exception's last line, or the
runtime's own complaint (the edge nodes' ``last_words`` in ``lib.sh`` uses the same rule)."""


def read_text(path: Path) -> str:
    """A run file's text, read as the owner of the run folder when that is the job's own
    account (``run_as: user``: :mod:`gridbridge.fsowner`), so a link the job put in place of
    a file leads nowhere its user could not go."""
    with as_owner(path):
        return path.read_text(errors="replace")


def last_words(log: Path, tail_bytes: int = 65536) -> str:
    """The last line of ``log``'s tail that says why the runtime died (:data:`LAST_WORDS`),
    tabs removed and cut to 300 characters; empty when there is none."""
    try:
        with as_owner(log), log.open("rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - tail_bytes))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    said = [line for line in lines if LAST_WORDS.fullmatch(line)]
    return said[-1].replace("\t", "")[:300] if said else ""


def vanished(words: str) -> str:
    """The reason of an attempt whose runtime left no result, with its last words if any."""
    return ("process vanished without a result" + (f"; its last words: {words}" if words
                                                   else ""))


def pid_of(d: Path) -> int | None:
    """The runtime's pid (its process group: it leads one), from ``pid`` else ``spawned``."""
    for name in (RunFile.PID, RunFile.SPAWNED):
        try:
            return int(read_text(d / name).split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return None


def alive(pidfile: Path) -> bool:
    """The process ``PID STARTTIME`` in ``pidfile`` still runs (same start time, no zombie)."""
    try:
        pid_s, start = read_text(pidfile).split()[:2]
    except (OSError, ValueError):
        return False
    return proc_start_time(int(pid_s)) == start


def alive_spawned(spawned: Path) -> bool:
    """The process the adapter spawned still runs (by pid alone)."""
    try:
        pid = int(read_text(spawned).split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return proc_start_time(pid) is not None


def runtime_alive(d: Path, scratch: Path | None = None) -> bool:
    """The runtime runs, or was spawned and has not yet written its pid (``scratch``: where
    the runtime writes its files, when not in ``d`` itself)."""
    pid = (scratch or d) / RunFile.PID
    return alive(pid) or (not pid.exists() and alive_spawned(d / RunFile.SPAWNED))


def starting(d: Path) -> bool:
    """The runtime was spawned and has not yet written its pid (or did within 2 s)."""
    spawned = d / RunFile.SPAWNED
    return alive_spawned(spawned) or age(spawned) < 2.0


def group_alive(pgid: int, attempt_id: str) -> bool:
    """Whether a process of the attempt still runs in the group: not a zombie, and carrying the
    attempt's tag in its environment (so a group id reused by strangers is never theirs)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    tag = f"{TAG}={attempt_id}".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[0] in {"Z", "X"} or int(fields[2]) != pgid:
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                if tag in f.read().split(b"\0"):
                    return True
        except (OSError, IndexError, ValueError):
            continue
    return False


def age(path: Path) -> float:
    """Seconds since ``path`` was written; infinite when there is no such file."""
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")
