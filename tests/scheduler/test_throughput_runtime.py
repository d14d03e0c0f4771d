"""The control plane's per-tick work stays per tick, not per job (no timings here: those live
in ``benchmarks/throughput.py``), and what the runtime tells a user when a job goes wrong."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from gridbridge.client import Client
from gridbridge.config import load_config
from gridbridge.scheduler.store import StateStore
from gridbridge.spec import JobSpec, Owner
from gridbridge.states import AttemptState, JobState


def _config(tmp_path: Path, **limits: float) -> Path:
    path = tmp_path / "gridbridge.yaml"
    path.write_text(yaml.safe_dump({
        "state_url": "sqlite:///state.db", "checkpoint_root": "ckpt", "workdir": "run",
        "limits": {"tick_interval_s": 0.1, "lease_s": 30, **limits},
        "sites": [{"name": "here", "adapter": "local", "tier": "cloud",
                   "capacity": {"cpus": 2}, "price": {"per_core_hour": 0.02}}],
    }))
    return path


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    c = Client(_config(tmp_path), start=False)
    yield c
    c.close()


def _spec(name: str = "j", team: str = "t", user: str = "u") -> JobSpec:
    return JobSpec(name=name, command=("true",), owner=Owner(user=user, team=team))


# the store -----------------------------------------------------------------------------------


def test_jobs_are_filtered_limited_and_counted_in_the_database(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 's.db'}")
    for i in range(6):
        store.create_job(_spec(name=f"n{i % 2}", team="a" if i < 4 else "b"), "file:///x")
    assert store.count_jobs() == 6
    assert store.count_jobs(team="a") == 4
    assert store.count_jobs([JobState.PENDING], team="b", name="n1") == 1
    newest = store.jobs(limit=2, team="a")
    assert [j.name for j in newest] == ["n1", "n0"]
    assert all(j.spec.owner.team == "a" for j in store.jobs(team="a"))
    with pytest.raises(TypeError, match="cannot match jobs on colour"):
        store.jobs(colour="red")
    store.close()


def test_an_older_store_gets_the_listing_index_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    StateStore(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:
        db.execute("DROP INDEX ix_jobs_created_at")
    StateStore(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "ix_jobs_created_at" in names


def test_owners_of_many_jobs_in_one_read(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 's.db'}")
    a = store.create_job(_spec(team="vision"), "file:///x")
    b = store.create_job(_spec(team="nlp"), "file:///y")
    assert store.owners([a.id, b.id, a.id]) == {a.id: ("vision", "default"),
                                                b.id: ("nlp", "default")}
    assert store.owners([]) == {}
    store.close()


def test_the_latest_sites_of_many_jobs_in_one_read(tmp_path: Path) -> None:
    from sqlalchemy import event

    store = StateStore(f"sqlite:///{tmp_path / 's.db'}")
    ran, waits = store.create_job(_spec(), "file:///x"), store.create_job(_spec(), "file:///y")
    assert store.new_attempt(ran.id, "here", "file:///x", "t") is not None
    statements: list[str] = []
    for engine in {store.engine, store._read_engine}:  # reads may have an engine of their own
        event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    assert store.last_sites([ran.id, waits.id]) == {ran.id: "here"}
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1
    assert store.last_sites([]) == {}
    store.close()


def test_many_attempts_move_in_one_write_each_by_compare_and_set(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 's.db'}")
    attempts = []
    for _ in range(3):
        job = store.create_job(_spec(), "file:///x")
        attempt = store.new_attempt(job.id, "here", "file:///x", "t")
        assert attempt is not None
        attempts.append(attempt)
    first, *rest = attempts
    assert store.set_native_id(first.id, "n0", "t")  # already moved: the batch leaves it
    moved = store.set_native_ids([(a.id, f"n-{a.id}") for a in attempts], "t")
    assert moved == {a.id for a in rest}
    assert store.attempt(first.id).native_id == "n0"
    now = {a.id: a for a in store.active_attempts()}
    stale = now[first.id]
    assert store.mark_running(stale, "R", "t")
    started = store.mark_running_many([(now[a.id], "R") for a in attempts], "t")
    assert started == {a.id for a in rest}  # the stale snapshot of the first is refused
    assert {store.job(a.job_id).state for a in attempts} == {JobState.RUNNING}
    story = [e for e in store.events(first.job_id) if e.kind == "attempt"]
    assert [e.new for e in story] == ["SUBMITTING", "SUBMITTED", "RUNNING"]
    store.close()


def test_a_tick_records_a_sites_submissions_and_starts_in_one_write_each(
    client: Client, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for i in range(2):
        client.store.create_job(_spec().model_copy(update={"command": ("sleep", "30")}),
                                _own_prefix(client, i))
    calls: list[str] = []
    for name in ("set_native_id", "set_native_ids", "mark_running", "mark_running_many"):
        real = getattr(client.store, name)
        monkeypatch.setattr(client.store, name,
                            lambda *a, _n=name, _r=real, **k: calls.append(_n) or _r(*a, **k))
    try:
        assert len(client.reconciler.tick().submitted) == 2
        for _ in range(200):
            if len(client.reconciler.tick().started) == 2 or len(
                    [a for a in client.store.active_attempts()
                     if a.state is AttemptState.RUNNING]) == 2:
                break
            import time

            time.sleep(0.05)
        assert calls.count("set_native_ids") == 1 and "set_native_id" not in calls
        assert "mark_running" not in calls and calls.count("mark_running_many") >= 1
    finally:
        _cancel_all(client)


# the reconciler ------------------------------------------------------------------------------


def test_a_tick_renews_the_lease_once_not_per_phase(client: Client,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    writes = []
    real = client.store.acquire_lease
    monkeypatch.setattr(client.store, "acquire_lease",
                        lambda *a, **k: writes.append(a) or real(*a, **k))
    rec = client.reconciler
    rec.tick()
    rec.tick()
    assert len(writes) == 1  # taken once; the phases and the next tick only check it


def test_a_lease_taken_over_mid_tick_still_stops_the_tick(client: Client) -> None:
    from gridbridge.scheduler.reconciler import LEASE, LeaseLost

    rec = client.reconciler
    rec.tick()
    client.store.release_lease(LEASE, rec.holder)
    assert client.store.acquire_lease(LEASE, "someone-else", 30) is not None
    with pytest.raises(LeaseLost):
        rec.keeper.renew()
    assert rec.tick().placed == {}  # and the next tick does nothing


def test_a_pending_job_is_not_listed_in_its_checkpoint_store_every_tick(
    client: Client, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gridbridge import checkpoint

    job = client.store.create_job(_spec(), client.config.checkpoint_root + "/j")
    attempt = client.store.new_attempt(job.id, "here", client.config.checkpoint_root + "/j",
                                       "test")
    assert attempt is not None
    from gridbridge.scheduler.records import AttemptEnding

    client.store.conclude(attempt, AttemptEnding(
        state=AttemptState.PREEMPTED, native_state="gone", reason="", job_state=JobState.PENDING,
        job_reason="preempted"), "test")
    opened = []
    real = checkpoint.open
    monkeypatch.setattr(checkpoint, "open", lambda *a, **k: opened.append(a) or real(*a, **k))
    rec = client.reconciler
    pending = client.store.job(job.id)
    for _ in range(3):
        rec.placing.progress.checkpoint_cost(pending)
        rec.placing.progress.remaining(pending)
    assert len(opened) == 1
    again = client.store.new_attempt(job.id, "here", client.config.checkpoint_root + "/j", "t")
    assert again is not None  # a new attempt may commit: the next pending spell reads again
    client.store.conclude(again, AttemptEnding(
        state=AttemptState.PREEMPTED, native_state="gone", reason="", job_state=JobState.PENDING,
        job_reason="preempted"), "test")
    rec.placing.progress.checkpoint_cost(client.store.job(job.id))
    assert len(opened) == 2


def test_budgets_read_the_owners_of_live_attempts_in_one_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["budgets"] = {"teams": {"t": 100.0}}
    path.write_text(yaml.safe_dump(data))
    c = Client(load_config(path), start=False)
    try:
        for _ in range(3):
            job = c.store.create_job(_spec(), "file:///x")
            card = '{"expected_cost": 2.5}'
            c.store.new_attempt(job.id, "here", "file:///x", "t", offer=("default", card))
        monkeypatch.setattr(c.store, "job", lambda *_: pytest.fail("one job read per attempt"))
        left = c.reconciler.placing.budgets_left(0.0)
        assert left is not None and left["team:t"] == pytest.approx(100.0 - 7.5)
    finally:
        c.close()


def test_a_placement_rounds_attempts_and_decisions_are_stored_in_one_write_each(
    client: Client, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for i in range(4):  # two fit, two wait
        client.store.create_job(_spec().model_copy(update={"command": ("sleep", "30")}),
                                _own_prefix(client, i))
    writes = []
    real = client.store.record_decisions
    monkeypatch.setattr(client.store, "record_decisions",
                        lambda rows, **k: writes.append(len(rows)) or real(rows, **k))
    monkeypatch.setattr(client.store, "new_attempt", lambda *a, **k: pytest.fail("one by one"))
    batches = []
    real_new = client.store.new_attempts
    monkeypatch.setattr(client.store, "new_attempts",
                        lambda reqs, actor: batches.append(len(reqs)) or real_new(reqs, actor))
    try:
        report = client.reconciler.tick()
        assert len(report.placed) == 2
        assert len(writes) == 1 and writes[0] >= 4
        assert batches == [2]
        waiting = [e for j in client.store.jobs() for e in client.store.events(j.id)
                   if e.kind == "waiting"]
        assert len(waiting) == 2 and all(e.reason.startswith("waiting: here") for e in waiting)
    finally:
        _cancel_all(client)


def test_a_waiting_job_is_explained_again_only_every_few_seconds(
    client: Client, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Explaining a decision is a pass over every offer: a job that keeps waiting is not
    explained on every tick, only when it is new and then every few seconds."""
    from gridbridge.scheduler.reconciler._explaining import REEXPLAIN_S

    now = [1_000_000.0]
    monkeypatch.setattr(client.reconciler, "clock", lambda: now[0])
    for i in range(3):  # two fit, one waits
        client.store.create_job(_spec().model_copy(update={"command": ("sleep", "30")}),
                                _own_prefix(client, i))
    explained: list[str] = []
    real = client.reconciler.placing.explaining.record
    monkeypatch.setattr(client.reconciler.placing.explaining, "record",
                        lambda d, job, at: explained.append(job.id) or real(d, job, at))
    try:
        client.reconciler.tick()
        assert len(explained) == 3  # the two placed, and the one that waits
        (waits,) = client.store.jobs([JobState.PENDING])
        for _ in range(3):
            now[0] += 1.0
            client.reconciler.tick()
        assert explained.count(waits.id) == 1
        now[0] += REEXPLAIN_S
        client.reconciler.tick()
        assert explained.count(waits.id) == 2
        assert client.store.detail(waits.id) == "waiting: here: needs 1 cpus, 0 free"
    finally:
        _cancel_all(client)


def test_map_checks_once_whether_its_jobs_could_ever_run(
    client: Client, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every job of a map() has the same options, so admission is asked once; a map no site
    could ever run is refused before anything is submitted."""
    from gridbridge.scheduler import admission

    calls = []
    real = admission.check_admissible
    monkeypatch.setattr(admission, "check_admissible",
                        lambda spec, config: calls.append(spec) or real(spec, config))
    futures = client.map(abs, [-1, -2, -3])
    assert len(futures) == 3 and len(calls) == 1
    with pytest.raises(ValueError, match="needs 64 cpus"):
        client.map(abs, [1, 2], cpus=64)
    assert client.store.count_jobs() == 3


def test_a_submission_wakes_the_reconciler(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    c = Client(_config(tmp_path, tick_interval_s=600), start=False)
    ticked = threading.Event()
    real = c.reconciler.tick
    calls = []

    def tick() -> object:
        calls.append(1)
        if len(calls) > 1:
            ticked.set()
        return real()

    monkeypatch.setattr(c.reconciler, "tick", tick)
    c.start()
    try:
        c.submit_command([sys.executable, "-c", "pass"])
        assert ticked.wait(60), "the reconciler slept through the tick interval"
    finally:
        c.close()


def test_an_attempt_that_ends_wakes_the_reconciler(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The local adapter tells the reconciler when a runtime exits: the job's end is seen at
    once, not at the end of a tick interval (here ten minutes)."""
    monkeypatch.chdir(tmp_path)
    with Client(_config(tmp_path, tick_interval_s=600)) as c:
        future = c.submit_command([sys.executable, "-c", "pass"])
        assert future.wait(timeout=60) is JobState.SUCCEEDED


def test_wire_records_name_the_field_that_is_wrong() -> None:
    from gridbridge.wire import Launch

    good = {"job_id": "j", "attempt": 1, "attempt_id": "j.1", "token": 2,
            "checkpoint_url": "c", "attempt_url": "a", "command": ["echo", "x"],
            "newer_field": 1}
    launch = Launch.model_validate(good)
    assert launch.command == ("echo", "x") and launch.heartbeat_s == 10.0
    assert Launch.model_validate(json.loads(launch.model_dump_json())) == launch
    for bad, words in [({**good, "token": "2"}, "Launch.token: expected int"),
                       ({**good, "attempt": True}, "Launch.attempt: expected int"),
                       ({**good, "command": "echo x"}, "Launch.command"),
                       ({**good, "env": {"A": 1}}, "Launch.env"),
                       ({k: v for k, v in good.items() if k != "job_id"},
                        "missing field(s) job_id"),
                       ([good], "expected a JSON object")]:
        with pytest.raises(ValueError, match=re.escape(words)):
            Launch.model_validate(bad)


# the runtime ---------------------------------------------------------------------------------


def test_a_trivial_local_job_does_not_import_the_storage_stack(tmp_path: Path) -> None:
    """Its start-up is what a trivial job costs: no fsspec, no numpy for a local attempt, and
    neither pydantic nor the client (the package's names are imported when first used)."""
    import cloudpickle

    from gridbridge.wire import Launch

    attempt = tmp_path / "ckpt" / "j" / "attempts" / "1"
    attempt.mkdir(parents=True)
    payload = tmp_path / "payload.pkl"
    payload.write_bytes(cloudpickle.dumps((sum, ([1, 2],), {})))
    launch = Launch(job_id="j", attempt=1, attempt_id="j.1", token=1,
                    checkpoint_url=(tmp_path / "ckpt" / "j").as_uri(),
                    attempt_url=attempt.as_uri(), callable_ref=payload.as_uri(),
                    heartbeat_s=60)
    (attempt / "launch.json").write_text(launch.model_dump_json())
    code = ("import sys; from gridbridge import runtime; "
            f"rc = runtime.main(['--launch', {str(attempt / 'launch.json')!r}, "
            f"'--scratch', {str(tmp_path / 'scratch')!r}]); "
            "print('LOADED', sorted(m for m in ('fsspec', 'numpy', 'zarr', 'pydantic', "
            "'gridbridge.client', 'gridbridge.config') if m in sys.modules));"
            "sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout
    assert (attempt / "claim.json").exists() and (attempt / "result.json").exists()


# what a user is told -------------------------------------------------------------------------

_USER_SCRIPT = '''
import sys
import cloudpickle


def helper(x):
    return 1 / x


def boom(x):
    y = x - 1
    return helper(y)


if __name__ == "__main__":
    with open(sys.argv[1], "wb") as f:
        f.write(cloudpickle.dumps((boom, (1,), {})))
'''


def _local_site(tmp_path: Path):  # type: ignore[no-untyped-def]
    from gridbridge.adapters.local import LocalAdapter
    from gridbridge.config import Capacity, SiteConfig

    return LocalAdapter(SiteConfig(name="laptop", adapter="local",
                                   capacity=Capacity(cpus=4, memory_gb=8),
                                   options={"grace_s": 30.0}), tmp_path / "work")


def _request(tmp_path: Path, attempt_id: str, **target: object):  # type: ignore[no-untyped-def]
    from gridbridge.adapter import SubmitRequest

    job_id = attempt_id.rsplit(".", 1)[0]
    return SubmitRequest(
        attempt_id=attempt_id, job_id=job_id, attempt=1, token=1,
        spec=JobSpec(name=job_id, **target),  # type: ignore[arg-type]
        checkpoint_url=(tmp_path / "ckpt" / job_id).as_uri(),
        attempt_url=(tmp_path / "attempts" / attempt_id).as_uri())


def _own_prefix(client: Client, i: int) -> str:
    """A checkpoint prefix of its own for the i-th job a test writes straight into the store:
    outside the checkpoint root (whose prefixes belong to the jobs named after them), and one
    per job (a fence names the job that owns its prefix)."""
    return f"{client.config.checkpoint_root}-own/{i}"


def _cancel_all(client: Client) -> None:
    """Cancel what the test left running on site ``here``."""
    ids = [a.native_id for a in client.store.active_attempts() if a.native_id]
    client.adapters["here"].cancel(ids)


def _until(adapter, nid: str, done, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    from gridbridge.testing.contract import poll_until

    return poll_until(adapter, nid, done, timeout, every=0.05)


def test_a_failing_functions_traceback_names_the_users_file_and_line(tmp_path: Path) -> None:
    from gridbridge.runtime import read_result

    script = tmp_path / "train_model.py"
    script.write_text(_USER_SCRIPT)
    payload = tmp_path / "payload.pkl"
    subprocess.run([sys.executable, str(script), str(payload)], check=True, timeout=60)
    adapter = _local_site(tmp_path)
    req = _request(tmp_path, "job-tb.1", callable_ref=payload.as_uri())
    status = _until(adapter, adapter.submit(req), lambda s: s.state.terminal)
    assert status.state is AttemptState.FAILED
    result = read_result(req.attempt_url)
    assert result is not None and result.error is not None
    error = result.error
    assert "<dynamic-code>" not in error
    assert f'File "{script}", line 12, in boom' in error
    assert "return helper(y)" in error
    assert f'File "{script}", line 7, in helper' in error
    assert "return 1 / x" in error
    assert "ZeroDivisionError" in error
    assert "gridbridge/runtime/" not in error  # the runtime's own frame is not the user's


def test_a_missing_command_is_one_line(tmp_path: Path) -> None:
    from gridbridge.runtime import read_result

    adapter = _local_site(tmp_path)
    missing = str(tmp_path / "no-such-program")
    req = _request(tmp_path, "job-nf.1", command=(missing, "--flag"))
    status = _until(adapter, adapter.submit(req), lambda s: s.state.terminal)
    assert status.state is AttemptState.FAILED
    assert status.exit_code == 127
    result = read_result(req.attempt_url)
    assert result is not None
    assert result.error == f"command not found: {missing}"
    log = adapter.logs("job-nf.1")
    assert f"command not found: {missing}" in log
    assert "Traceback" not in log


def test_a_cancelled_attempts_log_says_cancelled(tmp_path: Path) -> None:
    adapter = _local_site(tmp_path)
    sleeper = (sys.executable, "-c", "import time\nfor _ in range(600): time.sleep(0.05)")
    req = _request(tmp_path, "job-cancel.1", command=sleeper)
    nid = adapter.submit(req)
    _until(adapter, nid, lambda s: s.state is AttemptState.RUNNING)
    adapter.cancel([nid])
    status = _until(adapter, nid, lambda s: s.state.terminal)
    assert status.state is AttemptState.CANCELLED
    log = adapter.logs(nid)
    assert "gridbridge-run: cancelled" in log
    assert "preempted" not in log


# memory --------------------------------------------------------------------------------------

_GREEDY = "data = bytearray(3 * 2**30)\nprint('allocated', len(data))\n"


def _fn_payload(tmp_path: Path, size: int) -> str:
    import cloudpickle

    path = tmp_path / f"alloc-{size}.pkl"
    allocate = lambda n: len(bytearray(n))  # noqa: E731 - a lambda travels by value
    path.write_bytes(cloudpickle.dumps((allocate, (size,), {})))
    return path.as_uri()


@pytest.mark.parametrize("kind", ["function", "command"])
def test_a_job_over_its_memory_fails_out_of_memory(tmp_path: Path, kind: str) -> None:
    from gridbridge.spec import Resources

    adapter = _local_site(tmp_path)
    target: dict[str, object] = (
        {"callable_ref": _fn_payload(tmp_path, 3 * 2**30)} if kind == "function"
        else {"command": (sys.executable, "-c", _GREEDY)})
    req = _request(tmp_path, f"job-oom-{kind}.1", resources=Resources(memory_gb=1), **target)
    status = _until(adapter, adapter.submit(req), lambda s: s.state.terminal)
    assert status.state is AttemptState.FAILED, status
    assert status.native_state == "out-of-memory"
    assert "out of memory" in status.reason and "memory_gb=1" in status.reason
    assert "allocated" not in adapter.logs(req.attempt_id)


def test_a_job_within_its_memory_succeeds(tmp_path: Path) -> None:
    from gridbridge.spec import Resources

    adapter = _local_site(tmp_path)
    req = _request(tmp_path, "job-fits.1", callable_ref=_fn_payload(tmp_path, 300 * 2**20),
                   resources=Resources(memory_gb=1))
    status = _until(adapter, adapter.submit(req), lambda s: s.state.terminal)
    assert status.state is AttemptState.SUCCEEDED, status


def test_out_of_memory_ends_the_job_failed_with_the_reason(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    c = Client(_config(tmp_path), start=False)
    try:
        future = c.submit_command([sys.executable, "-c", _GREEDY], memory_gb=1)
        for _ in range(600):
            c.reconciler.tick()
            if future.done():
                break
            import time

            time.sleep(0.1)
        assert future.status() is JobState.FAILED
        job = c.store.job(future.job_id)
        assert job.error is not None and "out of memory" in job.error
    finally:
        c.close()


# memory cgroups ------------------------------------------------------------------------------

_TWO_HOGS = '''
import subprocess, sys
hog = "import time\\ndata = b'x' * (700 * 2**20)\\ntime.sleep(4)\\nprint('allocated', len(data))"
procs = [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(2)]
sys.exit(1 if any(p.wait() for p in procs) else 0)
'''
"""Two processes of 700 MB each: under a 1 GiB RLIMIT_DATA each, over 1 GiB together."""


def _memory_cgroups():  # type: ignore[no-untyped-def]
    from gridbridge.adapters._cgroup import find_parent

    groups = find_parent("auto")
    if groups is None:
        pytest.skip("no memory cgroup this process may make groups in (RLIMIT_DATA alone)")
    return groups


def test_an_attempt_is_held_to_its_memory_as_a_whole_by_its_cgroup(tmp_path: Path) -> None:
    """Each process fits the per-process limit; together they do not, and the kernel's OOM
    killer, in the attempt's own cgroup, ends it FAILED out of memory. The group is removed
    once the attempt ended."""
    import time

    from gridbridge.spec import Resources

    groups = _memory_cgroups()
    adapter = _local_site(tmp_path)
    req = _request(tmp_path, "job-hogs.1", command=(sys.executable, "-c", _TWO_HOGS),
                   resources=Resources(memory_gb=1))
    nid = adapter.submit(req)
    group = groups.parent / "gridbridge-job-hogs.1"
    limit_file = "memory.max" if groups.version == 2 else "memory.limit_in_bytes"
    assert int((group / limit_file).read_text()) == 2**30 + 128 * 2**20
    status = _until(adapter, nid, lambda s: s.state.terminal)
    assert status.state is AttemptState.FAILED, (status, adapter.logs(nid))
    assert status.native_state == "out-of-memory"
    assert "out of memory" in status.reason and "memory_gb=1" in status.reason
    deadline = time.monotonic() + 60
    while group.exists():
        assert time.monotonic() < deadline, f"{group} was left behind"
        time.sleep(0.1)


def test_an_attempt_within_its_memory_succeeds_in_its_cgroup(tmp_path: Path) -> None:
    from gridbridge.spec import Resources

    groups = _memory_cgroups()
    adapter = _local_site(tmp_path)
    code = "import sys; print(open('/proc/self/cgroup').read())"
    req = _request(tmp_path, "job-fits-cg.1", command=(sys.executable, "-c", code),
                   resources=Resources(memory_gb=2))
    status = _until(adapter, adapter.submit(req), lambda s: s.state.terminal)
    assert status.state is AttemptState.SUCCEEDED, status
    assert "/gridbridge-job-fits-cg.1\n" in adapter.logs(req.attempt_id)  # the job ran in it
    assert groups.parent.exists()


def test_a_memory_cgroup_that_cannot_serve_is_a_config_error(tmp_path: Path) -> None:
    from gridbridge.adapters.local import LocalAdapter
    from gridbridge.config import Capacity, SiteConfig

    site = SiteConfig(name="laptop", adapter="local", capacity=Capacity(cpus=1),
                      options={"memory_cgroup": str(tmp_path)})
    with pytest.raises(ValueError, match=r"site 'laptop': options.memory_cgroup: .* is not a "
                                         r"cgroup .* 'auto' or 'off'"):
        LocalAdapter(site, tmp_path / "work")
    off = site.model_copy(update={"options": {"memory_cgroup": "off"}})
    assert LocalAdapter(off, tmp_path / "work")._cgroups is None


def test_auto_finds_a_v2_group_that_delegates_memory(tmp_path: Path) -> None:
    """cgroup v2 with the memory controller cannot exist on a host whose memory controller is
    bound to v1 (as on the machines the suite runs on), so this reads a copy of the files the
    kernel shows: mountinfo, /proc/self/cgroup, and the group's cgroup.subtree_control."""
    from gridbridge.adapters._cgroup import find_parent

    mount = tmp_path / "sys" / "fs" / "cgroup"
    group = mount / "system.slice" / "gridbridge.service"
    group.mkdir(parents=True)
    mountinfo = (f"30 23 0:26 / {mount} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 "
                 "cgroup2 rw,nsdelegate,memory_recursiveprot\n"
                 f"31 23 0:27 / {tmp_path}/other rw - tmpfs tmpfs rw\n")
    own = "0::/system.slice/gridbridge.service\n"
    (group / "cgroup.subtree_control").write_text("cpu io pids\n")
    assert find_parent("auto", mountinfo=mountinfo, proc_cgroup=own) is None
    (group / "cgroup.subtree_control").write_text("cpu io memory pids\n")
    found = find_parent("auto", mountinfo=mountinfo, proc_cgroup=own)
    assert found is not None and (found.parent, found.version) == (group, 2)
    made = found.create("j.1", 5 * 2**30)
    assert made == group / "gridbridge-j.1" and (made / "memory.max").read_text() == str(5 * 2**30)
    assert find_parent("off", mountinfo=mountinfo, proc_cgroup=own) is None
