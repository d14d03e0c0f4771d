"""The tour (``deploy/dev/tour.py``, the demo's own code): one training job crosses every tier
of the dev federation, preempted on each the way that tier preempts, resumed on the next from
its checkpoint on S3, and ends bit-identical to an uninterrupted run.

``ROUTE`` visits the 16 ordered pairs of the four tiers once each (an Euler circuit of the
complete digraph with loops; ``GB_TOUR_ROUTE`` gives a shorter one by hand). Each hop is
printed (pair, the step the next attempt resumed from), for the closing note."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from tour import SITES, TourError, print_report, run

from tests.federation.conftest import Federation

pytestmark = [pytest.mark.federation, pytest.mark.slow]

ROUTE = os.environ.get("GB_TOUR_ROUTE", "LLCCSSEELSLESCECL")
"""Each letter a segment; each neighbouring pair a hop: LL LC CC CS SS SE EE EL LS SL LE ES SC
CE EC CL, the 16 ordered pairs."""


def test_one_job_crosses_every_ordered_pair_of_tiers_bit_identical(
    federation: Federation, tmp_path: Path,
) -> None:
    try:
        tour = run(federation, ROUTE, tmp_path)
    except TourError as exc:
        pytest.fail(str(exc))
    print_report(tour)
    assert tour.identical, tour.story
    steps = [step for *_, step in tour.hops]
    assert steps == sorted(steps) and steps[0] > 0, (steps, tour.story)
    assert tour.said and set(tour.said) <= set(steps), (tour.said, steps, tour.story)
    assert {(h, t) for h, t, *_ in tour.hops} == set(itertools.pairwise(ROUTE))
    assert {row.site for row in tour.ledger} == set(SITES.values())


@pytest.mark.torch
def test_a_pytorch_job_crosses_every_tier_bit_identical(
    federation: Federation, tmp_path: Path,
) -> None:
    """The PyTorch variant (CPU, one thread): laptop -> cluster -> spot -> edge -> laptop,
    each tier preempting it its own way."""
    pytest.importorskip("torch")
    try:
        tour = run(federation, "LCSEL", tmp_path, job="torch")
    except TourError as exc:
        pytest.fail(str(exc))
    print_report(tour)
    assert tour.identical, tour.story
    assert [(h, t) for h, t, *_ in tour.hops] == [("L", "C"), ("C", "S"), ("S", "E"), ("E", "L")]
    assert {row.site for row in tour.ledger} == set(SITES.values())
    assert tour.said and set(tour.said) <= {step for *_, step in tour.hops}, tour.story
