"""Shared fixtures: an isolated embedded-default configuration per test, and the rule that a
test needing a real service must not be skipped when ``GRIDBRIDGE_REQUIRE_SERVICES=1``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gridbridge.config import GridConfig, default_config

SERVICE_MARKERS = ("s3", "slurm", "ssh", "ec2", "pbs", "torch", "dask", "browser", "postgres",
                   "federation")
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




@pytest.fixture(autouse=True, scope="session")
def _remove_empty_memory_cgroups() -> Iterator[None]:
    """Local attempts get memory cgroups (``gridbridge-<attempt id>``) that the adapter removes
    when it sees them end; a test that stops watching a job first leaves its group behind.
    At the end of the session, remove this session's groups that are empty (an rmdir of a
    group with a process in it fails, so nothing running is touched)."""
    import contextlib
    import time

    from gridbridge.adapters._cgroup import find_parent

    started = time.time()
    yield
    groups = find_parent("auto")
    if groups is None:
        return
    for group in groups.parent.glob("gridbridge-*"):
        with contextlib.suppress(OSError):
            if group.stat().st_mtime >= started - 1:
                group.rmdir()


_REPO = Path(__file__).resolve().parents[1]


def _daemon_alive(pidfile: str, binary: str) -> bool:
    try:
        pid = int(Path(pidfile).read_text().strip())
        return os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(binary)
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[dict[str, str]]:
    """A real Slurm on this machine (``deploy/dev/slurm-start.sh``: nodes node1..node3,
    partitions normal, short, scavenger, priority); stopped at the end only if we started it."""
    import subprocess

    was_running = _daemon_alive("/run/slurm/slurmctld.pid", "/usr/sbin/slurmctld")
    proc = subprocess.run(["bash", str(_REPO / "deploy" / "dev" / "slurm-start.sh")],
                          capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        pytest.fail(f"Slurm did not start: {proc.stderr[-3000:]}")
    yield {"normal": "normal", "short": "short", "scavenger": "scavenger",
           "priority": "priority"}
    if not was_running:
        subprocess.run(["bash", str(_REPO / "deploy" / "dev" / "slurm-stop.sh")],
                       capture_output=True, timeout=120, check=False)


@pytest.fixture(scope="session")
def ssh_login() -> Iterator[dict[str, object]]:
    """A real OpenSSH server on 127.0.0.1 standing in for a cluster's login node
    (``deploy/dev/sshd-login-start.sh``): its port, a client key and a known_hosts file that
    holds its host key. Stopped at the end only if we started it."""
    import subprocess

    state = _REPO / ".peers" / "login"
    was_running = _daemon_alive(str(state / "sshd.pid"), "/usr/sbin/sshd")
    import sys

    proc = subprocess.run(["bash", str(_REPO / "deploy" / "dev" / "sshd-login-start.sh"),
                           str(state)], capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "PYTHON": sys.executable})
    if proc.returncode != 0:
        pytest.fail(f"sshd did not start: {proc.stderr[-3000:]}")
    yield {"host": "127.0.0.1", "port": int(proc.stdout.split()[-1]), "user": "root",
           "key_file": str(state / "client_key"), "known_hosts": str(state / "known_hosts"),
           "state": state}
    if not was_running:
        subprocess.run(["bash", str(_REPO / "deploy" / "dev" / "sshd-login-stop.sh"),
                        str(state)], capture_output=True, timeout=60, check=False)


from tests.checkpoint.conftest import s3_server  # noqa: E402,F401 - the SeaweedFS fixture, shared
from tests.support.browser import chromium  # noqa: E402,F401 - headless Chromium, shared
from tests.support.edgefleet import fleet  # noqa: E402,F401 - the edge fleet, one for the session
from tests.support.postgres import (  # noqa: E402,F401 - PostgreSQL, one for the session
    postgres_server,
    state_url,
)


@pytest.fixture(scope="session")
def ec2_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """moto's EC2 API with booting instances (``gridbridge.testing.ec2``), for the session."""
    pytest.importorskip("moto", reason="moto[server] is in the dev extra")
    from gridbridge.testing.ec2 import Ec2Emulator

    with Ec2Emulator(tmp_path_factory.mktemp("ec2")) as emulator:
        yield emulator


@pytest.fixture
def ec2(ec2_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The EC2 emulation with real prices in force now and no queued faults; after the test,
    no instance may be left pending or running."""
    from tests.support.ec2site import ending_now, real_prices

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    ec2_emulator.launch_faults.clear()
    ec2_emulator.notice_s = 120.0
    ec2_emulator.set_prices(ending_now(real_prices()))
    yield ec2_emulator
    ec2_emulator.launch_faults.clear()
    import time

    deadline = time.monotonic() + 15
    while ec2_emulator.live_instances() and time.monotonic() < deadline:
        time.sleep(0.1)
    leaked = ec2_emulator.live_instances()
    assert not leaked, f"instances left running after the test: {leaked}"
