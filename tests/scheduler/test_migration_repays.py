"""The short-stretch rule of the live decision: a preemptible offer is taken (started on, or
moved to) only while its expected stretch, ``1 / preemption rate``, repays the restart against
the cheapest reliable offer; the rate is the site's own record, nothing fitted."""

from __future__ import annotations

import numpy as np

from gridbridge.adapter import Offer, Pricing
from gridbridge.scheduler import moves
from gridbridge.spec import Tier

R_S = 360.0  # a 0.1 h restart


def offers(rate: float, spot_up: bool = True) -> list[Offer]:
    def offer(site: str, price: float, preemptible: bool, lam: float, cpus: int) -> Offer:
        return Offer(site=site, tier=Tier.CLOUD, cpus=cpus, memory_gb=1.0,
                     price=Pricing(per_hour=price), on_demand=Pricing(per_hour=3.06),
                     preemptible=preemptible, preemption_rate_per_hour=lam,
                     restart_overhead_s=R_S)
    return [offer("spot", 0.97, True, rate, 1 if spot_up else 0),
            offer("on-demand", 3.06, False, 0.0, 1)]


def row(here: int, work_h: float = 20.0, left_h: float = 60.0) -> moves.Running:
    def col(x: float) -> np.ndarray:
        return np.array([x])
    return moves.Running(
        offer=np.array([here]), cpus=col(1), gpus=col(0), memory_gb=col(1),
        work_left_s=col(work_h * 3600), since_checkpoint_s=col(0), left_s=col(left_h * 3600),
        since_move_s=col(np.inf), interval_s=col(60), mode=np.array([moves.MODES["cost"]]),
        allowed=np.ones((1, 2), dtype=np.bool_))


def test_a_job_on_demand_moves_to_spot_only_while_its_stretches_repay_the_restart() -> None:
    # 1/rate of 2 h repays a 0.1 h restart at a third of the price; 1/rate of 8.6 min does not
    # (3.06 - 0.97 = 2.09 < 3.06 x 0.1 x 7), though Poisson restarts alone would call it cheaper
    assert [m.target for m in moves.weigh(row(1), offers(0.5), moves.Settings())] == [0]
    assert moves.weigh(row(1), offers(7.0), moves.Settings()) == []


def test_a_job_without_an_instance_starts_where_it_repays_or_waits_for_spot_on_pace() -> None:
    settings = moves.Settings()
    assert moves.start(row(-1), offers(0.5), settings).tolist() == [0]
    assert moves.start(row(-1), offers(7.0), settings).tolist() == [1]
    # spot down now: ahead of pace it waits for spot that repays, behind pace it starts
    pace = np.array([0.5])
    assert moves.start(row(-1, 20, 60), offers(0.5, spot_up=False), settings,
                       pace=pace).tolist() == [-1]
    assert moves.start(row(-1, 40, 60), offers(0.5, spot_up=False), settings,
                       pace=pace).tolist() == [1]
    # spot that cannot repay is not worth waiting for
    assert moves.start(row(-1, 20, 60), offers(7.0, spot_up=False), settings,
                       pace=pace).tolist() == [1]
