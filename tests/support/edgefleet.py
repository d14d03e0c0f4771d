"""The edge fleet the edge tests share (``test_edge_fleet.py``, ``test_edge_contract.py``,
``test_edge_e2e.py``): three real OpenSSH servers, each in a network namespace of its own
(``deploy/dev/edge-start.sh .peers/edge 3``), started once for the session by the ``fleet``
fixture (``tests/conftest.py`` registers it). A test that cuts a node's link or crashes it
(``Fleet.ctl``) heals or restarts it before it ends, so the next test finds all three up.

``test_edge_bootstrap.py`` has a one-node fleet of its own (another prefix and state folder)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridbridge.adapters._run import SSHRunner, SSHTarget
from tests.support.paths import REPO as _REPO

REPO = _REPO
SCRIPTS = REPO / "deploy" / "dev"
STATE = REPO / ".peers" / "edge"
SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    port: int
    netns: str
    pidfile: str


@dataclass
class Fleet:
    state: Path
    nodes: list[Node]

    @property
    def client_key(self) -> str:
        return str(self.state / "client_key")

    @property
    def known_hosts(self) -> str:
        return str(self.state / "known_hosts")

    def runner(self, node: Node, known_hosts: str | None = None) -> SSHRunner:
        return SSHRunner(SSHTarget(host=node.address, port=node.port, user="root",
                                   key_file=self.client_key,
                                   known_hosts=known_hosts or self.known_hosts))

    def ctl(self, action: str, node: Node) -> None:
        proc = subprocess.run(["bash", str(SCRIPTS / "edge-ctl.sh"), str(self.state), action,
                               node.name], capture_output=True, text=True, timeout=60,
                              check=False)
        assert proc.returncode == 0, f"edge-ctl {action} {node.name}: {proc.stderr}"


def sshd_alive(pidfile: str) -> bool:
    try:
        pid = int(Path(pidfile).read_text().strip())
        return os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(SSHD)
    except (OSError, ValueError):
        return False


def read_nodes(state: Path) -> list[Node]:
    return [Node(n["name"], n["address"], int(n["port"]), n["netns"], n["pidfile"])
            for n in json.loads((state / "nodes.json").read_text())]


def fleet_running(state: Path) -> bool:
    try:
        nodes = read_nodes(state)
    except (OSError, ValueError, KeyError):
        return False
    return bool(nodes) and all(sshd_alive(n.pidfile) for n in nodes)


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    """Three edge nodes, for the session; stopped at the end only if this session started
    them."""
    if os.geteuid() != 0:
        pytest.skip("the edge fleet needs root (network namespaces)")
    was_running = fleet_running(STATE)
    proc = subprocess.run(["bash", str(SCRIPTS / "edge-start.sh"), str(STATE), "3"],
                          capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        pytest.fail(f"the edge fleet did not start: {proc.stderr[-3000:]}")
    assert proc.stdout.split()[-1] == str(STATE / "nodes.json")
    try:
        nodes = read_nodes(STATE)
        assert len(nodes) == 3, nodes
        yield Fleet(STATE, nodes)
    finally:
        if not was_running:
            subprocess.run(["bash", str(SCRIPTS / "edge-stop.sh"), str(STATE)],
                           capture_output=True, timeout=120, check=False)


SHARE = REPO / ".peers" / "s3-share"


@pytest.fixture(scope="session")
def s3_shared(s3_server: dict[str, object]) -> Iterator[dict[str, object]]:
    """The dev S3 gateway under the address every tier reaches, edge nodes included
    (``deploy/dev/s3-share-start.sh``): ``s3_server``'s values with that endpoint. Stopped at
    the end only if this session started it."""
    if os.geteuid() != 0:
        pytest.skip("sharing the S3 gateway with the edge fleet needs root (an address)")
    was_running = (SHARE / "forward.pid").exists() and (SHARE / "endpoint").exists()
    proc = subprocess.run(["bash", str(SCRIPTS / "s3-share-start.sh"), str(SHARE)],
                          capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        pytest.fail(f"the S3 gateway could not be shared: {proc.stderr[-2000:]}")
    endpoint = proc.stdout.split()[-1]
    options = {**s3_server["storage_options"], "endpoint_url": endpoint}  # type: ignore[dict-item]
    try:
        yield {**s3_server, "endpoint": endpoint, "storage_options": options}
    finally:
        if not was_running:
            subprocess.run(["bash", str(SCRIPTS / "s3-share-stop.sh"), str(SHARE)],
                           capture_output=True, timeout=60, check=False)
