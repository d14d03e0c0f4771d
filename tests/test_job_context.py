"""``exit_preempted()`` means "resume me": in a command job, whose program is its own Python
process, it leaves with exit status 75 and prints no traceback, as the README says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gridbridge.job_context import PREEMPTED_EXIT_CODE, Preempted


def test_exit_preempted_in_a_program_exits_75_without_a_traceback(tmp_path: Path) -> None:
    env = dict(os.environ, GRIDBRIDGE_JOB_ID="j1", GRIDBRIDGE_ATTEMPT="1",
               GRIDBRIDGE_CHECKPOINT=f"file://{tmp_path}/ckpt")
    program = ("from gridbridge.job_context import context\n"
               "try:\n"
               "    context().exit_preempted()\n"
               "except Exception:\n"  # a job's broad handler must not swallow the exit
               "    raise SystemExit(3)\n")
    out = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == PREEMPTED_EXIT_CODE, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.strip() == ""


def test_preempted_keeps_its_reason() -> None:
    exc = Preempted("stopped at step 7")
    assert str(exc) == "stopped at step 7" and exc.code == PREEMPTED_EXIT_CODE
