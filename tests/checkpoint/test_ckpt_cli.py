"""The ``checkpoints`` sub-commands: output formats, exit codes, and hostile job names."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import gridbridge.checkpoint as ckpt
from gridbridge.checkpoint.cli import app

runner = CliRunner()


@pytest.fixture
def root(tmp_path: Path) -> str:
    base = tmp_path / "root"
    with ckpt.open(f"file://{base}/job-1") as store:
        state = {"w": np.arange(100.0), "b": np.ones(3, "int64")}
        store.save(1, state, metadata={"epoch": 1})
        state["b"] = state["b"] + 1
        store.save(2, state, metadata={"epoch": 2})
    return f"file://{base}"


def test_list_formats(root: str) -> None:
    res = runner.invoke(app, ["list", "job-1", "--root", root, "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[1]["reused"] == 1 and rows[1]["arrays"] == 2
    res = runner.invoke(app, ["list", "job-1", "--root", root, "--format", "csv"])
    parsed = list(csv.DictReader(io.StringIO(res.output)))
    assert [r["step"] for r in parsed] == ["1", "2"]
    res = runner.invoke(app, ["list", "job-1", "--root", root])
    assert res.exit_code == 0 and "checkpoints of job-1" in res.output


def test_root_from_context_and_env(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    res = runner.invoke(app, ["list", "job-1", "-f", "json"], obj={"checkpoint_root": root})
    assert res.exit_code == 0 and len(json.loads(res.output)) == 2
    monkeypatch.setenv("GRIDBRIDGE_CHECKPOINT_ROOT", root)
    res = runner.invoke(app, ["list", "job-1", "-f", "json"])
    assert res.exit_code == 0 and len(json.loads(res.output)) == 2
    monkeypatch.delenv("GRIDBRIDGE_CHECKPOINT_ROOT")
    res = runner.invoke(app, ["list", "job-1"])
    assert res.exit_code != 0 and "no checkpoint root" in res.output


def test_show_latest_and_explicit(root: str) -> None:
    res = runner.invoke(app, ["show", "job-1", "--root", root, "-f", "json"])
    rows = {r["array"]: r for r in json.loads(res.output)}
    assert rows["w"]["held_by_step"] == 1 and rows["b"]["held_by_step"] == 2
    res = runner.invoke(app, ["show", "job-1", "1", "--root", root, "-f", "json"])
    assert {r["held_by_step"] for r in json.loads(res.output)} == {1}


def test_verify_exit_code(root: str) -> None:
    res = runner.invoke(app, ["verify", "job-1", "--root", root, "-f", "json"])
    assert res.exit_code == 0 and all(r["ok"] for r in json.loads(res.output))
    with ckpt.open(f"{root}/job-1") as store:  # the COMMIT names the step's folder
        step1 = Path(store.step_url(1).removeprefix("file://"))
    chunk = next((step1 / "w").rglob("c/*"))
    chunk.write_bytes(b"\x00" * chunk.stat().st_size)
    res = runner.invoke(app, ["verify", "job-1", "--root", root, "-f", "json"])
    assert res.exit_code == 1
    rows = {r["step"]: r for r in json.loads(res.output)}
    assert not rows[1]["ok"] and not rows[2]["ok"]  # step 2 references step 1's "w"


def test_gc_all_jobs(root: str) -> None:
    base = root.removeprefix("file://")
    with ckpt.open(f"{root}/job-2") as store:
        for step in range(5):
            store.save(step, {"x": np.full(4, step)})
    res = runner.invoke(app, ["gc", "--root", root, "--keep-last", "1"])
    assert res.exit_code == 0, res.output
    assert ckpt.open(f"{root}/job-2").steps() == [4]
    assert ckpt.open(f"{root}/job-1").steps() == [1, 2]  # 1 is referenced by 2
    assert sorted(os.listdir(base)) == ["job-1", "job-2"]


@pytest.mark.parametrize(
    "job",
    ["..", "../etc", "a/../../b", "a..b", "job'quote", 'dq"', "semi;rm -rf", "new\nline",
     "/abs", "-dash", ".hidden", "x" * 64, "", "sp ace", "a/b"],
)
def test_hostile_job_names_are_rejected(root: str, job: str, tmp_path: Path) -> None:
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for argv in (["list", job], ["show", job], ["verify", job], ["gc", job]):
        res = runner.invoke(app, [*argv[:1], "--root", root, "--", *argv[1:]])
        assert res.exit_code != 0, (argv, res.output)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
