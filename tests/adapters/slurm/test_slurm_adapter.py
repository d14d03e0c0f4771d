"""The Slurm adapter piece by piece: its state table and time parser, the sbatch command line
and job script under hostile values, and, on the real Slurm the session starts, names, offers,
ownership, cancel, sacct, logs and allocation pricing.

Tests that need no cluster build ``_Row``s and scripts directly; the rest request the
``slurm_cluster`` fixture, cancel every job they create, and judge only their own jobs (other
sessions may share the cluster).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from pydantic import ValidationError

from gridbridge.adapter import AttemptStatus, Offer, Pricing, SubmitRejected, SubmitRequest
from gridbridge.adapters._batch import check_attempt_id, job_script, runtime_argv, safe_job_name
from gridbridge.adapters._run import Completed, LocalRunner
from gridbridge.adapters.slurm import (
    SLURM_STATES,
    SlurmAdapter,
    SlurmOptions,
    _Row,
    parse_duration,
)
from gridbridge.config import Capacity, SiteConfig, prologue_script
from gridbridge.spec import JobSpec, Resources
from gridbridge.states import AttemptState
from gridbridge.testing.contract import HOSTILE_ARGS, HOSTILE_ATTEMPT_IDS
from gridbridge.wire import launch_arg

pytestmark = pytest.mark.slurm

DEADLINE_S = 30.0
SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")
HOSTILE_NAMES = ["x'; touch pwned #", 'say "hi"', "a;b", "$(touch pwned)", "`id`",
                 "line\nbreak", "with spaces", "tab\there", "ünï", "../..", "-n", ""]


def site(**options: object) -> SiteConfig:
    return SiteConfig(name="cluster", adapter="slurm", capacity=Capacity(cpus=64),
                      price=Pricing(per_core_hour=0.1), options=dict(options))


def request(tmp_path: Path, code: str, *, name: str = "unit.job", walltime_s: float = 600.0,
            ) -> SubmitRequest:
    aid = f"su{uuid.uuid4().hex[:10]}.1"
    job_id = aid.rpartition(".")[0]
    spec = JobSpec(name=name, command=(sys.executable, "-c", textwrap.dedent(code)),
                   resources=Resources(walltime_s=walltime_s, memory_gb=0.25))
    return SubmitRequest(attempt_id=aid, job_id=job_id, attempt=1, token=1, spec=spec,
                         checkpoint_url=(tmp_path / "ckpt" / job_id).as_uri(),
                         attempt_url=(tmp_path / "attempts" / aid).as_uri())


def wait_for(adapter: SlurmAdapter, nid: str,
             done: Callable[[AttemptStatus], bool] = lambda s: s.state.terminal,
             ) -> AttemptStatus:
    deadline = time.monotonic() + DEADLINE_S
    while not done(status := adapter.poll([nid])[nid]):
        assert time.monotonic() < deadline, f"{nid} still {status} after {DEADLINE_S}s"
        time.sleep(0.2)
    return status


def wait_until(predicate: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def sbatch(*args: str) -> str:
    """A job that is none of gridbridge's."""
    done = subprocess.run(["sbatch", "--parsable", "--output=/dev/null", *args],
                          capture_output=True, text=True, check=True, timeout=30)
    return done.stdout.strip().split(";")[0]


def scancel(*ids: str) -> None:
    subprocess.run(["scancel", *ids], capture_output=True, timeout=30, check=False)


def squeue_state(job_id: str) -> str:
    done = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"],
                          capture_output=True, text=True, timeout=30, check=False)
    return done.stdout.strip()


class SpyRunner(LocalRunner):
    """The real commands, each recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str], *, input: str | None = None,
            timeout: float = 30.0, env: Mapping[str, str] | None = None) -> Completed:
        self.calls.append(list(argv))
        return super().run(argv, input=input, timeout=timeout, env=env)


@pytest.fixture
def adapter(tmp_path: Path, slurm_cluster: dict[str, str]) -> Iterator[SlurmAdapter]:
    a = SlurmAdapter(site(partitions={"normal": {}}), tmp_path / "work")
    yield a
    a.cancel([o.native_id for o in a.owned()])


# the state table ----------------------------------------------------------------------------

ISSUE_STATES = {
    "PENDING": AttemptState.SUBMITTED, "RUNNING": AttemptState.RUNNING,
    "PREEMPTED": AttemptState.PREEMPTED, "REQUEUED": AttemptState.SUBMITTED,
    "REQUEUE_HOLD": AttemptState.SUBMITTED, "SUSPENDED": AttemptState.RUNNING,
    "COMPLETING": AttemptState.RUNNING, "COMPLETED": AttemptState.SUCCEEDED,
    "FAILED": AttemptState.FAILED, "CANCELLED": AttemptState.CANCELLED,
    "TIMEOUT": AttemptState.PREEMPTED, "NODE_FAIL": AttemptState.LOST,
    "OUT_OF_MEMORY": AttemptState.FAILED, "BOOT_FAIL": AttemptState.PREEMPTED,
    "DEADLINE": AttemptState.CANCELLED,
}
SLURM_22_05_STATES = {  # squeue(1), JOB STATE CODES
    *ISSUE_STATES, "CONFIGURING", "REQUEUE_FED", "RESV_DEL_HOLD", "REVOKED", "RESIZING",
    "SIGNALING", "SPECIAL_EXIT", "STAGE_OUT", "STOPPED",
}


def status(tmp_path: Path, state: str, **row: object) -> AttemptStatus:
    adapter = SlurmAdapter(site(), tmp_path / "work", runner=LocalRunner())
    return adapter._status(_Row.model_validate({"job_id": "42", "state": state, **row}))


def test_the_table_names_every_state_slurm_22_05_has() -> None:
    assert set(SLURM_STATES) == SLURM_22_05_STATES


@pytest.mark.parametrize(("word", "expected"), ISSUE_STATES.items())
def test_each_slurm_state_maps_as_documented(tmp_path: Path, word: str,
                                             expected: AttemptState) -> None:
    assert SLURM_STATES[word] is expected
    got = status(tmp_path, word, exit_code=0)
    assert got.state is expected
    assert got.native_state == word
    assert got.exit_code == (0 if expected.terminal else None)


@pytest.mark.parametrize("word", ["FAILED", "TIMEOUT"])
def test_exit_75_is_a_checkpointed_stop_not_a_failure(tmp_path: Path, word: str) -> None:
    got = status(tmp_path, word, exit_code=75, time_limit_s=3600.0, elapsed_s=600.0)
    assert got.state is AttemptState.PREEMPTED
    assert got.exit_code == 75
    assert got.walltime is False
    assert "before its time limit" in got.reason


@pytest.mark.parametrize("word", ["FAILED", "TIMEOUT", "PREEMPTED"])
def test_exit_76_is_a_second_launch_and_lost(tmp_path: Path, word: str) -> None:
    got = status(tmp_path, word, exit_code=76)
    assert got.state is AttemptState.LOST
    assert "second launch" in got.reason


@pytest.mark.parametrize(("word", "code", "elapsed_s"), [
    ("TIMEOUT", 0, 3600.0),  # Slurm killed it at the limit
    ("TIMEOUT", 75, 3601.0),
    ("FAILED", 75, 3540.0),  # stopped by --signal, signal_before_s before the limit
])
def test_an_end_at_the_time_limit_is_walltime(tmp_path: Path, word: str, code: int,
                                              elapsed_s: float) -> None:
    got = status(tmp_path, word, exit_code=code, time_limit_s=3600.0, elapsed_s=elapsed_s)
    assert got.state is AttemptState.PREEMPTED
    assert got.walltime is True
    assert got.reason == "time limit reached"


def test_timeout_without_times_is_taken_at_its_word(tmp_path: Path) -> None:
    got = status(tmp_path, "TIMEOUT", exit_code=0)
    assert (got.state, got.walltime) == (AttemptState.PREEMPTED, True)


def test_a_preemption_long_before_the_limit_is_not_walltime(tmp_path: Path) -> None:
    got = status(tmp_path, "PREEMPTED", exit_code=0, time_limit_s=86400.0, elapsed_s=300.0)
    assert (got.state, got.walltime) == (AttemptState.PREEMPTED, False)
    assert got.reason == "preempted by a higher-priority job"


def test_a_boot_failure_is_a_preemption_never_walltime(tmp_path: Path) -> None:
    got = status(tmp_path, "BOOT_FAIL", exit_code=0, time_limit_s=60.0, elapsed_s=60.0)
    assert (got.state, got.walltime) == (AttemptState.PREEMPTED, False)
    assert "boot" in got.reason


def test_cancelled_stays_cancelled_even_with_exit_75(tmp_path: Path) -> None:
    got = status(tmp_path, "CANCELLED", exit_code=75, time_limit_s=3600.0, elapsed_s=3600.0)
    assert got.state is AttemptState.CANCELLED
    assert (got.exit_code, got.walltime) == (75, False)


def test_the_native_word_and_reason_are_kept(tmp_path: Path) -> None:
    assert status(tmp_path, "PENDING", reason="Priority").native_state == "PENDING (Priority)"
    assert status(tmp_path, "PENDING", reason="None").native_state == "PENDING"
    killed = status(tmp_path, "FAILED", exit_code=0, signal=9)
    assert (killed.state, killed.reason) == (AttemptState.FAILED, "killed by signal 9")


def test_an_unknown_state_word_is_reported_not_a_crash(tmp_path: Path) -> None:
    got = status(tmp_path, "HATCHING", exit_code=0)
    assert got.native_state == "HATCHING"
    assert "HATCHING" in got.reason
    assert not got.state.terminal, "an unfamiliar word must not end the attempt"


# parse_duration -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [
    ("infinite", None), ("UNLIMITED", None), ("Partition_Limit", None), ("NOT_SET", None),
    ("1:00", 60.0), ("0:30", 30.0), ("59:59", 3599.0), ("1:00:00", 3600.0),
    ("2-03:04:05", 2 * 86400 + 3 * 3600 + 4 * 60 + 5.0), ("2-03", 2 * 86400 + 3 * 3600.0),
    ("365-00:00:00", None),  # what Slurm prints for a limit of INFINITE minutes
    ("30", 1800.0),  # sbatch --time: a bare number is minutes (%l never prints one)
    (" 1:00\n", 60.0),
])
def test_slurm_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "garbage", "-1", "1-", "1-2-3", "5abc", "1:2:3:4",
                                  "1:xx", "1-xx:00"])
def test_garbage_durations_are_none(text: str) -> None:
    # Fields that are not numbers refuse the whole text (they were once dropped).
    assert parse_duration(text) is None


def test_days_hours_minutes_is_read_as_slurm_means_it() -> None:
    # Not days-minutes:seconds: after a day part the fields are hours, minutes, seconds.
    assert parse_duration("2-03:04") == 2 * 86400 + 3 * 3600 + 4 * 60


# the sbatch command line and the script -----------------------------------------------------

@pytest.mark.parametrize("name", [*HOSTILE_NAMES, *HOSTILE_ARGS, "n" * 200], ids=repr)
def test_job_names_keep_only_safe_characters(name: str) -> None:
    native = safe_job_name(name, "jabc.12")
    assert SAFE_NAME.fullmatch(native), native
    assert native.startswith("gb-") and native.endswith(".12") and len(native) <= 64


def _options(argv: list[str]) -> dict[str, str]:
    pairs = [a.partition("=") for a in argv[1:]]
    return {k: v for k, _, v in pairs}


def test_sbatch_options_are_one_plain_argv_item_each(tmp_path: Path) -> None:
    adapter = SlurmAdapter(site(account="proj-1", qos="high", federation_tag="fedA",
                                signal_before_s=90), tmp_path / "work")
    req = request(tmp_path, "pass", walltime_s=5400.5)
    spec = req.spec.model_copy(update={"name": "x'; touch pwned #\n$(id) a b",
                                       "resources": Resources(cpus=3, memory_gb=1.5, gpus=2,
                                                              walltime_s=5400.5)})
    argv = adapter.sbatch_argv(req.model_copy(update={"spec": spec}), None)
    opts = _options(argv)
    assert argv[0] == "sbatch" and "--parsable" in argv and "--no-requeue" in argv
    assert opts["--job-name"] == "gb-x___touch_pwned_____id__a_b.1"
    assert opts["--comment"] == f"gridbridge:fedA:{req.attempt_id}"
    assert opts["--time"] == "91"  # minutes, rounded up
    assert opts["--signal"] == "B:TERM@90"
    assert (opts["--cpus-per-task"], opts["--mem"], opts["--gres"]) == ("3", "1536M", "gpu:2")
    assert (opts["--account"], opts["--qos"]) == ("proj-1", "high")
    assert opts["--output"] == f"{adapter.host.remote_dir}/slurm-%j.out"
    exported = opts["--export"].split(",")  # by name: what a process needs, never the rest
    assert "PATH" in exported and "AWS_SECRET_ACCESS_KEY" not in exported
    assert "--partition" not in opts
    assert all("\n" not in a for a in argv)


@pytest.mark.parametrize(("field", "options"), [
    ("partitions", {"partitions": {"a;b": {}}}),
    ("partitions", {"partitions": {"gpu queue": {}}}),
    ("partitions", {"partitions": {"normal\n": {}}}),
    ("account", {"account": "acct;rm -rf /"}),
    ("account", {"account": "$(id)"}),
    ("qos", {"qos": "high prio"}),
    ("qos", {"qos": "normal\n"}),
    ("federation_tag", {"federation_tag": "a:b"}),
    ("allocation_core_hours", {"partitions": {"normal": {"allocation_core_hours": 0}}}),
    ("partition", {"partition": "normal"}),  # misspelt
])
def test_hostile_options_are_refused_naming_the_field(tmp_path: Path, field: str,
                                                      options: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match=field):
        SlurmOptions.model_validate(options)
    with pytest.raises(ValidationError, match=field):
        SlurmAdapter(site(**options), tmp_path / "work")


@pytest.mark.parametrize("attempt_id", [*HOSTILE_ATTEMPT_IDS, "a" * 81, "a..b.1"], ids=repr)
def test_hostile_attempt_ids_are_refused_before_any_command(tmp_path: Path,
                                                            attempt_id: str) -> None:
    with pytest.raises(SubmitRejected, match="attempt id"):
        check_attempt_id(attempt_id)
    spy = SpyRunner()
    adapter = SlurmAdapter(site(), tmp_path / "work", runner=spy)
    req = request(tmp_path, "pass").model_copy(update={"attempt_id": attempt_id})
    with pytest.raises(SubmitRejected):
        adapter.submit(req)
    assert spy.calls == []
    assert not (tmp_path / "work").exists() and not (tmp_path / "attempts").exists()


STUB = """\
#!{python}
import json, os, sys
with open({out!r}, "w") as f:
    json.dump({{"argv": sys.argv[1:], "argc": os.environ.get("GB_PROLOGUE_ARGC")}}, f)
"""


def stub_python(tmp_path: Path) -> tuple[str, Path]:
    """An interpreter stand-in, in a folder with a hostile name, that records its argv."""
    folder = tmp_path / "it's \"odd\" $(touch pwned);"
    folder.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "argv.json"
    stub = folder / "stub python"
    stub.write_text(STUB.format(python=sys.executable, out=str(out)))
    stub.chmod(0o755)
    return str(stub), out


HOSTILE_URL = "s3://bucket/it's a \"dir\"/$(touch pwned)/`id`;x/launch.json"
HOSTILE_SCRATCH = "/tmp/sp ace/'q'/$HOME"


def run_script(tmp_path: Path, script: str) -> None:
    path = tmp_path / "job.sh"
    path.write_text(script)
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True,
                           timeout=30, check=False)
    assert check.returncode == 0, check.stderr
    done = subprocess.run(["bash", str(path)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.rglob("pwned"))


def test_the_runtime_argv_arrives_exactly_through_the_script(tmp_path: Path) -> None:
    python, out = stub_python(tmp_path)
    cfg = site().model_copy(update={"runtime": site().runtime.model_copy(
        update={"python": python})})
    argv = runtime_argv(cfg, HOSTILE_URL, HOSTILE_SCRATCH)
    assert argv == [python, "-m", "gridbridge.runtime", "--launch", HOSTILE_URL,
                    "--scratch", HOSTILE_SCRATCH]
    run_script(tmp_path, job_script(cfg, argv, comment="attempt a\nb"))
    assert json.loads(out.read_text())["argv"] == argv[1:]


def test_the_prologue_gets_no_job_values(tmp_path: Path) -> None:
    python, out = stub_python(tmp_path)
    prologue = ("export GB_PROLOGUE_ARGC=$#", "umask 022")
    cfg = site().model_copy(update={"runtime": site().runtime.model_copy(
        update={"python": python, "prologue": prologue})})
    argv = runtime_argv(cfg, HOSTILE_URL, HOSTILE_SCRATCH)
    script = job_script(cfg, argv)
    shebang, _, body = script.partition("\n")
    words = shlex.split(body)  # the exec command, its prologue spanning lines inside quotes
    assert shebang == "#!/bin/bash"
    assert words[:3] == ["exec", "bash", "-c"]
    assert words[3] == prologue_script(prologue), "the prologue text is the operator's only"
    assert words[4:] == ["gridbridge-run", *argv]
    run_script(tmp_path, script)
    assert json.loads(out.read_text()) == {"argv": argv[1:], "argc": str(len(argv))}


# on the real cluster ------------------------------------------------------------------------

def test_a_hostile_spec_name_runs_under_its_sanitised_name(
        tmp_path: Path, adapter: SlurmAdapter) -> None:
    req = request(tmp_path, "print('named')")
    # a name JobSpec would refuse, as if from an older store: the adapter must not rely on it
    spec = req.spec.model_copy(update={"name": "x'; touch pwned #\n$(touch pwned2)"})
    nid = adapter.submit(req.model_copy(update={"spec": spec}))
    shown = subprocess.run(["squeue", "-h", "-t", "all", "-j", nid, "-o", "%j"],
                           capture_output=True, text=True, timeout=30, check=True).stdout
    assert shown.strip() == "gb-x___touch_pwned_____touch_pwned2_.1"
    assert wait_for(adapter, nid).state is AttemptState.SUCCEEDED
    assert not list(tmp_path.rglob("pwned*"))
    assert not Path(adapter.host.remote_dir, "pwned").exists()


def test_submit_hands_the_runtime_its_argv_exactly(tmp_path: Path,
                                                   slurm_cluster: dict[str, str]) -> None:
    python, out = stub_python(tmp_path)
    cfg = site(partitions={"normal": {}})
    cfg = cfg.model_copy(update={"runtime": cfg.runtime.model_copy(update={"python": python})})
    adapter = SlurmAdapter(cfg, tmp_path / "work dir 'q'")
    req = request(tmp_path, "pass")
    odd = tmp_path / "at tempts \"$(touch pwned)\"" / req.attempt_id
    nid = adapter.submit(req.model_copy(update={"attempt_url": str(odd)}))
    try:
        assert wait_for(adapter, nid).state is AttemptState.SUCCEEDED
    finally:
        adapter.cancel([nid])
    launch = f"{odd}/launch.json"  # with the digest of the record the adapter wrote
    pinned = launch_arg(launch, Path(launch).read_bytes())
    assert json.loads(out.read_text())["argv"] == [
        "-m", "gridbridge.runtime", "--launch", pinned,
        "--scratch", f"{adapter.host.remote_dir}/{req.attempt_id}"]
    assert not list(tmp_path.rglob("pwned"))


def test_the_time_is_clamped_to_the_partition_limit(tmp_path: Path,
                                                    slurm_cluster: dict[str, str]) -> None:
    adapter = SlurmAdapter(site(partitions={"short": {}}), tmp_path / "work")
    opts = _options(adapter.sbatch_argv(request(tmp_path, "pass", walltime_s=7200), "short"))
    assert (opts["--time"], opts["--partition"]) == ("1", "short")
    assert opts["--signal"] == "B:TERM@30", "the warning fits inside a one-minute limit"


def test_offers_one_per_partition_keyed_by_name(tmp_path: Path,
                                                slurm_cluster: dict[str, str]) -> None:
    names = ["normal", "short", "scavenger", "priority"]
    adapter = SlurmAdapter(site(partitions={n: {} for n in names}), tmp_path / "work")
    offers = {o.key: o for o in adapter.offers()}
    assert list(offers) == names
    assert offers["short"].max_walltime_s == 60.0
    assert offers["normal"].max_walltime_s is None
    for name, offer in offers.items():
        assert offer.site == "cluster" and offer.shape == {"partition": name}
        assert 0 <= offer.cpus <= 8
        if offer.cpus > 0:
            assert offer.queue_wait_s == 0.0, offer
    assert any(o.cpus > 0 for o in offers.values()), "an idle cluster offers something"


def test_a_foreign_pending_job_takes_its_cpus_from_the_offer(
        tmp_path: Path, slurm_cluster: dict[str, str]) -> None:
    # Two of node3's four CPUs busy, and a foreign job waiting for all four: the two idle
    # CPUs are spoken for. A held job waits for nobody and takes nothing.
    adapter = SlurmAdapter(site(partitions={"scavenger": {}, "priority": {}}), tmp_path / "w")
    busy = sbatch("-p", "priority", "-c", "2", "--wrap", "sleep 60")
    held = sbatch("--hold", "-p", "priority", "-c", "4", "--wrap", "true")
    try:
        wait_until(lambda: squeue_state(busy) == "RUNNING", "the busy job to start")
        before = {o.key: o for o in adapter.offers()}
        waiting = sbatch("-p", "priority", "-c", "4", "--wrap", "true")
        try:
            offers = {o.key: o for o in adapter.offers()}
        finally:
            scancel(waiting)
    finally:
        scancel(busy)
        scancel(held)
    for name in ("scavenger", "priority"):  # the same node: node3
        assert before[name].cpus == 2, before[name]
        assert offers[name].cpus == 0, offers[name]
        assert offers[name].queue_wait_s > 0
        wanted = re.fullmatch(r"(\d+) CPUs wanted by pending jobs", offers[name].note)
        assert wanted and int(wanted.group(1)) == 4, offers[name].note


def test_owned_ignores_other_federations_and_foreign_jobs(
        tmp_path: Path, slurm_cluster: dict[str, str]) -> None:
    tag = f"own{uuid.uuid4().hex[:8]}"
    ours = SlurmAdapter(site(partitions={"normal": {}}, federation_tag=tag), tmp_path / "a")
    theirs = SlurmAdapter(site(partitions={"normal": {}}, federation_tag=f"{tag}-b"),
                          tmp_path / "b")
    sleep = "import time; time.sleep(30)"
    mine, other = request(tmp_path, sleep), request(tmp_path, sleep)
    ids = [ours.submit(mine), theirs.submit(other)]
    try:
        ids += [sbatch("--wrap", "sleep 30"),
                sbatch(f"--comment=gridbridge:{tag}", "--wrap", "sleep 30"),
                sbatch(f"--comment=gridbridge:{tag}x:fake.1", "--wrap", "sleep 30")]
        assert {(o.native_id, o.attempt_id) for o in ours.owned()} == {(ids[0],
                                                                       mine.attempt_id)}
        assert {(o.native_id, o.attempt_id) for o in theirs.owned()} == {(ids[1],
                                                                         other.attempt_id)}
    finally:
        scancel(*ids)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory,
             slurm_cluster: dict[str, str]) -> tuple[SlurmAdapter, str]:
    """One gridbridge job that ran about 1.5 s in ``short``, printed, and exited 3."""
    root = tmp_path_factory.mktemp("finished")
    adapter = SlurmAdapter(site(partitions={"short": {}}), root / "work")
    req = request(root, """
        import time
        print("printed by the finished job", flush=True)
        time.sleep(1.5)
        raise SystemExit(3)
        """)
    nid = adapter.submit(req)
    try:
        assert wait_for(adapter, nid).state is AttemptState.FAILED
    finally:
        adapter.cancel([nid])
    return adapter, nid


def test_logs_return_the_printed_output(finished: tuple[SlurmAdapter, str]) -> None:
    adapter, nid = finished
    wait_until(lambda: "printed by the finished job" in adapter.logs(nid), "the log line")
    assert adapter.logs("999999999") == ""
    with pytest.raises(ValueError, match="Slurm job id"):
        adapter.logs("../../etc/passwd")


def test_sacct_remembers_a_finished_job(finished: tuple[SlurmAdapter, str]) -> None:
    adapter, nid = finished
    rows = adapter._sacct([nid, "999999999"])
    assert set(rows) == {nid}
    row = rows[nid]
    assert (row.state, row.exit_code, row.partition) == ("FAILED", 3, "short")
    assert row.time_limit_s == 60.0
    assert row.elapsed_s is not None and 1 <= row.elapsed_s < 30
    got = adapter._status(row)
    assert (got.state, got.exit_code) == (AttemptState.FAILED, 3)


def test_cancelling_finished_and_garbage_ids_is_harmless(
        tmp_path: Path, finished: tuple[SlurmAdapter, str], adapter: SlurmAdapter) -> None:
    done_adapter, done = finished
    done_adapter.cancel([done])
    adapter.cancel(["", "abc", "-1", "1;rm -rf /", "0", "007", "999999999", "12_3", "1 2"])
    nid = adapter.submit(request(tmp_path, "import time; time.sleep(30)"))
    adapter.cancel(["garbage", "999999999", done, nid])  # the others do not shield it
    assert wait_for(adapter, nid).state is AttemptState.CANCELLED
    assert done_adapter.poll([done])[done].state is AttemptState.FAILED


def test_an_id_scancel_calls_invalid_does_not_shield_the_others(
        tmp_path: Path, adapter: SlurmAdapter) -> None:
    # scancel checks every id before it acts: one it calls invalid ("0") once made it
    # cancel none of them, and cancel() swallowed that error.
    nid = adapter.submit(request(tmp_path, "import time; time.sleep(30)"))
    try:
        adapter.cancel(["0", nid])
        assert wait_for(adapter, nid).state is AttemptState.CANCELLED
    finally:
        scancel(nid)


def test_an_allocation_is_free_until_used_up(finished: tuple[SlurmAdapter, str],
                                             tmp_path: Path) -> None:
    overage = Pricing(per_core_hour=0.5)
    adapter = SlurmAdapter(site(partitions={
        "short": {"allocation_core_hours": 1e-9, "overage": overage.model_dump()},
        "normal": {"allocation_core_hours": 1e9, "overage": overage.model_dump()},
    }), tmp_path / "work")
    offers = {o.key: o for o in adapter.offers()}
    assert offers["short"].price == overage, offers["short"].note
    assert offers["normal"].price == Pricing(), offers["normal"].note
    assert "core-hours used" in offers["short"].note


JOBCOMP = ("JobId={id} UserId=root(0) GroupId=root(0) Name={name} JobState=COMPLETED "
           "Partition={part} TimeLimit=60 StartTime=2020-01-01T10:00:00 "
           "EndTime=2020-01-01T{end} NodeList=node1 NodeCnt=1 ProcCnt={cpus} WorkDir=/tmp "
           "ReservationName= Tres=cpu={cpus},mem=256M,node=1,billing={cpus} Account= QOS= "
           "WcKey= Cluster=unknown SubmitTime=2020-01-01T10:00:00 "
           "EligibleTime=2020-01-01T10:00:00 DerivedExitCode=0:0 ExitCode=0:0 \n")


def test_the_allocation_counts_gridbridge_core_hours_in_its_partition(
        tmp_path: Path, slurm_cluster: dict[str, str]) -> None:
    """The same sacct, reading a job-completion log of known jobs (the cluster's
    configuration with another JobCompLoc): 4 CPUs x 1 h + 2 CPUs x 30 min in ``short``."""
    log = tmp_path / "jobcomp.log"
    log.write_text("".join(JOBCOMP.format(**job) for job in (
        {"id": 1, "name": "gb-a.1", "part": "short", "cpus": 4, "end": "11:00:00"},
        {"id": 2, "name": "gb-b.2", "part": "short", "cpus": 2, "end": "10:30:00"},
        {"id": 3, "name": "wrap", "part": "short", "cpus": 4, "end": "20:00:00"},
        {"id": 4, "name": "gb-c.1", "part": "normal", "cpus": 4, "end": "20:00:00"},
    )))
    conf = re.sub(r"(?m)^JobCompLoc=.*$", f"JobCompLoc={log}",
                  Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")).read_text())
    (tmp_path / "slurm.conf").write_text(conf)
    runner = LocalRunner(env={"SLURM_CONF": str(tmp_path / "slurm.conf")})
    overage = Pricing(per_core_hour=0.5)

    def short_offer(core_hours: float) -> Offer:
        adapter = SlurmAdapter(site(partitions={"short": {
            "allocation_core_hours": core_hours, "overage": overage.model_dump()}}),
            tmp_path / "work", runner=runner)
        return adapter.offers()[0]

    left = short_offer(5.5)
    assert left.price == Pricing()
    assert left.note == "allocation: 5.0 of 5.5 core-hours used"
    assert short_offer(4.9).price == overage


def test_a_relative_remote_dir_still_gets_the_output(
        tmp_path: Path, slurm_cluster: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # With a relative remote_dir (the default over SSH, ".gridbridge/slurm/<site>"), Slurm
    # would resolve --output against --chdir (<dir>/<dir>/slurm-%j.out, which does not
    # exist) and the job would fail before the runtime starts: the adapter makes it absolute.
    monkeypatch.chdir(tmp_path)
    adapter = SlurmAdapter(site(partitions={"normal": {}}, remote_dir="rel/slurm"),
                           tmp_path / "work")
    nid = adapter.submit(request(tmp_path, "print('relative ok')"))
    try:
        assert wait_for(adapter, nid).state is AttemptState.SUCCEEDED
    finally:
        adapter.cancel([nid])
    wait_until(lambda: "relative ok" in adapter.logs(nid), "the log line")


# requeued jobs ----------------------------------------------------------------------------

@pytest.mark.parametrize(("word", "reason", "requeues", "queued"), [
    ("COMPLETING", "None", 1, False),   # still being taken back: not counted yet
    ("PENDING", "BeginTime", 1, False),  # sitting out cred_expire: not counted yet
    ("PENDING", "Resources", 2, True),   # waiting in the queue again: decide now
    ("RUNNING", "None", 2, False),       # already running again: nothing to decide
])
def test_a_requeued_job_counts_once_it_waits_again(tmp_path: Path, word: str, reason: str,
                                                   requeues: int, queued: bool) -> None:
    got = status(tmp_path, word, reason=reason, restarts=2, expected_wait_s=42.0)
    assert got.state is AttemptState.RUNNING, "it lives on under the same id"
    assert (got.requeues, got.queued) == (requeues, queued)
    assert got.queue_wait_s == (42.0 if word == "PENDING" else None)
    assert "requeued by Slurm after a preemption (2x)" in got.reason


def test_a_preempted_word_is_never_walltime_even_near_the_limit(tmp_path: Path) -> None:
    got = status(tmp_path, "PREEMPTED", exit_code=0, time_limit_s=3600.0, elapsed_s=3590.0)
    assert (got.state, got.walltime) == (AttemptState.PREEMPTED, False)
