"""What a job runs is what the control plane wrote, not what its launch record says now: the
record sits in storage another job can rewrite, the runtime's command line does not, and it
carries the digest of the record's bytes. A rewritten record (another payload, pinned or
not, or another command) ends the attempt ``digest mismatch``, exit 1, with nothing
unpickled or run: the attacker's pickle and command make a marker folder, so a marker that
does not exist proves none of it ran (real runtime processes, real files)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pytest

from gridbridge.adapter import SubmitRequest, write_launch
from gridbridge.adapters._batch import job_script, runtime_argv
from gridbridge.config import Capacity, SiteConfig
from gridbridge.spec import JobSpec
from gridbridge.wire import (
    digest_of,
    launch_arg,
    launch_target,
    pin,
    read_result,
    unpin,
)


class _Trap:
    """Unpickling it makes the folder ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (self.marker,)


def _request(tmp_path: Path) -> SubmitRequest:
    payload = tmp_path / "payload.pkl"
    data = cloudpickle.dumps((sum, ([1, 2],), {}))
    payload.write_bytes(data)
    store = tmp_path / "store" / "jvictim"
    return SubmitRequest(
        attempt_id="jvictim.1", job_id="jvictim", attempt=1, token=1,
        spec=JobSpec(name="victim", callable_ref=pin(payload.as_uri(), data)),
        checkpoint_url=store.as_uri(), attempt_url=(store / "attempts" / "1").as_uri())


def _run(arg: str, scratch: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridbridge.runtime", "--launch", arg, "--scratch", str(scratch)],
        capture_output=True, text=True, timeout=120, check=False)


def _rewrite_launch(req: SubmitRequest, **fields: object) -> None:
    """What another job with write access to the storage does to the victim's record."""
    path = Path(unpin(req.attempt_url)[0][len("file://"):]) / "launch.json"
    record = json.loads(path.read_text())
    record.update(fields)
    path.write_text(json.dumps(record))


@pytest.mark.parametrize("how", ["own-pin", "unpinned", "command"])
def test_a_rewritten_launch_record_runs_nothing(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "attacker-ran"
    req = _request(tmp_path)
    arg = write_launch(req, heartbeat_s=60)
    trap = tmp_path / "attacker.pkl"
    trap.write_bytes(cloudpickle.dumps(_Trap(marker)))
    if how == "command":
        _rewrite_launch(req, command=["mkdir", str(marker)], callable_ref=None)
    else:
        _rewrite_launch(req, callable_ref=pin(trap.as_uri(), trap.read_bytes())
                        if how == "own-pin" else trap.as_uri())
    done = _run(arg, tmp_path / "scratch")
    assert not marker.exists(), "the attacker's payload or command ran"
    assert done.returncode == 1, done.stderr
    result = read_result(req.attempt_url)  # next to the record, where the control plane looks
    assert result is not None and result.reason == "failed"
    assert (result.error or "").startswith("digest mismatch"), result.error


def test_the_launch_the_control_plane_wrote_runs(tmp_path: Path) -> None:
    req = _request(tmp_path)
    arg = write_launch(req, heartbeat_s=60)
    record = (Path(unpin(req.attempt_url)[0][len("file://"):]) / "launch.json").read_bytes()
    assert launch_target(arg)[1] == digest_of(record)
    done = _run(arg, tmp_path / "scratch")
    assert done.returncode == 0, done.stderr
    result = read_result(req.attempt_url)
    assert result is not None and result.reason == "succeeded"


def test_writing_the_same_launch_again_keeps_its_digest(tmp_path: Path) -> None:
    """A submission that is tried again must not strand a runtime that an earlier try
    started: the same launch keeps its nonce; another attempt gets a fresh one."""
    req = _request(tmp_path)
    assert write_launch(req, heartbeat_s=60) == write_launch(req, heartbeat_s=60)
    other = req.model_copy(update={"attempt_url": req.attempt_url + "-2"})
    first = json.loads(Path(unpin(req.attempt_url)[0][7:], "launch.json").read_text())
    second_arg = write_launch(other, heartbeat_s=60)
    second = json.loads(Path(unpin(other.attempt_url)[0][7:], "launch.json").read_text())
    assert len(first["nonce"]) == 32 and first["nonce"] != second["nonce"]
    assert launch_target(second_arg)[1] != launch_target(write_launch(req, heartbeat_s=60))[1]


def test_a_hand_made_launch_carries_no_digest() -> None:
    assert launch_target("s3://b/x#y/launch.json") == ("s3://b/x#y/launch.json", None)
    assert launch_target("s3://b/l.json#launch=nope") == ("s3://b/l.json#launch=nope", None)
    digest = digest_of(b"{}")
    assert launch_target(launch_arg("file:///a/launch.json", b"{}")) == (
        "file:///a/launch.json", digest)


HOSTILE = "s3://bucket/it's a \"dir\"/$(touch pwned)/`id`;x\n#y/launch.json"


def test_the_digest_survives_every_renderer_quoted() -> None:
    """Every adapter passes ``write_launch``'s value on as the ``--launch`` argument: the batch
    script (Slurm, PBS, edge) and the EC2 user data quote it whole, so it comes back intact
    and nothing of a hostile URL runs."""
    from gridbridge.adapters._ec2_options import Ec2SpotOptions, user_data

    digest = digest_of(b"record")
    arg = launch_arg(HOSTILE, b"record")
    assert launch_target(arg) == (HOSTILE, digest)
    site = SiteConfig(name="s", adapter="slurm", capacity=Capacity(cpus=4))
    script = job_script(site, runtime_argv(site, arg, "/scratch/a.1"))
    assert shlex.split(script, comments=True)[1:] == [
        "python3", "-m", "gridbridge.runtime", "--launch", arg, "--scratch", "/scratch/a.1"]
    ec2 = SiteConfig(name="e", adapter="ec2spot", capacity=Capacity(cpus=4))
    options = Ec2SpotOptions.model_validate({"image_id": "ami-1", "instance_types": ["m5"]})
    boot = user_data(ec2, options, arg)
    words = shlex.split(boot, comments=True)
    assert words[words.index("--launch") + 1] == arg
