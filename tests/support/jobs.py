"""Job functions the client tests submit. They are pickled by value (see the tests), so the
runtime's fresh interpreter needs no access to the tests folder."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

BLAS_SETTINGS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                 "NVPL_BLAS_DEBUG_CPU_TYPE", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""For a site's ``runtime.env_names`` where a test compares a job's weights bit for bit with
a run in the test process: a site passes on only what it is told to (an SSH session or an
``sbatch --export=NONE`` job starts without this process's environment), and OpenBLAS could
pick another kernel there (an ``OPENBLAS_CORETYPE`` set here changed the weights' last bits)."""


def add(a: int, b: int, *, scale: int = 1) -> int:
    return (a + b) * scale


def boom(message: str) -> None:
    raise ValueError(message)


def sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _resume(ctx: Any) -> tuple[int, Any]:
    """The step and sums to go on from: the last checkpoint's, or the start."""
    if ctx.checkpoint.latest() is None:
        return 0, np.zeros(4, dtype=np.int64)
    ck = ctx.checkpoint.restore()
    print(f"resumed from step {ck.step}", flush=True)
    return ck.step, np.asarray(ck.state["acc"])


def counter(total: int, every: int) -> int:
    """Count to ``total``, checkpointing every ``every`` steps and stopping when asked."""
    import gridbridge

    ctx = gridbridge.context()
    start, acc = _resume(ctx)
    for step in range(start, total):
        acc += np.arange(4, dtype=np.int64) * step
        time.sleep(0.01)
        done = step + 1
        if done % every == 0 or ctx.should_stop():
            ctx.checkpoint.save(done, {"acc": acc})
        if ctx.should_stop() and done < total:
            ctx.exit_preempted()
    return int(acc.sum())


def stubborn_counter(total: int, every: int) -> int:
    """Like :func:`counter`, but it never honours a stop request: only a kill stops it, and it
    goes on from its last periodic checkpoint when it runs again."""
    import gridbridge

    ctx = gridbridge.context()
    start, acc = _resume(ctx)
    for step in range(start, total):
        acc += np.arange(4, dtype=np.int64) * step
        time.sleep(0.01)
        if (step + 1) % every == 0:
            ctx.checkpoint.save(step + 1, {"acc": acc})
    return int(acc.sum())
