"""Budgets, site quotas, per-job policies and the measured checkpoint cost, through the live
reconciler on the embedded default's local sites (real processes)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from gridbridge import Client, checkpoint
from gridbridge.config import Budgets, GridConfig
from gridbridge.scheduler.admission import JobRefused
from gridbridge.spec import Owner, Policy
from gridbridge.states import JobState
from tests.support import jobs
from tests.support.serving import wait_until

cloudpickle.register_pickle_by_value(jobs)

SLEEP = [sys.executable, "-c", "import time; time.sleep(4)"]


def _with(grid: GridConfig, **update: object) -> GridConfig:
    return grid.model_copy(update=update)


@pytest.mark.slow
def test_a_job_over_its_teams_budget_waits_and_says_why(grid: GridConfig) -> None:
    # Each 1-hour estimate costs its price card on the cheapest site; the team may spend
    # about one of them this month.
    with Client(grid) as probe:
        card = min(probe.reconciler.adapters["spot-local"].offers(),
                   key=lambda o: o.price.per_core_hour)
    one_job = card.price.per_core_hour  # 1 cpu for 1 hour (the default estimate)
    config = _with(grid, budgets=Budgets(teams={"lab": one_job * 1.5}))
    with Client(config) as client:
        first = client.submit_command(SLEEP, owner=Owner(team="lab"), name="first")
        wait_until(lambda: first.status() is JobState.RUNNING, 30, "the first job to run")
        second = client.submit_command(SLEEP, owner=Owner(team="lab"), name="second")
        other = client.submit_command(SLEEP, owner=Owner(team="other"), name="other")
        # While the first runs, its expected cost is spent: the second waits, and says why
        wait_until(lambda: "budget" in client.store.detail(second.job_id), 30, "the reason")
        assert second.status() is JobState.PENDING
        assert first.status() is JobState.RUNNING
        story = " ".join(e.reason for e in second.story())
        assert "what team lab has left of its budget" in story, story
        assert other.wait(60) is JobState.SUCCEEDED  # another team is not held
        # The first ends having cost a few seconds, not its hour: the money is back
        assert first.wait(60) is JobState.SUCCEEDED
        assert second.wait(60) is JobState.SUCCEEDED
        placed = client.store.attempts(second.job_id)[0].created_at
        ended = client.store.attempts(first.job_id)[0].ended_at
    assert ended is not None and placed >= ended - 0.5, "held until the first ended"


@pytest.mark.slow
def test_a_project_budget_counts_the_ledger_of_this_month(grid: GridConfig) -> None:
    config = _with(grid, budgets=Budgets(projects={"vision": 0.0}))
    with Client(config) as client:
        held = client.submit_command(SLEEP, owner=Owner(project="vision"), name="held")
        free = client.submit_command(SLEEP, owner=Owner(project="nlp"), name="free")
        assert free.wait(60) is JobState.SUCCEEDED
        assert held.status() is JobState.PENDING
        assert any("project vision has left of its budget ($0.00)" in e.reason
                   for e in held.story())
        held.cancel()
        assert client.store.spent_since(0.0).get("project:nlp", 0.0) > 0


def test_a_team_without_its_own_budget_is_held_to_the_default(grid: GridConfig) -> None:
    config = _with(grid, budgets=Budgets(teams={"lab": 100.0}, default=0.0))
    quick = [sys.executable, "-c", "pass"]
    with Client(config) as client:
        held = client.submit_command(quick, owner=Owner(team="anyone"), name="held")
        named = client.submit_command(quick, owner=Owner(team="lab"), name="named")
        assert named.wait(60) is JobState.SUCCEEDED
        wait_until(lambda: "budget" in client.store.detail(held.job_id), 30, "the reason")
        assert held.status() is JobState.PENDING
        story = " ".join(e.reason for e in held.story())
        assert "what team anyone has left of its budget ($0.00)" in story, story
        held.cancel()


def test_strict_budgets_refuse_a_team_without_one_at_submission(grid: GridConfig) -> None:
    strict = _with(grid, budgets=Budgets(teams={"lab": 100.0}, strict=True))
    with Client(strict, start=False) as client:
        with pytest.raises(JobRefused, match=r"team 'anyone' has no budget.*budgets\.strict"):
            client.submit_command(["true"], owner=Owner(team="anyone"))
        assert client.store.jobs() == [], "nothing was recorded"
        client.submit_command(["true"], owner=Owner(team="lab"))  # a team with a budget
    with Client(_with(strict, budgets=strict.budgets.model_copy(update={"default": 5.0})),
                start=False) as client:
        client.submit_command(["true"], owner=Owner(team="anyone"))  # the default is one


@pytest.mark.slow
def test_max_running_caps_a_sites_live_attempts(grid: GridConfig) -> None:
    sites = tuple(s.model_copy(update={"max_running": 1}) if s.name == "spot-local" else s
                  for s in grid.sites)
    with Client(_with(grid, sites=sites)) as client:
        futures = [client.submit_command(SLEEP, name=f"j{i}") for i in range(3)]
        seen: set[int] = set()
        deadline = time.monotonic() + 60
        while not all(f.status().terminal for f in futures):
            assert time.monotonic() < deadline
            live = [a for a in client.store.active_attempts() if a.site == "spot-local"]
            seen.add(len(live))
            time.sleep(0.05)
        assert max(seen) <= 1, seen
        sites_used = {a.site for f in futures for a in client.store.attempts(f.job_id)}
    assert "spot-local" in sites_used and len(sites_used) == 2, sites_used


def test_a_jobs_own_policy_is_followed(grid: GridConfig) -> None:
    # spot-local is cheaper, but its interruptions stretch the expected run time: the
    # fastest expected finish is on ondemand-local.
    with Client(grid) as client:
        cheap = client.submit(jobs.add, 1, 2, name="cheap")
        fast = client.submit(jobs.add, 3, 4, name="fast", policy=Policy(name="fastest"))
        assert cheap.result(timeout=60) == 3 and fast.result(timeout=60) == 7
        sites = {f.job_id: client.store.attempts(f.job_id)[0].site for f in (cheap, fast)}
        why = client.store.decisions(fast.job_id)
    assert sites == {cheap.job_id: "spot-local", fast.job_id: "ondemand-local"}
    assert any("fastest feasible" in row.reason for row in why), [r.reason for r in why]


@pytest.mark.slow
def test_the_checkpoint_interval_follows_the_measured_save_time(tmp_path: Path,
                                                                 grid: GridConfig) -> None:
    """The commit record keeps how long a save took; a resumed job's next placement tunes its
    interval with it (Young: sqrt(2 * cost / rate)) instead of the site's restart time."""
    with Client(grid) as client:
        f = client.submit(jobs.counter, 400, 50, name="count",
                          checkpoint={"resumable": True, "interval_s": 3600})
        store = checkpoint.open(client.store.job(f.job_id).checkpoint_url)
        wait_until(lambda: (store.latest() or 0) >= 100, 60, "two checkpoints")
        [attempt] = client.store.attempts(f.job_id)
        assert attempt.site == "spot-local"
        assert f.result(timeout=120) == sum(s * 6 for s in range(400))
        record = store.commit_record(store.latest() or 0)
        assert isinstance(record["save_s"], float) and 0 <= record["save_s"] < 30
        progress = client.reconciler.placing.progress
        assert progress.checkpoint_cost(client.store.job(f.job_id)) == record["save_s"]
