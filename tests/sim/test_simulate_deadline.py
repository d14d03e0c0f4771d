"""The deadline scenario: the omniscient DP against brute force, the policies against it and
against hand-made traces whose right answer is known, and the command line."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gridbridge.cli import app
from gridbridge.sim import deadline as sim
from gridbridge.sim.deadline import (
    HPC,
    IDLE,
    OD,
    AvailabilityTrace,
    HpcTier,
    Prices,
    Setting,
    evaluate,
    load_trace,
    omniscient,
    simulate,
)
from gridbridge.sim.deadline._grid import Grid, grid_for
from tests.support.paths import DATA as _DATA

DATA = _DATA / "spot-availability"
C1 = DATA / "preemption-1-node_aws-04-22-2023_us-east-1c_v100_1.json.gz"
F1 = DATA / "preemption-1-node_aws-04-22-2023_us-east-1f_v100_1.json.gz"
FOUR = DATA / "preemption-4-node_aws-08-03-2023_us-east-1f_v100_1.json.gz"
POLICIES = list(sim.POLICIES)
HOUR = 3600.0


def hourly(*zones: str, prices: list[float] | None = None) -> list[AvailabilityTrace]:
    """Hand-made zones with one-hour ticks: '1' spot there, '.' none."""
    return [AvailabilityTrace(f"z{i}", HOUR, np.array([c == "1" for c in z]),
                              None if prices is None else np.full(len(z), prices[i]))
            for i, z in enumerate(zones)]


# ---------------------------------------------------------------- brute force, written apart


def brute_force(zones: list[AvailabilityTrace], setting: Setting, prices: Prices) -> float:
    """Every action sequence, one per tick, on the physical model: the cheapest that finishes."""
    gap = zones[0].gap_seconds
    g = grid_for(setting, gap, prices.hpc)
    best = np.inf
    choices = [IDLE, OD, *range(len(zones))] + ([HPC] if prices.hpc else [])
    for plan in itertools.product(choices, repeat=g.ticks):
        cost = _replay_plan(plan, zones, g, prices)
        best = min(best, cost)
    return float(best)


def _replay_plan(plan: tuple[int, ...], zones: list[AvailabilityTrace], g: Grid,
                 prices: Prices) -> float:
    loc, restart, queue, rem, cost, hpc_used = IDLE, 0, 0, g.work, 0.0, 0
    for t, action in enumerate(plan):
        if rem == 0:
            return cost
        if loc >= 0 and not zones[loc].available[t]:
            loc, restart = IDLE, 0
        if loc == HPC and action != HPC:
            return np.inf  # HPC is the last tier
        if action >= 0 and not zones[action].available[t]:
            return np.inf
        if action != loc:
            restart = 0 if action == IDLE else g.r
            queue = g.wait if action == HPC else 0
        loc = action
        if loc == IDLE:
            continue
        budget = g.m
        waited = min(queue, budget)
        queue -= waited
        budget -= waited
        restarted = min(restart, budget)
        restart -= restarted
        worked = min(rem, budget - restarted)
        rem -= worked
        held = restarted + worked
        if loc == OD:
            cost += held * prices.on_demand * g.q / HOUR
        elif loc == HPC:
            assert prices.hpc is not None
            for _ in range(held):
                price = prices.hpc.price if hpc_used < g.alloc else prices.hpc.overage_price
                cost += price * g.q / HOUR
                hpc_used += 1
        else:
            cost += held * float(zones[loc].prices[t]) * g.q / HOUR  # type: ignore[index]
    return cost if rem == 0 else np.inf


@pytest.mark.parametrize("seed", range(6))
def test_omniscient_equals_brute_force_on_tiny_traces(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_zones = 1 + seed % 2
    zones = [AvailabilityTrace(f"z{i}", HOUR, rng.random(6) < 0.6, rng.uniform(0.5, 1.5, 6))
             for i in range(n_zones)]
    setting = Setting(job_hours=3, deadline_hours=5 + seed % 2, restart_hours=0.5)
    hpc = HpcTier(wait_hours=1, price=0.2, hours=1.5, overage_price=2.5) if seed >= 4 else None
    prices = Prices(on_demand=3.0, hpc=hpc)
    want = brute_force(zones, setting, prices)
    got = omniscient(zones, [0], setting, prices)[0]
    assert got == pytest.approx(want, rel=1e-12)


# ------------------------------------------------------------------ hand-made, known answers


def test_always_available_costs_the_job_plus_one_restart_on_spot() -> None:
    zones, setting = hourly("1" * 12), Setting(8, 10, 0.5)
    want = (8 + 0.5) * sim.DEFAULT_SPOT_PRICE
    for name in POLICIES:
        run = simulate(sim.POLICIES[name](), zones, 0, setting, Prices())
        assert run.finished and run.cost == pytest.approx(want)
    assert omniscient(zones, [0], setting, Prices())[0] == pytest.approx(want)


def test_greedy_never_available_pays_exactly_on_demand_only() -> None:
    zones, setting = hourly("." * 12), Setting(8, 10, 0.5)
    run = simulate(sim.Greedy(), zones, 0, setting, Prices())
    assert run.finished and run.cost == pytest.approx((8 + 0.5) * sim.DEFAULT_ON_DEMAND_PRICE)
    assert run.units_by_place["spot"] == 0


def test_uniform_progress_beats_greedy_when_spot_comes_late() -> None:
    # Spot only in the second half: greedy idles its slack away, then runs on-demand to the
    # end; uniform progress keeps up on on-demand early and finishes on the late spot.
    zones, setting = hourly("." * 7 + "1" * 7), Setting(8, 14, 0.25)
    greedy = simulate(sim.Greedy(), zones, 0, setting, Prices())
    up = simulate(sim.UniformProgress(), zones, 0, setting, Prices())
    assert greedy.finished and up.finished
    assert greedy.units_by_place["spot"] == 0
    assert up.units_by_place["spot"] > 0 and up.cost < greedy.cost


def test_gridbridge_uses_a_second_zone_when_the_first_is_gone() -> None:
    zones, setting = hourly("1" * 5 + "." * 7, "." * 5 + "1" * 7), Setting(8, 10, 0.5)
    alone = [simulate(sim.UniformProgress(), [z], 0, setting, Prices()).cost for z in zones]
    both = simulate(sim.Gridbridge(), zones, 0, setting, Prices())
    assert both.finished and both.units_by_place["on-demand"] == 0
    assert both.cost == pytest.approx((8 + 2 * 0.5) * sim.DEFAULT_SPOT_PRICE)
    assert both.cost < min(alone)


def test_gridbridge_row_goes_through_the_live_weigh(monkeypatch: pytest.MonkeyPatch) -> None:
    """One decision, two callers: the replay's gridbridge row is scheduler.moves' weigh and
    start; break either and the row breaks, and every move it makes is one weigh returned."""
    from gridbridge.scheduler import moves

    trace, setting = load_trace(C1), Setting(8, 10, 0.1)
    real_weigh, real_start = moves.weigh, moves.start
    said: list[int] = []

    def spy(*args: object, **kw: object) -> list[moves.Move]:
        found = real_weigh(*args, **kw)  # type: ignore[arg-type]
        said.append(found[0].target if found else -2)
        return found

    monkeypatch.setattr(moves, "weigh", spy)
    run = simulate(sim.Gridbridge(), [trace], 0, setting, Prices())
    assert run.finished and said  # weighed on every tick it held an instance

    def broken(*args: object, **kw: object) -> list[moves.Move]:
        raise RuntimeError("weigh was called")

    monkeypatch.setattr(moves, "weigh", broken)
    with pytest.raises(RuntimeError, match="weigh was called"):
        simulate(sim.Gridbridge(), [trace], 0, setting, Prices())
    monkeypatch.setattr(moves, "weigh", real_weigh)
    monkeypatch.setattr(moves, "start", broken)
    with pytest.raises(RuntimeError, match="weigh was called"):
        simulate(sim.Gridbridge(), [trace], 0, setting, Prices())
    monkeypatch.setattr(moves, "start", real_start)


def test_short_stretches_that_cannot_repay_the_restart_are_left_alone() -> None:
    """Spot for one hour in three, restart 0.75 h: each stretch buys 0.25 h of work for a
    whole hour billed. Uniform progress takes every stretch and pays more than on-demand only;
    gridbridge reads the stretches in the zone's record (one before the start, at tick 3) and
    stays off them."""
    zone, setting = hourly("1.." * 10), Setting(8, 12, 0.75)
    only = (8 + 0.75) * sim.DEFAULT_ON_DEMAND_PRICE
    up = simulate(sim.UniformProgress(), zone, 3, setting, Prices())
    gb = simulate(sim.Gridbridge(), zone, 3, setting, Prices())
    assert up.finished and gb.finished
    assert up.cost > only
    assert gb.cost <= only + 1e-9


def test_free_hpc_allocation_that_covers_the_job_costs_nothing() -> None:
    hpc = HpcTier(wait_hours=1, price=0.0, hours=100, overage_price=3.06)
    run = simulate(sim.Gridbridge(), hourly("." * 12), 0, Setting(8, 10, 0.5), Prices(hpc=hpc))
    assert run.finished and run.cost == 0 and run.units_by_place["hpc"] > 0


def test_hpc_waits_its_turn_and_the_allocation_lowers_the_cost() -> None:
    trace, setting = load_trace(F1), Setting(8, 10, 0.1)  # little spot: the end matters
    hpc = HpcTier(wait_hours=0.5, price=0.0, hours=3, overage_price=3.06)
    for start in (0, 200):
        up = simulate(sim.UniformProgress(), [trace], start, setting, Prices())
        gb = simulate(sim.Gridbridge(), [trace], start, setting, Prices(hpc=hpc))
        best = omniscient([trace], [start], setting, Prices(hpc=hpc))[0]
        assert gb.finished and gb.units_by_place["hpc"] > 0
        assert best <= gb.cost + 1e-9 and gb.cost < up.cost


# ------------------------------------------------------------------ never late, never better


ADVERSARIAL = {
    "flicker": "10" * 12,
    "gone when the slack is": "1" * 2 + "." * 22,
    "back at the end": "." * 8 + "1" * 16,
    "short bursts": "1.." * 8,
    "never": "." * 24,
}


@pytest.mark.parametrize("pattern", list(ADVERSARIAL.values()), ids=list(ADVERSARIAL))
@pytest.mark.parametrize("restart", [0.25, 0.5, 1.5])
def test_no_policy_misses_on_adversarial_traces(pattern: str, restart: float) -> None:
    zones = hourly(pattern, pattern[::-1])
    for deadline in (10, 13, 20):
        setting = Setting(8, deadline, restart)
        for group in ([zones[0]], zones):
            best = omniscient(group, [0], setting, Prices())[0]
            for name in POLICIES:
                run = simulate(sim.POLICIES[name](), group, 0, setting, Prices())
                assert run.finished, (name, deadline)
                assert run.cost >= best - 1e-9


@pytest.mark.parametrize("path", [C1, F1, FOUR])
def test_real_excerpts_policies_finish_and_never_beat_omniscient(path: Path) -> None:
    trace = load_trace(path)
    setting = Setting(8, 10, 0.05) if trace.gap_seconds < 100 else Setting(12, 16, 0.05)
    g = grid_for(setting, trace.gap_seconds, None)
    starts = list(range(0, len(trace) - g.ticks + 1, max(1, (len(trace) - g.ticks) // 3)))
    best = omniscient([trace], starts, setting, Prices())
    for name in POLICIES:
        for start, floor in zip(starts, best, strict=True):
            run = simulate(sim.POLICIES[name](), [trace], start, setting, Prices())
            assert run.finished and run.cost >= floor - 1e-9


def test_omniscient_with_two_zones_is_no_dearer_than_with_either() -> None:
    zones, setting = [load_trace(C1), load_trace(F1)], Setting(8, 10, 0.1)
    both = omniscient(zones, [0, 200], setting, Prices())
    for z in zones:
        assert (both <= omniscient([z], [0, 200], setting, Prices()) + 1e-9).all()


# ------------------------------------------------------------------ files and the table


def write(path: Path, doc: object) -> Path:
    with gzip.open(path, "wt") as fh:
        json.dump(doc, fh)
    return path


def read(path: Path) -> dict[str, list[float]]:
    with gzip.open(path, "rt") as fh:
        doc: dict[str, list[float]] = json.load(fh)
    return doc


def test_load_trace_reads_both_encodings_and_prices() -> None:
    c1 = load_trace(C1)
    assert c1.gap_seconds == 32 and c1.prices is not None and len(c1.prices) == len(c1)
    raw = read(C1)["data"]
    assert (c1.available == (np.array(raw) == 0)).all()  # 1-node: 0 is a running instance
    four = load_trace(FOUR)
    raw4 = np.array(read(FOUR)["data"])
    assert (four.available == (raw4 >= 1)).all()  # 4-node: instances held


@pytest.mark.parametrize(("doc", "what"), [
    ({"data": [0, 1]}, "gap_seconds"),
    ({"metadata": {"gap_seconds": -5}, "data": [0]}, "gap_seconds"),
    ({"metadata": {"gap_seconds": 30}, "data": [0, "x"]}, "data[1]"),
    ({"metadata": {"gap_seconds": 30}, "data": []}, "empty"),
    ({"metadata": {"gap_seconds": 30}, "data": [0, 1], "prices": [1.0]}, "prices"),
    ({"metadata": {"gap_seconds": 30}, "data": [0, 1], "prices": [1.0, 0]}, "prices[1]"),
    ([1, 2], "object"),
])
def test_load_trace_errors_name_the_file_and_the_fault(tmp_path: Path, doc: object,
                                                       what: str) -> None:
    path = write(tmp_path / "bad.json.gz", doc)
    with pytest.raises(ValueError, match=r"bad\.json\.gz") as info:
        load_trace(path)
    assert what in str(info.value)


def test_unreadable_file_and_mismatched_zones(tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    with pytest.raises(ValueError, match=r"junk\.json"):
        load_trace(junk)
    with pytest.raises(ValueError, match="one tick"):
        sim.align([load_trace(C1), load_trace(FOUR)])
    with pytest.raises(ValueError, match="deadline"):
        evaluate([load_trace(C1)], [Setting(8, 8, 0.1)], Prices(), 1.0)


def test_evaluate_rows_per_policy_zone_and_setting() -> None:
    traces = [load_trace(C1), load_trace(F1)]
    settings = [Setting(8, 10, 0.1), Setting(8, 12, 0.05)]
    seen: list[tuple[int, int]] = []
    rows = evaluate(traces, settings, Prices(), 1.5, lambda d, t: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1]
    assert len(rows) == len(settings) * (2 * 4 + 2)
    multi = [r for r in rows if r["zones"] == 2]
    assert sorted({r["policy"] for r in multi}) == ["gridbridge", "omniscient"]
    for r in rows:
        assert r["deadline_misses"] == 0 and r["runs"] > 0
        assert r["mean_cost_fraction"] > 0 and r["gap_to_omniscient"] >= -1e-12
        if r["policy"] == "omniscient":
            assert r["gap_to_omniscient"] == 0


def test_cli_deadline_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "simulate", "deadline", "--availability", str(C1), "--availability", str(F1),
        "--job-hours", "8", "--deadline-hours", "10", "--restart-hours", "0.1",
        "--stride-hours", "2", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    keys = {"policy", "zones", "job_hours", "deadline_hours", "restart_hours", "runs",
            "mean_cost_fraction", "deadline_misses", "gap_to_omniscient"}
    assert all(keys <= set(r) for r in rows)
    assert {(r["policy"], r["zones"]) for r in rows} >= {("gridbridge", 2), ("omniscient", 2),
                                                         ("uniform-progress", 1)}


def test_cli_deadline_bad_file_says_which(tmp_path: Path) -> None:
    bad = write(tmp_path / "broken.json.gz", {"metadata": {}, "data": [0]})
    result = CliRunner().invoke(app, ["simulate", "deadline", "--availability", str(bad)])
    assert result.exit_code == 2
    assert "broken.json.gz" in result.output and "gap_seconds" in result.output
