"""The edge adapter against the adapter contract, on a real fleet of three OpenSSH nodes
(``deploy/dev/edge-start.sh``, the same fleet as ``tests/adapters/edge/test_edge_fleet.py``),
plus what only a fleet shows: placement on a named node, one round trip per node, and a
partitioned node whose attempt turns LOST and is killed once the node is back.

The nodes are network namespaces of this machine: they share its files (so ``file://``
storage under ``tmp_path`` and this venv's python work there) but not its network."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

import gridbridge
from gridbridge.adapter import Offer, SubmitRejected
from gridbridge.adapters._run import Completed, Runner, RunnerError
from gridbridge.adapters.edge import EdgeAdapter
from gridbridge.config import Capacity, RuntimeSettings, SiteConfig
from gridbridge.states import AttemptState
from gridbridge.testing import AdapterContract
from tests.support.edgefleet import Fleet

pytestmark = pytest.mark.ssh


def _site(fleet: Fleet, remote_dir: Path, **options: object) -> SiteConfig:
    nodes = [{"name": n.name, "host": n.address, "port": n.port, "cpus": 4,
              "labels": {"location": f"rack-{i}"}, "cost_per_hour": 0.01 * (i + 1)}
             for i, n in enumerate(fleet.nodes)]
    return SiteConfig(
        name="edge", adapter="edge", tier="edge", capacity=Capacity(cpus=12),
        runtime=RuntimeSettings(python=sys.executable, shared_filesystem=True),
        options={"nodes": nodes, "key_file": str(fleet.state / "client_key"),
                 "known_hosts": str(fleet.state / "known_hosts"),
                 "remote_dir": str(remote_dir), "grace_s": 2.0, **options})


class _Counting:
    """A runner that counts its round trips."""

    def __init__(self, inner: Runner) -> None:
        self.inner = inner
        self.calls = 0

    def run(self, argv: Sequence[str], *, input: str | None = None, timeout: float = 30.0,
            env: Mapping[str, str] | None = None) -> Completed:
        self.calls += 1
        return self.inner.run(argv, input=input, timeout=timeout, env=env)

    def describe(self) -> str:
        return self.inner.describe()


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in {"Z", "X"}


_INET = """
    import subprocess, sys
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True)
    open(sys.argv[1], "w").write(out.stdout)
    """


class TestEdgeContract(AdapterContract):
    @pytest.fixture
    def adapter(self, fleet: Fleet, tmp_path: Path) -> Iterator[EdgeAdapter]:
        adapter = EdgeAdapter(_site(fleet, tmp_path / "work" / "remote", lost_after_s=3.0),
                              tmp_path / "work")
        yield adapter
        try:
            adapter.cancel([o.native_id for o in adapter.owned()])
        finally:
            adapter.close()

    # what only a fleet shows --------------------------------------------------------------

    def _offer(self, adapter: EdgeAdapter, node: str) -> Offer:
        return next(o for o in adapter.offers() if o.key == node)

    def test_each_node_is_an_offer_with_its_price_and_rtt(self, adapter: EdgeAdapter,
                                                          fleet: Fleet) -> None:
        offers = {o.key: o for o in adapter.offers()}
        assert set(offers) == {n.name for n in fleet.nodes}
        for i, node in enumerate(fleet.nodes):
            offer = offers[node.name]
            assert offer.tier == "edge" and offer.cpus == 4
            assert offer.price.per_hour == pytest.approx(0.01 * (i + 1))
            assert offer.shape["node"] == node.name
            assert offer.shape["location"] == f"rack-{i}"
            assert offer.note.startswith("rtt ") and offer.note.endswith(" ms")
            assert float(offer.shape["rtt_ms"]) > 0

    def test_check_reports_every_node(self, adapter: EdgeAdapter, fleet: Fleet) -> None:
        checks = adapter.check()
        assert [c.node for c in checks] == [n.name for n in fleet.nodes]
        for c in checks:
            assert c.reachable and c.host_key_ok, c
            assert c.gridbridge == gridbridge.__version__
            assert c.python == sys.version.split()[0]
            assert c.cpus and c.memory_gb and c.rtt_ms is not None

    def test_a_job_pinned_through_the_offer_key_runs_on_that_node(
        self, adapter: EdgeAdapter, fleet: Fleet, workspace: Path, python: str
    ) -> None:
        submitted = {}  # both at once: each to the node its offer names
        for node in (fleet.nodes[1], fleet.nodes[2]):
            out = workspace / f"inet-{node.name}.txt"
            req = self.request(workspace, python, _INET, str(out)).model_copy(
                update={"offer": self._offer(adapter, node.name)})
            nid = adapter.submit(req)
            assert nid == f"{node.name}/{req.attempt_id}"
            submitted[nid] = (node, out)
        ended = self.wait_for_all(adapter, list(submitted), lambda s: s.state.terminal)
        for nid, (node, out) in submitted.items():
            status = ended[nid]
            assert status.state is AttemptState.SUCCEEDED, status
            seen = out.read_text()
            assert f"inet {node.address}/" in seen, seen
            others = [n.address for n in fleet.nodes if n is not node]
            assert not any(f"inet {a}/" in seen for a in others), seen

    def test_a_poll_is_one_round_trip_per_node(self, adapter: EdgeAdapter, fleet: Fleet,
                                                workspace: Path, python: str) -> None:
        nids = []
        for node in fleet.nodes:
            offer = self._offer(adapter, node.name)
            for _ in range(2):
                req = self.request(workspace, python, "import time; time.sleep(1.5)")
                nids.append(adapter.submit(req.model_copy(update={"offer": offer})))
        counters = {name: _Counting(r) for name, r in adapter.runners.items()}
        adapter.runners.update(counters)
        answer = adapter.poll(nids)
        assert set(answer) == set(nids)
        assert {name: c.calls for name, c in counters.items()} == {
            n.name: 1 for n in fleet.nodes}
        ended = self.wait_for_all(adapter, nids, lambda s: s.state.terminal)
        for nid in nids:
            assert ended[nid].state is AttemptState.SUCCEEDED, ended[nid]

    def test_a_partitioned_node_loses_its_attempt_and_cancel_kills_it_after_heal(
        self, adapter: EdgeAdapter, fleet: Fleet, workspace: Path, python: str, tmp_path: Path
    ) -> None:
        node = fleet.nodes[0]
        beat, pidfile = workspace / "beat.txt", workspace / "job.pid"
        req = self.request(workspace, python, """
            import os, sys, time
            open(sys.argv[2], "w").write(str(os.getpid()))
            while True:
                open(sys.argv[1], "w").write(str(time.time()))
                time.sleep(0.05)
            """, str(beat), str(pidfile)).model_copy(
            update={"offer": self._offer(adapter, node.name)})
        nid = adapter.submit(req)
        self.wait_for(adapter, nid, lambda s: s.state is AttemptState.RUNNING)
        self.wait_until(pidfile.exists, "the job to start")
        job_pid = int(pidfile.read_text())
        # each node keeps its attempts in a folder of its own under the run folder
        runtime_pid = int((tmp_path / "work" / "remote" / node.name / req.attempt_id / "pid")
                          .read_text().split()[0])
        fleet.ctl("partition", node)
        try:
            cut = time.monotonic()
            while True:
                status = adapter.poll([nid]).get(nid)
                if status is not None and status.state is AttemptState.LOST:
                    break
                assert status is None or status.state is AttemptState.RUNNING, status
                assert time.monotonic() - cut < 30, "still not LOST 30 s after the cut"
                time.sleep(0.2)
            assert time.monotonic() - cut >= 3.0, "LOST before lost_after_s"
            assert f"node {node.name} unreachable since" in status.reason, status
            # A zombie: the node kept running it all along.
            assert _running(job_pid) and _running(runtime_pid)
            last = beat.read_text()
            time.sleep(0.3)
            assert beat.read_text() != last
        finally:
            fleet.ctl("heal", node)
        deadline = time.monotonic() + 30
        while True:  # as the control plane does: cancel until the node answers
            try:
                adapter.cancel([nid])
                break
            except RunnerError:
                assert time.monotonic() < deadline, "the healed node never took the cancel"
                time.sleep(0.5)
        cancelled = time.monotonic()
        while _running(job_pid) or _running(runtime_pid):
            assert time.monotonic() - cancelled < 5, "the zombie outlived its cancel"
            time.sleep(0.05)
        assert adapter.poll([nid])[nid].state is AttemptState.LOST
        assert req.attempt_id not in {o.attempt_id for o in adapter.owned()}
        # The partition counts against the node: its offer now carries an interruption rate.
        offer = {o.key: o for o in adapter.offers()}[node.name]
        assert offer.preemptible and offer.preemption_rate_per_hour >= 1.0, offer
        assert "1 flaps in the last hour" in offer.note, offer.note
        others = [o for o in adapter.offers() if o.key != node.name]
        assert others and all(o.preemption_rate_per_hour == 0.0 for o in others), others

    def test_a_missing_interpreter_is_rejected_and_leaves_nothing(
        self, fleet: Fleet, workspace: Path, python: str, tmp_path: Path
    ) -> None:
        remote = tmp_path / "other" / "remote"
        site = _site(fleet, remote)
        site = site.model_copy(update={"runtime": RuntimeSettings(python="/nonexistent/python")})
        adapter = EdgeAdapter(site, tmp_path / "other")
        try:
            req = self.request(workspace, python, "pass")
            with pytest.raises(SubmitRejected, match="no interpreter"):
                adapter.submit(req)
            left = [p for p in remote.rglob("*") if p.parent != remote]  # nodes' own folders
            assert left == [], "the attempt's folder was removed"
        finally:
            adapter.close()

    def test_the_walltime_stops_an_attempt_as_a_preemption(
        self, adapter: EdgeAdapter, workspace: Path, python: str
    ) -> None:
        req = self.request(workspace, python, "import time; time.sleep(60)")
        spec = req.spec.model_copy(update={
            "resources": req.spec.resources.model_copy(update={"walltime_s": 2.0})})
        nid = adapter.submit(req.model_copy(update={"spec": spec}))
        status = self.wait_for(adapter, nid, lambda s: s.state.terminal)
        assert status.state is AttemptState.PREEMPTED, status
        assert status.walltime and status.reason == "walltime reached"

    def test_the_node_keeps_one_copy_of_the_output_and_logs_read_both_segments(
        self, adapter: EdgeAdapter, workspace: Path, python: str, tmp_path: Path
    ) -> None:
        req = self.request(workspace, python, "print('said once')")
        nid = adapter.submit(req)
        self.wait_for(adapter, nid, lambda s: s.state.terminal)
        node, _, aid = nid.partition("/")
        folder = tmp_path / "work" / "remote" / node / aid
        log = folder / "attempt.log"
        # stdout goes into the runtime's own log: its tee writes each byte there once
        assert (folder / "output.log").is_symlink()
        assert (folder / "output.log").resolve() == log.resolve()
        assert oct(log.stat().st_mode & 0o777) == "0o600"
        assert log.read_text().count("said once") == 1
        # a segment the upload has not taken yet is read first, then the current one
        (folder / "attempt.log.1").write_text("older segment\n")
        shown = adapter.logs(nid)
        assert shown.startswith("older segment\n") and "said once" in shown, shown
