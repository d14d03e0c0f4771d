"""The run-folder protocol's table and its readers (``gridbridge.adapters._rundir``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gridbridge.adapters._rundir import (
    MARKERS,
    USED_BY,
    RunFile,
    alive,
    pid_of,
    result_of,
    runtime_alive,
)
from gridbridge.procinfo import proc_start_time
from gridbridge.states import AttemptState
from gridbridge.wire import ScratchFile


def test_every_run_file_says_which_adapters_hold_it() -> None:
    assert set(USED_BY) == set(RunFile)
    assert all(users <= {"local", "edge"} and users for users in USED_BY.values())
    assert set(MARKERS) <= {f for f, users in USED_BY.items() if users == {"local", "edge"}}


def test_the_runtimes_own_files_are_in_the_table_under_the_wires_names() -> None:
    names = {f.value for f in RunFile}
    for f in ScratchFile:
        assert f.value in names, f"the runtime writes {f.value!r}; the run-folder table lacks it"
        assert USED_BY[RunFile(f.value)] == {"local", "edge"}  # every run folder holds them


@pytest.mark.parametrize(("reason", "state"), [
    ("succeeded", AttemptState.SUCCEEDED), ("failed", AttemptState.FAILED),
    ("preempted", AttemptState.PREEMPTED), ("out_of_memory", AttemptState.FAILED),
    ("something new", AttemptState.FAILED)])
def test_a_result_records_reason_is_its_state(reason: str, state: AttemptState) -> None:
    code, got, data = result_of(json.dumps({"exit_code": 3, "reason": reason, "error": "x"}))
    assert (code, got, data["error"]) == (3, state, "x")


@pytest.mark.parametrize("text", ["{", "{}", '{"exit_code": "x", "reason": "failed"}', "[]"])
def test_an_unreadable_result_record_raises_what_the_callers_catch(text: str) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        result_of(text)


def test_the_pid_file_of_a_live_process_reads_alive(tmp_path: Path) -> None:
    me = os.getpid()
    (tmp_path / RunFile.PID).write_text(f"{me} {proc_start_time(me)}\n")
    assert alive(tmp_path / RunFile.PID) and runtime_alive(tmp_path)
    assert pid_of(tmp_path) == me
    (tmp_path / RunFile.PID).write_text(f"{me} 1\n")  # the same pid, another process
    assert not alive(tmp_path / RunFile.PID) and not runtime_alive(tmp_path)
