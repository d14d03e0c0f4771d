"""Fair share and the shared budget of teams without one, through the live reconciler on the
embedded default's local sites (real processes)."""

from __future__ import annotations

import sys

import pytest

from gridbridge import Client
from gridbridge.config import Budgets, GridConfig
from gridbridge.spec import Owner
from gridbridge.states import JobState
from tests.support.serving import wait_until

SLEEP = [sys.executable, "-c", "import time; time.sleep(3)"]


@pytest.mark.slow
def test_max_running_per_user_keeps_a_users_third_job_pending_and_says_why(
        grid: GridConfig) -> None:
    config = grid.model_copy(update={
        "limits": grid.limits.model_copy(update={"max_running_per_user": 2})})
    with Client(config) as client:
        mine = [client.submit_command(SLEEP, owner=Owner(user="alice"), name=f"a{i}")
                for i in range(3)]
        other = client.submit_command(SLEEP, owner=Owner(user="bob"), name="b")
        wait_until(lambda: "max_running_per_user" in client.store.detail(mine[2].job_id), 30,
                   "the third job's reason")
        assert mine[2].status() is JobState.PENDING
        assert other.wait(60) is JobState.SUCCEEDED  # another user is not held
        story = " ".join(e.reason for e in mine[2].story())
        assert "alice already runs 2" in story, story
        assert all(j.wait(60) is JobState.SUCCEEDED for j in mine)
        runs = sorted((a.created_at, a.ended_at or 0.0) for j in mine
                      for a in client.store.attempts(j.job_id))
    assert runs[2][0] >= min(runs[0][1], runs[1][1]) - 0.5, "held until one of two ended"


@pytest.mark.slow
def test_two_made_up_teams_together_cannot_spend_more_than_the_default(
        grid: GridConfig) -> None:
    with Client(grid) as probe:
        card = min(probe.reconciler.adapters["spot-local"].offers(),
                   key=lambda o: o.price.per_core_hour)
    one_job = card.price.per_core_hour  # 1 cpu for 1 hour (the default estimate)
    config = grid.model_copy(update={
        "budgets": Budgets(teams={"lab": 100.0}, default=one_job * 1.5)})
    with Client(config) as client:
        first = client.submit_command(SLEEP, owner=Owner(team="made-up-1"), name="first")
        wait_until(lambda: first.status() is JobState.RUNNING, 30, "the first job to run")
        second = client.submit_command(SLEEP, owner=Owner(team="made-up-2"), name="second")
        wait_until(lambda: "budget" in client.store.detail(second.job_id), 30, "the reason")
        assert second.status() is JobState.PENDING, "a new team name is no fresh budget"
        story = " ".join(e.reason for e in second.story())
        assert "budgets.default, one budget shared by every team" in story, story
        second.cancel()
        assert first.wait(60) is JobState.SUCCEEDED
