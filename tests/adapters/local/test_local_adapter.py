"""The local adapter against real processes: submit, poll, preempt, cancel, lose, offer."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gridbridge.adapter import Adapter, AttemptStatus, Capability, SubmitRejected, SubmitRequest
from gridbridge.adapters.local import LocalAdapter
from gridbridge.config import Capacity, SiteConfig
from gridbridge.job_context import PREEMPTED_EXIT_CODE
from gridbridge.runtime import read_result
from gridbridge.spec import JobSpec, Resources
from gridbridge.states import AttemptState
from tests.support.serving import kill_attempt_groups

DEADLINE_S = 8.0


def site(**options: object) -> SiteConfig:
    # A long grace is only an upper bound: a job that exits on SIGTERM ends the wait at once,
    # so no test depends on the machine being quick. Tests of the SIGKILL path set a short one.
    opts = {"grace_s": 30.0, **options}
    return SiteConfig(
        name="laptop", adapter="local", capacity=Capacity(cpus=4, memory_gb=8), options=opts,
        preemptible=True,
    )


@pytest.fixture
def adapter(tmp_path: Path):  # type: ignore[no-untyped-def]
    a = LocalAdapter(site(), tmp_path / "work")
    yield a
    _kill_leftovers(a)


def _kill_leftovers(a: LocalAdapter) -> None:
    kill_attempt_groups(a.root)  # only the process groups this test started
    a.poll([])  # reap


def py(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", textwrap.dedent(code))


def request(tmp_path: Path, attempt_id: str, command: tuple[str, ...], cpus: int = 1,
            ) -> SubmitRequest:
    job_id, _, n = attempt_id.rpartition(".")
    return SubmitRequest(
        attempt_id=attempt_id,
        job_id=job_id,
        attempt=int(n),
        token=int(n),
        spec=JobSpec(name=job_id, command=command, resources=Resources(cpus=cpus),
                     env={"MARK": "seen"}),
        checkpoint_url=(tmp_path / "ckpt" / job_id).as_uri(),
        attempt_url=(tmp_path / "attempts" / attempt_id).as_uri(),
    )


def wait_for(
    adapter: LocalAdapter, nid: str, done: Callable[[AttemptStatus], bool],
    timeout: float = DEADLINE_S,
) -> tuple[AttemptStatus, list[AttemptState]]:
    seen: list[AttemptState] = []
    deadline = time.monotonic() + timeout
    while True:
        status = adapter.poll([nid])[nid]
        if not seen or seen[-1] != status.state:
            seen.append(status.state)
        if done(status):
            return status, seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{nid} still {status} after {timeout}s; saw {seen}")
        time.sleep(0.05)


def terminal(s: AttemptStatus) -> bool:
    return s.state.terminal


def running(s: AttemptStatus) -> bool:
    return s.state is AttemptState.RUNNING


SLEEPER = py(
    """
    import time
    for _ in range(400):
        time.sleep(0.05)
    """
)


def test_is_an_adapter(adapter: LocalAdapter) -> None:
    assert isinstance(adapter, Adapter)
    assert Capability.ADOPT in adapter.capabilities()
    assert Capability.PREEMPTIBLE in adapter.capabilities()


def test_not_preemptible_site_says_so(tmp_path: Path) -> None:
    s = site().model_copy(update={"preemptible": False})
    assert Capability.PREEMPTIBLE not in LocalAdapter(s, tmp_path).capabilities()


def test_command_succeeds_with_result(adapter: LocalAdapter, tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    cmd = py(
        f"""
        import json, os, time
        time.sleep(0.5)
        keys = ["GRIDBRIDGE_JOB_ID", "GRIDBRIDGE_ATTEMPT", "GRIDBRIDGE_TOKEN", "MARK"]
        json.dump({{k: os.environ.get(k) for k in keys}}, open({str(out)!r}, "w"))
        print("hello from the job")
        """
    )
    req = request(tmp_path, "job-ok.2", cmd)
    nid = adapter.submit(req)
    assert nid == req.attempt_id
    status, seen = wait_for(adapter, nid, terminal)
    assert status.state is AttemptState.SUCCEEDED, status
    assert status.exit_code == 0
    assert set(seen[:-1]) <= {AttemptState.SUBMITTED, AttemptState.RUNNING}
    assert seen[-1] is AttemptState.SUCCEEDED
    assert AttemptState.RUNNING in seen  # it slept half a second: a poll saw it run
    assert json.loads(out.read_text()) == {
        "GRIDBRIDGE_JOB_ID": "job-ok", "GRIDBRIDGE_ATTEMPT": "2", "GRIDBRIDGE_TOKEN": "2",
        "MARK": "seen",
    }
    result = read_result(req.attempt_url)
    assert result is not None
    assert (result.attempt_id, result.reason, result.exit_code) == ("job-ok.2", "succeeded", 0)
    assert result.ended_at >= result.started_at
    assert "hello from the job" in adapter.logs(nid)
    assert (tmp_path / "attempts" / "job-ok.2" / "output.log").exists()


def test_failing_command(adapter: LocalAdapter, tmp_path: Path) -> None:
    req = request(tmp_path, "job-bad.1", py("import sys; sys.exit(3)"))
    status, _ = wait_for(adapter, adapter.submit(req), terminal)
    assert status.state is AttemptState.FAILED
    assert status.exit_code == 3
    assert "3" in status.native_state
    result = read_result(req.attempt_url)
    assert result is not None
    assert (result.reason, result.exit_code) == ("failed", 3)


def test_command_not_found_fails(adapter: LocalAdapter, tmp_path: Path) -> None:
    req = request(tmp_path, "job-nf.1", (str(tmp_path / "no-such-program"),))
    status, _ = wait_for(adapter, adapter.submit(req), terminal)
    assert status.state is AttemptState.FAILED
    assert status.exit_code not in (0, None)


def test_submit_is_idempotent(adapter: LocalAdapter, tmp_path: Path) -> None:
    side = tmp_path / "side.txt"
    cmd = py(
        f"""
        import os, time
        with open({str(side)!r}, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        time.sleep(0.5)
        """
    )
    req = request(tmp_path, "job-idem.1", cmd)
    first = adapter.submit(req)
    second = adapter.submit(req)
    # a restarted reconciler (a new adapter on the same workdir) adopts it too
    third = LocalAdapter(adapter.site, adapter.root.parent.parent).submit(req)
    assert first == second == third == req.attempt_id
    status, _ = wait_for(adapter, first, terminal)
    assert status.state is AttemptState.SUCCEEDED
    assert len(side.read_text().splitlines()) == 1


def test_preempt_with_trapped_sigterm(adapter: LocalAdapter, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    trapped = tmp_path / "trapped"
    cmd = py(
        f"""
        import signal, sys, time, pathlib
        stop = []
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
        pathlib.Path({str(ready)!r}).touch()
        while not stop:
            time.sleep(0.02)
        pathlib.Path({str(trapped)!r}).write_text("checkpointed")
        sys.exit({PREEMPTED_EXIT_CODE})
        """
    )
    req = request(tmp_path, "job-trap.1", cmd)
    nid = adapter.submit(req)
    wait_for(adapter, nid, lambda s: running(s) and ready.exists())
    adapter.preempt(nid)
    status, _ = wait_for(adapter, nid, terminal)
    assert status.state is AttemptState.PREEMPTED, status
    assert trapped.read_text() == "checkpointed"
    result = read_result(req.attempt_url)
    assert result is not None
    assert result.reason == "preempted"
    assert result.exit_code == PREEMPTED_EXIT_CODE


def test_preempt_kills_a_job_that_ignores_sigterm(tmp_path: Path) -> None:
    grace = 0.5
    adapter = LocalAdapter(site(grace_s=grace), tmp_path / "work")
    ready = tmp_path / "ready"
    cmd = py(
        f"""
        import signal, time, pathlib
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pathlib.Path({str(ready)!r}).touch()
        while True:
            time.sleep(0.05)
        """
    )
    req = request(tmp_path, "job-stubborn.1", cmd)
    nid = adapter.submit(req)
    try:
        wait_for(adapter, nid, lambda s: running(s) and ready.exists())
        t0 = time.monotonic()
        adapter.preempt(nid, wait=True)
        assert time.monotonic() - t0 >= grace * 0.9
        status, _ = wait_for(adapter, nid, terminal, timeout=5)
        assert status.state is AttemptState.PREEMPTED, status
        assert "grace" in status.reason
        # the job's process, not only the runtime, is gone
        child_alive = any(
            Path(f"/proc/{p}").exists() and _cmdline_has(p, str(ready)) for p in _pids()
        )
        assert not child_alive
        assert read_result(req.attempt_url) is None
    finally:
        _kill_leftovers(adapter)


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline_has(pid: int, needle: str) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return needle.encode() in cmd and state not in {"Z", "X"}


def test_cancel(adapter: LocalAdapter, tmp_path: Path) -> None:
    req = request(tmp_path, "job-cancel.1", SLEEPER)
    nid = adapter.submit(req)
    wait_for(adapter, nid, running)
    adapter.cancel([nid])
    status, _ = wait_for(adapter, nid, terminal)
    assert status.state is AttemptState.CANCELLED, status


def test_cancel_of_finished_attempt_keeps_its_outcome(adapter: LocalAdapter,
                                                      tmp_path: Path) -> None:
    req = request(tmp_path, "job-done.1", py("pass"))
    nid = adapter.submit(req)
    wait_for(adapter, nid, terminal)
    adapter.cancel([nid])
    assert adapter.poll([nid])[nid].state is AttemptState.SUCCEEDED


def test_killed_process_is_lost(adapter: LocalAdapter, tmp_path: Path) -> None:
    req = request(tmp_path, "job-lost.1", SLEEPER)
    nid = adapter.submit(req)
    wait_for(adapter, nid, running)
    pid = int((adapter.root / nid / "pid").read_text().split()[0])
    os.killpg(pid, signal.SIGKILL)  # the node "died": no result is ever written
    status, _ = wait_for(adapter, nid, terminal)
    assert status.state is AttemptState.LOST, status
    assert status.state is not AttemptState.FAILED
    assert read_result(req.attempt_url) is None
    # another process (a restarted reconciler) comes to the same verdict from the files
    fresh = LocalAdapter(adapter.site, adapter.root.parent.parent)
    assert fresh.poll([nid])[nid].state is AttemptState.LOST


def test_unknown_attempt_is_lost(adapter: LocalAdapter) -> None:
    statuses = adapter.poll(["never-submitted.1", "other.2"])
    assert set(statuses) == {"never-submitted.1", "other.2"}
    assert all(s.state is AttemptState.LOST for s in statuses.values())


def test_poll_is_batched(adapter: LocalAdapter, tmp_path: Path) -> None:
    ok = adapter.submit(request(tmp_path, "job-a.1", py("pass")))
    bad = adapter.submit(request(tmp_path, "job-b.1", py("raise SystemExit(2)")))
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        statuses = adapter.poll([ok, bad])
        if all(s.state.terminal for s in statuses.values()):
            break
        time.sleep(0.05)
    assert statuses[ok].state is AttemptState.SUCCEEDED
    assert statuses[bad].state is AttemptState.FAILED


def test_offers_subtract_running_jobs(adapter: LocalAdapter, tmp_path: Path) -> None:
    (idle,) = adapter.offers()
    assert (idle.site, idle.cpus, idle.memory_gb) == ("laptop", 4, 8)
    a = adapter.submit(request(tmp_path, "job-o1.1", SLEEPER, cpus=3))
    b = adapter.submit(request(tmp_path, "job-o2.1", SLEEPER, cpus=1))
    wait_for(adapter, a, running)
    (busy,) = adapter.offers()
    assert busy.cpus == 0
    assert busy.memory_gb == 8 - 2 * Resources().memory_gb
    adapter.cancel([b])
    wait_for(adapter, b, terminal)
    assert adapter.offers()[0].cpus == 1
    adapter.cancel([a])
    wait_for(adapter, a, terminal)
    assert adapter.offers()[0].cpus == 4


def test_preempting_an_ended_attempt_changes_nothing(tmp_path: Path) -> None:
    """Neither a finished attempt nor one whose runtime died is relabelled preempted, and
    neither takes the site's capacity away."""
    adapter = LocalAdapter(site(reclaim_after_preemption_s=600), tmp_path / "work")
    done = adapter.submit(request(tmp_path, "job-done.1", (sys.executable, "-c", "pass")))
    lost = adapter.submit(request(tmp_path, "job-lost.1", SLEEPER))
    try:
        wait_for(adapter, done, terminal)
        wait_for(adapter, lost, running)
        pid = int((adapter.root / lost / "pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)  # the runtime dies with no result: LOST
        status, _ = wait_for(adapter, lost, terminal)
        assert status.state is AttemptState.LOST
        for nid, state in [(done, AttemptState.SUCCEEDED), (lost, AttemptState.LOST)]:
            adapter.preempt(nid)
            assert adapter.poll([nid])[nid].state is state
        (offer,) = adapter.offers()
        assert offer.cpus == 4 and "reclaimed" not in offer.note
    finally:
        adapter.cancel([lost])  # what the lost runtime left running goes too
        _kill_leftovers(adapter)


def test_no_capacity_while_reclaimed_after_preemption(tmp_path: Path) -> None:
    reclaim = 1.5
    adapter = LocalAdapter(site(reclaim_after_preemption_s=reclaim), tmp_path / "work")
    nid = adapter.submit(request(tmp_path, "job-r.1", SLEEPER))
    try:
        wait_for(adapter, nid, running)
        t0 = time.time()
        adapter.preempt(nid)
        (offer,) = adapter.offers()
        assert time.time() - t0 < reclaim, "the test machine is too slow for this check"
        assert (offer.cpus, offer.memory_gb, offer.gpus) == (0, 0, 0)
        assert "reclaimed" in offer.note
        status, _ = wait_for(adapter, nid, terminal)
        assert status.state is AttemptState.PREEMPTED
        time.sleep(max(0.0, t0 + reclaim + 0.1 - time.time()))
        (offer,) = adapter.offers()
        assert offer.cpus == 4
        assert offer.note == ""
    finally:
        _kill_leftovers(adapter)


HOSTILE_IDS = ["..", "../x", "a/b", "a;b", "a\nb", "abc\n", "", ".hidden", "-x", "a b", "x" * 81]


@pytest.mark.parametrize("nid", HOSTILE_IDS, ids=repr)
def test_hostile_attempt_ids_rejected(adapter: LocalAdapter, nid: str) -> None:
    with pytest.raises(ValueError):
        adapter.poll([nid])
    with pytest.raises(ValueError):
        adapter.cancel([nid])
    with pytest.raises(ValueError):
        adapter.preempt(nid)
    with pytest.raises(ValueError):
        adapter.logs(nid)
    assert sorted(p.name for p in adapter.root.parent.iterdir()) == ["laptop"]


@pytest.mark.parametrize("nid", ["..", "../escape.1", "a\nb.1", "abc.1\n"], ids=repr)
def test_hostile_attempt_id_never_submitted(adapter: LocalAdapter, tmp_path: Path,
                                            nid: str) -> None:
    req = request(tmp_path, "job.1", py("pass")).model_copy(update={"attempt_id": nid})
    with pytest.raises(SubmitRejected):  # nothing started: the reconciler re-places at once
        adapter.submit(req)
    assert list(adapter.root.iterdir()) == []
    assert not (adapter.root.parent / "escape.1").exists()


def test_bad_options_rejected(tmp_path: Path) -> None:
    from pydantic import ValidationError

    bad = site().model_copy(update={"options": {"grace": 1}})
    with pytest.raises(ValidationError):
        LocalAdapter(bad, tmp_path)


def test_an_ended_attempt_leaves_no_process_behind(adapter: LocalAdapter, tmp_path: Path) -> None:
    marker = tmp_path / "bg"
    cmd = ("bash", "-c", f"sleep 300 {str(marker)!r} & exit 0")
    nid = adapter.submit(request(tmp_path, "job-bg.1", cmd))
    status, _ = wait_for(adapter, nid, terminal)
    assert status.state is AttemptState.SUCCEEDED
    deadline = time.monotonic() + DEADLINE_S
    while nid in {o.native_id for o in adapter.owned()}:  # the runtime exits after its result
        assert time.monotonic() < deadline, "something of the attempt still runs"
        time.sleep(0.05)
    assert not any(_cmdline_has(p, str(marker)) for p in _pids()), "the background sleep"


def test_files_a_job_writes_in_its_folder_never_pass_for_the_sites(adapter: LocalAdapter,
                                                                  tmp_path: Path) -> None:
    cmd = py("""
        import json, time
        json.dump({"reason": "failed", "exit_code": 3}, open("result.json", "w"))
        open("pid", "w").write("1 1")
        open("cancelled", "w").write("")
        time.sleep(0.5)
        """)
    nid = adapter.submit(request(tmp_path, "job-cwd.1", cmd))
    status, _ = wait_for(adapter, nid, terminal)
    assert status.state is AttemptState.SUCCEEDED, status


def test_a_job_gets_none_of_this_processs_environment(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a process needs, the site's ``runtime.env_names`` and the job's own: the
    venv's interpreter runs the runtime without the rest, and a prologue still adds to it."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-local-secret")
    monkeypatch.setenv("GB_SITE_HINT", "passed-on")
    monkeypatch.setenv("LC_GB_TEST", "kept")
    cfg = site()
    cfg = cfg.model_copy(update={"runtime": cfg.runtime.model_copy(update={
        "env_names": ("GB_SITE_HINT",), "prologue": ("export GB_FROM_PROLOGUE=1",)})})
    adapter = LocalAdapter(cfg, tmp_path / "work")
    out = tmp_path / "env.json"
    req = request(tmp_path, "job-env.1",
                  py(f"import json, os; json.dump(dict(os.environ), open({str(out)!r}, 'w'))"))
    try:
        nid = adapter.submit(req)
        status, _ = wait_for(adapter, nid, terminal)
    finally:
        _kill_leftovers(adapter)
    assert status.state is AttemptState.SUCCEEDED, status
    env = json.loads(out.read_text())
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert (env["GB_SITE_HINT"], env["LC_GB_TEST"], env["MARK"]) == ("passed-on", "kept", "seen")
    assert (env["GB_FROM_PROLOGUE"], env["GRIDBRIDGE_JOB_ID"]) == ("1", "job-env")
    assert env["PATH"] == os.environ["PATH"] and env["HOME"] == os.environ["HOME"]
    folder = adapter.root / nid
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    for path in (folder / "output.log", folder / "attempt.log",
                 tmp_path / "attempts" / nid / "launch.json"):
        assert oct(path.stat().st_mode & 0o777) == "0o600", path
