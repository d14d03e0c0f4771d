"""``gridbridge logs --follow`` and ``future.logs(follow=True)``: each line a job writes reaches
the follower within two heartbeats of being written, across attempts, and the follow ends
when the job does. Over a real ``serve --listen`` (the CLI as alice) and in-process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from gridbridge.client import Client
from gridbridge.config import parse_config
from tests.service.conftest import free_port, serving

pytestmark = pytest.mark.slow

HEARTBEAT_S = 2.0
LINES = 6
# Each line carries the wall-clock time it was written; a pause between them lets the
# follower show each one before the next exists.
WRITER = ["python", "-c",
          "import time\n"
          f"for i in range({LINES}):\n"
          "    print(f'line {i} written {time.time():.3f}', flush=True)\n"
          "    time.sleep(1.5)\n"]
_LINE = re.compile(r"^line (\d+) written (\d+\.\d+)$")


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "gridbridge.yaml"
    path.write_text(yaml.safe_dump({
        "state_url": "sqlite:///state.db", "checkpoint_root": "checkpoints", "workdir": "run",
        "limits": {"tick_interval_s": 0.1},
        "sites": [{"name": "a", "adapter": "local", "tier": "cloud", "capacity": {"cpus": 2},
                   "price": {"per_core_hour": 0.01},
                   "runtime": {"heartbeat_s": HEARTBEAT_S}}],
    }))
    return path


def _lags(received: list[tuple[float, str]]) -> dict[int, float]:
    """Per written line, seconds from its writing to its arrival at the follower."""
    lags = {}
    for at, line in received:
        m = _LINE.match(line)
        if m:
            lags[int(m[1])] = at - float(m[2])
    return lags


def test_logs_follow_over_the_service_prints_each_line_within_two_heartbeats(
        tmp_path: Path) -> None:
    config = _config(tmp_path)
    url = f"http://127.0.0.1:{free_port()}"
    made = subprocess.run([sys.executable, "-m", "gridbridge.cli", "--config", str(config),
                           "admin", "token", "create", "--user", "alice", "--team", "phys",
                           "--role", "researcher"], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBRIDGE_")}
    env["GRIDBRIDGE_TOKEN"] = made.stdout.strip()
    cli = [sys.executable, "-m", "gridbridge.cli", "--url", url]
    with serving(config, url, tmp_path / "serve.log"):
        run = subprocess.run([*cli, "submit", "--name", "writer", "--", *WRITER], env=env,
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        job = run.stdout.strip()
        # started right after the submit: it waits for the first attempt, then follows it
        received: list[tuple[float, str]] = []
        with subprocess.Popen([*cli, "logs", "--follow", job], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) as follower:

            def read() -> None:
                assert follower.stdout is not None
                for line in follower.stdout:
                    received.append((time.time(), line.rstrip("\n")))

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            try:
                code = follower.wait(timeout=120)  # it ends by itself, when the job does
            finally:
                if follower.poll() is None:
                    follower.kill()
            reader.join(10)
            stderr = follower.stderr.read() if follower.stderr else ""
        assert code == 0, stderr
        finished = subprocess.run([*cli, "status", job, "--format", "json"], env=env,
                                  capture_output=True, text=True, timeout=60)
        assert '"SUCCEEDED"' in finished.stdout, finished.stdout + finished.stderr

        once = subprocess.run([*cli, "logs", job], env=env, capture_output=True, text=True,
                              timeout=60)
    said = "\n".join(f"{at:.3f} {line}" for at, line in received)
    assert received[0][1].startswith("--- attempt 1 on a ("), said
    lags = _lags(received)
    # every line, once, in order, each within two heartbeats of its writing
    assert [int(m[1]) for _, line in received if (m := _LINE.match(line))] == list(range(LINES))
    assert max(lags.values()) <= 2 * HEARTBEAT_S, said
    # past the header (whose state is the one first seen), what `logs` prints after the end
    assert [line for _, line in received][1:] == once.stdout.splitlines()[1:], (said, once)


def test_future_logs_follow_in_process_goes_on_across_a_preemption(tmp_path: Path) -> None:
    config = parse_config(yaml.safe_load(_config(tmp_path).read_text()), base=tmp_path)
    with Client(config) as client:
        f = client.submit_command(WRITER, name="writer")
        pieces = f.logs(follow=True)
        seen: list[tuple[float, str]] = []
        text = ""
        preempted = False
        for piece in pieces:
            text += piece
            while "\n" in text:
                line, text = text.split("\n", 1)
                seen.append((time.time(), line))
                if line.startswith("line 1 ") and not preempted:
                    client.preempt(f.job_id, wait=True)  # attempt 2 starts the writer afresh
                    preempted = True
        assert f.status().terminal  # the follow ended with the job
    lines = [line for _, line in seen]
    headers = [line for line in lines if line.startswith("--- attempt")]
    assert [h.split(" on ")[0] for h in headers] == ["--- attempt 1", "--- attempt 2"], lines
    second = lines[lines.index(headers[1]):]
    assert [int(m[1]) for line in second if (m := _LINE.match(line))] == list(range(LINES))
    assert max(_lags(seen[lines.index(headers[1]):]).values()) <= 2 * HEARTBEAT_S, lines
