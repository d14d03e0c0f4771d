"""The local adapter against the adapter contract every adapter passes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gridbridge.adapters.local import LocalAdapter
from gridbridge.config import Capacity, SiteConfig
from gridbridge.testing import AdapterContract


class TestLocalContract(AdapterContract):
    @pytest.fixture
    def adapter(self, tmp_path: Path) -> Iterator[LocalAdapter]:
        site = SiteConfig(name="contract", adapter="local", capacity=Capacity(cpus=8),
                          options={"grace_s": 2.0})
        adapter = LocalAdapter(site, tmp_path / "work")
        yield adapter
        adapter.cancel([o.native_id for o in adapter.owned()])
