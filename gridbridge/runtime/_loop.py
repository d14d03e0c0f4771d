"""The loop of one attempt: read the launch record, claim, run the job, publish the result.

Invariant: the result record is written last, to storage first and then to
``SCRATCH/result.json``, so a control plane that sees either sees the whole attempt (a
function's, with the digest of the ``return.pkl`` this runtime wrote); a launch record of
another major format, or a second launch of a claimed attempt, never runs the job; nor does a
launch record whose bytes differ from those the control plane wrote, whose digest the command
line's ``--launch`` argument carries (:func:`gridbridge.wire.launch_target`): a job can
rewrite storage, not the command line.
:mod:`gridbridge.runtime` draws the whole flow.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from gridbridge import job_context as ctx_mod
from gridbridge.procinfo import oom_killed
from gridbridge.units import redact_url
from gridbridge.wire import (
    ALREADY_RAN_EXIT_CODE,
    FORMAT,
    OUT_OF_MEMORY,
    PREEMPTED_EXIT_CODE,
    SPOT_NOTICE,
    FormatMismatch,
    Launch,
    Record,
    Result,
    ScratchFile,
    check_format,
    digest_of,
    launch_target,
    put_bytes,
)

from ._claim import claim
from ._files import read_bytes, write_atomic
from ._heartbeat import Beacon, last_step
from ._job import Outcome, run_callable, run_command
from ._memory import join_cgroup, limit_memory, oom_in_log, oom_words
from ._spot import IMDS_ENDPOINT_ENV, SpotWatch, spot_notice
from ._tee import Tee

__all__ = ["run"]


def run(launch_url: str, scratch: Path | None = None, rerun: int = 0,
        imds: str | None = None, imds_interval_s: float = 5.0,
        memory_gb: float | None = None, memory_cgroup: str | None = None) -> int:
    """Run the attempt whose launch record is at ``launch_url``; returns the exit code.
    ``rerun`` counts the site's own reruns of the attempt (see :func:`main`); ``imds``, the
    instance metadata service to watch for a spot interruption notice; ``memory_gb``, the
    memory the job may use (see :func:`limit_memory`); ``memory_cgroup``, a cgroup made and
    limited for the attempt, which the runtime joins before it starts the job."""
    ctx_mod.install_stop_handlers()  # a SIGTERM from now on is a stop request, not a death
    launch_url, record_digest = launch_target(launch_url)  # the digest: the control plane's
    try:
        data = read_bytes(launch_url)
    except Exception as exc:  # storage unreachable from this host: nothing can be recorded
        print(f"gridbridge-run: cannot read the launch record {redact_url(launch_url)}: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    if record_digest is not None and digest_of(data) != record_digest:
        return _refuse({}, launch_url, (
            f"digest mismatch: the launch record is not the one the control plane wrote "
            f"({record_digest}); it was rewritten, nothing was run"))
    raw: dict[str, Any] = json.loads(data)
    try:
        check_format(raw, "the launch record")
        launch = Launch.model_validate(raw)
    except (FormatMismatch, ValueError) as exc:
        return _refuse(raw, launch_url, str(exc))
    scratch = scratch or Path(tempfile.gettempdir()) / "gridbridge" / launch.attempt_id
    if rerun:
        scratch = scratch / f"rerun-{rerun}"
    scratch = scratch.absolute()  # a function job may chdir before its result is written
    scratch.mkdir(parents=True, exist_ok=True)
    if not claim(scratch, launch, rerun):
        print(f"gridbridge-run: attempt {launch.attempt_id} was already started; this "
              "duplicate launch exits without running it", file=sys.stderr, flush=True)
        return ALREADY_RAN_EXIT_CODE
    tee = Tee(scratch / ScratchFile.ATTEMPT_LOG)  # not output.log: a site may send stdout there
    beacon = Beacon(launch, scratch / ScratchFile.ATTEMPT_LOG)
    started = time.time()
    again = f" (rerun {rerun}: requeued by the site)" if rerun else ""
    print(f"gridbridge-run: job {launch.job_id} attempt {launch.attempt} on "
          f"{socket.gethostname()}{again}", flush=True)
    endpoint = (os.environ.get(IMDS_ENDPOINT_ENV) or imds) if imds else None
    watch = SpotWatch(endpoint, spot_notice, imds_interval_s).start() if endpoint else None
    (code, reason, error), return_digest = _run_job(launch, tee, memory_gb, memory_cgroup)
    if watch is not None:
        watch.stop()
        if watch.notice is not None and code == PREEMPTED_EXIT_CODE:
            reason = "preempted"
            error = f"{SPOT_NOTICE}: {watch.notice.get('action')} at {watch.notice.get('time')}"
    error = _report(scratch, rerun, reason, error)
    result = _result(launch, (code, reason, error), started, return_digest)
    tee.close()
    beacon.stop()
    beacon.upload_log()
    _publish(scratch, launch, result)
    return code


def _run_job(launch: Launch, tee: Tee, memory_gb: float | None,
             memory_cgroup: str | None) -> tuple[Outcome, str | None]:
    """Run the job held to its memory; a failure that ran out of memory says so. Returns the
    outcome and the digest of the function's stored return value (None: none stored)."""
    in_cgroup = join_cgroup(memory_cgroup)
    restore = limit_memory(memory_gb)
    return_digest = None
    try:
        if launch.command is not None:
            code, reason, error = run_command(launch)
        else:
            (code, reason, error), return_digest = run_callable(launch)
    except Exception:  # the runtime itself broke (payload unreadable, storage gone)
        code, reason, error = 1, "failed", traceback.format_exc()
    finally:
        restore()
    if memory_gb is not None and reason == "failed":
        tee.drain()  # the command's last words must be in the log before it is read
        if (in_cgroup and oom_killed(str(memory_cgroup))) or oom_in_log(tee.path):
            reason, error = OUT_OF_MEMORY, f"{oom_words()}\n{error or ''}".rstrip()
    return (code, reason, error), return_digest


def _report(scratch: Path, rerun: int, reason: str, error: str | None) -> str | None:
    """Say in the log how the attempt ended; returns the result's error (a cancel says so)."""
    if reason == "preempted" and _cancelled(scratch, rerun):  # a cancel: never "preempted"
        error = f"cancelled ({error or 'stopped on request'})"
        print(f"gridbridge-run: {error}", file=sys.stderr, flush=True)
    elif error:
        print(f"gridbridge-run: {reason}: {error}", file=sys.stderr, flush=True)
    return error


def _result(launch: Launch, outcome: Outcome, started: float,
            return_digest: str | None) -> Result:
    code, reason, error = outcome
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Result(
        job_id=launch.job_id, attempt=launch.attempt, attempt_id=launch.attempt_id,
        exit_code=code, reason=reason, last_step=last_step(launch),
        wall_s=time.time() - started,
        cpu_s=usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime,
        started_at=started, ended_at=time.time(), host=socket.gethostname(), error=error,
        return_digest=return_digest,
    )


def _cancelled(scratch: Path, rerun: int) -> bool:
    """Whether the site said, before it signalled, that the stop request is a cancel: a site
    that cancels writes ``cancelled`` into the attempt's scratch folder first (the local
    adapter does), so the log does not call a cancel a preemption."""
    base = scratch.parent if rerun else scratch
    return (base / ScratchFile.CANCELLED).exists()


def _refuse(raw: dict[str, Any], launch_url: str, why: str) -> int:
    """A launch record this runtime cannot read or trust: say so in a result record, if it
    can, next to the launch record (``raw``: the record's fields, {} when untrusted)."""
    print(f"gridbridge-run: refusing the launch record {launch_url}: {why}", file=sys.stderr,
          flush=True)
    url = raw.get("attempt_url") or launch_url.rsplit("/", 1)[0]
    now = time.time()
    body = {
        "format": FORMAT, "job_id": str(raw.get("job_id", "")),
        "attempt": int(raw.get("attempt", 0) or 0), "attempt_id": str(raw.get("attempt_id", "")),
        "exit_code": 1, "reason": "failed", "wall_s": 0.0, "cpu_s": 0.0, "started_at": now,
        "ended_at": now, "host": socket.gethostname(), "error": why,
    }
    try:
        put_bytes(f"{url}/{Record.RESULT}", json.dumps(body).encode())
    except Exception as exc:
        print(f"gridbridge-run: could not write the result record: {exc}", file=sys.stderr)
    return 1


def _publish(scratch: Path, launch: Launch, result: Result) -> None:
    body = result.model_dump_json(indent=2)
    put_bytes(f"{launch.attempt_url}/{Record.RESULT}", body.encode())
    write_atomic(scratch / ScratchFile.RESULT, body)
