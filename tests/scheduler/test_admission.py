"""A job no configured site could ever run is refused at submission, with the reason per site;
a job that could run later says why it waits (`status`, `story()`, `detail()`, `explain`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gridbridge.client import Client
from gridbridge.config import GridConfig
from gridbridge.states import JobState


@pytest.mark.parametrize(("options", "expected"), [
    ({"constraints": {"allowed_sites": ["nosuchsite"]}},
     "unknown site(s) 'nosuchsite'; valid choices: spot-local, ondemand-local"),
    ({"cpus": 64}, "spot-local: needs 64 cpus, the site has 2 in all"),
    ({"gpus": 1}, "ondemand-local: needs 1 gpus, the site has 0 in all"),
    ({"max_cost": 1e-12}, "> max_cost"),
    ({"constraints": {"tiers": ["edge"]}}, "tier cloud not allowed (allowed: edge)"),
])
def test_a_job_no_site_could_ever_run_is_refused_and_nothing_is_stored(
    client: Client, options: dict[str, object], expected: str,
) -> None:
    with pytest.raises(ValueError) as refused:
        client.submit_command([sys.executable, "-c", "pass"], **options)
    assert expected in str(refused.value)
    with pytest.raises(ValueError):
        client.submit(sum, [1, 2], **options)
    assert client.store.jobs() == []
    root = Path(client.config.checkpoint_root.removeprefix("file://"))
    assert not root.exists() or not any(root.rglob("payload.pkl")), "no payload was written"


def test_a_job_that_can_run_later_says_why_it_waits(grid: GridConfig, tmp_path: Path) -> None:
    with Client(grid) as client:
        only_spot = {"constraints": {"allowed_sites": ["spot-local"]}}
        busy = client.submit_command([sys.executable, "-c", "import time; time.sleep(60)"],
                                     cpus=2, **only_spot)
        deadline = time.monotonic() + 60
        while busy.status() is not JobState.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        waiting = client.submit_command([sys.executable, "-c", "pass"], **only_spot)
        while not waiting.detail().startswith("waiting"):
            assert time.monotonic() < deadline, waiting.detail()
            time.sleep(0.05)
        assert waiting.status() is JobState.PENDING
        assert waiting.detail() == "waiting: spot-local: needs 1 cpus, 0 free"
        assert [e.reason for e in waiting.story() if e.kind == "waiting"] == [waiting.detail()]
        config = tmp_path / "grid.yaml"
        config.write_text(yaml.safe_dump(json.loads(grid.model_dump_json())))
        env = dict(os.environ, COLUMNS="250")
        cli = [sys.executable, "-m", "gridbridge.cli", "--config", str(config)]
        listed = subprocess.run([*cli, "status", "--format", "json"], env=env,
                                capture_output=True, text=True, timeout=120, check=True)
        why = {r["job"]: r["why"] for r in json.loads(listed.stdout)}
        assert why[waiting.job_id] == "waiting: spot-local: needs 1 cpus, 0 free"
        assert why[busy.job_id] == "attempt 1 running on spot-local"
        explained = subprocess.run([*cli, "explain", waiting.job_id, "--format", "json"],
                                   env=env, capture_output=True, text=True, timeout=120,
                                   check=True)
        rows = {r["site"]: r for r in json.loads(explained.stdout)}
        assert rows["spot-local"]["why"] == "needs 1 cpus, 0 free"
        assert rows["ondemand-local"]["why"].startswith("not in allowed sites")
        assert not any(r["chosen"] for r in rows.values())
        busy.cancel()
        assert busy.wait(60) is JobState.CANCELLED  # nothing of the test is left running


def test_the_cli_refuses_an_impossible_job_in_one_line(tmp_path: Path) -> None:
    env = dict(os.environ, GRIDBRIDGE_HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-m", "gridbridge.cli", "submit", "--site", "nowhere",
                          "--", "true"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("error: unknown site(s) 'nowhere'; valid choices:")
    assert "Traceback" not in out.stderr
