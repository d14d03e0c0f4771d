"""A GridCluster worker's shape as the job it asks for, without starting a cluster: memory is
GiB (``memory_gb``), as Slurm's ``--mem=...M`` and PBS's ``mem=...mb`` read it."""

from __future__ import annotations

import math

import pytest

from gridbridge.dask.cluster import WorkerOptions, _Shape, _spec_options


@pytest.mark.parametrize(("memory", "gib"), [
    ("4GiB", 4.0), ("4 GiB", 4.0), (4 * 2**30, 4.0), ("512 MiB", 0.5), ("109 GB", 101.52),
])
def test_a_worker_asks_for_its_memory_in_gib(memory: str | int, gib: float) -> None:
    shape = _Shape.of(cores=2, memory=memory, gpus=0, processes=1)
    assert shape.memory_gb == gib
    resources = _spec_options(shape, WorkerOptions(), None, None)["resources"]
    assert resources["memory_gb"] == gib


def test_a_4gib_worker_asks_slurm_for_4096m() -> None:
    """The bug this pins: '4GiB' was memory_gb 4.3 (bytes / 1e9), so Slurm got --mem=4404M."""
    shape = _Shape.of(cores=1, memory="4GiB", gpus=0, processes=1)
    assert math.ceil(shape.memory_gb * 1024) == 4096


def test_the_asked_memory_always_covers_the_workers_limit() -> None:
    """Rounded up, never down: the job's memory_gb holds the worker's memory limit."""
    shape = _Shape.of(cores=1, memory=1_000_000_001, gpus=0, processes=1)
    assert shape.memory_gb * 2**30 >= shape.memory_bytes
