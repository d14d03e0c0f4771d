"""Storage is checked from where Slurm runs jobs: ``config check`` submits a small probe job to
each partition of a Slurm site, started as an attempt is (the same export, prologue and
interpreter), and names each partition whose jobs cannot reach the checkpoint root."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.slurm]

_NAMES = ["FSSPEC_S3_ENDPOINT_URL", "FSSPEC_S3_KEY", "FSSPEC_S3_SECRET"]


def _config(tmp_path: Path, root: str, **runtime: Any) -> Path:
    path = tmp_path / "gridbridge.yaml"
    path.write_text(yaml.safe_dump({
        "state_url": f"sqlite:///{tmp_path / 'state.db'}", "workdir": str(tmp_path / "run"),
        "checkpoint_root": root,
        "sites": [{"name": "cluster", "adapter": "slurm", "tier": "hpc",
                   "uncertain_submit": "replace",
                   "capacity": {"cpus": 4},
                   "runtime": {"python": sys.executable, "shared_filesystem": True,
                               **runtime},
                   "options": {"partitions": {"normal": {}, "scavenger": {}}}}]}))
    return path


def _config_check(config: Path, env: dict[str, str]) -> tuple[int, dict[str, tuple[str, str]]]:
    """``config check``'s exit status and table: check -> (ok, detail)."""
    done = subprocess.run([sys.executable, "-m", "gridbridge.cli", "--config", str(config),
                           "config", "check"], env={**os.environ, "COLUMNS": "400", **env},
                          capture_output=True, text=True, timeout=300, check=False)
    rows = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 3:
            rows[cells[0]] = (cells[1], cells[2])
    return done.returncode, rows


def test_each_partition_runs_the_probe_and_reaches_a_shared_folder(
    slurm_cluster: dict[str, str], tmp_path: Path,
) -> None:
    root = (tmp_path / "checkpoints").as_uri()
    code, rows = _config_check(_config(tmp_path, root), {})
    assert code == 0, rows
    for partition in ("normal", "scavenger"):
        assert rows[f"site cluster partition {partition}"] == (
            "yes", f"its runtime reaches {root}"), rows
    left = list((tmp_path / "run").rglob("probe-*.out"))
    assert not left, left  # the probe jobs' output is read and removed


@pytest.mark.s3
def test_a_partition_whose_jobs_cannot_reach_the_store_fails_config_check_by_name(
    slurm_cluster: dict[str, str], s3_server: dict[str, Any], tmp_path: Path,
) -> None:
    root = f"s3://{s3_server['bucket']}/probe-{uuid.uuid4().hex[:8]}"
    env = {f"FSSPEC_S3_{k.upper()}": str(v) for k, v in s3_server["storage_options"].items()}
    # This host reaches the store; the site's jobs, after the operator's prologue, do not.
    config = _config(tmp_path, root, env_names=_NAMES,
                     prologue=["export FSSPEC_S3_ENDPOINT_URL=http://127.0.0.1:9"])
    code, rows = _config_check(config, env)
    assert code == 1, rows
    assert rows["checkpoint_root"][0] == "yes", rows
    for partition in ("normal", "scavenger"):
        ok, detail = rows[f"site cluster partition {partition}"]
        assert ok == "NO" and detail.startswith(f"cannot reach {root}: not writable: "), detail
        assert "http://127.0.0.1:9" in detail, detail
