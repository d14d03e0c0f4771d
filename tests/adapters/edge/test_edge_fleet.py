"""The edge fleet the edge adapter will be tested against: real OpenSSH servers, each in a
network namespace of its own (``deploy/dev/edge-start.sh``), reached through
:class:`~gridbridge.adapters._run.SSHRunner` with strict host keys. A test can cut one node's
link (a silent partition: the node keeps running, packets vanish) or crash it
(``deploy/dev/edge-ctl.sh``), and see what the runner makes of it."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gridbridge.adapters._run import (
    Completed,
    HostKeyRefused,
    RunnerError,
    SSHRunner,
)
from tests.support.edgefleet import Fleet, Node, sshd_alive

pytestmark = pytest.mark.ssh


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
        assert not sshd_alive(node.pidfile)
        for runner in (pooled, fleet.runner(node)):  # the pooled connection and a new one
            started = time.monotonic()
            with pytest.raises(RunnerError) as info:
                runner.run(["true"], timeout=30)
            assert not isinstance(info.value, HostKeyRefused), info.value
            assert time.monotonic() - started < 3, f"slow failure: {info.value}"
        fleet.runner(other).run(["true"], timeout=10).check("another node after the crash")
    finally:
        fleet.ctl("restart", node)
    assert sshd_alive(node.pidfile)
    # Strict checking against the unchanged known_hosts: the node kept its host key.
    assert Path(fleet.known_hosts).read_text() == known_before
    done = fleet.runner(node).run(["ip", "-o", "-4", "addr", "show"], timeout=30)
    assert done.returncode == 0 and node.address in _inet_addresses(done.stdout)
    pooled.run(["true"], timeout=30).check("the old runner reconnects")


def test_output_that_comes_after_the_exit_status_is_read_to_its_end(fleet: Fleet) -> None:
    # The command exits at once; a child it left still writes to its stdout: sshd sends the
    # exit status first and the rest after. The runner reads on to the end of the output
    # (within its grace), as ssh(1) does, instead of stopping at the status.
    runner = fleet.runner(fleet.nodes[0])
    started = time.monotonic()
    done = runner.run(["sh", "-c", "echo first; (sleep 0.5; echo late) & exit 3"])
    assert (done.returncode, done.stdout) == (3, "first\nlate\n")
    # a child that holds the output open for longer costs the grace, no more
    done = runner.run(["sh", "-c", "echo first; (sleep 30; echo never) & exit 0"])
    assert done.stdout == "first\n" and time.monotonic() - started < 10
