"""Shared fixtures: an isolated embedded-default configuration per test, and the rule that a
test needing a real service must not be skipped when ``GRIDBRIDGE_REQUIRE_SERVICES=1``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridbridge.config import GridConfig, default_config

SERVICE_MARKERS = ("s3", "slurm", "ssh", "ec2", "pbs", "torch")
_skipped_services: list[str] = []


@pytest.fixture
def grid(tmp_path: Path) -> GridConfig:
    """The embedded default rooted in this test's own folder (fast ticks, 2 cpus a site)."""
    config = default_config(tmp_path / "home", cpus=2)
    limits = config.limits.model_copy(update={"tick_interval_s": 0.1, "lease_s": 5.0})
    return config.model_copy(update={"limits": limits})


@pytest.fixture
def client(grid: GridConfig) -> Iterator[object]:
    from gridbridge import Client

    with Client(grid) as c:
        yield c


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and any(m in report.keywords for m in SERVICE_MARKERS):
        _skipped_services.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("GRIDBRIDGE_REQUIRE_SERVICES") == "1" and _skipped_services:
        print("\nservice tests were skipped but GRIDBRIDGE_REQUIRE_SERVICES=1:")
        for nodeid in _skipped_services:
            print(f"  {nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


from tests.checkpoint.conftest import s3_server  # noqa: E402,F401 - the SeaweedFS fixture, shared
