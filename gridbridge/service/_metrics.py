"""``GET /metrics``: the federation in the Prometheus text format, for a scraper.

Invariant: every value is read from the store (or the config) when the scrape comes, in a
few grouped queries (:meth:`~gridbridge.scheduler.store.StateStore.tallies`), so two
scrapes never disagree with the store and a restarted service loses no counter. Labels are
bounded: states, outcomes, sites, tiers, teams and the currency; never a job or an attempt
id. Money is in the config's ``budgets.currency`` (a ``currency`` label says which). Only
operators and finance may scrape: the books cover every team.

    metric                                      type     labels
    gridbridge_jobs                             gauge    state
    gridbridge_attempts_active                  gauge    site, tier, state
    gridbridge_attempts_ended_total             counter  site, tier, outcome
    gridbridge_site_up                          gauge    site, tier
    gridbridge_site_drained                     gauge    site, tier
    gridbridge_site_capacity_cpus               gauge    site, tier
    gridbridge_spent_total                      counter  team, site, tier, currency
    gridbridge_on_demand_equivalent_total       counter  team, site, tier, currency
    gridbridge_preempted_work_total             counter  team, site, tier, currency
    gridbridge_core_seconds_total               counter  team, site, tier
    gridbridge_budget                           gauge    team, currency
    gridbridge_budget_left                      gauge    team, currency
    gridbridge_queue_wait_seconds               histo    site, tier
    gridbridge_time_to_first_run_seconds        histo    (none)
    gridbridge_metrics_scrape_seconds           gauge    (none)
    gridbridge_tick_seconds                     histo    (none)  this process's reconciler
    gridbridge_phase_seconds                    histo    phase   (from the loop's own timing)
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.responses import Response

from gridbridge.scheduler.records import WAIT_BUCKETS_S, Waits
from gridbridge.states import AttemptState, JobState

from ._app import Call, Endpoint, Service
from ._rights import Verb, check

if TYPE_CHECKING:
    from gridbridge.scheduler.store import StateStore

__all__ = ["ENDPOINTS", "OTHER_TEAMS", "exposition"]

OTHER_TEAMS = "(other teams)"
"""The ``team`` label of the default budget pool."""

_ENDED = {AttemptState.SUCCEEDED: "succeeded", AttemptState.FAILED: "failed",
          AttemptState.PREEMPTED: "preempted", AttemptState.LOST: "lost",
          AttemptState.CANCELLED: "cancelled", AttemptState.MOVED: "moved"}


class _Federation(Collector):
    """Reads the store at each scrape."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[Any]:
        started = time.perf_counter()
        config, store = self.service.made.config, self.service.store
        tiers = {s.name: s.tier.value for s in config.sites}
        currency = config.budgets.currency
        now = datetime.now(UTC)
        month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
        tallies = store.tallies(since=month)

        jobs = GaugeMetricFamily("gridbridge_jobs", "Jobs in the store, by state.",
                                 labels=["state"])
        for state in JobState:
            jobs.add_metric([state.value], tallies.jobs.get(state.value, 0))
        yield jobs

        active = GaugeMetricFamily(
            "gridbridge_attempts_active", "Attempts not yet ended, by site and state.",
            labels=["site", "tier", "state"])
        ended = CounterMetricFamily(
            "gridbridge_attempts_ended", "Attempts that ended, by site and outcome.",
            labels=["site", "tier", "outcome"])
        for (where, word), n in sorted(tallies.attempts.items()):
            tier = tiers.get(where, "")
            outcome = _ENDED.get(AttemptState(word))
            if outcome is None:
                active.add_metric([where, tier, word], n)
            else:
                ended.add_metric([where, tier, outcome], n)
        yield active
        yield ended

        health, drained = store.site_health(), store.drained_sites()
        up = GaugeMetricFamily("gridbridge_site_up",
                               "1 while the site's calls succeed (0: degraded).",
                               labels=["site", "tier"])
        drain = GaugeMetricFamily("gridbridge_site_drained",
                                  "1 while the site is drained.", labels=["site", "tier"])
        cpus = GaugeMetricFamily("gridbridge_site_capacity_cpus",
                                 "The CPUs the config lets gridbridge use on the site.",
                                 labels=["site", "tier"])
        for site in config.sites:
            seen = health.get(site.name)
            labels = [site.name, site.tier.value]
            up.add_metric(labels, 1 if seen is None or seen.healthy else 0)
            drain.add_metric(labels, 1 if site.name in drained else 0)
            cpus.add_metric(labels, site.capacity.cpus)
        yield up
        yield drain
        yield cpus

        money = [("gridbridge_spent", "Money spent: the ledger's cost of ended attempts.",
                  "cost"),
                 ("gridbridge_on_demand_equivalent",
                  "What the same work would have cost on demand.", "on_demand_cost"),
                 ("gridbridge_preempted_work",
                  "Money spent on work that preemption then threw away.", "lost_cost")]
        for name, doc, field in money:
            family = CounterMetricFamily(name, f"{doc} In the currency labelled.",
                                         labels=["team", "site", "tier", "currency"])
            for line in tallies.books:
                family.add_metric([line.team, line.site, tiers.get(line.site, ""), currency],
                                  getattr(line, field))
            yield family
        core = CounterMetricFamily("gridbridge_core_seconds",
                                   "CPU core-seconds of ended attempts.",
                                   labels=["team", "site", "tier"])
        for line in tallies.books:
            core.add_metric([line.team, line.site, tiers.get(line.site, "")],
                            line.core_hours * 3600)
        yield core

        budgets = config.budgets
        if budgets.teams or budgets.default is not None:
            spent: dict[str, float] = {}
            for line in tallies.books:
                # the teams not named share one pool, as placement holds them to it
                key = line.team if line.team in budgets.teams else OTHER_TEAMS
                spent[key] = spent.get(key, 0.0) + line.cost_since
            budget = GaugeMetricFamily("gridbridge_budget", "A team's monthly budget (team "
                                       f"{OTHER_TEAMS!r}: the default pool every team not "
                                       "named shares).", labels=["team", "currency"])
            left = GaugeMetricFamily(
                "gridbridge_budget_left", "A team's monthly budget less the ledger's cost "
                "of this month (attempts still running not counted).",
                labels=["team", "currency"])
            pools = dict(sorted(budgets.teams.items()))
            if budgets.default is not None:
                pools[OTHER_TEAMS] = budgets.default
            for team, amount in pools.items():
                budget.add_metric([team, currency], amount)
                left.add_metric([team, currency], amount - spent.get(team, 0.0))
            yield budget
            yield left

        queue = HistogramMetricFamily(
            "gridbridge_queue_wait_seconds", "From an attempt's placement on a site to its "
            "start there, for every attempt that started.", labels=["site", "tier"])
        for site_name, waits in sorted(tallies.queue_waits.items()):
            queue.add_metric([site_name, tiers.get(site_name, "")], _buckets(waits),
                             waits.total_s)
        yield queue
        first = HistogramMetricFamily(
            "gridbridge_time_to_first_run_seconds", "From a job's submission to the start of "
            "its first attempt, for every job that started.")
        firsts = _first_runs(store)
        first.add_metric([], _buckets(firsts), firsts.total_s)
        yield first

        took = GaugeMetricFamily("gridbridge_metrics_scrape_seconds",
                                 "How long reading the store for this scrape took.")
        took.add_metric([], time.perf_counter() - started)
        yield took


class _Kept:
    """The time-to-first-run histogram of the jobs whose first attempt started before
    ``until`` (which can no longer change)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.until: float | None = None
        self.waits = Waits.none()


_KEPT: weakref.WeakKeyDictionary[StateStore, _Kept] = weakref.WeakKeyDictionary()
_KEPT_LOCK = threading.Lock()
KEEP_LAG_S = 300.0
"""Only starts older than this are kept: a start is written with the writer's clock when its
transaction began, so one committed late (or by a writer whose clock lags) still lands in
the window read at every scrape."""


def _first_runs(store: StateStore, now: float | None = None) -> Waits:
    """Every job's time to first run: the starts older than :data:`KEEP_LAG_S` are summed
    once and kept; only the newer ones are read at each scrape."""
    with _KEPT_LOCK:
        kept = _KEPT.setdefault(store, _Kept())
    with kept.lock:
        until = (time.time() if now is None else now) - KEEP_LAG_S
        if kept.until is None or until > kept.until:
            kept.waits += store.first_runs(kept.until, until)
            kept.until = until
        return kept.waits + store.first_runs(kept.until)


def _buckets(waits: Waits) -> list[tuple[str, float]]:
    return [*((repr(bound), n) for bound, n in zip(WAIT_BUCKETS_S, waits.at_most, strict=True)),
            ("+Inf", waits.count)]


def exposition(service: Service) -> bytes:
    """The whole ``/metrics`` page: the store's counts, then this process's reconciler
    timings (ticks and phases; none until it has held the lease)."""
    from gridbridge.scheduler.reconciler import TIMINGS

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Federation(service))
    return bytes(generate_latest(registry)) + bytes(generate_latest(TIMINGS))


def _metrics(service: Service, call: Call) -> Response:
    check(call.who, Verb.METRICS)
    return Response(exposition(service), media_type=CONTENT_TYPE_LATEST)


ENDPOINTS = [Endpoint("GET", "/metrics", "metrics", False, _metrics)]
