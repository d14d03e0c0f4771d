"""The time-to-first-run histogram of ``/metrics`` keeps what the jobs whose first attempt
started long enough ago add, and reads only the newer starts at each scrape: at every step
(scrapes timed so that each keeps what came before) it equals a full read of the store."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import insert, update

from gridbridge.client import Client
from gridbridge.config import parse_config
from gridbridge.scheduler.tables import AttemptRow, JobRow
from gridbridge.service._metrics import KEEP_LAG_S, _first_runs


def test_kept_first_runs_match_a_full_read_as_jobs_start_and_end(tmp_path: Path) -> None:
    config = parse_config({
        "state_url": f"sqlite:///{tmp_path}/state.db", "checkpoint_root": str(tmp_path / "c"),
        "workdir": str(tmp_path / "run"),
        "sites": [{"name": "a", "adapter": "local", "tier": "cloud", "capacity": {"cpus": 1},
                   "price": {"per_core_hour": 1.0}}]})
    with Client(config, start=False) as client:
        store = client.store

        def submit() -> str:
            job = client.submit_command(["true"], name="j").job_id
            time.sleep(0.01)  # distinct submission times
            return job

        starts: list[float] = []

        def ran(job: str, after_s: float, state: str, job_state: str) -> None:
            created = store.job(job).created_at
            starts.append(created + after_s)
            with store.engine.begin() as conn:
                conn.execute(insert(AttemptRow), [{
                    "id": f"{job}.1", "job_id": job, "number": 1, "token": 1, "site": "a",
                    "state": state, "native_id": None, "native_state": "",
                    "created_at": created, "started_at": created + after_s,
                    "ended_at": None if state == "RUNNING" else created + after_s + 1,
                    "exit_code": None, "reason": "", "last_step": None,
                    "attempt_url": f"file:///nowhere/{job}", "submit_tries": 1,
                    "offer_key": None, "price_json": None}])
                conn.execute(update(JobRow).where(JobRow.id == job).values(state=job_state))

        def same() -> int:
            # a scrape late enough to keep every start so far (the next starts come later)
            now = max(starts, default=time.time()) + KEEP_LAG_S + 0.5
            kept, full = _first_runs(store, now), store.first_runs()
            assert kept == full
            assert _first_runs(store, now) == full  # and again, from what it kept
            return kept.count

        first, second, third = submit(), submit(), submit()
        assert same() == 0
        ran(first, 2.0, "SUCCEEDED", "SUCCEEDED")  # ended: kept from now on
        assert same() == 1
        ran(third, 30.0, "RUNNING", "RUNNING")  # a later job runs; the second still waits
        assert same() == 2
        ran(second, 400.0, "SUCCEEDED", "SUCCEEDED")
        with store.engine.begin() as conn:
            conn.execute(update(JobRow).where(JobRow.id == third).values(state="SUCCEEDED"))
        assert same() == 3  # every job ended
        fourth = submit()
        assert same() == 3
        ran(fourth, 5000.0, "RUNNING", "RUNNING")
        assert same() == 4
        assert store.first_runs().at_most[:4] == (0, 1, 1, 2)  # 2 s, 30 s, 400 s, 5000 s


def test_the_teams_not_named_share_one_budget_pool_in_the_metrics(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from gridbridge.scheduler.tables import LedgerRow
    from gridbridge.service._app import Service
    from gridbridge.service._metrics import OTHER_TEAMS, exposition

    config = parse_config({
        "state_url": f"sqlite:///{tmp_path}/state.db", "checkpoint_root": str(tmp_path / "c"),
        "workdir": str(tmp_path / "run"),
        "budgets": {"teams": {"phys": 10.0}, "default": 5.0},
        "sites": [{"name": "a", "adapter": "local", "tier": "cloud", "capacity": {"cpus": 1},
                   "price": {"per_core_hour": 1.0}}]})
    now = time.time()
    with Client(config, start=False) as client:
        with client.store.engine.begin() as conn:
            conn.execute(insert(LedgerRow), [
                {"attempt_id": f"j{i}.1", "job_id": f"j{i}", "user": "u", "team": team,
                 "project": "p", "site": "a", "tier": "cloud", "outcome": "SUCCEEDED",
                 "start": now - 60, "end": now - 1, "core_hours": 0.01, "gpu_hours": 0.0,
                 "cost": cost, "on_demand_cost": cost, "lost_cost": 0.0, "offer_key": None}
                for i, (team, cost) in enumerate([("phys", 1.5), ("chem", 1.0),
                                                  ("bio", 0.25)])])
        text = exposition(Service(client)).decode()
    left = {s.labels["team"]: s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == "gridbridge_budget_left"}
    # chem and bio are not named: they draw on the one default pool together
    assert left == {"phys": 8.5, OTHER_TEAMS: 3.75}
