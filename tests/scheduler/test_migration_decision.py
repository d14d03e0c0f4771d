"""The move decision on its own (:func:`gridbridge.scheduler.moves.weigh`): the modes, the
cost factor, the hysteresis, the deadline's safety rule and the capacity walk, each with the
clock the caller owns (a simulator's as well as the reconciler's)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from gridbridge.adapter import Offer, Pricing
from gridbridge.scheduler.moves import MODES, Running, Settings, Trigger, weigh, why
from gridbridge.spec import Constraints, JobSpec, Tier

HOUR = 3600.0


def offer(site: str, rate: float, preemptible: bool, cpus: int = 8) -> Offer:
    return Offer(site=site, tier=Tier.CLOUD, cpus=cpus, memory_gb=64,
                 price=Pricing(per_core_hour=rate), on_demand=Pricing(per_core_hour=0.048),
                 preemptible=preemptible, preemption_rate_per_hour=0.5 if preemptible else 0,
                 restart_overhead_s=60)


SPOT, STEADY = offer("spot", 0.012, True), offer("steady", 0.048, False)


def running(on: int, *, mode: str = "cost", work: float = 10 * HOUR, since: float = 300.0,
            left: float = np.inf, since_move: float = np.inf, n_offers: int = 2) -> Running:
    one = np.ones(1)
    return Running(offer=np.array([on]), cpus=one, gpus=0 * one, memory_gb=one,
                   work_left_s=work * one, since_checkpoint_s=since * one, left_s=left * one,
                   since_move_s=since_move * one, interval_s=600 * one,
                   mode=np.array([MODES[mode]]), allowed=np.ones((1, n_offers), dtype=bool))


def test_a_job_moves_to_a_cheaper_offer_once_the_saving_beats_the_factor() -> None:
    offers = [SPOT, STEADY]
    [move] = weigh(running(1), offers, Settings(factor=2))
    assert move.trigger is Trigger.CHEAPER and move.target == 0
    assert move.saving > 2 * move.cost > 0
    assert "moving from steady to spot: cheaper there" in why(move, offers, STEADY)
    # a short rest saves less than twice what the move costs (restart + unsaved work): stays
    assert weigh(running(1, work=120.0), offers, Settings(factor=2)) == []
    # the same short rest moves when the factor is low enough
    small = weigh(running(1, work=1200.0), offers, Settings(factor=1))
    assert [m.trigger for m in small] == [Trigger.CHEAPER]
    assert weigh(running(1, work=1200.0), offers, Settings(factor=50)) == []


def test_two_moves_of_one_job_are_never_closer_than_the_hysteresis() -> None:
    settings = Settings(min_interval_s=600)
    assert weigh(running(1, since_move=599.0), [SPOT, STEADY], settings) == []
    assert [m.trigger for m in weigh(running(1, since_move=600.0), [SPOT, STEADY],
                                     settings)] == [Trigger.CHEAPER]


@pytest.mark.parametrize("mode", ["never", "deadline"])
def test_only_the_cost_mode_moves_for_cost(mode: str) -> None:
    assert weigh(running(1, mode=mode), [SPOT, STEADY], Settings()) == []


def test_migrate_never_is_never_moved_even_off_a_drained_site_or_for_its_deadline() -> None:
    tight = running(0, mode="never", work=600.0, left=700.0)
    assert weigh(tight, [SPOT, STEADY], Settings(), drained={"spot"}) == []
    assert weigh(running(0, mode="deadline", work=600.0, left=700.0), [SPOT, STEADY],
                 Settings(), drained={"spot"})[0].trigger is Trigger.DRAIN


def test_the_safety_rule_moves_to_reliable_capacity_while_it_can_still_finish() -> None:
    work, since = 1800.0, 300.0
    need = STEADY.restart_overhead_s + work  # all of W again, after the restart
    calm = running(0, mode="deadline", work=work, since=since, left=need + 5.1)
    assert weigh(calm, [SPOT, STEADY], Settings(margin_s=5)) == []
    [move] = weigh(running(0, mode="deadline", work=work, since=since, left=need + 4.9),
                   [SPOT, STEADY], Settings(margin_s=5))
    assert move.trigger is Trigger.DEADLINE and move.target == 1
    # on reliable capacity, a cheaper spot offer would break the rule again: it stays
    assert weigh(running(1, mode="cost", work=work, left=need + 60), [SPOT, STEADY],
                 Settings(factor=1)) == []


def test_moves_are_walked_against_each_targets_room() -> None:
    offers = [offer("spot", 0.012, True, cpus=1), STEADY]
    n = 3
    ones = np.ones(n)
    many = Running(offer=np.ones(n, dtype=np.int64), cpus=ones, gpus=0 * ones,
                   memory_gb=ones, work_left_s=HOUR * 10 * ones, since_checkpoint_s=0 * ones,
                   left_s=np.inf * ones, since_move_s=np.inf * ones, interval_s=600 * ones,
                   mode=np.full(n, MODES["cost"]), allowed=np.ones((n, 2), dtype=bool))
    assert len(weigh(many, offers, Settings())) == 1, "one cpu free: one move"


def test_the_spec_default_mode_follows_the_deadline_and_the_config() -> None:
    spec = JobSpec(name="j", command=("true",))
    assert spec.migrate_mode() == "never"
    assert spec.migrate_mode("cost") == "cost"
    dated = JobSpec(name="j", command=("true",),
                    constraints=Constraints(deadline=datetime(2030, 1, 1, tzinfo=UTC)))
    assert dated.migrate_mode() == "deadline"
    assert spec.model_copy(update={"migrate": "never"}).migrate_mode("cost") == "never"
