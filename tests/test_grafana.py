"""deploy/grafana: the dashboard and the alert rules name only metrics that ``/metrics``
serves (read from the exposition of a real store, every family present), with labels it
gives them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from gridbridge.client import Client
from gridbridge.config import parse_config
from gridbridge.scheduler.reconciler import Reconciler
from gridbridge.service._app import Service
from gridbridge.service._metrics import exposition

GRAFANA = Path(__file__).resolve().parents[1] / "deploy" / "grafana"
_NAME = re.compile(r"\b(gridbridge_[a-z_]+)\b")
_BY = re.compile(r"\bby \(([a-z_, ]+)\)")
_SELECTOR = re.compile(r"\{([a-z_]+)=")


def _exprs() -> list[str]:
    dash = json.loads((GRAFANA / "gridbridge.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    rules = yaml.safe_load((GRAFANA / "alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return exprs


def _served(tmp_path: Path) -> dict[str, set[str]]:
    """Each sample name /metrics serves, with its label names."""
    config = parse_config({
        "state_url": f"sqlite:///{tmp_path}/state.db", "checkpoint_root": str(tmp_path / "c"),
        "workdir": str(tmp_path / "run"), "budgets": {"teams": {"phys": 10.0}},
        "sites": [{"name": "a", "adapter": "local", "tier": "cloud", "capacity": {"cpus": 1},
                   "price": {"per_core_hour": 1.0}}]})
    with Client(config, start=False) as client:
        reconciler = Reconciler(config, client.store, client.adapters)
        try:
            reconciler.tick()  # its tick and phase timings (nothing to place yet)
            reconciler.placing.offers()  # what a placement round asks the sites for
        finally:
            reconciler.close()
        _book_one(client)
        text = exposition(Service(client)).decode()
    served: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            served.setdefault(sample.name, set()).update(sample.labels)
    return served


def _book_one(client: Any) -> None:
    """A job with an ended attempt (booked in the ledger) and a running one, so that every
    family has samples."""
    from sqlalchemy import insert

    from gridbridge.scheduler.tables import AttemptRow, LedgerRow

    job = client.submit_command(["true"], name="seen").job_id  # not started: stays PENDING
    attempts = [{"id": f"{job}.{n}", "job_id": job, "number": n, "token": n, "site": "a",
                 "state": state, "native_id": None, "native_state": "", "created_at": 0.0,
                 "started_at": 0.0, "ended_at": ended, "exit_code": None, "reason": "",
                 "last_step": None, "attempt_url": f"file:///nowhere/{n}", "submit_tries": 1,
                 "offer_key": None, "price_json": None}
                for n, state, ended in ((1, "PREEMPTED", 60.0), (2, "RUNNING", None))]
    with client.store.engine.begin() as conn:
        conn.execute(insert(AttemptRow), attempts)
        conn.execute(insert(LedgerRow), [{
            "attempt_id": f"{job}.1", "job_id": job, "user": "alice", "team": "phys",
            "project": "p", "site": "a", "tier": "cloud", "outcome": "PREEMPTED",
            "start": 0.0, "end": 60.0, "core_hours": 1 / 60, "gpu_hours": 0.0, "cost": 0.02,
            "on_demand_cost": 0.05, "lost_cost": 0.01, "offer_key": None}])


def test_every_metric_the_dashboard_and_alerts_name_is_served(tmp_path: Path) -> None:
    served = _served(tmp_path)
    exprs = _exprs()
    named = {n for e in exprs for n in _NAME.findall(e)}
    assert len(named) >= 8, named
    assert named <= set(served), sorted(named - set(served))
    for expr in exprs:  # the labels an expression groups or selects by exist on its metrics
        labels = {lb.strip() for m in _BY.findall(expr) for lb in m.split(",")}
        labels |= set(_SELECTOR.findall(expr))
        have = set().union(*(served[n] for n in _NAME.findall(expr)))
        assert labels <= have, (expr, labels - have)


def test_alerts_fire_on_a_site_degraded_10_minutes_and_a_budget_90_percent_spent() -> None:
    rules = yaml.safe_load((GRAFANA / "alerts.yml").read_text())
    by_name = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert by_name["GridbridgeSiteDegraded"]["for"] == "10m"
    assert "gridbridge_site_up == 0" in by_name["GridbridgeSiteDegraded"]["expr"]
    assert "< 0.10" in by_name["GridbridgeBudgetNearlySpent"]["expr"]
