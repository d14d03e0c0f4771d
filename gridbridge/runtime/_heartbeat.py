"""The heartbeat: the attempt's sign of life and its log, in storage, while it runs.

Invariant: every ``heartbeat_s`` the runtime rewrites ``<attempt_url>/heartbeat.json`` (time,
host, pid, last committed step) and uploads the newest ``_LOG_TAIL_BYTES`` of its log to
``<attempt_url>/output.log`` when the log grew; trouble with storage is reported in the log
and never ends the attempt::

    Beacon thread:  beat ──> heartbeat.json ──> output.log (if the log grew) ──> wait heartbeat_s
                      ^                                                              │
                      └──────────────────────────── until stop() ───────────────────┘
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path

from gridbridge.wire import Heartbeat, Launch, Record, put_bytes

from ._files import local_dir

__all__ = ["Beacon", "last_step"]

_LOG_TAIL_BYTES = 16 * 1024 * 1024
"""The most of the log uploaded: its newest bytes (a chatty job's log can outgrow storage)."""


class Beacon:
    """Writes the heartbeat and uploads the log every ``interval_s`` in the background."""

    def __init__(self, launch: Launch, log_path: Path) -> None:
        self.launch = launch
        self.log_path = log_path
        self._uploaded = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gridbridge-beacon", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as exc:  # storage trouble must not end the attempt
                print(f"gridbridge-run: heartbeat failed: {exc}", file=sys.stderr, flush=True)
            if self._stop.wait(self.launch.heartbeat_s):
                return

    def beat(self) -> None:
        beat = Heartbeat(attempt_id=self.launch.attempt_id, at=time.time(),
                         host=socket.gethostname(), pid=os.getpid(),
                         last_step=last_step(self.launch))
        put_bytes(f"{self.launch.attempt_url}/{Record.HEARTBEAT}", beat.model_dump_json().encode())
        self.upload_log()

    def upload_log(self) -> None:
        try:
            size = self.log_path.stat().st_size
        except OSError:
            return
        if size == self._uploaded:
            return
        with open(self.log_path, "rb") as f:
            if size > _LOG_TAIL_BYTES:
                f.seek(size - _LOG_TAIL_BYTES)
            data = f.read()
        put_bytes(f"{self.launch.attempt_url}/{Record.OUTPUT_LOG}", data)
        self._uploaded = size

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


def last_step(launch: Launch) -> int | None:
    """The job's newest committed checkpoint step, None if it has none (or it is unreadable)."""
    local = local_dir(launch.checkpoint_url)
    if local is not None and not (local / "commits").is_dir():
        return None  # nothing committed yet (see checkpoint._layout): skip the store's imports
    try:
        from gridbridge import checkpoint

        return checkpoint.open(launch.checkpoint_url).latest()
    except Exception:  # a broken store must not hide the attempt's own result
        return None
