"""The Slurm adapter against the adapter contract, on the real Slurm the session starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gridbridge.adapters.slurm import SlurmAdapter
from gridbridge.config import Capacity, SiteConfig
from gridbridge.testing import AdapterContract

pytestmark = pytest.mark.slurm


class TestSlurmContract(AdapterContract):
    @pytest.fixture
    def adapter(self, tmp_path: Path, slurm_cluster: dict[str, str]) -> Iterator[SlurmAdapter]:
        site = SiteConfig(name="cluster", adapter="slurm", capacity=Capacity(cpus=64),
                          options={"partitions": {"normal": {}}})
        adapter = SlurmAdapter(site, tmp_path / "work")
        yield adapter
        adapter.cancel([o.native_id for o in adapter.owned()])
