"""The attempt's log: everything written to fds 1 and 2, by the runtime and by every process
the job starts, is copied into ``SCRATCH/attempt.log`` and on to where fd 1 pointed before.

Invariant: the log gets every byte even when nobody reads the runtime's own stdout any more
(a detached start whose terminal went away); :meth:`Tee.drain` waits until what was written so
far is in the log, so a reader after it sees the job's last words. The host keeps one copy:
where fd 1 already is the log (the local adapter points it there) nothing is copied twice, and
the log is rotated to ``attempt.log.1`` at :data:`gridbridge.logparts.SEGMENT_BYTES`, which
the upload removes once it is in storage, so the host never holds more than two segments::

    fd 1, fd 2 ──> pipe ──> pump thread ──┬──> SCRATCH/attempt.log ──(full)──> attempt.log.1
                                          └──> the old fd 1 (errors ignored; not when it is
                                               the log itself)
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import time
from pathlib import Path

from gridbridge.logparts import SEGMENT_BYTES, previous_segment

__all__ = ["UPLOAD_WAIT_S", "Tee"]

UPLOAD_WAIT_S = 30.0
"""How long a full segment waits for the upload to take the one before it."""


class Tee:
    """Copies everything written to fds 1 and 2 (this process's and its children's) into a
    scratch log, and on to where fd 1 pointed before."""

    def __init__(self, log_path: Path, segment_bytes: int = SEGMENT_BYTES,
                 upload_wait_s: float = UPLOAD_WAIT_S) -> None:
        self.path = log_path
        self._segment_bytes = segment_bytes
        self._upload_wait_s = upload_wait_s
        self._log = _open_log(log_path)
        self._size = os.fstat(self._log.fileno()).st_size
        sys.stdout.flush()
        sys.stderr.flush()
        self._out = os.dup(1)
        # a site that already sends our stdout to this very file needs no second copy
        self._forward = not _same_file(self._out, self._log.fileno())
        read, write = os.pipe()
        os.dup2(write, 1)
        os.dup2(write, 2)
        os.close(write)
        self._read = read
        self._thread = threading.Thread(target=self._pump, name="gridbridge-tee", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while chunk := os.read(self._read, 65536):
            if self._forward:
                with contextlib.suppress(OSError):  # nobody reads our stdout: the log still gets it
                    os.write(self._out, chunk)
            self._log.write(chunk)
            self._log.flush()
            self._size += len(chunk)
            if self._size >= self._segment_bytes:
                self._rotate()

    def _rotate(self) -> None:
        """Start a new segment. The older one is removed by the upload once it is in storage;
        until then the job's writes wait (up to ``upload_wait_s``: storage that does not
        answer must not stop the job), after which it is dropped and the upload says so."""
        previous = previous_segment(self.path)
        deadline = time.monotonic() + self._upload_wait_s
        while previous.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._log.close()
        os.replace(self.path, previous_segment(self.path))
        self._log = _open_log(self.path)
        self._size = 0

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


def _open_log(path: Path) -> io.BufferedWriter:
    # the job's output may hold what it must not show others: the owner's alone
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return open(fd, "ab")  # the Tee closes it


def _same_file(fd_a: int, fd_b: int) -> bool:
    a, b = os.fstat(fd_a), os.fstat(fd_b)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
