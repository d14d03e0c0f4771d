"""The reconciler against sites that hang, raise, answer garbage, lose replies or lose nodes,
through ``gridbridge.testing.FaultyAdapter`` wrapped around real local sites."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from gridbridge.adapter import Adapter, Capability, SubmitRequest
from gridbridge.client import Client
from gridbridge.config import GridConfig, load_config
from gridbridge.scheduler.reconciler import LeaseLost, Reconciler, TickReport
from gridbridge.scheduler.store import StateStore
from gridbridge.sites import build_adapters
from gridbridge.spec import JobSpec
from gridbridge.states import AttemptState, JobState
from gridbridge.testing import FaultyAdapter

DEADLINE_S = 1.0
SLACK_S = 5.0
"""What a tick may take beyond the site deadline on a loaded machine (without isolation, a
hung site would hold the tick forever, so the bound still tells the two apart)."""

APPEND = "import sys, time; time.sleep(float(sys.argv[2])); open(sys.argv[1], 'a').write('x\\n')"


def write_config(tmp_path: Path, **limits: float) -> Path:
    path = tmp_path / "gridbridge.yaml"
    path.write_text(yaml.safe_dump({
        "state_url": "sqlite:///state.db", "checkpoint_root": "ckpt", "workdir": "run",
        "limits": {"tick_interval_s": 0.1, "lease_s": 30, "site_deadline_s": DEADLINE_S,
                   "reject_backoff_s": 1.0,
                   **limits},
        "sites": [
            {"name": "good", "adapter": "local", "tier": "cloud", "capacity": {"cpus": 4},
             "price": {"per_core_hour": 0.02}, "options": {"grace_s": 2}},
            {"name": "bad", "adapter": "local", "tier": "cloud", "capacity": {"cpus": 4},
             "price": {"per_core_hour": 0.01}, "options": {"grace_s": 2}},
        ],
    }))
    return path


@dataclass
class Fed:
    path: Path
    config: GridConfig
    client: Client
    reconciler: Reconciler
    bad: FaultyAdapter
    real: dict[str, Adapter]

    def tick(self) -> tuple[TickReport, float]:
        t0 = time.monotonic()
        report = self.reconciler.tick()
        return report, time.monotonic() - t0

    def tick_until(self, done: Callable[[], bool], *, ticks: int = 300) -> list[float]:
        took = []
        for _ in range(ticks):
            took.append(self.tick()[1])
            if done():
                return took
            time.sleep(0.05)
        raise AssertionError(f"not done after {ticks} ticks")

    def job(self, argv: list[str], site: str, **options: object) -> str:
        future = self.client.submit_command(
            argv, constraints={"allowed_sites": [site]}, **options)
        return future.job_id

    def state(self, job_id: str) -> JobState:
        return self.client.store.job(job_id).state


def federation(tmp_path: Path, wrap: type[FaultyAdapter] = FaultyAdapter,
               **limits: float) -> Fed:
    path = write_config(tmp_path, **limits)
    config = load_config(path)
    store = StateStore(config.state_url)
    real = build_adapters(config)
    bad = wrap(real["bad"])
    rec = Reconciler(config, store, {"good": real["good"], "bad": bad})
    return Fed(path, config, Client(config, start=False), rec, bad, real)


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Fed]:
    f = federation(tmp_path)
    yield f
    close(f)


def close(f: Fed) -> None:
    f.bad.heal()
    f.reconciler.close()
    for adapter in f.real.values():
        adapter.cancel([o.native_id for o in adapter.owned()])
    f.reconciler.store.close()
    f.client.close()


FAULTS = {
    "hangs": lambda bad: [bad.hang(v) for v in ("submit", "poll", "cancel", "offers", "owned")],
    "raises": lambda bad: [bad.fail(v) for v in ("submit", "poll", "cancel", "offers", "owned")],
    "answers garbage": lambda bad: [
        bad.garbage("poll", ["not", "a", "mapping"]),
        bad.garbage("offers", {"cpus": 1000}),
        bad.garbage("owned", 42),
        bad.garbage("submit", None),
    ],
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_broken_site_never_delays_another_sites_job(fed: Fed, tmp_path: Path,
                                                      fault: str) -> None:
    sleeper = fed.job([sys.executable, "-c", "import time; time.sleep(60)"], "bad")
    fed.tick_until(lambda: fed.state(sleeper) is JobState.RUNNING)
    FAULTS[fault](fed.bad)
    fed.client.store.request_cancel(sleeper)  # so the cancel phase calls the broken site too
    fed.reconciler.sweep_now()
    waiting = fed.job([sys.executable, "-c", "pass"], "bad")  # it can only go to the bad site

    out = tmp_path / "good.txt"
    job = fed.job([sys.executable, "-c", APPEND, str(out), "0"], "good")
    report, took = fed.tick()
    assert report.placed.get(job) == "good", "placed in the first tick after submission"
    assert f"{job}.1" in report.submitted
    assert took <= DEADLINE_S + SLACK_S
    ticks = fed.tick_until(lambda: fed.state(job) is JobState.SUCCEEDED)
    assert max(ticks) <= DEADLINE_S + SLACK_S, ticks
    assert out.read_text() == "x\n"

    health = fed.reconciler.store.site_health()
    assert not health["bad"].healthy
    assert health["bad"].phase in {"submit", "poll", "cancel", "offers", "owned"}
    assert health["bad"].error
    assert health["good"].healthy
    assert fed.state(waiting) in {JobState.PENDING, JobState.SCHEDULED}
    listed = subprocess.run(
        [sys.executable, "-m", "gridbridge.cli", "--config", str(fed.path), "sites", "list",
         "--format", "json"], capture_output=True, text=True, timeout=120, check=True)
    rows = {r["site"]: r for r in json.loads(listed.stdout)}
    assert rows["bad"]["health"] == "degraded"
    assert rows["bad"]["last_error"].startswith(health["bad"].phase)
    assert rows["good"]["health"] == "healthy"

    fed.bad.heal()
    fed.tick_until(lambda: fed.reconciler.store.site_health()["bad"].healthy)
    fed.tick_until(lambda: fed.state(waiting) is JobState.SUCCEEDED)
    fed.tick_until(lambda: fed.state(sleeper) is JobState.CANCELLED)
    kinds = [(e.kind, e.new) for e in fed.reconciler.store.site_events("bad")]
    assert kinds[:1] == [("site-health", "degraded")]
    assert ("site-health", "healthy") in kinds


@pytest.mark.parametrize("adopt", [True, False], ids=["adopt", "lookup-by-owned"])
def test_a_submission_whose_reply_was_lost_runs_once(tmp_path: Path, adopt: bool) -> None:
    class NoAdopt(FaultyAdapter):
        def capabilities(self) -> frozenset[Capability]:
            return self.inner.capabilities() - {Capability.ADOPT}

    f = federation(tmp_path, FaultyAdapter if adopt else NoAdopt)
    try:
        out = tmp_path / "ran.txt"
        f.bad.uncertain_submits(1)
        job = f.job([sys.executable, "-c", APPEND, str(out), "1.5"], "bad")
        report, _ = f.tick()
        assert report.submitted == [] and report.rejected == {}
        attempt = f.client.store.attempts(job)[0]
        assert attempt.state is AttemptState.SUBMITTING, "uncertain: neither failed nor known"
        f.tick_until(lambda: f.state(job) is JobState.SUCCEEDED)
        attempts = f.client.store.attempts(job)
        assert [a.state for a in attempts] == [AttemptState.SUCCEEDED]
        assert attempts[0].submit_tries == 2
        assert out.read_text() == "x\n", "the job ran exactly once"
        if adopt:
            assert f.bad.count("submit") == 2  # re-sent with the same attempt id, adopted
        else:
            assert f.bad.count("submit") == 1  # never re-sent: found by attempt id instead
            assert f.bad.count("owned") >= 1
    finally:
        close(f)


def test_a_rejected_submission_is_placed_elsewhere_at_once(fed: Fed, tmp_path: Path) -> None:
    from gridbridge.adapter import SubmitRejected

    fed.bad.fail("submit", SubmitRejected("no capacity in this partition"))
    out = tmp_path / "ran.txt"
    job = fed.client.submit_command([sys.executable, "-c", APPEND, str(out), "0"]).job_id
    report, _ = fed.tick()  # bad is cheaper, so it is tried first
    assert report.rejected == {f"{job}.1": "rejected by bad: no capacity in this partition"}
    assert report.placed == {job: "good"}, "re-placed in the same tick, on the other site"
    fed.tick_until(lambda: fed.state(job) is JobState.SUCCEEDED)
    attempts = fed.client.store.attempts(job)
    assert [(a.site, a.state) for a in attempts] == [
        ("bad", AttemptState.FAILED), ("good", AttemptState.SUCCEEDED)]
    assert [r.attempt_id for r in fed.client.store.ledger(job)] == [attempts[1].id]
    losing = [d for d in fed.client.store.decisions(job) if d.site == "bad" and d.attempt == 2]
    assert losing and "rejected" in losing[0].reason


def test_the_sweep_cancels_a_native_job_with_an_unknown_attempt_id(fed: Fed,
                                                                  tmp_path: Path) -> None:
    good = fed.real["good"]
    beat = tmp_path / "beat"
    stray = SubmitRequest(
        attempt_id="jfeedface0001.1", job_id="jfeedface0001", attempt=1, token=1,
        spec=JobSpec(name="stray", command=(
            sys.executable, "-c", "import sys, time\nwhile True:\n"
            "    open(sys.argv[1], 'w').write(str(time.time())); time.sleep(0.05)", str(beat))),
        checkpoint_url=(tmp_path / "c").as_uri(), attempt_url=(tmp_path / "a").as_uri(),
    )
    nid = good.submit(stray)
    deadline = time.monotonic() + 30
    while not beat.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    fed.reconciler.sweep_now()
    report, _ = fed.tick()
    assert report.orphans == {"good": [nid]}
    deadline = time.monotonic() + 30
    while not good.poll([nid])[nid].state.terminal:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert good.poll([nid])[nid].state is AttemptState.CANCELLED
    events = fed.reconciler.store.site_events("good")
    assert [(e.kind, e.attempt_id) for e in events] == [("orphan", "jfeedface0001.1")]
    assert "unknown" in events[0].reason
    while nid in {o.native_id for o in good.owned()}:  # its runtime exits just after its result
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_result_record_wins_over_a_lost_verdict(fed: Fed, tmp_path: Path) -> None:
    out = tmp_path / "ran.txt"
    fed.bad.lose_finished()
    job = fed.job([sys.executable, "-c", APPEND, str(out), "0"], "bad")
    fed.tick_until(lambda: fed.state(job).terminal)
    attempts = fed.client.store.attempts(job)
    assert fed.state(job) is JobState.SUCCEEDED
    assert [a.state for a in attempts] == [AttemptState.SUCCEEDED]
    assert "result record" in attempts[0].reason
    assert out.read_text() == "x\n"


def test_an_unusable_checkpoint_root_ends_the_attempt_not_the_tick(tmp_path: Path) -> None:
    blocker = tmp_path / "regular-file"
    blocker.write_text("not a folder")
    path = write_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["checkpoint_root"] = str(blocker / "ckpt")
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    store = StateStore(config.state_url)
    adapters = build_adapters(config)
    rec = Reconciler(config, store, adapters)
    client = Client(config, start=False)
    try:
        job = client.submit_command([sys.executable, "-c", "pass"], max_attempts=1).job_id
        for _ in range(300):
            rec.tick()  # raises if a tick dies
            if client.store.job(job).state.terminal:
                break
            time.sleep(0.05)
        final = client.store.job(job)
        assert final.state is JobState.FAILED
        assert "NotADirectoryError" in (final.error or ""), final.error
    finally:
        rec.close()
        store.close()
        client.close()


def test_a_reconciler_frozen_past_its_lease_submits_nothing_when_it_wakes(
    tmp_path: Path,
) -> None:
    a = federation(tmp_path, lease_s=1.0, site_deadline_s=60.0)
    b_store = StateStore(a.config.state_url)
    b = Reconciler(a.config, b_store, a.real)
    try:
        out = tmp_path / "ran.txt"
        job = a.job([sys.executable, "-c", APPEND, str(out), "0"], "bad")
        # A freezes in its place phase, after its last lease renewal: its site call hangs and
        # so does its main thread (the keepalive that would renew the lease does not run).
        frozen_gate = threading.Event()
        a.reconciler.calls.keepalive = frozen_gate.wait
        a.bad.hang("offers")
        errors: list[BaseException] = []

        def tick_a() -> None:
            try:
                a.reconciler.tick()
            except BaseException as exc:
                errors.append(exc)

        frozen = threading.Thread(target=tick_a)
        frozen.start()
        deadline = time.monotonic() + 30
        while a.bad.count("offers") == 0 or not b.acquire():
            assert time.monotonic() < deadline, "B never got the lease"
            time.sleep(0.05)
        frozen_gate.set()  # A wakes
        a.bad.release("offers")
        frozen.join(30)
        assert len(errors) == 1 and isinstance(errors[0], LeaseLost), errors
        assert a.bad.count("submit") == 0, "no native submission after the lease was lost"
        assert a.bad.count("cancel") == 0
        for _ in range(300):
            b.tick()
            if a.state(job).terminal:
                break
            time.sleep(0.05)
        assert a.state(job) is JobState.SUCCEEDED
        assert len(a.client.store.attempts(job)) == 1
        assert out.read_text() == "x\n"
    finally:
        b.close()
        b_store.close()
        close(a)


def test_a_reconciler_frozen_mid_submit_cancels_nothing_when_it_wakes(tmp_path: Path) -> None:
    a = federation(tmp_path, lease_s=1.0, site_deadline_s=60.0)
    b_store = StateStore(a.config.state_url)
    b = Reconciler(a.config, b_store, a.real)
    try:
        victim = a.job([sys.executable, "-c", "import time; time.sleep(60)"], "good")
        a.tick_until(lambda: a.state(victim) is JobState.RUNNING)
        a.client.store.request_cancel(victim)
        # A new job is already SUBMITTING on the bad site when A starts its tick.
        late = a.job([sys.executable, "-c", "pass"], "bad")
        a.reconciler.store.new_attempt(late, "bad", f"{a.config.checkpoint_root}/{late}", "t")
        frozen_gate = threading.Event()  # the whole reconciler freezes, its keepalive too
        a.reconciler.calls.keepalive = frozen_gate.wait
        a.bad.hang("submit")
        errors: list[BaseException] = []
        frozen = threading.Thread(target=lambda: _catch(a.reconciler.tick, errors))
        frozen.start()
        deadline = time.monotonic() + 30
        while a.bad.count("submit") == 0 or not b.acquire():
            assert time.monotonic() < deadline, "B never got the lease"
            time.sleep(0.05)
        cancels_before = sum(1 for c in a.bad.calls if c.verb == "cancel")
        frozen_gate.set()
        a.bad.release("submit")
        frozen.join(30)
        assert len(errors) == 1 and isinstance(errors[0], LeaseLost), errors
        assert sum(1 for c in a.bad.calls if c.verb == "cancel") == cancels_before
        assert a.state(victim) is JobState.RUNNING, "A did not act on the cancel request"
        for _ in range(300):
            b.tick()
            if a.state(victim).terminal and a.state(late).terminal:
                break
            time.sleep(0.05)
        assert a.state(victim) is JobState.CANCELLED
        assert a.state(late) is JobState.SUCCEEDED
    finally:
        b.close()
        b_store.close()
        close(a)


def _catch(fn: Callable[[], object], errors: list[BaseException]) -> None:
    try:
        fn()
    except BaseException as exc:
        errors.append(exc)


LOSES_ITS_RUNTIME = """
import json, os, signal, sys, time
ws = sys.argv[1]
n = int(os.environ["GRIDBRIDGE_ATTEMPT"])
def start_time(pid):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in {"Z", "X"} else fields[19]
if n == 1:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stubborn child
    me = os.getpid()
    open(os.path.join(ws, "child1"), "w").write(f"{me} {start_time(me)}")
    os.kill(os.getppid(), signal.SIGKILL)  # its runtime dies: the site loses the attempt
    while True:
        open(os.path.join(ws, "beat1"), "w").write(str(time.time()))
        time.sleep(0.02)
pid, started = open(os.path.join(ws, "child1")).read().split()
alive = start_time(int(pid)) == started
json.dump({"first_child_alive": alive}, open(os.path.join(ws, "second.json"), "w"))
"""


def test_a_lost_attempts_child_is_gone_before_its_successor_starts(client: Client,
                                                                  tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    f = client.submit_command([sys.executable, "-c", LOSES_ITS_RUNTIME, str(ws)],
                              max_attempts=3)
    assert f.wait(90) is JobState.SUCCEEDED
    attempts = client.store.attempts(f.job_id)
    assert [a.state for a in attempts] == [AttemptState.LOST, AttemptState.SUCCEEDED]
    assert json.loads((ws / "second.json").read_text()) == {"first_child_alive": False}
    last_beat = float((ws / "beat1").read_text())
    assert attempts[1].created_at >= last_beat, "attempt 2 was created while 1's child ran"


def test_max_submissions_per_tick_bounds_new_placements_too(tmp_path: Path) -> None:
    f = federation(tmp_path, max_submissions_per_tick=2)
    try:
        jobs = [f.job([sys.executable, "-c", "pass"], "good") for _ in range(5)]
        report, _ = f.tick()
        assert len(report.submitted) == 2
        assert len(report.placed) == 2
        assert sum(1 for j in jobs if f.state(j) is JobState.PENDING) == 3
        f.tick_until(lambda: all(f.state(j) is JobState.SUCCEEDED for j in jobs))
    finally:
        close(f)


def test_the_sweep_runs_on_the_reconcilers_clock(tmp_path: Path) -> None:
    from gridbridge.testing import ManualClock

    path = write_config(tmp_path, sweep_interval_s=60)
    config = load_config(path)
    store = StateStore(config.state_url)
    real = build_adapters(config)
    bad = FaultyAdapter(real["bad"])
    clock = ManualClock()
    rec = Reconciler(config, store, {"good": real["good"], "bad": bad}, clock=clock)
    try:
        rec.tick()
        assert bad.count("owned") == 1, "the first tick sweeps"
        for _ in range(3):
            clock.advance(19)
            rec.tick()
        assert bad.count("owned") == 1, "not again within sweep_interval_s"
        clock.advance(4)
        rec.tick()
        assert bad.count("owned") == 2
    finally:
        rec.close()
        store.close()


def test_the_chosen_offer_and_its_price_card_are_recorded(fed: Fed, tmp_path: Path) -> None:
    from gridbridge.adapter import Offer, Pricing
    from gridbridge.spec import Tier

    def offer(key: str, per_hour: float) -> Offer:
        return Offer(site="bad", key=key, shape={"size": key}, tier=Tier.CLOUD, cpus=4,
                     memory_gb=8, price=Pricing(per_hour=per_hour),
                     on_demand=Pricing(per_hour=1.0))

    fed.bad.garbage("offers", [offer("big", 0.5), offer("small", 0.1)])
    job = fed.job([sys.executable, "-c", "pass"], "bad")
    fed.tick_until(lambda: fed.state(job) is JobState.SUCCEEDED)
    [attempt] = fed.client.store.attempts(job)
    assert attempt.offer_key == "small"
    assert json.loads(attempt.price_json or "{}")["price"]["per_hour"] == 0.1
    chosen = [(d.site, d.offer_key) for d in fed.client.store.decisions(job) if d.chosen]
    assert chosen == [("bad", "small")]
    [row] = fed.client.store.ledger(job)
    assert row.cost == pytest.approx(0.1 * (row.end - row.start) / 3600)


class _NoAdopt(FaultyAdapter):
    def capabilities(self) -> frozenset[Capability]:
        return self.inner.capabilities() - {Capability.ADOPT}


def test_a_quick_job_whose_reply_was_lost_is_not_rerun_on_a_site_that_cannot_adopt(
    tmp_path: Path,
) -> None:
    f = federation(tmp_path, _NoAdopt)
    try:
        out = tmp_path / "ran.txt"
        f.bad.uncertain_submits(1)
        job = f.job([sys.executable, "-c", APPEND, str(out), "0"], "bad")
        f.tick()
        deadline = time.monotonic() + 30
        while not out.exists():  # it ran and ended before the next tick: owned() lists nothing
            assert time.monotonic() < deadline
            time.sleep(0.05)
        f.tick_until(lambda: f.state(job).terminal)
        assert f.state(job) is JobState.SUCCEEDED
        assert f.bad.count("submit") == 1
        assert [a.state for a in f.client.store.attempts(job)] == [AttemptState.SUCCEEDED]
        assert out.read_text() == "x\n"
    finally:
        close(f)


@pytest.mark.slow
def test_a_slow_site_does_not_cost_the_reconciler_its_lease(tmp_path: Path) -> None:
    f = federation(tmp_path, lease_s=1.0, site_deadline_s=3.0)
    try:
        f.bad.hang("offers")
        job = f.job([sys.executable, "-c", "pass"], "good")
        report, took = f.tick()  # waits 3 s for the hung site: three leases long
        assert took >= 3.0
        assert report.placed == {job: "good"}
        assert f"{job}.1" in report.submitted
    finally:
        close(f)


def test_a_checkpoint_prefix_fenced_by_another_job_gets_a_higher_token(fed: Fed,
                                                                     tmp_path: Path) -> None:
    from gridbridge import checkpoint
    from gridbridge.spec import CheckpointPolicy

    url = (tmp_path / "shared-ckpt").as_uri()
    checkpoint.raise_fence(url, 7)  # an earlier job's attempts got this far
    code = ("import numpy as np, gridbridge\n"
            "gridbridge.context().checkpoint.save(1, {'x': np.zeros(1)})")
    job = fed.client.submit_command([sys.executable, "-c", code],
                                    checkpoint=CheckpointPolicy(url=url),
                                    constraints={"allowed_sites": ["good"]}).job_id
    fed.tick_until(lambda: fed.state(job).terminal)
    assert fed.state(job) is JobState.SUCCEEDED
    [attempt] = fed.client.store.attempts(job)
    assert attempt.token == 8
    assert checkpoint.open(url).commit_record(1)["token"] == 8
