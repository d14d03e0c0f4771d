"""``gridbridge status --watch``: the table again every few seconds, with what changed in the
store since, until Ctrl-C (exit 130, as a shell reports an interrupted command)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.serving import cheap_and_steady_config


def _cli(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "gridbridge.cli", "--config", str(config), *args]


def test_status_watch_shows_a_job_submitted_after_it_started_then_stops_on_ctrl_c(
        tmp_path: Path) -> None:
    config = cheap_and_steady_config(tmp_path)
    with subprocess.Popen(_cli(config, "status", "--watch", "0.5", "--name", "watched-*"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as watch:
        assert watch.stdout is not None and watch.stderr is not None
        # a watcher that hangs is killed (its pipe ends, and a readline below fails the test)
        watchdog = threading.Timer(90, watch.kill)
        watchdog.start()
        seen = ""
        while seen.count("every 0.5 s:") < 2:  # two refreshes before the job exists
            line = watch.stdout.readline()
            assert line, watch.stderr.read()
            seen += line
        assert "watched-1" not in seen
        # no reconciler runs here: the job stays PENDING in the store
        run = subprocess.run(_cli(config, "submit", "--name", "watched-1", "--", "true"),
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        job = run.stdout.strip()
        deadline = time.monotonic() + 30
        after = ""
        while job not in after:
            assert time.monotonic() < deadline, seen + after
            line = watch.stdout.readline()
            assert line, watch.stderr.read()
            after += line
        watch.send_signal(signal.SIGINT)
        try:
            assert watch.wait(timeout=30) == 130, watch.stderr.read()
        finally:
            watchdog.cancel()
    assert "PENDING" in after


def test_status_watch_refuses_a_machine_format(tmp_path: Path) -> None:
    config = cheap_and_steady_config(tmp_path)
    run = subprocess.run(_cli(config, "status", "--watch", "1", "--format", "json"),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stdout == ""
    assert "--format csv or json prints once" in run.stderr
