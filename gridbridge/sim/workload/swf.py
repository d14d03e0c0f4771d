"""Reading Standard Workload Format traces (the Parallel Workloads Archive's ``.swf``).

Invariant: a trace comes back as jobs sorted by (submit time, job number), each with the width,
the real run time and the user's estimate the simulator needs; a malformed line fails with the
file, the line number and the field, never with a bare ``ValueError``.

Which fields are used (1-based, as the archive numbers them)::

    1 job number   2 submit time   4 run time (the truth, revealed only as the job runs)
    5 allocated processors, or 8 requested processors when 5 is -1 (the job's width)
    7 used / 10 requested memory in KB per processor (-1: unknown)
    9 requested time (the user's estimate placement sees; -1: the run time stands in)
    11 status   12 user

Jobs with a run time <= 0 or no known width are dropped and counted (``SwfTrace.dropped``).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SwfError", "SwfJob", "SwfTrace", "read_swf"]

_FIELDS = 18
_NAMES = (
    "job number", "submit time", "wait time", "run time", "allocated processors",
    "average cpu time", "used memory", "requested processors", "requested time",
    "requested memory", "status", "user id", "group id", "executable", "queue", "partition",
    "preceding job", "think time",
)


class SwfError(ValueError):
    """A trace that cannot be read: the message names the file, the line and the field."""


@dataclass(frozen=True)
class SwfJob:
    """One job of a trace, times in seconds from the trace's start."""

    job_id: int
    submit_s: float
    runtime_s: float
    """The real run time (field 4): the simulator reveals it only as the job runs."""
    cores: int
    requested_s: float
    """The user's estimate (field 9); the run time where the trace has none."""
    memory_gb_per_core: float | None
    user: int
    status: int
    group: int = -1
    """The user's group (field 13; -1 where the trace has none)."""


@dataclass(frozen=True)
class SwfTrace:
    """A whole trace: its jobs, what its header says, and what was dropped."""

    path: str
    jobs: tuple[SwfJob, ...]
    max_procs: int | None
    """``MaxProcs`` from the header: the size of the machine the trace was recorded on."""
    unix_start: int | None
    dropped: int
    """Jobs left out: run time <= 0 or unknown width."""
    estimated_from_runtime: int
    """Jobs without a requested time, whose estimate is their real run time."""

    @property
    def name(self) -> str:
        base = Path(self.path).name
        for suffix in (".gz", ".swf"):
            base = base.removesuffix(suffix)
        return base


def _lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="strict") as f:
            yield from f
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise SwfError(f"{path}: cannot read the trace: {exc}") from None


def _number(path: Path, lineno: int, index: int, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SwfError(f"{path}:{lineno}: field {index + 1} ({_NAMES[index]}) is {text!r}, "
                       "not a number") from None
    if not math.isfinite(value):
        raise SwfError(f"{path}:{lineno}: field {index + 1} ({_NAMES[index]}) is {text!r}")
    return value


def _header(line: str, header: dict[str, str]) -> None:
    body = line.lstrip(";").strip()
    key, sep, value = body.partition(":")
    if sep and key.strip() and " " not in key.strip():
        header.setdefault(key.strip(), value.strip())


def _header_int(path: Path, header: dict[str, str], key: str) -> int | None:
    if key not in header:
        return None
    try:
        return int(header[key].split()[0])
    except (ValueError, IndexError):
        raise SwfError(f"{path}: header {key!r} is {header[key]!r}, not a whole number") from None


def _job(path: Path, lineno: int, fields: list[str]) -> SwfJob | None:
    v = [_number(path, lineno, i, text) for i, text in enumerate(fields)]
    if v[1] < 0:
        raise SwfError(f"{path}:{lineno}: field 2 (submit time) is negative ({fields[1]})")
    cores = int(v[4]) if v[4] > 0 else int(v[7]) if v[7] > 0 else 0
    runtime = v[3]
    if cores <= 0 or runtime <= 0:
        return None
    memory_kb = v[9] if v[9] > 0 else v[6] if v[6] > 0 else None
    return SwfJob(
        job_id=int(v[0]), submit_s=v[1], runtime_s=runtime, cores=cores,
        requested_s=v[8] if v[8] > 0 else -1.0,
        memory_gb_per_core=None if memory_kb is None else memory_kb / 2**20,
        user=int(v[11]), status=int(v[10]), group=int(v[12]),
    )


def read_swf(path: str | Path, limit: int | None = None) -> SwfTrace:
    """Read an SWF trace (plain or gzip). ``limit``: keep only the first that many data lines.

    Raises :class:`SwfError` for a missing file, a data line without 18 fields, a field that is
    not a number, a negative submit time or a trace without a single usable job.
    """
    p = Path(path)
    if not p.is_file():
        raise SwfError(f"{p}: no such trace file")
    header: dict[str, str] = {}
    jobs: list[SwfJob] = []
    dropped = estimated = seen = 0
    for lineno, raw in enumerate(_lines(p), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(";"):
            _header(line, header)
            continue
        fields = line.split()
        if len(fields) != _FIELDS:
            raise SwfError(f"{p}:{lineno}: {len(fields)} fields, an SWF line has {_FIELDS}")
        seen += 1
        if limit is not None and seen > limit:
            break
        job = _job(p, lineno, fields)
        if job is None:
            dropped += 1
            continue
        if job.requested_s <= 0:
            estimated += 1
            job = SwfJob(**{**job.__dict__, "requested_s": job.runtime_s})
        jobs.append(job)
    if not jobs:
        raise SwfError(f"{p}: no usable job (every data line had run time <= 0 or no width)")
    jobs.sort(key=lambda j: (j.submit_s, j.job_id))
    return SwfTrace(path=str(p), jobs=tuple(jobs), max_procs=_header_int(p, header, "MaxProcs"),
                 unix_start=_header_int(p, header, "UnixStartTime"), dropped=dropped,
                 estimated_from_runtime=estimated)
