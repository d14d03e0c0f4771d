"""The in-job runtime: ``python -m gridbridge.runtime --launch URL [--scratch DIR]``.

Invariant: an attempt runs at most once per launch (a relaunch of a claimed attempt exits
``ALREADY_RAN_EXIT_CODE`` without running the job), and its result record is written last, so
a control plane that reads one sees the whole attempt. It runs on whatever host a site started
it on, sharing nothing with the control plane but storage (:mod:`gridbridge.wire` lists the
records), and it stays light: no pydantic, no fsspec, numpy or zarr for a local attempt::

    --launch <attempt_url>/launch.json[#payload=<digest>]  (the digest: the control plane's;
        a function job runs only if its launch record pins that same payload)
    <attempt_url>/launch.json ──> claim: SCRATCH/started (this host) and <attempt_url>/claim.json
                                  (storage, exclusive) -- a relaunch exits ALREADY_RAN_EXIT_CODE
        ──> SCRATCH/pid; stdout+stderr teed into SCRATCH/attempt.log
        ──> every heartbeat_s: <attempt_url>/heartbeat.json and <attempt_url>/output.log
        ──> run the pickled callable, or the command as a child (SIGTERM/SIGUSR1 forwarded)
        ──> with --imds: a spot interruption notice from the instance metadata service is a
            stop request, as a SIGTERM is (the job checkpoints and exits 75 before the deadline)
        ──> <attempt_url>/output.log, <attempt_url>/result.json, then SCRATCH/result.json last

``SCRATCH`` is a local folder only (default: a folder under the system's temp dir). Exit codes:
0 succeeded, 1 failed (the result's reason says ``out_of_memory`` when ``--memory-gb`` was
exceeded), 75 stopped on request after checkpointing (preempted), 76 this attempt had already
been started (a requeued or duplicated launch; never a success).

The pieces, one idea each: ``_claim`` (run at most once), ``_tee`` (the attempt's log),
``_heartbeat`` (sign of life and log upload), ``_job`` (the command or callable), ``_spot``
(the spot notice), ``_memory`` (memory limits and out-of-memory evidence), ``_loop`` (the flow
above) and ``_cli`` (the command line). The control plane imports none of them: what crosses
over is in :mod:`gridbridge.wire` and :mod:`gridbridge.procinfo`.
"""

from __future__ import annotations

from gridbridge.wire import Launch, Result, load_log, read_result

from ._cli import main
from ._job import user_traceback
from ._loop import run
from ._memory import join_cgroup, limit_memory
from ._spot import SpotWatch

__all__ = [
    "Launch",
    "Result",
    "SpotWatch",
    "join_cgroup",
    "limit_memory",
    "load_log",
    "main",
    "read_result",
    "run",
    "user_traceback",
]
