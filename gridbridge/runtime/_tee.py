"""The attempt's log: everything written to fds 1 and 2, by the runtime and by every process
the job starts, is copied into ``SCRATCH/attempt.log`` and on to where fd 1 pointed before.

Invariant: the log gets every byte even when nobody reads the runtime's own stdout any more
(a detached start whose terminal went away); :meth:`Tee.drain` waits until what was written so
far is in the log, so a reader after it sees the job's last words::

    fd 1, fd 2 ──> pipe ──> pump thread ──┬──> SCRATCH/attempt.log
                                          └──> the old fd 1 (errors ignored)
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path

__all__ = ["Tee"]


class Tee:
    """Copies everything written to fds 1 and 2 (this process's and its children's) into a
    scratch log, and on to where fd 1 pointed before."""

    def __init__(self, log_path: Path) -> None:
        self.path = log_path
        # the job's output may hold what it must not show others: the owner's alone
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._log = open(fd, "ab")  # noqa: SIM115 - closed in close()
        sys.stdout.flush()
        sys.stderr.flush()
        self._out = os.dup(1)
        read, write = os.pipe()
        os.dup2(write, 1)
        os.dup2(write, 2)
        os.close(write)
        self._read = read
        self._thread = threading.Thread(target=self._pump, name="gridbridge-tee", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while chunk := os.read(self._read, 65536):
            with contextlib.suppress(OSError):  # nobody reads our stdout: the log still gets it
                os.write(self._out, chunk)
            self._log.write(chunk)
            self._log.flush()

    def drain(self, timeout: float = 1.0) -> None:
        """Wait (up to ``timeout``) until what was written so far is in the log."""
        import fcntl
        import termios

        sys.stdout.flush()
        sys.stderr.flush()
        deadline = time.monotonic() + timeout
        pending = bytearray(4)
        while time.monotonic() < deadline:
            fcntl.ioctl(self._read, termios.FIONREAD, pending)
            if int.from_bytes(pending, sys.byteorder) == 0:
                break
            time.sleep(0.01)
        time.sleep(0.02)  # the pump writes what it last read

    def close(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._out, 1)
        os.dup2(self._out, 2)
        self._thread.join(timeout=2.0)  # a leftover child may still hold the pipe open
        self._log.flush()
