"""The folder a job runs in: a command job runs where it was submitted on sites that share
this host's files (as ``sbatch`` runs a batch script in its submission folder), in its scratch
folder elsewhere (and ``submit`` says so when the command names a file of this folder), and in
``--chdir`` / ``chdir=`` wherever that is given."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gridbridge.client import Client
from gridbridge.states import JobState
from tests.cli.test_cli_ux import GRIDBRIDGE
from tests.support.serving import cheap_and_steady_config

_TRAIN = ("import os, pathlib\nprint('ran in', os.getcwd())\n"
          "pathlib.Path('out.txt').write_text('done')\n")


def _run(config: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200")
    env.pop("GRIDBRIDGE_CONFIG", None)
    return subprocess.run([GRIDBRIDGE, "--config", str(config), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder with a script in it, as a user's project folder would be."""
    d = tmp_path / "my project; 'quoted'"
    d.mkdir()
    (d / "train_cmd.py").write_text(_TRAIN)
    return d


def test_a_command_job_runs_in_the_folder_it_was_submitted_from(
        tmp_path: Path, work: Path) -> None:
    config = cheap_and_steady_config(tmp_path)

    out = _run(config, work, "submit", "--wait", "--", sys.executable, "train_cmd.py")

    assert out.returncode == 0, out.stdout + out.stderr
    assert (work / "out.txt").read_text() == "done"
    assert "note:" not in out.stderr
    with Client(config, start=False) as client:
        job = client.store.job(out.stdout.split()[0])
    assert job.spec.submit_dir == str(work)  # recorded in the job


def test_a_site_that_does_not_share_the_folder_runs_it_in_scratch_and_submit_says_so(
        tmp_path: Path, work: Path) -> None:
    config = cheap_and_steady_config(tmp_path, runtime={"shared_filesystem": False})

    out = _run(config, work, "submit", "--site", "cheap", "--wait", "--",
               sys.executable, "train_cmd.py")

    assert "note: train_cmd.py is in this folder, which sites cheap do not share" in out.stderr
    assert out.returncode == 1  # python cannot open the file in the scratch folder
    assert not (work / "out.txt").exists()


def test_chdir_names_the_folder_for_every_site(tmp_path: Path, work: Path) -> None:
    config = cheap_and_steady_config(tmp_path, runtime={"shared_filesystem": False})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    out = _run(config, elsewhere, "submit", "--site", "cheap", "--chdir", str(work), "--wait",
               "--", sys.executable, "train_cmd.py")

    assert out.returncode == 0, out.stdout + out.stderr
    assert "note:" not in out.stderr
    assert (work / "out.txt").read_text() == "done"
    logs = _run(config, elsewhere, "logs", out.stdout.split()[0])
    assert f"ran in {work}" in logs.stdout


def test_a_missing_folder_fails_the_job_saying_which(tmp_path: Path) -> None:
    config = cheap_and_steady_config(tmp_path)
    with Client(config) as client:
        future = client.submit_command(["true"], chdir=str(tmp_path / "gone"), max_attempts=1)
        assert future.wait(timeout=60) is JobState.FAILED
        [attempt] = client.store.attempts(future.job_id)
    assert f"the working folder {tmp_path / 'gone'} does not exist on this host" in (
        attempt.reason or "")


def test_a_function_job_runs_in_chdir(tmp_path: Path, work: Path) -> None:
    config = cheap_and_steady_config(tmp_path)
    with Client(config) as client:
        assert client.submit(os.getcwd, chdir=str(work)).result(timeout=60) == str(work)
        # without chdir, a function keeps its scratch folder (not the submitter's folder)
        assert client.submit(os.getcwd).result(timeout=60) != os.getcwd()


def test_a_relative_chdir_is_refused_naming_the_field(tmp_path: Path) -> None:
    config = cheap_and_steady_config(tmp_path)
    with Client(config, start=False) as client, pytest.raises(ValueError, match="chdir"):
        client.submit_command(["true"], chdir="relative/path")
