"""What PBS prints, read and judged: ``qstat -f -F json`` jobs become
:class:`~gridbridge.adapter.AttemptStatus`, ``pbsnodes -a -F json`` free capacity. Pure
functions of the text, tested against recorded OpenPBS output; no command runs here.

Invariant: a finished job is judged by its ``Exit_status`` alone (:data:`EXIT_STATUSES`, the
``JOB_EXEC_*`` codes of OpenPBS's ``src/include/job.h``), except that a job this adapter
cancelled reports CANCELLED unless it had already succeeded::

    qstat JSON ──► parse_qstat ──► {id: job} ──► status_of(job, cancelled) ──► AttemptStatus
    pbsnodes JSON ──► parse_nodes ──► (free cpus, memory GiB, gpus)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from gridbridge.adapter import AttemptStatus
from gridbridge.adapters._batch import ALREADY_RAN_EXIT_CODE, PREEMPTED_EXIT_CODE
from gridbridge.states import AttemptState
from gridbridge.units import GIB, parse_duration

__all__ = [
    "EXIT_STATUSES",
    "JOB_STATES",
    "KILL_WALLTIME",
    "find_job",
    "format_walltime",
    "parse_nodes",
    "parse_qstat",
    "status_of",
    "variables",
]

_SIZE = re.compile(r"^([0-9]+)(b|kb|mb|gb|tb|pb|w|kw|mw|gw|tw|pw)?$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40, "pb": 1 << 50}
_BUSY_NODE_STATES = frozenset({
    "down", "offline", "state-unknown", "stale", "unresolvable", "sleep", "maintenance",
    "provisioning", "wait-provisioning", "resv-exclusive", "job-exclusive", "job-busy",
    "busy", "initializing",
})
"""Node states (``pbsnodes``; a node may show several, comma-separated) that rule out new work."""

JOB_STATES: Mapping[str, AttemptState | None] = {
    "Q": AttemptState.SUBMITTED,  # queued, eligible to run or be routed
    "H": AttemptState.SUBMITTED,  # held
    "W": AttemptState.SUBMITTED,  # waiting for its execution time or a failed stage-in
    "T": AttemptState.SUBMITTED,  # in transit to a new location
    "R": AttemptState.RUNNING,    # running
    "E": AttemptState.RUNNING,    # exiting after having run: Exit_status not final until F
    "B": AttemptState.RUNNING,    # job arrays only: begun
    "S": AttemptState.RUNNING,    # suspended by PBS for a higher-priority job; holds its node
    "U": AttemptState.RUNNING,    # suspended because the workstation became busy
    "M": AttemptState.LOST,       # moved to another server: its id here no longer follows it
    "F": None,                    # finished: judged by Exit_status
    "X": None,                    # subjobs only: finished (expired), judged by Exit_status
}
"""PBS ``job_state`` letters (PBS Professional Reference Guide, "Job States") to ours; None
means "finished: see :data:`EXIT_STATUSES`"."""

EXIT_STATUSES: Mapping[int, tuple[AttemptState, str]] = {
    -1: (AttemptState.LOST, "JOB_EXEC_FAIL1: job exec failed before files, no retry"),
    -2: (AttemptState.LOST, "JOB_EXEC_FAIL2: job exec failed after files, no retry"),
    -3: (AttemptState.LOST, "JOB_EXEC_RETRY: job execution failed, retry"),
    -4: (AttemptState.LOST, "JOB_EXEC_INITABT: job aborted on MOM initialization"),
    -5: (AttemptState.LOST, "JOB_EXEC_INITRST: job aborted on MOM init, checkpoint, no migrate"),
    -6: (AttemptState.LOST, "JOB_EXEC_INITRMG: job aborted on MOM init, checkpoint, migrate"),
    -7: (AttemptState.LOST, "JOB_EXEC_BADRESRT: job restart failed"),
    -10: (AttemptState.LOST, "JOB_EXEC_FAILUID: invalid uid/gid for the job"),
    -11: (AttemptState.PREEMPTED, "JOB_EXEC_RERUN: job rerun"),
    -12: (AttemptState.PREEMPTED, "JOB_EXEC_CHKP: job checkpointed and killed"),
    -13: (AttemptState.LOST, "JOB_EXEC_FAIL_PASSWORD: bad password"),
    -14: (AttemptState.LOST, "JOB_EXEC_RERUN_SIS_FAIL: a sister node failed"),
    -15: (AttemptState.PREEMPTED, "JOB_EXEC_QUERST: requeued for restart from checkpoint"),
    -16: (AttemptState.LOST, "JOB_EXEC_FAILHOOK_RERUN: a hook rejected the start (rerun)"),
    -17: (AttemptState.FAILED, "JOB_EXEC_FAILHOOK_DELETE: a hook rejected the job"),
    -18: (AttemptState.PREEMPTED, "JOB_EXEC_HOOK_RERUN: a hook requeued the job"),
    -19: (AttemptState.FAILED, "JOB_EXEC_HOOK_DELETE: a hook deleted the job"),
    -20: (AttemptState.LOST, "JOB_EXEC_RERUN_MS_FAIL: mother superior connection failed"),
    -21: (AttemptState.LOST, "JOB_EXEC_FAIL_SECURITY: security breach in the PBS directory"),
    -22: (AttemptState.LOST, "JOB_EXEC_HOOKERROR: a hook failed or timed out"),
    -23: (AttemptState.LOST, "JOB_EXEC_FAIL_KRB5: no kerberos credentials"),
    -24: (AttemptState.FAILED, "JOB_EXEC_KILL_NCPUS_BURST: exceeded its ncpus (burst)"),
    -25: (AttemptState.FAILED, "JOB_EXEC_KILL_NCPUS_SUM: exceeded its ncpus (sum)"),
    -26: (AttemptState.FAILED, "JOB_EXEC_KILL_VMEM: exceeded its vmem"),
    -27: (AttemptState.FAILED, "JOB_EXEC_KILL_MEM: exceeded its mem"),
    -28: (AttemptState.FAILED, "JOB_EXEC_KILL_CPUT: exceeded its cput"),
    -29: (AttemptState.PREEMPTED, "JOB_EXEC_KILL_WALLTIME: walltime reached"),
    -30: (AttemptState.LOST, "JOB_EXEC_JOINJOB: a sister failed to join the job"),
}
"""PBS's negative ``Exit_status`` values (``JOB_EXEC_*`` in OpenPBS ``src/include/job.h``; -8
and -9 are unused). The site could not run the job (LOST: it resumes elsewhere), took it back
(PREEMPTED), or stopped it for exceeding what it asked for (FAILED: a rerun would too)."""
KILL_WALLTIME = -29
_SIGNAL_BASE = 256
"""PBS reports a job killed by signal N as ``Exit_status`` 256 + N."""


_LEADING_ZERO_NUMBER = re.compile(r'(:\s*)(-?0[0-9]+(?:\.[0-9]+)?)(?=\s*[,}\n])')


def parse_qstat(text: str) -> dict[str, Any]:
    """The ``Jobs`` mapping of ``qstat -f -F json`` output ({} when it has none).

    OpenPBS prints values that look numeric without quotes, in ``Variable_List`` too, so a
    variable like ``0042`` comes out as an invalid JSON number and ``1.10`` as a float: numbers
    are kept as their text, and ones with leading zeros quoted first. Control characters in
    strings (exported bash functions) are let through."""
    fixed = _LEADING_ZERO_NUMBER.sub(lambda m: f'{m.group(1)}"{m.group(2)}"', text)
    try:
        data = json.loads(fixed, parse_int=str, parse_float=str, strict=False)
    except json.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    jobs = data.get("Jobs") or {}
    if not isinstance(jobs, dict):
        raise ValueError("'Jobs' is not an object")
    return {str(k): v for k, v in jobs.items() if isinstance(v, dict)}


def variables(job: Mapping[str, Any]) -> dict[str, str]:
    """A job's ``Variable_List``: an object in recent qstat JSON, a ``k=v,k=v`` string
    (commas inside values escaped with a backslash) in older output."""
    raw = job.get("Variable_List")
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    if not isinstance(raw, str):
        return {}
    found = {}
    for item in re.split(r"(?<!\\),", raw):
        name, sep, value = item.partition("=")
        if sep:
            found[name.strip()] = value.replace("\\,", ",")
    return found


def status_of(job: Mapping[str, Any], *, cancelled: bool = False) -> AttemptStatus:
    """One job of ``qstat -f -F json -x`` as an :class:`AttemptStatus` (``cancelled``: this
    adapter issued a qdel for it)."""
    letter = str(job.get("job_state", "?"))
    substate = str(job.get("substate", ""))
    native = f"{letter}/{substate}" if substate else letter
    comment = str(job.get("comment", ""))
    if letter not in JOB_STATES:
        return AttemptStatus(state=AttemptState.LOST, native_state=native,
                             reason=f"unknown PBS job state {letter!r}")
    ours = JOB_STATES[letter]
    if ours is not None:
        reason = "moved to another server" if letter == "M" else ""
        if ours is AttemptState.SUBMITTED and cancelled:
            reason = "qdel issued"
        return AttemptStatus(state=ours, native_state=native, reason=reason)
    code = _int(job.get("Exit_status"))
    if code is None:  # deleted before it ran, or history without an exit status
        state = AttemptState.CANCELLED if cancelled else AttemptState.LOST
        return AttemptStatus(state=state, native_state=native,
                             reason=comment or "finished without an exit status")
    state, reason, walltime = _judge_exit(code, job)
    if cancelled and state is not AttemptState.SUCCEEDED:
        state, reason, walltime = AttemptState.CANCELLED, f"cancelled ({reason})", False
    return AttemptStatus(state=state, native_state=native, exit_code=code,
                         reason=(reason or comment)[:500], walltime=walltime)


def _judge_exit(code: int, job: Mapping[str, Any]) -> tuple[AttemptState, str, bool]:
    """Our verdict on a finished job's ``Exit_status``: state, reason, walltime."""
    if code == KILL_WALLTIME or _walltime_reached(code, job):
        return AttemptState.PREEMPTED, "walltime reached", True
    if code in EXIT_STATUSES:
        state, reason = EXIT_STATUSES[code]
        return state, reason, False
    if code < 0:
        return AttemptState.LOST, f"PBS could not run the job (Exit_status {code})", False
    if code == 0:
        return AttemptState.SUCCEEDED, "", False
    if code == PREEMPTED_EXIT_CODE:
        return AttemptState.PREEMPTED, "stopped after a checkpoint on request", False
    if code == ALREADY_RAN_EXIT_CODE:
        return AttemptState.LOST, "the attempt had already run (PBS started it again)", False
    if code > _SIGNAL_BASE:
        return AttemptState.LOST, f"killed by signal {code - _SIGNAL_BASE}", False
    return AttemptState.FAILED, f"exited {code}", False


def _walltime_reached(code: int, job: Mapping[str, Any]) -> bool:
    """Before ``JOB_EXEC_KILL_WALLTIME`` existed PBS recorded how the job died (271 for its
    SIGTERM, or the runtime's own 75): then the comment, or the used walltime reaching the
    limit, tells a walltime kill from any other."""
    if code not in (PREEMPTED_EXIT_CODE, _SIGNAL_BASE + 15, _SIGNAL_BASE + 9):
        return False
    comment = str(job.get("comment", "")).lower()
    if "walltime" in comment and "exceed" in comment:
        return True
    used = _seconds(_sub(job, "resources_used", "walltime"))
    limit = _seconds(_sub(job, "Resource_List", "walltime"))
    return used is not None and limit is not None and used >= limit


def parse_nodes(text: str) -> tuple[int, float, int]:
    """Free ``(cpus, memory GB, gpus)`` over the nodes of ``pbsnodes -a -F json`` that can
    take work: ``resources_available`` less ``resources_assigned``."""
    try:
        data = json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, dict):
        raise ValueError("no 'nodes' object")
    cpus, mem, gpus = 0, 0, 0
    for node in nodes.values():
        if not isinstance(node, dict) or _node_busy(str(node.get("state", ""))):
            continue
        avail = node.get("resources_available") or {}
        used = node.get("resources_assigned") or {}
        cpus += max(0, (_int(avail.get("ncpus")) or 0) - (_int(used.get("ncpus")) or 0))
        gpus += max(0, (_int(avail.get("ngpus")) or 0) - (_int(used.get("ngpus")) or 0))
        mem += max(0, (_bytes(avail.get("mem")) or 0) - (_bytes(used.get("mem")) or 0))
    return cpus, mem / GIB, gpus


def _node_busy(state: str) -> bool:
    return any(word.strip() in _BUSY_NODE_STATES for word in state.split(","))


def format_walltime(seconds: float) -> str:
    """``HH:MM:SS`` (whole seconds, rounded up, at least one)."""
    total = max(1, math.ceil(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def find_job(jobs: Mapping[str, Any], native_id: str) -> dict[str, Any] | None:
    """A job by the id qsub printed; qstat may print it with a longer server name."""
    if native_id in jobs:
        return dict(jobs[native_id])
    head = native_id.partition(".")[0]
    matches = [j for k, j in jobs.items() if k.partition(".")[0] == head]
    return dict(matches[0]) if len(matches) == 1 else None


def _sub(job: Mapping[str, Any], group: str, name: str) -> Any:
    value = job.get(group)
    return value.get(name) if isinstance(value, dict) else job.get(f"{group}.{name}")


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _seconds(value: Any) -> float | None:
    """A PBS duration (``[[HH:]MM:]SS``; a bare number is seconds) in seconds."""
    return None if value is None else parse_duration(str(value), bare=1)


def _bytes(value: Any) -> int | None:
    """PBS sizes: an integer with an optional unit (``b``, ``kb`` ... ``pb``; ``w`` words of
    8 bytes); no unit means bytes."""
    if value is None:
        return None
    match = _SIZE.fullmatch(str(value).strip())
    if not match:
        return None
    unit = (match.group(2) or "b").lower()
    factor = _SIZE_UNITS.get(unit.replace("w", "b"), 1) * (8 if unit.endswith("w") else 1)
    return int(match.group(1)) * factor
