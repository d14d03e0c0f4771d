"""``gridbridge sites bootstrap``: a bare edge node (its ``runtime.python`` does not exist)
brought to running jobs, on a one-node fleet of this module's own
(``deploy/dev/edge-start.sh .peers/edge-bootstrap 1``, prefix ``gbboot``, so it never meets
the fleet of the other edge tests).

The node is a network namespace of this machine: it shares the files but has no network, so
the install works only from the uploaded wheelhouse (``pip install --no-index``). The
wheelhouse built from this checkout is kept under ``.peers/`` between runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest
import yaml

import gridbridge
from gridbridge.client import Client
from tests.support.paths import REPO as _REPO

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

_REPO = _REPO
_SCRIPTS = _REPO / "deploy" / "dev"
_STATE = _REPO / ".peers" / "edge-bootstrap"
_CACHE = _REPO / ".peers" / "edge-bootstrap-wheelhouse"
_PREFIX = "gbboot"
_SSHD = "/usr/sbin/sshd"


def _sshd_alive(pidfile: str) -> bool:
    try:
        pid = int(Path(pidfile).read_text().strip())
        return os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(_SSHD)
    except (OSError, ValueError):
        return False


def _nodes(state: Path) -> list[dict[str, object]]:
    return list(json.loads((state / "nodes.json").read_text()))


def _fleet_running(state: Path) -> bool:
    try:
        nodes = _nodes(state)
    except (OSError, ValueError):
        return False
    return bool(nodes) and all(_sshd_alive(str(n["pidfile"])) for n in nodes)


@pytest.fixture(scope="module")
def fleet() -> Iterator[list[dict[str, object]]]:
    """One edge node; stopped at the end only if this module started it."""
    if os.geteuid() != 0:
        pytest.skip("the edge fleet needs root (network namespaces)")
    was_running = _fleet_running(_STATE)
    env = dict(os.environ, GB_EDGE_PREFIX=_PREFIX)
    proc = subprocess.run(["bash", str(_SCRIPTS / "edge-start.sh"), str(_STATE), "1"],
                          capture_output=True, text=True, timeout=900, check=False, env=env)
    if proc.returncode != 0:
        pytest.fail(f"the edge fleet did not start: {proc.stderr[-3000:]}")
    try:
        yield _nodes(_STATE)
    finally:
        if not was_running:
            subprocess.run(["bash", str(_SCRIPTS / "edge-stop.sh"), str(_STATE)],
                           capture_output=True, timeout=120, check=False, env=env)


def gb(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="250")
    return subprocess.run([sys.executable, "-m", "gridbridge.cli", "--config", str(config),
                           *args], env=env, capture_output=True, text=True, timeout=timeout)


def _config(tmp_path: Path, nodes: list[dict[str, object]], python: str) -> Path:
    path = tmp_path / "gridbridge.yaml"
    path.write_text(yaml.safe_dump({
        "state_url": f"sqlite:///{tmp_path / 'state.db'}",
        "checkpoint_root": str(tmp_path / "ckpt"), "workdir": str(tmp_path / "run"),
        "limits": {"tick_interval_s": 0.1},
        "sites": [
            {"name": "edge", "adapter": "edge", "tier": "edge", "capacity": {"cpus": 2},
             "runtime": {"python": python, "shared_filesystem": True},
             "options": {"nodes": [{"name": n["name"], "host": n["address"],
                                    "port": n["port"], "cpus": 2} for n in nodes],
                         "key_file": str(_STATE / "client_key"),
                         "known_hosts": str(_STATE / "known_hosts"),
                         "remote_dir": str(tmp_path / "remote"), "grace_s": 2.0}},
            {"name": "here", "adapter": "local", "tier": "cloud", "capacity": {"cpus": 1}},
        ],
    }))
    return path


def _where() -> str:
    """The job: which interpreter runs it."""
    print(f"runtime interpreter: {sys.executable}", flush=True)
    return sys.executable


def test_bootstrap_a_bare_node_then_run_a_job_with_its_venv(
    fleet: list[dict[str, object]], tmp_path: Path
) -> None:
    venv = tmp_path / "edge-venv"
    python = str(venv / "bin" / "python")
    config = _config(tmp_path, fleet, python)
    version = gridbridge.__version__

    # before: the node has no gridbridge for that interpreter
    check = gb(config, "sites", "check", "edge", "--format", "json")
    assert check.returncode == 0, check.stderr
    [row] = json.loads(check.stdout)
    assert row["reachable"] == "yes" and row["host_key_ok"] == "yes", row
    assert row["gridbridge"] is None and row["python"] is None, row
    assert row["error"], row

    # bootstrap: wheelhouse (built here, or cached), upload, venv, offline install
    first = gb(config, "sites", "bootstrap", "edge", "--cache-dir", str(_CACHE), timeout=1500)
    print(first.stdout, first.stderr, sep="\n")
    assert first.returncode == 0, first.stdout + first.stderr
    line = next(x for x in first.stdout.splitlines() if fleet[0]["name"] in x)
    assert "installed" in line and version in line, first.stdout
    assert (venv / "pyvenv.cfg").is_file()
    assert "wheelhouse (" in first.stderr

    check = gb(config, "sites", "check", "edge", "--format", "json")
    [row] = json.loads(check.stdout)
    assert row["gridbridge"] == version and row["error"] == "", row

    # again: nothing to do
    stamp = (venv / "pyvenv.cfg").stat().st_mtime_ns
    second = gb(config, "sites", "bootstrap", "edge", "--cache-dir", str(_CACHE),
                "--format", "json", timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    [again] = json.loads(second.stdout)
    assert again["action"] == "skipped", again
    assert again["before"] == again["after"] == version, again
    assert again["detail"] == f"already has gridbridge {version}", again
    assert again["upload_s"] == 0 and again["install_s"] == 0, again
    assert "wheelhouse" not in second.stderr  # not even looked at
    assert (venv / "pyvenv.cfg").stat().st_mtime_ns == stamp

    # a real job on that site runs with the new venv's interpreter
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with Client(config) as client:
            future = client.submit(_where, cpus=1, walltime_s=120,
                                   constraints={"allowed_sites": ["edge"]})
            assert future.result(timeout=120) == python
            assert f"runtime interpreter: {python}" in future.logs()
            [attempt] = client.store.attempts(future.job_id)
            assert attempt.site == "edge"
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_bootstrap_refuses_what_it_cannot_do(fleet: list[dict[str, object]],
                                              tmp_path: Path) -> None:
    config = _config(tmp_path, fleet, "python3")
    out = gb(config, "sites", "bootstrap", "edge")
    assert out.returncode == 2 and "runtime.python must be an absolute venv path" in out.stderr
    # /usr/bin/python3 would make /usr the venv: the node refuses before anything is sent
    config = _config(tmp_path, fleet, "/usr/bin/python3")
    out = gb(config, "sites", "bootstrap", "edge", "--format", "json",
             "--cache-dir", str(tmp_path / "no-build"))
    assert out.returncode == 1, out.stdout + out.stderr
    [row] = json.loads(out.stdout)
    assert row["action"] == "failed" and row["upload_s"] == 0, row
    assert "/usr exists and is not a virtual environment" in row["error"], row
    assert not (tmp_path / "no-build").exists()
    out = gb(config, "sites", "bootstrap", "here")
    assert out.returncode == 2, out.stderr
    assert "has no bootstrap" in out.stderr and "here: edge" in out.stderr, out.stderr
    out = gb(config, "sites", "bootstrap", "nowhere")
    assert out.returncode == 2 and "valid choices: edge, here" in out.stderr, out.stderr
