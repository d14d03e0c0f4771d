"""The PBS adapter's translation of PBS's words, against recorded and reconstructed OpenPBS
output (``tests/data/pbs/``, sources in its README.md), and the commands it issues."""

from __future__ import annotations

import getpass
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from pydantic import ValidationError

from gridbridge.adapter import SubmitRejected, SubmitRequest
from gridbridge.adapters._run import Completed, RunnerError
from gridbridge.adapters.pbs import (
    EXIT_STATUSES,
    JOB_STATES,
    PBSAdapter,
    PBSOptions,
    format_walltime,
    parse_nodes,
    parse_qstat,
    status_of,
    variables,
)
from gridbridge.config import Capacity, RuntimeSettings, SiteConfig
from gridbridge.spec import JobSpec, Resources
from gridbridge.states import AttemptState
from tests.support.paths import DATA as _DATA

pytestmark = pytest.mark.pbs

DATA = _DATA / "pbs"


def _jobs(name: str) -> dict[str, dict[str, object]]:
    return parse_qstat((DATA / name).read_text())


class Scripted:
    """A runner that records each argv and answers from a script (the adapter's only door)."""

    def __init__(self, *answers: Completed) -> None:
        self.answers = list(answers)
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str], *, input: str | None = None, timeout: float = 30.0,
            env: Mapping[str, str] | None = None) -> Completed:
        self.calls.append(list(argv))
        return self.answers.pop(0)

    def describe(self) -> str:
        return "scripted"


def _adapter(tmp_path: Path, runner: Scripted, **site: object) -> PBSAdapter:
    config = SiteConfig(name="hpc", adapter="pbs", capacity=Capacity(cpus=16, gpus=2),
                        runtime=RuntimeSettings(python="/opt/venv/bin/python",
                                                env_names=("AWS_PROFILE",)),
                        options={"bin_dir": "/opt/pbs/bin", "remote_dir": "/shared/gb",
                                 "federation_tag": "fedA"})
    return PBSAdapter(config.model_copy(update=site), tmp_path, runner=runner)


def _ok(stdout: str = "") -> Completed:
    return Completed(0, stdout, "")


_DIR = (_ok(), _ok("/shared/gb\n"))
"""What ``mkdir -p`` and ``realpath`` of the run folder answer (once per adapter)."""


# recorded and reconstructed output ----------------------------------------------------------

def test_every_sample_file_is_described_in_the_readme() -> None:
    readme = (DATA / "README.md").read_text()
    samples = sorted(p.name for p in DATA.glob("*.json"))
    assert samples and all(f"`{name}`" in readme for name in samples)


def test_a_queued_polaris_job_is_submitted_and_not_ours() -> None:
    [(native_id, job)] = _jobs("qstat_polaris_queued.json").items()
    assert native_id == "359322.polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov"
    status = status_of(job)
    assert (status.state, status.native_state) == (AttemptState.SUBMITTED, "Q/10")
    assert "GRIDBRIDGE_ATTEMPT_ID" not in variables(job)


def test_running_and_exiting_jobs_are_running() -> None:
    jobs = _jobs("qstat_running.json")
    assert status_of(jobs["4.scheduler"]).state is AttemptState.RUNNING
    exiting = status_of(jobs["5.scheduler"])  # Exit_status is not final before F
    assert (exiting.state, exiting.native_state) == (AttemptState.RUNNING, "E/50")
    assert variables(jobs["4.scheduler"])["GRIDBRIDGE_ATTEMPT_ID"] == "j1a2b3c4d5e6.1"


def test_an_old_string_variable_list_is_split_on_unescaped_commas() -> None:
    found = variables(_jobs("qstat_running.json")["5.scheduler"])
    assert found["GRIDBRIDGE_ATTEMPT_ID"] == "j0f9e8d7c6b5.2"
    assert found["NOTE"] == "a,b"
    assert found["PBS_O_QUEUE"] == "workq"


def test_finished_jobs_by_exit_status() -> None:
    jobs = _jobs("qstat_finished.json")
    ok, failed, deleted = (status_of(jobs[f"120{i}.pbs-01"]) for i in (1, 2, 3))
    assert (ok.state, ok.exit_code, ok.native_state) == (AttemptState.SUCCEEDED, 0, "F/92")
    assert (failed.state, failed.exit_code) == (AttemptState.FAILED, 3)
    assert (deleted.state, deleted.exit_code) == (AttemptState.LOST, None)


def test_numeric_looking_values_keep_their_text() -> None:
    found = variables(_jobs("qstat_finished.json")["1201.pbs-01"])
    assert found["CI_COMMIT_BEFORE_SHA"] == "0" * 40  # invalid JSON as OpenPBS prints it
    assert found["BUILD_NUMBER"] == "1.10"  # not the float 1.1
    assert found["GRIDBRIDGE_ATTEMPT_ID"] == "j00000000aa1.1"


def test_walltime_kills_are_preemptions_old_and_new() -> None:
    jobs = _jobs("qstat_walltime.json")
    new = status_of(jobs["13030457.meta-pbs"])
    assert (new.state, new.walltime, new.exit_code) == (AttemptState.PREEMPTED, True, -29)
    old = status_of(jobs["9001.oldpbs"])  # 271 with the used walltime at its limit
    assert (old.state, old.walltime) == (AttemptState.PREEMPTED, True)
    other = status_of(jobs["9002.oldpbs"])  # 271 well within its walltime: someone killed it
    assert (other.state, other.walltime) == (AttemptState.LOST, False)
    assert "signal 15" in other.reason


def test_pbsnodes_counts_only_nodes_that_can_take_work() -> None:
    cpus, memory_gb, gpus = parse_nodes((DATA / "pbsnodes_polaris.json").read_text())
    # the free node only: the job-exclusive and the down node offer nothing
    assert (cpus, gpus) == (64, 4)
    assert memory_gb == pytest.approx(527672488 / (1 << 20))


# the tables ------------------------------------------------------------------------------------

def test_the_state_table_covers_every_pbs_job_state() -> None:
    assert set(JOB_STATES) == set("QRSEFHWBXMTU")
    for letter, waiting in {"Q": True, "H": True, "W": True, "T": True, "R": False}.items():
        expected = AttemptState.SUBMITTED if waiting else AttemptState.RUNNING
        assert status_of({"job_state": letter}).state is expected
    assert status_of({"job_state": "M"}).state is AttemptState.LOST
    assert status_of({"job_state": "Z"}).state is AttemptState.LOST  # not a PBS state


def test_the_exit_table_holds_openpbs_job_exec_codes() -> None:
    assert set(EXIT_STATUSES) == set(range(-30, 0)) - {-8, -9}


@pytest.mark.parametrize(("code", "state"), [
    (0, AttemptState.SUCCEEDED), (1, AttemptState.FAILED), (75, AttemptState.PREEMPTED),
    (76, AttemptState.LOST), (265, AttemptState.LOST), (271, AttemptState.LOST),
    (-1, AttemptState.LOST), (-3, AttemptState.LOST), (-11, AttemptState.PREEMPTED),
    (-12, AttemptState.PREEMPTED), (-17, AttemptState.FAILED), (-20, AttemptState.LOST),
    (-27, AttemptState.FAILED), (-29, AttemptState.PREEMPTED), (-99, AttemptState.LOST),
])
def test_exit_statuses(code: int, state: AttemptState) -> None:
    status = status_of({"job_state": "F", "Exit_status": str(code)})
    assert (status.state, status.exit_code) == (state, code)
    assert status.walltime is (code == -29)


def test_a_cancel_we_issued_wins_unless_the_job_succeeded() -> None:
    def judged(**job: object) -> AttemptState:
        return status_of({"job_state": "F", **job}, cancelled=True).state

    assert judged(Exit_status=75) is AttemptState.CANCELLED  # the runtime's SIGTERM exit
    assert judged(Exit_status=271) is AttemptState.CANCELLED
    assert judged(substate=91) is AttemptState.CANCELLED  # deleted while queued
    assert judged(Exit_status=0) is AttemptState.SUCCEEDED
    assert status_of({"job_state": "R"}, cancelled=True).state is AttemptState.RUNNING


def test_walltime_format() -> None:
    assert format_walltime(2) == "00:00:02"
    assert format_walltime(0.2) == "00:00:01"
    assert format_walltime(90061.5) == "25:01:02"


# options and commands ---------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value"), [
    ("queue", "q;rm -rf /"), ("queue", "workq\n"), ("queue", "averyveryverylongqueue"),
    ("account", "acct$(id)"), ("remote_dir", "relative/dir"), ("remote_dir", "/a:b"),
    ("remote_dir", "/a,b"), ("bin_dir", "/opt/pbs'/bin"), ("federation_tag", "a b"),
    ("federation_tag", "x" * 33),
])
def test_hostile_options_are_refused_naming_the_field(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        PBSOptions.model_validate({field: value})


def test_a_misspelt_option_is_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        PBSOptions.model_validate({"queues": "workq"})


def _request(**resources: object) -> SubmitRequest:
    spec = JobSpec(name="train", command=("python", "-c", "pass"),
                   resources=Resources.model_validate(resources))
    # a name JobSpec would refuse, as if it came from an older store or another client
    spec = spec.model_copy(update={"name": "train it\n'now'"})
    return SubmitRequest(attempt_id="jabc.3", job_id="jabc", attempt=3, token=3, spec=spec,
                         checkpoint_url="file:///c", attempt_url="file:///a")


def test_qsub_options_are_plain_values(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, Scripted(), max_walltime_s=1800,
                       options={"queue": "gpu@srv", "account": "proj-1",
                                "remote_dir": "/shared/gb", "bin_dir": "/opt/pbs/bin",
                                "federation_tag": "fedA"})
    argv = adapter.qsub_options(_request(cpus=4, memory_gb=1.5, gpus=2, walltime_s=7200),
                                "/shared/gb/jabc.3")
    pairs = dict(zip(argv[::2], argv[1::2], strict=True))
    assert pairs["-N"] == "gb-train_it__now_.3"
    assert pairs["-q"] == "gpu@srv" and pairs["-A"] == "proj-1" and pairs["-r"] == "n"
    assert pairs["-o"] == "/shared/gb/jabc.3/output.log"
    assert pairs["-v"] == "GRIDBRIDGE_ATTEMPT_ID=jabc.3,GRIDBRIDGE_FEDERATION=fedA,AWS_PROFILE"
    limits = [argv[i + 1] for i, a in enumerate(argv) if a == "-l"]
    assert limits == ["select=1:ncpus=4:mem=1536mb:ngpus=2", "walltime=00:30:00"]


def test_submit_sends_the_script_on_stdin_and_returns_the_job_id(tmp_path: Path) -> None:
    runner = Scripted(*_DIR, Completed(0, "", ""), Completed(0, "1234.pbs-01\n", ""))
    adapter = _adapter(tmp_path, runner)
    request = _request().model_copy(update={"attempt_url": (tmp_path / "a").as_uri()})
    assert adapter.submit(request) == "1234.pbs-01"
    made, real, mkdir, qsub = runner.calls
    assert made == ["mkdir", "-p", "-m", "700", "--", "/shared/gb"]
    assert real == ["realpath", "--", "/shared/gb"]
    assert mkdir == ["mkdir", "-p", "-m", "700", "--", "/shared/gb/jabc.3"]  # owner's only
    assert qsub[0] == "/opt/pbs/bin/qsub" and "-" not in qsub  # the script is on stdin


def test_over_ssh_the_run_folder_is_made_absolute_on_the_login_host(tmp_path: Path) -> None:
    runner = Scripted(_ok(), _ok("/home/alice/.gridbridge/pbs/hpc\n"), _ok(),
                      _ok("12.pbs-01\n"), _ok(), _ok("13.pbs-01\n"))
    adapter = _adapter(tmp_path, runner, options={"login": {"host": "login1", "user": "alice"}})
    request = _request().model_copy(update={"attempt_url": (tmp_path / "a").as_uri()})
    assert adapter.submit(request) == "12.pbs-01"
    assert runner.calls[0] == ["mkdir", "-p", "-m", "700", "--", ".gridbridge/pbs/hpc"]  # home's
    assert runner.calls[1] == ["realpath", "--", ".gridbridge/pbs/hpc"]
    qsub = runner.calls[3]
    assert qsub[qsub.index("-o") + 1] == "/home/alice/.gridbridge/pbs/hpc/jabc.3/output.log"
    adapter.submit(request.model_copy(update={"attempt_id": "jabc.4", "attempt": 4}))
    assert [c[0] for c in runner.calls[4:]] == ["mkdir", "qsub"], "the run folder's run once"


def test_the_local_default_run_folder_is_resolved(tmp_path: Path) -> None:
    config = SiteConfig(name="hpc", adapter="pbs", capacity=Capacity(cpus=1), options={})
    adapter = PBSAdapter(config, tmp_path / "w" / ".." / "w", runner=Scripted())
    assert adapter.host.remote_dir == str(tmp_path.resolve() / "w" / "pbs" / "hpc")


@pytest.mark.parametrize("real", ["relative/dir", "/home/a\nb", "/home/a,b"])
def test_an_unusable_run_folder_is_refused(tmp_path: Path, real: str) -> None:
    runner = Scripted(_ok(), _ok(real + "\n"))
    adapter = _adapter(tmp_path, runner, options={"login": {"host": "login1"}})
    request = _request().model_copy(update={"attempt_url": (tmp_path / "a").as_uri()})
    with pytest.raises(SubmitRejected, match="unusable run folder"):
        adapter.submit(request)
    assert len(runner.calls) == 2, "no qsub"


@pytest.mark.parametrize("words", [
    "Connection refused\nqsub: cannot connect to server pbs-01 (errno=15010)",
    "qsub: pbs_connect failed", "qsub: Communication failure.",
    "qsub: Request timed out", "qsub: Job submission failed: timeout"])
def test_a_qsub_that_could_not_reach_the_server_is_uncertain(tmp_path: Path,
                                                             words: str) -> None:
    runner = Scripted(*_DIR, _ok(), Completed(1, "", words))
    request = _request().model_copy(update={"attempt_url": (tmp_path / "a").as_uri()})
    with pytest.raises(RunnerError, match="may have been queued") as caught:
        _adapter(tmp_path, runner).submit(request)
    assert not isinstance(caught.value, SubmitRejected)


@pytest.mark.parametrize("words", [
    "qsub: Unknown queue", "qsub: Job exceeds queue resource limits",
    "qsub: Illegal attribute or resource value Resource_List.walltime",
    "qsub: invalid option -- 'Z'"])
def test_a_clear_qsub_refusal_is_a_rejection(tmp_path: Path, words: str) -> None:
    runner = Scripted(*_DIR, _ok(), Completed(170, "", words))
    request = _request().model_copy(update={"attempt_url": (tmp_path / "a").as_uri()})
    with pytest.raises(SubmitRejected, match="refused"):
        _adapter(tmp_path, runner).submit(request)


def test_polling_asks_qstat_once_and_never_for_foreign_ids(tmp_path: Path) -> None:
    known = (DATA / "qstat_finished.json").read_text()
    runner = Scripted(Completed(153, known, "qstat: Unknown Job Id 77.pbs-01\n"))
    adapter = _adapter(tmp_path, runner)
    answer = adapter.poll(["1201.pbs-01", "1202", "77.pbs-01", "ctabc.9", "a;b"])
    assert runner.calls == [["/opt/pbs/bin/qstat", "-f", "-F", "json", "-x",
                             "1201.pbs-01", "1202", "77.pbs-01"]]
    assert answer["1201.pbs-01"].state is AttemptState.SUCCEEDED
    assert answer["1202"].state is AttemptState.FAILED  # found by its sequence number
    assert {answer[n].state for n in ("77.pbs-01", "ctabc.9", "a;b")} == {AttemptState.LOST}
    assert adapter.poll(["ctabc.9"])["ctabc.9"].state is AttemptState.LOST
    assert len(runner.calls) == 1, "no qstat for ids PBS never gave"


@pytest.mark.parametrize("answer", [
    Completed(1, "", "Connection refused\nqstat: cannot connect to server"),
    Completed(1, '{"timestamp": 1, "pbs_server": "pbs-01"}',  # JSON head, then no server
              "qstat: cannot connect to server pbs-01 (errno=15010)"),
    Completed(15, "", ""),
])
def test_a_qstat_that_fails_is_an_error_not_lost_jobs(tmp_path: Path, answer: Completed) -> None:
    with pytest.raises(RunnerError, match="qstat failed"):
        _adapter(tmp_path, Scripted(answer)).poll(["5.pbs-01"])
    with pytest.raises(RunnerError, match="qstat failed"):
        _adapter(tmp_path, Scripted(answer)).owned()


def test_cancelling_finished_or_unknown_jobs_is_harmless(tmp_path: Path) -> None:
    runner = Scripted(
        Completed(35, "", "qdel: Job 5.pbs-01 has finished\nqdel: Unknown Job Id 6.pbs-01\n"),
        Completed(2, "", "qdel: Server refused the request"),
    )
    adapter = _adapter(tmp_path, runner)
    adapter.cancel(["5.pbs-01", "6.pbs-01", "not-pbs"])
    assert runner.calls[0] == ["/opt/pbs/bin/qdel", "5.pbs-01", "6.pbs-01"]
    with pytest.raises(RunnerError, match="refused"):
        adapter.cancel(["7.pbs-01"])


def test_owned_keeps_the_users_live_jobs_with_an_attempt_id_and_our_tag(tmp_path: Path) -> None:
    text = (DATA / "qstat_running.json").read_text()
    runner = Scripted(Completed(0, text, ""))
    owned = _adapter(tmp_path, runner).owned()
    assert runner.calls == [["/opt/pbs/bin/qstat", "-f", "-F", "json", "-u", getpass.getuser()]]
    assert {(o.native_id, o.attempt_id) for o in owned} == {
        ("4.scheduler", "j1a2b3c4d5e6.1"), ("5.scheduler", "j0f9e8d7c6b5.2")}


def test_owned_skips_jobs_of_another_federation_or_none(tmp_path: Path) -> None:
    text = (DATA / "qstat_running.json").read_text()
    other = _adapter(tmp_path, Scripted(Completed(0, text, "")),
                     options={"federation_tag": "fedB"})
    assert other.owned() == []
    untagged = text.replace('"GRIDBRIDGE_FEDERATION":\t"fedA",\n', "")
    assert untagged != text
    owned = _adapter(tmp_path, Scripted(Completed(0, untagged, ""))).owned()
    assert [o.native_id for o in owned] == ["5.scheduler"]


def test_owned_over_ssh_asks_for_the_login_users_jobs(tmp_path: Path) -> None:
    runner = Scripted(Completed(0, "{}", ""))
    _adapter(tmp_path, runner, options={"login": {"host": "login1", "user": "alice"}}).owned()
    assert runner.calls == [["qstat", "-f", "-F", "json", "-u", "alice"]]


def test_the_default_federation_tag_follows_the_workdir(tmp_path: Path) -> None:
    config = SiteConfig(name="hpc", adapter="pbs", capacity=Capacity(cpus=1),
                        options={"remote_dir": "/shared/gb"})
    one = PBSAdapter(config, tmp_path / "one", runner=Scripted())
    assert one.host.tag == PBSAdapter(config, tmp_path / "x" / ".." / "one",
                                      runner=Scripted()).host.tag
    assert one.host.tag != PBSAdapter(config, tmp_path / "two", runner=Scripted()).host.tag


# cancel markers ------------------------------------------------------------------------------

def _finished(code: int, nid: str = "7.pbs-01") -> Completed:
    return Completed(0, f'{{"Jobs": {{"{nid}": {{"job_state": "F", "Exit_status": {code}}}}}}}',
                     "")


def test_a_failed_qdel_leaves_no_cancel_marker(tmp_path: Path) -> None:
    runner = Scripted(Completed(2, "", "qdel: Server refused the request"), _finished(3))
    adapter = _adapter(tmp_path, runner)
    with pytest.raises(RunnerError, match="refused"):
        adapter.cancel(["7.pbs-01"])
    assert adapter.poll(["7.pbs-01"])["7.pbs-01"].state is AttemptState.FAILED  # its own end


def test_a_qdel_that_cannot_run_leaves_no_cancel_marker(tmp_path: Path) -> None:
    class Down(Scripted):
        def run(self, argv: Sequence[str], **kwargs: object) -> Completed:
            if argv[0].endswith("/qdel"):
                raise RunnerError("ssh: connection lost")
            return super().run(argv)

    adapter = _adapter(tmp_path, Down(_finished(3)))
    with pytest.raises(RunnerError):
        adapter.cancel(["7.pbs-01"])
    assert adapter.poll(["7.pbs-01"])["7.pbs-01"].state is AttemptState.FAILED


def test_cancelling_a_job_that_already_ended_leaves_its_own_end(tmp_path: Path) -> None:
    runner = Scripted(Completed(35, "", "qdel: Job has finished 7.pbs-01\n"), _finished(3),
                      Completed(153, "", "qdel: Unknown Job Id 8.pbs-01\n"))
    adapter = _adapter(tmp_path, runner)
    adapter.cancel(["7.pbs-01"])
    assert adapter.poll(["7.pbs-01"])["7.pbs-01"].state is AttemptState.FAILED
    adapter.cancel(["8.pbs-01"])
    assert not any((tmp_path / "pbs" / "hpc" / ".cancelled").iterdir())


def test_cancelling_again_after_the_end_keeps_the_cancel(tmp_path: Path) -> None:
    runner = Scripted(_ok(), _finished(271),
                      Completed(35, "", "qdel: Job 7.pbs-01 has finished\n"), _finished(271))
    adapter = _adapter(tmp_path, runner)
    adapter.cancel(["7.pbs-01"])
    assert adapter.poll(["7.pbs-01"])["7.pbs-01"].state is AttemptState.CANCELLED
    adapter.cancel(["7.pbs-01"])
    assert adapter.poll(["7.pbs-01"])["7.pbs-01"].state is AttemptState.CANCELLED


def test_cancel_markers_go_after_the_end_was_reported_or_after_a_day(tmp_path: Path) -> None:
    live = Completed(0, '{"Jobs": {"7.pbs-01": {"job_state": "R"}}}', "")
    runner = Scripted(_ok(), live, _finished(271), _ok(), _finished(271))
    adapter = _adapter(tmp_path, runner)
    markers = tmp_path / "pbs" / "hpc" / ".cancelled"
    adapter.cancel(["7.pbs-01"])
    stale = markers / "9.pbs-01"  # a day-old marker of a job nobody asks about any more
    stale.write_text("0\n")
    os.utime(stale, (time.time() - 86401, time.time() - 86401))
    assert adapter.poll(["7.pbs-01"])["7.pbs-01"].state is AttemptState.RUNNING
    assert not stale.exists()
    assert (markers / "7.pbs-01").stat().st_mtime > time.time() - 60, "kept while it runs"
    assert adapter.poll(["7.pbs-01"])["7.pbs-01"].state is AttemptState.CANCELLED
    marker = markers / "7.pbs-01"
    assert marker.stat().st_mtime < time.time() - 86400 + 3600 + 60, "due in an hour"
    os.utime(marker, (time.time() - 86401, time.time() - 86401))  # an hour later
    adapter.cancel(["10.pbs-01"])
    assert adapter.poll(["7.pbs-01"])["7.pbs-01"].state is AttemptState.LOST  # 271: SIGTERM
    assert not marker.exists()


def test_offers_cap_pbsnodes_at_the_configured_capacity(tmp_path: Path) -> None:
    text = (DATA / "pbsnodes_polaris.json").read_text()
    adapter = _adapter(tmp_path, Scripted(Completed(0, text, "")))
    [offer] = adapter.offers()
    assert (offer.key, offer.cpus, offer.gpus, offer.site) == ("default", 16, 2, "hpc")


def test_logs_read_only_files_under_the_remote_dir(tmp_path: Path) -> None:
    text = (DATA / "qstat_polaris_queued.json").read_text()  # Output_Path elsewhere
    runner = Scripted(Completed(0, text, ""), *_DIR)
    assert _adapter(tmp_path, runner).logs("359322") == ""
    assert not any(c[0] == "tail" for c in runner.calls), "no file outside the remote dir is read"


@pytest.mark.parametrize("path", ["/shared/gb/../../etc/passwd", "/shared/gb/x/../../secret",
                                  "/shared/gb/..", "/shared/gb"])
def test_logs_normalise_the_output_path_first(tmp_path: Path, path: str) -> None:
    text = f'{{"Jobs": {{"7.pbs-01": {{"job_state": "R", "Output_Path": "login1:{path}"}}}}}}'
    runner = Scripted(Completed(0, text, ""), *_DIR)
    assert _adapter(tmp_path, runner).logs("7.pbs-01") == ""
    assert not any(c[0] == "tail" for c in runner.calls), "no file outside the remote dir is read"


def test_logs_read_a_normalised_path_inside_the_remote_dir(tmp_path: Path) -> None:
    text = ('{"Jobs": {"7.pbs-01": {"job_state": "R", '
            '"Output_Path": "login1:/shared/gb/x/../jabc.3//output.log"}}}')
    runner = Scripted(Completed(0, text, ""), *_DIR, _ok("hello\n"))
    assert _adapter(tmp_path, runner).logs("7.pbs-01") == "hello\n"
    assert runner.calls[-1] == ["tail", "-c", "1048576", "--", "/shared/gb/jabc.3/output.log"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
