"""The state store: compare-and-set on a real SQLite file and on a real PostgreSQL database
(each test twice, through the ``state_url`` fixture), one event per move, one ledger row."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gridbridge.scheduler.store import AttemptEnding, JobNotFound, StateStore
from gridbridge.scheduler.tables import LedgerRow
from gridbridge.spec import JobSpec, Owner
from gridbridge.states import (
    ATTEMPT_TRANSITIONS,
    JOB_TRANSITIONS,
    AttemptState,
    IllegalTransition,
    JobState,
)


class FakeClock:
    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, s: float) -> None:
        self.now += s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(state_url: str, clock: FakeClock):  # type: ignore[no-untyped-def]
    s = StateStore(state_url, clock=clock)
    yield s
    s.close()


class LeaseTime:
    """Steps the clock leases are measured by: on SQLite the store's (fake) clock, one second
    a unit; on PostgreSQL the server's own clock, which nobody steps, so real time passes,
    half a second a unit."""

    def __init__(self, store: StateStore, clock: FakeClock) -> None:
        self.on_server = store.engine.dialect.name == "postgresql"
        self.unit = 0.5 if self.on_server else 1.0
        self.clock = clock

    def advance(self, units: float) -> None:
        if self.on_server:
            time.sleep(units * self.unit)
        else:
            self.clock.advance(units)


def spec(name: str = "train", **kw: object) -> JobSpec:
    return JobSpec.model_validate({"name": name, "command": ["true"], **kw})


def ledger_row(attempt_id: str, job_id: str, cost: float = 1.0) -> LedgerRow:
    return LedgerRow(
        attempt_id=attempt_id, job_id=job_id, user="u", team="t", project="p", site="s",
        tier="hpc", outcome="SUCCEEDED", start=0.0, end=1.0, core_hours=1.0, gpu_hours=0.0,
        cost=cost, on_demand_cost=cost * 4, lost_cost=0.0,
    )


def ending(state: AttemptState, job_state: JobState, ledger: LedgerRow | None = None,
           **kw: object) -> AttemptEnding:
    return AttemptEnding(state=state, native_state="n", reason=f"ended {state}",
                         job_state=job_state, job_reason=f"job {job_state}", ledger=ledger,
                         **kw)  # type: ignore[arg-type]


def test_create_and_get_job(store: StateStore, clock: FakeClock) -> None:
    s = spec(priority=4, owner=Owner(user="ada", team="ml", project="x"))
    job = store.create_job(s, "file:///ck/j1", job_id="j1")
    got = store.job("j1")
    assert got == job
    assert got.spec == s
    assert got.state is JobState.PENDING
    assert got.priority == 4
    assert got.attempts == 0
    assert got.created_at == clock.now
    assert got.checkpoint_url == "file:///ck/j1"
    assert [(e.kind, e.old, e.new, e.actor) for e in store.events("j1")] == [
        ("job", "", "PENDING", "ada")
    ]


def test_generated_ids_are_unique_and_safe(store: StateStore) -> None:
    ids = {store.create_job(spec(), "file:///c").id for _ in range(20)}
    assert len(ids) == 20
    for jid in ids:
        assert jid.isalnum()


def test_unknown_job(store: StateStore) -> None:
    with pytest.raises(JobNotFound, match="nope"):
        store.job("nope")
    with pytest.raises(JobNotFound):
        store.request_cancel("nope")


def test_jobs_filter_and_order(store: StateStore, clock: FakeClock) -> None:
    for i in range(3):
        store.create_job(spec(f"j{i}"), "file:///c", job_id=f"j{i}")
        clock.advance(1)
    store.request_cancel("j1")
    assert [j.id for j in store.jobs()] == ["j2", "j1", "j0"]
    assert [j.id for j in store.jobs(states=[JobState.PENDING])] == ["j2", "j0"]
    assert [j.id for j in store.jobs(limit=1)] == ["j2"]


def test_cas_transition(store: StateStore) -> None:
    store.create_job(spec(), "file:///c", job_id="j")
    assert store.transition_job("j", JobState.PENDING, JobState.SCHEDULED, "placed")
    # stale expectation: it is SCHEDULED now, so a second PENDING -> SCHEDULED loses
    assert not store.transition_job("j", JobState.PENDING, JobState.SCHEDULED, "again")
    assert store.job("j").state is JobState.SCHEDULED
    assert not store.transition_job("j", JobState.RUNNING, JobState.SUCCEEDED, "stale")
    assert store.job("j").state is JobState.SCHEDULED


def test_illegal_move_raises_and_changes_nothing(store: StateStore) -> None:
    store.create_job(spec(), "file:///c", job_id="j")
    before = store.events("j")
    for new in JobState:
        if new not in JOB_TRANSITIONS[JobState.PENDING]:
            with pytest.raises(IllegalTransition):
                store.transition_job("j", JobState.PENDING, new, "bad")
    assert store.job("j").state is JobState.PENDING
    assert store.events("j") == before


def test_illegal_attempt_ending_raises(store: StateStore) -> None:
    store.create_job(spec(), "file:///c", job_id="j")
    a = store.new_attempt("j", "site", "file:///c/j", "rec")
    assert a is not None
    illegal = next(s for s in AttemptState if s not in ATTEMPT_TRANSITIONS[a.state])
    with pytest.raises(IllegalTransition):
        store.conclude(a, ending(illegal, JobState.PENDING), "rec")
    assert store.attempt(a.id).state is AttemptState.SUBMITTING


def test_new_attempt_ids_and_tokens(store: StateStore) -> None:
    store.create_job(spec(), "file:///c/j", job_id="j")
    seen = []
    for n in range(1, 4):
        a = store.new_attempt("j", f"site{n}", "file:///c/j", "rec")
        assert a is not None
        assert a.id == f"j.{n}"
        assert a.number == n
        assert a.state is AttemptState.SUBMITTING
        assert a.attempt_url == f"file:///c/j/attempts/{n}"
        assert a.site == f"site{n}"
        assert store.job("j").state is JobState.SCHEDULED
        assert store.job("j").attempts == n
        # a second placement while SCHEDULED is refused
        assert store.new_attempt("j", "other", "file:///c/j", "rec") is None
        seen.append(a.token)
        assert store.conclude(a, ending(AttemptState.PREEMPTED, JobState.PENDING), "rec")
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)
    assert [a.id for a in store.attempts("j")] == ["j.1", "j.2", "j.3"]


def test_events_for_every_transition_in_order(store: StateStore, clock: FakeClock) -> None:
    store.create_job(spec(), "file:///c", job_id="j")
    clock.advance(1)
    a = store.new_attempt("j", "s", "file:///c/j", "rec")
    assert a is not None
    clock.advance(1)
    assert store.set_native_id(a.id, "native-7", "rec")
    a = store.attempt(a.id)
    assert a.native_id == "native-7"
    assert a.state is AttemptState.SUBMITTED
    clock.advance(1)
    assert store.mark_running(a, "R", "rec")
    a = store.attempt(a.id)
    assert a.started_at == clock.now
    clock.advance(1)
    assert store.conclude(a, ending(AttemptState.SUCCEEDED, JobState.SUCCEEDED, exit_code=0), "rec")
    story = [(e.kind, e.attempt_id, e.old, e.new) for e in store.events("j")]
    assert story == [
        ("job", None, "", "PENDING"),
        ("job", None, "PENDING", "SCHEDULED"),
        ("attempt", "j.1", "", "SUBMITTING"),
        ("attempt", "j.1", "SUBMITTING", "SUBMITTED"),
        ("attempt", "j.1", "SUBMITTED", "RUNNING"),
        ("job", None, "SCHEDULED", "RUNNING"),
        ("attempt", "j.1", "RUNNING", "SUCCEEDED"),
        ("job", None, "RUNNING", "SUCCEEDED"),
    ]
    times = [e.at for e in store.events("j")]
    assert times == sorted(times)
    final = store.attempt("j.1")
    assert final.ended_at == clock.now
    assert final.exit_code == 0
    assert store.job("j").state is JobState.SUCCEEDED


def test_stale_mark_running_loses(store: StateStore) -> None:
    store.create_job(spec(), "file:///c", job_id="j")
    a = store.new_attempt("j", "s", "file:///c/j", "rec")
    assert a is not None
    assert store.mark_running(a, "R", "rec")
    assert not store.mark_running(a, "R", "rec")  # a is a SUBMITTING snapshot: stale
    assert store.attempt(a.id).state is AttemptState.RUNNING


def test_conclude_writes_one_ledger_row_per_attempt(store: StateStore) -> None:
    store.create_job(spec(), "file:///c", job_id="j")
    a = store.new_attempt("j", "s", "file:///c/j", "rec")
    assert a is not None
    assert store.conclude(
        a, ending(AttemptState.FAILED, JobState.FAILED, ledger_row(a.id, "j", 2.5),
                  exit_code=3, job_error="boom"), "rec"
    )
    again = ending(AttemptState.FAILED, JobState.FAILED, ledger_row(a.id, "j", 99.0))
    assert not store.conclude(a, again, "rec")
    rows = store.ledger("j")
    assert [(r.attempt_id, r.cost) for r in rows] == [(a.id, 2.5)]
    job = store.job("j")
    assert job.state is JobState.FAILED
    assert job.error == "boom"
    assert store.attempt(a.id).exit_code == 3
    ends = [e for e in store.events("j") if e.new == "FAILED"]
    assert len(ends) == 2  # one for the attempt, one for the job, not repeated


def test_ledger_rows_of_several_attempts(store: StateStore) -> None:
    store.create_job(spec(), "file:///c", job_id="j")
    for _ in range(2):
        a = store.new_attempt("j", "s", "file:///c/j", "rec")
        assert a is not None
        end = ending(AttemptState.PREEMPTED, JobState.PENDING, ledger_row(a.id, "j"))
        assert store.conclude(a, end, "rec")
        assert not store.conclude(a, end, "rec")
    assert [r.attempt_id for r in store.ledger("j")] == ["j.1", "j.2"]
    assert store.job("j").state is JobState.PENDING


def test_request_cancel_of_pending_job_cancels_at_once(store: StateStore) -> None:
    store.create_job(spec(), "file:///c", job_id="j")
    job = store.request_cancel("j", actor="ada")
    assert job.state is JobState.CANCELLED
    assert job.cancel_requested
    assert store.new_attempt("j", "s", "file:///c/j", "rec") is None
    kinds = [(e.kind, e.new, e.actor) for e in store.events("j")]
    assert ("cancel-requested", "PENDING", "ada") in kinds
    assert kinds[-1] == ("job", "CANCELLED", "ada")
    # cancelling a terminal job changes nothing
    n = len(store.events("j"))
    assert store.request_cancel("j").state is JobState.CANCELLED
    assert len(store.events("j")) == n


def test_request_cancel_of_running_job_only_marks_it(store: StateStore) -> None:
    store.create_job(spec(), "file:///c", job_id="j")
    a = store.new_attempt("j", "s", "file:///c/j", "rec")
    assert a is not None
    assert store.mark_running(a, "R", "rec")
    job = store.request_cancel("j")
    assert job.state is JobState.RUNNING
    assert job.cancel_requested
    assert [x.id for x in store.active_attempts()] == [a.id]


def _taken_at(store: StateStore, holder: str, ttl_s: float) -> None:
    """``holder`` takes the lease, which then expires ``ttl_s`` after the moment it was taken
    (on SQLite's fake clock exactly ``clock.now + ttl_s``: the two bounds are equal)."""
    before = store.lease_clock()
    assert store.acquire_lease("reconciler", holder, ttl_s=ttl_s)
    after = store.lease_clock()
    got = store.lease_holder("reconciler")
    assert got is not None and got[0] == holder
    assert before + ttl_s <= got[1] <= after + ttl_s


def test_lease_held_until_expiry(store: StateStore, clock: FakeClock) -> None:
    t = LeaseTime(store, clock)
    ttl = 10 * t.unit
    _taken_at(store, "A", ttl)
    if not t.on_server:
        assert store.lease_holder("reconciler") == ("A", clock.now + 10)
    assert not store.acquire_lease("reconciler", "B", ttl_s=ttl)
    t.advance(5)
    assert store.acquire_lease("reconciler", "A", ttl_s=ttl)  # renewal moves the expiry
    t.advance(9)
    assert not store.acquire_lease("reconciler", "B", ttl_s=ttl)
    t.advance(2)
    _taken_at(store, "B", ttl)
    if not t.on_server:
        assert store.lease_holder("reconciler") == ("B", clock.now + 10)
    assert not store.acquire_lease("reconciler", "A", ttl_s=ttl)


def test_lease_release(store: StateStore) -> None:
    assert store.acquire_lease("r", "A", ttl_s=100)
    store.release_lease("r", "B")  # not the holder: no effect
    assert not store.acquire_lease("r", "B", ttl_s=100)
    store.release_lease("r", "A")
    assert store.lease_holder("r") is None
    assert store.acquire_lease("r", "B", ttl_s=100)


def test_two_stores_on_one_file_share_state(state_url: str) -> None:
    url = state_url
    a, b = StateStore(url), StateStore(url)
    try:
        a.create_job(spec(), "file:///c", job_id="j")
        assert b.transition_job("j", JobState.PENDING, JobState.SCHEDULED, "b")
        assert not a.transition_job("j", JobState.PENDING, JobState.SCHEDULED, "a")
        assert a.job("j").state is JobState.SCHEDULED
    finally:
        a.close()
        b.close()


_RACER = textwrap.dedent(
    """
    import sys, time
    from gridbridge.scheduler.store import StateStore
    from gridbridge.states import JobState
    url, go, name, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    store = StateStore(url)
    store.job("j0")  # connect before the start line
    from pathlib import Path
    while not Path(go).exists():
        time.sleep(0.001)
    wins = []
    for i in range(n):
        if store.transition_job(f"j{i}", JobState.PENDING, JobState.SCHEDULED, name, name):
            wins.append(i)
        if store.new_attempt(f"k{i}", name, "file:///c", name) is not None:
            wins.append(-1 - i)
    print(" ".join(map(str, wins)))
    store.close()
    """
)


def test_cas_race_between_two_processes(tmp_path: Path, state_url: str) -> None:
    url = state_url
    n = 25
    store = StateStore(url)
    for i in range(n):
        store.create_job(spec(), "file:///c", job_id=f"j{i}")
        store.create_job(spec(), "file:///c", job_id=f"k{i}")
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, url, str(go), name, str(n)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name in ("alpha", "beta")
    ]
    go.touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outs.append({int(x) for x in out.split()})
    alpha, beta = outs
    assert alpha.isdisjoint(beta)
    assert alpha | beta == set(range(n)) | {-1 - i for i in range(n)}
    for i in range(n):
        events = [e for e in store.events(f"j{i}") if e.new == "SCHEDULED"]
        assert len(events) == 1
        assert events[0].actor == ("alpha" if i in alpha else "beta")
        attempts = store.attempts(f"k{i}")
        assert len(attempts) == 1
        assert attempts[0].site == ("alpha" if -1 - i in alpha else "beta")
        assert store.job(f"k{i}").attempts == 1
    store.close()


def test_the_sweep_adopts_one_native_job_per_attempt_and_cancels_its_twin(
    store: StateStore,
) -> None:
    from gridbridge.adapter import OwnedJob
    from gridbridge.scheduler.sweep import reconcile_owned

    store.create_job(spec(), "file:///c", job_id="j")
    a = store.new_attempt("j", "s", "file:///c/j", "t")
    assert a is not None
    owned = [OwnedJob(native_id="n1", attempt_id=a.id), OwnedJob(native_id="n2", attempt_id=a.id),
             OwnedJob(native_id="n3", attempt_id="jghost0000.1")]
    result = reconcile_owned(store, "s", owned, "t")
    assert result.adopted == [a.id]
    assert store.attempt(a.id).native_id == "n1"
    assert result.orphans == ["n2", "n3"]
    assert [e.kind for e in store.site_events("s")] == ["adopted", "orphan", "orphan"]


def test_a_just_ended_attempts_own_process_is_no_orphan(store: StateStore) -> None:
    """A runtime writes its result moments before its process exits: a sweep in between
    leaves that process alone (no orphan event on a job that succeeded); one that lingers past
    the grace is cancelled as an orphan."""
    from gridbridge.adapter import OwnedJob
    from gridbridge.scheduler.sweep import ENDING_GRACE_S, reconcile_owned
    store.create_job(spec(), "file:///c", job_id="j")
    a = store.new_attempt("j", "s", "file:///c/j", "t")
    assert a is not None and store.set_native_id(a.id, "n1", "t")
    a = store.attempt(a.id)
    assert store.mark_running(a, "running", "t")
    assert store.conclude(store.attempt(a.id),
                          ending(AttemptState.SUCCEEDED, JobState.SUCCEEDED), "t")
    ended = store.attempt(a.id).ended_at
    assert ended is not None
    owned = [OwnedJob(native_id="n1", attempt_id=a.id)]
    assert reconcile_owned(store, "s", owned, "t", now=ended + 1).orphans == []
    assert [e.kind for e in store.site_events("s")] == []
    late = reconcile_owned(store, "s", owned, "t", now=ended + ENDING_GRACE_S + 1)
    assert late.orphans == ["n1"]
    assert [e.kind for e in store.site_events("s")] == ["orphan"]


def test_sightings_are_recorded_and_never_moved_back(store: StateStore) -> None:
    store.create_job(spec(), "file:///c", job_id="j")
    a = store.new_attempt("j", "site", "file:///c/j", "rec")
    assert a is not None and a.seen_at is None
    store.mark_seen([a.id], 200.0)
    store.mark_seen([a.id], 150.0)  # a slower writer's older sighting
    assert store.attempts("j")[0].seen_at == 200.0
    store.mark_seen([a.id, "nope.1"], 300.0)  # an id that is not there changes nothing else
    assert store.attempts("j")[0].seen_at == 300.0


def test_a_cancel_says_why_in_the_story_and_the_end(store: StateStore) -> None:
    store.create_job(spec(), "file:///c", job_id="j")
    job = store.request_cancel("j", "cluster", reason="scaled down (no longer needed)")
    assert job.state is JobState.CANCELLED and job.cancelled_why == "scaled down (no longer needed)"
    asked, ended = store.events("j")[-2:]
    assert (asked.kind, asked.reason) == ("cancel-requested", "scaled down (no longer needed)")
    assert ended.new == JobState.CANCELLED.value and ended.reason == job.cancelled_why
    store.create_job(spec(), "file:///c", job_id="k")  # no reason: the user's cancel
    assert store.request_cancel("k").cancelled_why == "cancelled by user"
    assert store.events("k")[-1].reason == "cancelled by user"
