"""What Slurm says about a job, read and judged: ``squeue``/``sacct`` lines become rows, a row
becomes an :class:`~gridbridge.adapter.AttemptStatus`. Pure functions of the text and the
clock reading passed in; no command runs here.

Invariant: every Slurm state word maps through :data:`SLURM_STATES` (an unfamiliar one is
reported running, never ended), and whether an end was the time limit is judged from the run
time against the limit, never from the word alone::

    squeue -O ... │ sacct --parsable2  ──► _Row ──► judge(row, signal_before_s) ──► AttemptStatus
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from gridbridge.adapter import AttemptStatus
from gridbridge.adapters._batch import ALREADY_RAN_EXIT_CODE, PREEMPTED_EXIT_CODE
from gridbridge.frozen import Frozen
from gridbridge.states import AttemptState
from gridbridge.units import parse_duration as parse_any_duration

__all__ = ["SLURM_STATES", "judge", "parse_duration", "sacct_rows", "squeue_rows",
           "warning_s"]

SLURM_STATES: Mapping[str, AttemptState] = {
    "PENDING": AttemptState.SUBMITTED,
    "CONFIGURING": AttemptState.SUBMITTED,
    "REQUEUED": AttemptState.SUBMITTED,
    "REQUEUE_HOLD": AttemptState.SUBMITTED,
    "REQUEUE_FED": AttemptState.SUBMITTED,
    "RESV_DEL_HOLD": AttemptState.SUBMITTED,
    "RUNNING": AttemptState.RUNNING,
    "COMPLETING": AttemptState.RUNNING,
    "SUSPENDED": AttemptState.RUNNING,
    "STOPPED": AttemptState.RUNNING,
    "SIGNALING": AttemptState.RUNNING,
    "STAGE_OUT": AttemptState.RUNNING,
    "RESIZING": AttemptState.RUNNING,
    "COMPLETED": AttemptState.SUCCEEDED,
    "FAILED": AttemptState.FAILED,
    "OUT_OF_MEMORY": AttemptState.FAILED,
    "SPECIAL_EXIT": AttemptState.FAILED,
    "CANCELLED": AttemptState.CANCELLED,
    "DEADLINE": AttemptState.CANCELLED,
    "REVOKED": AttemptState.CANCELLED,
    "PREEMPTED": AttemptState.PREEMPTED,
    "TIMEOUT": AttemptState.PREEMPTED,
    "BOOT_FAIL": AttemptState.PREEMPTED,
    "NODE_FAIL": AttemptState.LOST,
}
"""Every Slurm job state and what it means for an attempt. TIMEOUT and BOOT_FAIL are the
site's doing, not the job's: the job continues from its checkpoint. NODE_FAIL is LOST: the
node went away with the job's processes in an unknown state, so the attempt is fenced off."""

_WHY: Mapping[str, str] = {
    "OUT_OF_MEMORY": "killed by Slurm: out of memory",
    "NODE_FAIL": "its node failed",
    "BOOT_FAIL": "its node failed to boot",
    "DEADLINE": "its deadline passed",
    "PREEMPTED": "preempted by a higher-priority job",
    "REVOKED": "revoked by a sibling cluster",
}
_SIGNAL_SLACK_S = 65.0
"""Slurm may deliver ``--signal`` up to 60 s before the requested time (its event resolution)."""
_NO_LIMIT_S = 365 * 86400
"""What Slurm prints for no time limit is this long or longer."""
SQUEUE_FIELDS = ("JobID", "State", "Reason", "Partition", "restartcnt", "exit_code",
                 "TimeLimit", "StartTime", "EndTime", "Comment")
SACCT_FIELDS = "JobIDRaw,State,ExitCode,Partition,ElapsedRaw,TimelimitRaw"


class _Row(Frozen):
    """One job as ``squeue`` or ``sacct`` shows it."""

    job_id: str
    state: str
    reason: str = ""
    partition: str = ""
    restarts: int = 0
    exit_code: int | None = None
    signal: int = 0
    time_limit_s: float | None = None
    elapsed_s: float | None = None
    expected_wait_s: float | None = None
    """For a pending job: until the start Slurm expects (None: Slurm cannot say)."""
    comment: str = ""


def parse_duration(text: str) -> float | None:
    """Slurm's time format in seconds: ``minutes``, ``minutes:seconds``,
    ``hours:minutes:seconds``, ``days-hours``, ``days-hours:minutes`` or
    ``days-hours:minutes:seconds``; None for ``infinite``/``UNLIMITED``, for 365 days or more
    (what Slurm prints for no limit) and for anything else."""
    seconds = parse_any_duration(text)
    return None if seconds is None or seconds >= _NO_LIMIT_S else seconds


def squeue_rows(out: str, now: float, only: set[str] | None = None) -> list[_Row]:
    """The rows of ``squeue -O`` output in :data:`SQUEUE_FIELDS`, ``|``-separated (the
    comment last, so it may hold ``|``); ``only`` keeps those job ids."""
    rows = []
    for line in out.splitlines():
        parts = line.split("|", len(SQUEUE_FIELDS) - 1)
        if len(parts) < len(SQUEUE_FIELDS) or not parts[0].strip().isdigit():
            continue
        jid, state, reason, part, restarts, raw, limit, start, end, comment = parts
        if only is not None and jid.strip() not in only:
            continue
        raw_code = to_int(raw)
        t0, t1 = timestamp(start), timestamp(end)
        elapsed, wait = None, None
        if t0 is not None and state.strip().startswith("PENDING"):
            wait = max(0.0, t0 - now)
        elif t0 is not None:
            elapsed = (t1 if t1 is not None and t1 >= t0 else now) - t0
        rows.append(_Row(
            job_id=jid.strip(), state=state.strip().split()[0] if state.strip() else "",
            reason=reason.strip(), partition=part.strip(), restarts=to_int(restarts) or 0,
            exit_code=None if raw_code is None else (raw_code >> 8) & 0xFF,
            signal=0 if raw_code is None else raw_code & 0x7F,
            time_limit_s=parse_duration(limit), elapsed_s=elapsed, expected_wait_s=wait,
            comment=comment.strip()))
    return rows


def sacct_rows(out: str) -> dict[str, _Row]:
    """The jobs of ``sacct --parsable2 -o`` :data:`SACCT_FIELDS` output, by id (a job's last
    line is its last run)."""
    rows: dict[str, _Row] = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) < 6 or not parts[0].isdigit():
            continue
        code, _, sig = parts[2].partition(":")
        limit_min = to_int(parts[5])
        rows[parts[0]] = _Row(
            job_id=parts[0], state=parts[1].split()[0] if parts[1] else "",
            partition=parts[3], exit_code=to_int(code), signal=to_int(sig) or 0,
            elapsed_s=to_int(parts[4]),
            time_limit_s=None if limit_min is None else limit_min * 60.0)
    return rows


def judge(row: _Row, signal_before_s: int) -> AttemptStatus:
    """What ``row`` means for its attempt (``signal_before_s``: the site's warning time)."""
    word = row.state
    state = SLURM_STATES.get(word)
    native = f"{word} ({row.reason})" if row.reason and row.reason != "None" else word
    if state is None:
        return AttemptStatus(state=AttemptState.RUNNING, native_state=native,
                             reason=f"unfamiliar Slurm state {word!r}; assumed running")
    code = row.exit_code
    reason = _WHY.get(word, "")
    walltime = False
    if state.terminal and code == PREEMPTED_EXIT_CODE and state is not AttemptState.CANCELLED:
        state = AttemptState.PREEMPTED  # stopped on Slurm's warning signal, checkpointed
    if state.terminal and code == ALREADY_RAN_EXIT_CODE:
        state, reason = AttemptState.LOST, "a second launch of the attempt (a requeue?)"
    if state is AttemptState.PREEMPTED and word not in {"BOOT_FAIL", "PREEMPTED"}:
        walltime = _at_time_limit(row, signal_before_s)
        if walltime:
            reason = "time limit reached"
        elif word != "PREEMPTED":
            reason = reason or ("preempted: stopped on Slurm's warning signal before "
                                 "its time limit")
    if not state.terminal and row.restarts:
        return _requeued(row, state, native)
    if state is AttemptState.FAILED and row.signal and not reason:
        reason = f"killed by signal {row.signal}"
    if state is AttemptState.CANCELLED and not reason:
        reason = "cancelled in Slurm"
    pending = state is AttemptState.SUBMITTED
    return AttemptStatus(state=state, native_state=native,
                         exit_code=code if state.terminal else None,
                         reason=reason, walltime=walltime, requeues=row.restarts,
                         queued=pending,
                         queue_wait_s=row.expected_wait_s if pending else None)


def _requeued(row: _Row, state: AttemptState, native: str) -> AttemptStatus:
    """Requeued by Slurm after a preemption: the attempt lives on under the same id. The
    requeue counts once the job waits in the queue again (not while it completes or sits out
    its BeginTime), when Slurm can estimate when it will run."""
    settled = row.state != "COMPLETING" and row.reason != "BeginTime"
    waiting = state is AttemptState.SUBMITTED
    if waiting:
        native += f", requeued {row.restarts}x"
    return AttemptStatus(state=AttemptState.RUNNING, native_state=native,
                         reason=f"requeued by Slurm after a preemption ({row.restarts}x)",
                         requeues=row.restarts if settled else row.restarts - 1,
                         queued=waiting and settled,
                         queue_wait_s=row.expected_wait_s if waiting else None)


def _at_time_limit(row: _Row, signal_before_s: int) -> bool:
    if row.time_limit_s is None or row.elapsed_s is None:
        return row.state == "TIMEOUT"
    margin = warning_s(row.time_limit_s, signal_before_s) + _SIGNAL_SLACK_S
    return row.elapsed_s >= row.time_limit_s - margin


def warning_s(limit_s: float, signal_before_s: int) -> int:
    """How long before a time limit of ``limit_s`` the runtime is signalled (at most half of
    it, at least 10 s)."""
    minutes = max(1, math.ceil(limit_s / 60))
    return min(signal_before_s, max(10, minutes * 60 // 2))


def timestamp(text: str) -> float | None:
    """A Slurm time (ISO, no zone: the commands run with ``TZ=UTC``) as a Unix time."""
    text = text.strip()
    if not text or not text[0].isdigit():
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def gpus(gres: str) -> int:
    """GPUs in a GRES string such as ``gpu:a100:4(S:0-1),gpu:2`` (``(null)``: none)."""
    return sum(to_int(m.group(1)) or 0 for m in re.finditer(r"gpu(?::[^:,(]+)?:(\d+)", gres))


def to_int(text: str) -> int | None:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return None
