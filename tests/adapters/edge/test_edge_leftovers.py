"""``deploy/dev/edge-start.sh`` on a machine where an earlier fleet left its namespaces behind:
a test run killed before ``edge-stop.sh``, a checkout deleted (or cloned afresh at the same
path) under a running fleet. Such a namespace is reclaimed; one that a live fleet still
records is not, and the start fails naming that fleet.

Each test makes one-node fleets of its own under ``tmp_path``, with a prefix no other test
uses (``gbleft``), and stops them at the end."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import REPO

pytestmark = [pytest.mark.ssh]

_SCRIPTS = REPO / "deploy" / "dev"
_PREFIX = "gbleft"


def _start(state: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GB_EDGE_PREFIX=_PREFIX)
    return subprocess.run(["bash", str(_SCRIPTS / "edge-start.sh"), str(state), "1"],
                          capture_output=True, text=True, timeout=300, check=False, env=env)


def _stop(state: Path) -> None:
    subprocess.run(["bash", str(_SCRIPTS / "edge-stop.sh"), str(state)],
                   capture_output=True, timeout=120, check=False)


def _sshd_pid(state: Path) -> int:
    node = json.loads((state / "nodes.json").read_text())[0]
    return int(Path(node["pidfile"]).read_text().strip())


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


@pytest.fixture
def states(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    if os.geteuid() != 0:
        pytest.skip("the edge fleet needs root (network namespaces)")
    first, second = tmp_path / "first", tmp_path / "second"
    try:
        yield first, second
    finally:
        _stop(second)
        if first.exists():
            _stop(first)
        _remove_namespace(f"{_PREFIX}1")


def _remove_namespace(ns: str) -> None:
    """What a failed test may leave: the namespace with processes still in it (deleting only
    its name would keep it alive, host veth and all, under no name)."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                          check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), 9)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.mark.parametrize("marker_kept", [True, False], ids=["marker", "no-marker"])
def test_a_live_fleet_keeps_its_namespace_and_the_error_names_it(
        states: tuple[Path, Path], marker_kept: bool) -> None:
    first, second = states
    assert _start(first).returncode == 0
    pid = _sshd_pid(first)
    if not marker_kept:  # then the owner is read from the sshd's own config path
        Path(f"/run/gridbridge-edge/owner.{_PREFIX}1").unlink()

    proc = _start(second)

    assert proc.returncode == 1
    assert f"netns {_PREFIX}1 belongs to the fleet in {first}" in proc.stderr
    assert _alive(pid), "the live fleet's sshd was stopped"
    assert not (second / "nodes.json").exists()


@pytest.mark.parametrize(("sshd_running", "marker_kept"),
                         [(True, True), (True, False), (False, False)],
                         ids=["sshd-running", "sshd-running-no-marker", "empty-no-marker"])
def test_a_namespace_whose_fleet_is_gone_is_reclaimed(
        states: tuple[Path, Path], sshd_running: bool, marker_kept: bool) -> None:
    first, second = states
    assert _start(first).returncode == 0
    pid = _sshd_pid(first)
    if not sshd_running:
        os.kill(pid, 9)
    # The fleet's folder goes while its namespace (and perhaps its sshd) stays: a checkout
    # removed under it. Where an older edge-start.sh made the namespace there is no marker in
    # /run, and the sshd's own config path (or nothing at all) is what is left.
    shutil.rmtree(first)
    if not marker_kept:
        Path(f"/run/gridbridge-edge/owner.{_PREFIX}1").unlink()

    proc = _start(second)

    assert proc.returncode == 0, proc.stderr
    assert f"netns {_PREFIX}1 is left over from a fleet that is gone" in proc.stderr
    assert not _alive(pid), "the orphaned sshd still runs"
    node = json.loads((second / "nodes.json").read_text())[0]
    assert node["netns"] == f"{_PREFIX}1"
    banner = subprocess.run(
        ["ip", "netns", "exec", node["netns"], "bash", "-c",
         'exec 3<>"/dev/tcp/$1/22" && head -c 7 <&3', "banner", node["address"]],
        capture_output=True, text=True, timeout=10, check=False)
    assert banner.stdout == "SSH-2.0"
