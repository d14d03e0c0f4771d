"""What the Dask tests share: the federation they run on."""

from __future__ import annotations

import pytest

from gridbridge.config import GridConfig


@pytest.fixture
def dask_grid(grid: GridConfig) -> GridConfig:
    """Two cpus on each site and a quick grace period: a worker must hand over within it."""
    sites = tuple(s.model_copy(update={"options": {**s.options, "grace_s": 15}})
                  for s in grid.sites)
    return grid.model_copy(update={"sites": sites})
