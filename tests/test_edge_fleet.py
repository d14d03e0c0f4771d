"""The edge fleet the edge adapter will be tested against: real OpenSSH servers, each in a
network namespace of its own (``deploy/dev/edge-start.sh``), reached through
:class:`~gridbridge.adapters._run.SSHRunner` with strict host keys. A test can cut one node's
link (a silent partition: the node keeps running, packets vanish) or crash it
(``deploy/dev/edge-ctl.sh``), and see what the runner makes of it."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gridbridge.adapters._run import (
    Completed,
    HostKeyRefused,
    RunnerError,
    SSHRunner,
    SSHTarget,
)

pytestmark = pytest.mark.ssh

_REPO = Path(__file__).resolve().parents[1]
_SCRIPTS = _REPO / "deploy" / "dev"
_STATE = _REPO / ".peers" / "edge"
_SSHD = "/usr/sbin/sshd"


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
        proc = subprocess.run(["bash", str(_SCRIPTS / "edge-ctl.sh"), str(self.state), action,
                               node.name], capture_output=True, text=True, timeout=60,
                              check=False)
        assert proc.returncode == 0, f"edge-ctl {action} {node.name}: {proc.stderr}"


def _sshd_alive(pidfile: str) -> bool:
    try:
        pid = int(Path(pidfile).read_text().strip())
        return os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(_SSHD)
    except (OSError, ValueError):
        return False


def _read_nodes(state: Path) -> list[Node]:
    return [Node(n["name"], n["address"], int(n["port"]), n["netns"], n["pidfile"])
            for n in json.loads((state / "nodes.json").read_text())]


def _fleet_running(state: Path) -> bool:
    try:
        nodes = _read_nodes(state)
    except (OSError, ValueError, KeyError):
        return False
    return bool(nodes) and all(_sshd_alive(n.pidfile) for n in nodes)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    """Three edge nodes (``deploy/dev/edge-start.sh .peers/edge 3``); stopped at the end only
    if this module started them."""
    if os.geteuid() != 0:
        pytest.skip("the edge fleet needs root (network namespaces)")
    was_running = _fleet_running(_STATE)
    proc = subprocess.run(["bash", str(_SCRIPTS / "edge-start.sh"), str(_STATE), "3"],
                          capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        pytest.fail(f"the edge fleet did not start: {proc.stderr[-3000:]}")
    assert proc.stdout.split()[-1] == str(_STATE / "nodes.json")
    try:
        yield Fleet(_STATE, _read_nodes(_STATE))
    finally:
        if not was_running:
            subprocess.run(["bash", str(_SCRIPTS / "edge-stop.sh"), str(_STATE)],
                           capture_output=True, timeout=120, check=False)


def _inet_addresses(stdout: str) -> set[str]:
    """The IPv4 addresses in ``ip -o -4 addr`` output."""
    return {words[words.index("inet") + 1].split("/")[0]
            for words in (line.split() for line in stdout.splitlines()) if "inet" in words}


def _pids_running(node: Node, argv: Sequence[str]) -> list[int]:
    """Processes in the node's network namespace whose command line is exactly ``argv``."""
    out = subprocess.run(["ip", "netns", "pids", node.netns], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    wanted = "\0".join(argv) + "\0"
    found = []
    for pid in out.split():
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().decode() == wanted:
                found.append(int(pid))
        except OSError:
            pass
    return found


@dataclass
class _Call:
    """A runner call in a thread of its own: what it returned or raised, and when."""

    done: threading.Event = field(default_factory=threading.Event)
    result: Completed | None = None
    error: BaseException | None = None
    ended: float = 0.0

    def start(self, runner: SSHRunner, argv: list[str], timeout: float) -> _Call:
        def work() -> None:
            try:
                self.result = runner.run(argv, timeout=timeout)
            except BaseException as exc:  # reported by the test
                self.error = exc
            finally:
                self.ended = time.monotonic()
                self.done.set()

        threading.Thread(target=work, daemon=True).start()
        return self


def test_every_node_runs_commands_inside_its_own_namespace(fleet: Fleet) -> None:
    assert len(fleet.nodes) == 3
    assert len({n.address for n in fleet.nodes}) == 3
    assert len({n.netns for n in fleet.nodes}) == 3
    for node in fleet.nodes:
        done = fleet.runner(node).run(["ip", "-o", "-4", "addr", "show"], timeout=30)
        assert done.returncode == 0, done.stderr
        # Only loopback and the node's own address: the command ran inside that namespace.
        assert _inet_addresses(done.stdout) == {"127.0.0.1", node.address}, done.stdout


def test_another_nodes_host_key_for_a_nodes_address_is_refused(
    fleet: Fleet, tmp_path: Path
) -> None:
    first, second = fleet.nodes[0], fleet.nodes[1]
    keys = {line.split()[0]: line.split()[1:3]
            for line in Path(fleet.known_hosts).read_text().splitlines() if line.strip()}
    assert keys[first.address] != keys[second.address], "every node has its own host key"
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{first.address} {' '.join(keys[second.address])}\n")
    marker = tmp_path / "ran"
    with pytest.raises(HostKeyRefused, match="CHANGED"):
        fleet.runner(first, known_hosts=str(wrong)).run(["touch", str(marker)], timeout=30)
    assert not marker.exists(), "nothing ran on a host whose key did not match"
    # The same call with the right known_hosts does run (the refusal was the key's doing).
    fleet.runner(first).run(["touch", str(marker)], timeout=30).check("touch")
    assert marker.exists()


class _EndedWithoutRunnerError(AssertionError):
    """The partitioned call ended in time, but not with a RunnerError."""


def test_a_partition_mid_command_is_noticed_within_10_s_and_heals(fleet: Fleet) -> None:
    node, other = fleet.nodes[0], fleet.nodes[1]
    runner = fleet.runner(node)
    runner.run(["true"], timeout=30).check("warm-up")  # the pooled connection is up
    call = _Call().start(runner, ["sleep", "60"], timeout=120)
    deadline = time.monotonic() + 15
    while not _pids_running(node, ["sleep", "60"]):
        assert not call.done.is_set(), f"sleep ended early: {call.result!r} {call.error!r}"
        assert time.monotonic() < deadline, "sleep 60 never started on the node"
        time.sleep(0.05)
    try:
        cut = time.monotonic()
        fleet.ctl("partition", node)
        assert call.done.wait(20), "the runner still waits 20 s after the link went down"
        noticed_s = call.ended - cut
        assert noticed_s < 10, f"the partition was noticed only after {noticed_s:.1f} s"
        # Silent: the node itself did not stop, only its link did; the others are untouched.
        assert _pids_running(node, ["sleep", "60"]), "the node's command died: not a partition"
        fleet.runner(other).run(["true"], timeout=10).check("the other node during the cut")
    finally:
        fleet.ctl("heal", node)
    again = runner.run(["ip", "-o", "-4", "addr", "show"], timeout=30)
    assert again.returncode == 0 and node.address in _inet_addresses(again.stdout)
    if not isinstance(call.error, RunnerError):
        raise _EndedWithoutRunnerError(
            f"noticed after {noticed_s:.1f} s, but run() gave {call.result!r} / {call.error!r}")


def test_a_crashed_node_fails_fast_and_restarts_with_the_same_host_key(fleet: Fleet) -> None:
    node, other = fleet.nodes[2], fleet.nodes[0]
    pooled = fleet.runner(node)
    pooled.run(["true"], timeout=30).check("before the crash")
    known_before = Path(fleet.known_hosts).read_text()
    fleet.ctl("crash", node)
    try:
        assert not _sshd_alive(node.pidfile)
        for runner in (pooled, fleet.runner(node)):  # the pooled connection and a new one
            started = time.monotonic()
            with pytest.raises(RunnerError) as info:
                runner.run(["true"], timeout=30)
            assert not isinstance(info.value, HostKeyRefused), info.value
            assert time.monotonic() - started < 3, f"slow failure: {info.value}"
        fleet.runner(other).run(["true"], timeout=10).check("another node after the crash")
    finally:
        fleet.ctl("restart", node)
    assert _sshd_alive(node.pidfile)
    # Strict checking against the unchanged known_hosts: the node kept its host key.
    assert Path(fleet.known_hosts).read_text() == known_before
    done = fleet.runner(node).run(["ip", "-o", "-4", "addr", "show"], timeout=30)
    assert done.returncode == 0 and node.address in _inet_addresses(done.stdout)
    pooled.run(["true"], timeout=30).check("the old runner reconnects")
