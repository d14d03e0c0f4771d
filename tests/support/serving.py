"""What the tests that run ``gridbridge serve`` as a real process share: a two-site local
federation in a config file, starting a serve, and waiting for a condition."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from gridbridge.procinfo import proc_start_time


def two_site_config(tmp_path: Path, *, cpus: tuple[int, int] = (3, 2),
                    lease_s: float = 30) -> Path:
    """``gridbridge.yaml`` in ``tmp_path``: sites ``a`` (cloud, cheaper) and ``b`` (hpc)."""
    path = tmp_path / "gridbridge.yaml"
    path.write_text(yaml.safe_dump({
        "state_url": "sqlite:///state.db",
        "checkpoint_root": "checkpoints",
        "workdir": "run",
        "limits": {"tick_interval_s": 0.1, "lease_s": lease_s},
        "sites": [
            {"name": "a", "adapter": "local", "tier": "cloud", "capacity": {"cpus": cpus[0]},
             "price": {"per_core_hour": 0.01}},
            {"name": "b", "adapter": "local", "tier": "hpc", "capacity": {"cpus": cpus[1]},
             "price": {"per_core_hour": 0.02}},
        ],
    }))
    return path


def cheap_and_steady_config(tmp_path: Path, **cheap: Any) -> Path:
    """``gridbridge.yaml`` in ``tmp_path`` as the CLI tests use it: ``cheap`` (cloud,
    preemptible, with ``cheap``'s extra fields) and ``steady`` (hpc, three times dearer),
    2 cpus each, with paths relative to the file."""
    path = tmp_path / "gridbridge.yaml"
    path.write_text(yaml.safe_dump({
        "state_url": "sqlite:///state.db", "checkpoint_root": "ckpt", "workdir": "run",
        "limits": {"tick_interval_s": 0.1},
        "sites": [
            {"name": "cheap", "adapter": "local", "tier": "cloud", "capacity": {"cpus": 2},
             "price": {"per_core_hour": 0.01}, "preemptible": True, **cheap},
            {"name": "steady", "adapter": "local", "tier": "hpc", "capacity": {"cpus": 2},
             "price": {"per_core_hour": 0.03}},
        ],
    }))
    return path


def start_serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``gridbridge serve`` in its own session, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gridbridge.cli", "--config", str(config), "serve"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


def wait_until(predicate: Callable[[], object], timeout: float, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)


def kill_attempt_groups(site_root: Path) -> None:
    """SIGKILL the process groups of the local attempts under ``site_root``, each only while
    its pid is still the runtime's (a reused pid is left alone)."""
    if not site_root.is_dir():
        return
    for d in site_root.iterdir():
        try:
            pid_s, start = (d / "pid").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        if proc_start_time(int(pid_s)) == start:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid_s), signal.SIGKILL)
