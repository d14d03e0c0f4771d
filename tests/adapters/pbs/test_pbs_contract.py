"""The PBS adapter against the adapter contract, the walltime, and hostile values, with the
fake OpenPBS commands of ``tests/support/fakepbs`` (an emulation: no PBS server can run here)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridbridge.adapter import SubmitRejected
from gridbridge.adapters._run import LocalRunner, RunnerError
from gridbridge.adapters.pbs import PBSAdapter
from gridbridge.config import Capacity, RuntimeSettings, SiteConfig
from gridbridge.states import AttemptState
from gridbridge.testing import AdapterContract
from tests.support.fakepbs import install

pytestmark = pytest.mark.pbs


def _site(**update: object) -> SiteConfig:
    site = SiteConfig(name="contract", adapter="pbs", capacity=Capacity(cpus=8),
                      runtime=RuntimeSettings(python=sys.executable))
    return site.model_copy(update=update)


def _adapter(tmp_path: Path, site: SiteConfig, workdir: str = "work",
             **env: str) -> PBSAdapter:
    """A PBS adapter whose commands are the fake's, with the fake's state in ``tmp_path``
    (``env``: more of the fake's settings, such as its faults)."""
    bin_dir = install(tmp_path / "pbsbin")
    home = tmp_path / "fakepbs"
    home.mkdir(exist_ok=True)
    options = {"bin_dir": str(bin_dir), "remote_dir": str(tmp_path / "remote"), **site.options}
    return PBSAdapter(site.model_copy(update={"options": options}), tmp_path / workdir,
                      runner=LocalRunner(env={"FAKEPBS_HOME": str(home), **env}))


def _drain(adapter: PBSAdapter) -> None:
    """Cancel whatever still runs and wait (bounded) until the fake has nothing live."""
    adapter.cancel([o.native_id for o in adapter.owned()])
    deadline = time.monotonic() + 10
    while adapter.owned() and time.monotonic() < deadline:
        time.sleep(0.1)


class TestPBSContract(AdapterContract):
    @pytest.fixture
    def adapter(self, tmp_path: Path) -> Iterator[PBSAdapter]:
        adapter = _adapter(tmp_path, _site())
        yield adapter
        _drain(adapter)

    # beyond the contract: walltime, what qsub is given, offers ------------------------------

    def test_walltime_ends_in_preemption(self, tmp_path: Path, workspace: Path) -> None:
        adapter = _adapter(tmp_path, _site(max_walltime_s=2))
        try:
            req = self.request(workspace, sys.executable, "import time; time.sleep(30)")
            nid = adapter.submit(req)
            started = time.monotonic()
            status = self.wait_for(adapter, nid, lambda s: s.state.terminal)
            assert status.state is AttemptState.PREEMPTED, status
            assert status.walltime is True
            assert status.exit_code == -29  # JOB_EXEC_KILL_WALLTIME, as the fake records it
            assert time.monotonic() - started < 15, "stopped at its walltime, not at the end"
            assert "walltime" in adapter.logs(nid)  # the mom's "=>> PBS: job killed" line
        finally:
            _drain(adapter)

    def test_the_attempt_folder_is_the_owners_alone(self, adapter: PBSAdapter, tmp_path: Path,
                                                     workspace: Path) -> None:
        req = self.request(workspace, sys.executable, "print('private')")
        nid = adapter.submit(req)
        self.wait_for(adapter, nid, lambda s: s.state.terminal)
        folder = tmp_path / "remote" / req.attempt_id  # the job's output is there
        assert oct(folder.stat().st_mode & 0o777) == "0o700"

    def test_hostile_names_reach_qsub_as_single_arguments(self, tmp_path: Path,
                                                          workspace: Path) -> None:
        adapter = _adapter(tmp_path, _site())
        req = self.request(workspace, sys.executable, "pass")
        spec = req.spec.model_copy(update={"name": "x'; touch pwned\n#PBS -q evil"})
        req = req.model_copy(update={"spec": spec})
        argv = adapter.qsub_options(req, "/remote/x")
        name = argv[argv.index("-N") + 1]
        assert name == f"gb-x___touch_pwned__PBS_-q_evil.{req.attempt_id.rpartition('.')[2]}"
        nid = adapter.submit(req)
        try:
            status = self.wait_for(adapter, nid, lambda s: s.state.terminal)
            assert status.state is AttemptState.SUCCEEDED, status
            assert not any(tmp_path.rglob("pwned"))
            assert not (Path.cwd() / "pwned").exists()
        finally:
            _drain(adapter)

    @pytest.mark.parametrize("queue", ["work;touch pwned", "q$(id)", "a b", "q\n", "-q"])
    def test_a_hostile_queue_is_refused_by_the_options(self, tmp_path: Path,
                                                       queue: str) -> None:
        with pytest.raises(ValueError, match="not a PBS queue name"):
            _adapter(tmp_path, _site(options={"queue": queue}))

    def test_an_unknown_queue_is_a_rejection(self, tmp_path: Path, workspace: Path) -> None:
        adapter = _adapter(tmp_path, _site(options={"queue": "nosuchq"}))
        with pytest.raises(SubmitRejected, match="Unknown queue"):
            adapter.submit(self.request(workspace, sys.executable, "pass"))
        assert adapter.owned() == []

    def test_offers_count_what_running_jobs_hold(self, tmp_path: Path,
                                                 workspace: Path) -> None:
        adapter = _adapter(tmp_path, _site())
        [idle] = adapter.offers()
        assert (idle.key, idle.cpus, idle.site) == ("default", 8, "contract")
        beat = workspace / "up.txt"
        req = self.request(workspace, sys.executable, """
            import sys, time
            open(sys.argv[1], "w").write("up")
            time.sleep(60)
            """, str(beat))
        spec = req.spec.model_copy(update={
            "resources": req.spec.resources.model_copy(update={"cpus": 3})})
        nid = adapter.submit(req.model_copy(update={"spec": spec}))
        try:
            self.wait_until(beat.exists, "the job to start")
            [busy] = adapter.offers()
            assert busy.cpus == 5
            assert busy.memory_gb == pytest.approx(idle.memory_gb - 1.0)
        finally:
            adapter.cancel([nid])
            _drain(adapter)

    # two control planes, other users, faults ----------------------------------------------

    def test_another_federation_does_not_own_our_jobs(self, tmp_path: Path,
                                                      workspace: Path) -> None:
        ours = _adapter(tmp_path, _site())
        theirs = _adapter(tmp_path, _site(), workdir="elsewhere")  # the same PBS user
        tagged = _adapter(tmp_path, _site(options={"federation_tag": "blue"}))
        assert len({ours.host.tag, theirs.host.tag, "blue"}) == 3
        req = self.request(workspace, sys.executable, "import time; time.sleep(60)")
        nid = ours.submit(req)
        try:
            assert (nid, req.attempt_id) in {(o.native_id, o.attempt_id) for o in ours.owned()}
            assert theirs.owned() == [] and tagged.owned() == []
        finally:
            _drain(ours)

    def test_owned_lists_only_this_users_jobs(self, tmp_path: Path, workspace: Path) -> None:
        ours = _adapter(tmp_path, _site())
        other_user = _adapter(tmp_path, _site(), FAKEPBS_USER="someoneelse")
        nid = other_user.submit(self.request(workspace, sys.executable,
                                             "import time; time.sleep(60)"))
        try:
            assert ours.owned() == [], "another user's job (with our very tag) is not ours"
            assert [o.native_id for o in other_user.owned()] == []  # -u is who runs qstat
        finally:
            ours.cancel([nid])

    def test_a_qsub_without_a_server_is_uncertain_not_rejected(self, tmp_path: Path,
                                                               workspace: Path) -> None:
        ours = _adapter(tmp_path, _site())
        down = _adapter(tmp_path, _site(), FAKEPBS_DOWN="qsub")
        with pytest.raises(RunnerError, match="Connection refused") as caught:
            down.submit(self.request(workspace, sys.executable, "pass"))
        assert not isinstance(caught.value, SubmitRejected)
        assert ours.owned() == []
        lost_reply = _adapter(tmp_path, _site(), FAKEPBS_DOWN="qsub-after-queuing")
        req = self.request(workspace, sys.executable, "import time; time.sleep(60)")
        with pytest.raises(RunnerError, match="may have been queued"):
            lost_reply.submit(req)
        try:
            found = {o.attempt_id for o in ours.owned()}
            assert req.attempt_id in found, "it was queued: owned() finds it"
        finally:
            _drain(ours)

    def test_a_qstat_without_a_server_is_an_error_not_lost_jobs(self, tmp_path: Path,
                                                                workspace: Path) -> None:
        ours = _adapter(tmp_path, _site())
        nid = ours.submit(self.request(workspace, sys.executable, "pass"))
        self.wait_for(ours, nid, lambda s: s.state.terminal)
        down = _adapter(tmp_path, _site(), FAKEPBS_DOWN="qstat")
        with pytest.raises(RunnerError, match="cannot connect to server"):
            down.poll([nid])
        with pytest.raises(RunnerError, match="cannot connect to server"):
            down.owned()

    def test_a_failed_qdel_does_not_turn_the_end_into_a_cancel(self, tmp_path: Path,
                                                               workspace: Path) -> None:
        ours = _adapter(tmp_path, _site())
        down = _adapter(tmp_path, _site(), FAKEPBS_DOWN="qdel")  # the same markers
        go = workspace / "go"
        nid = ours.submit(self.request(workspace, sys.executable, """
            import os, sys, time
            while not os.path.exists(sys.argv[1]):
                time.sleep(0.05)
            sys.exit(3)
            """, str(go)))
        try:
            with pytest.raises(RunnerError, match="cannot connect"):
                down.cancel([nid])
            go.write_text("")
            status = self.wait_for(ours, nid, lambda s: s.state.terminal)
            assert (status.state, status.exit_code) == (AttemptState.FAILED, 3), status
        finally:
            _drain(ours)
