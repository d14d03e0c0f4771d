"""The run-folder protocol's table and its readers (``gridbridge.adapters._rundir``)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gridbridge.adapters._rundir import (
    MARKERS,
    USED_BY,
    RunFile,
    alive,
    last_words,
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


_LOG = ("gridbridge-run: job j1 attempt 1 on node started\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "botocore.exceptions.EndpointConnectionError: Could not connect to the endpoint URL: "
        '"http://10.213.0.1:8433/b/j1/attempts/1/launch.json"\n'
        "some output after it\n")


@pytest.mark.parametrize(("log", "said"), [
    (_LOG, "botocore.exceptions.EndpointConnectionError: Could not connect to the endpoint URL: "
           '"http://10.213.0.1:8433/b/j1/attempts/1/launch.json"'),
    ("step 1\ngridbridge-run: cannot read the launch record s3://b/x: OSError: gone\n",
     "gridbridge-run: cannot read the launch record s3://b/x: OSError: gone"),
    ("gridbridge-run: job j1 attempt 1 on node started\nstep 1\nstep 2\n", ""),
    ("KeyError\n\tRuntimeError: with a tab" + "x" * 400 + "\n", "KeyError"),
])
def test_the_last_words_are_the_line_that_says_why_and_the_nodes_say_the_same(
        tmp_path: Path, log: str, said: str) -> None:
    (tmp_path / "attempt.log").write_text(log)
    assert last_words(tmp_path / "attempt.log") == said
    lib = Path(__file__).parents[3] / "adapters" / "edge" / "lib.sh"
    node = subprocess.run(["sh", "-c", f'. "{lib}"; last_words "$1"', "sh", str(tmp_path)],
                          capture_output=True, text=True, timeout=10, check=True)
    assert node.stdout.rstrip("\n") == said  # the edge nodes' copy of the rule


def test_no_log_means_no_last_words(tmp_path: Path) -> None:
    assert last_words(tmp_path / "attempt.log") == ""
