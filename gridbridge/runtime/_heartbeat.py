"""The heartbeat: the attempt's sign of life and its log, in storage, while it runs.

Invariant: every ``heartbeat_s`` the runtime rewrites ``<attempt_url>/heartbeat.json`` (time,
host, pid, last committed step) and uploads the bytes its log gained since the last upload,
and only those, as the next numbered parts (:mod:`gridbridge.logparts`); trouble with storage
is reported in the log and never ends the attempt (the bytes are uploaded at the next beat).
Between beats, a part's worth of new output or a rotated segment is uploaded at once, and the
segment is then removed from the host, so a chatty job's log is neither lost nor kept twice::

    Beacon thread:  beat ──> heartbeat.json ──> new log bytes ──> output.log.NNNNNN ──> wait
                      ^                                                              │
                      └──────────────────────────── until stop() ───────────────────┘
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gridbridge.logparts import OPEN_PART_BYTES, PART_BYTES, part_url, previous_segment
from gridbridge.wire import Heartbeat, Launch, Record, put_bytes

from ._files import local_dir

__all__ = ["Beacon", "LogUpload", "last_step"]

_CHECK_S = 0.5
"""How often, between beats, the log is checked for a part's worth to upload."""
_DROPPED = (b"\n[gridbridge: output dropped here: the job wrote faster than it could be "
            b"uploaded, and the host keeps only its newest segments]\n")


class Beacon:
    """Writes the heartbeat and uploads the log every ``interval_s`` in the background."""

    def __init__(self, launch: Launch, log_path: Path) -> None:
        self.launch = launch
        self.log_path = log_path
        self._upload = LogUpload(log_path, launch.attempt_url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gridbridge-beacon", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        beat_at = 0.0
        while True:
            beat = time.monotonic() >= beat_at
            try:
                if beat:
                    beat_at = time.monotonic() + self.launch.heartbeat_s
                    self.beat()
                elif self._upload.pending():  # a chatty job: upload before the tee must wait
                    self.upload_log()
            except Exception as exc:  # storage trouble must not end the attempt
                if beat:  # said once a beat; the next beat uploads what this one could not
                    print(f"gridbridge-run: heartbeat failed: {exc}", file=sys.stderr,
                          flush=True)
            if self._stop.wait(min(_CHECK_S, self.launch.heartbeat_s)):
                return

    def beat(self) -> None:
        beat = Heartbeat(attempt_id=self.launch.attempt_id, at=time.time(),
                         host=socket.gethostname(), pid=os.getpid(),
                         last_step=last_step(self.launch))
        put_bytes(f"{self.launch.attempt_url}/{Record.HEARTBEAT}", beat.model_dump_json().encode())
        self.upload_log()

    def upload_log(self) -> None:
        self._upload.upload()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


class LogUpload:
    """Uploads what the host's log (``attempt.log``, rotated to ``attempt.log.1``) gained since
    the last upload as the next parts in storage. It remembers the segment (by inode) and the
    offset it read up to; a part is rewritten only while under ``OPEN_PART_BYTES``."""

    def __init__(self, log_path: Path, attempt_url: str) -> None:
        self.log_path = log_path
        self.attempt_url = attempt_url
        self._inode: int | None = None  # the segment read last, and how far
        self._offset = 0
        self._number = 0  # the last part's number, and its bytes while it is still open
        self._open = b""
        self._started = False
        self._lock = threading.Lock()  # the final upload may overlap a late beat
        self._pinned: list[int] = []  # fds of the segments read last (see _new_bytes)

    def upload(self) -> None:
        with self._lock:
            for data, inode, end in self._new_bytes():
                while data:  # remember each piece storage took, and only those
                    data = data[self._put(data):]
                    self._inode, self._offset = inode, end - len(data)
            if not self._started:  # output.log is there from the first beat, even if empty
                self._put(b"")

    def pending(self) -> bool:
        """Whether a part's worth, or a whole rotated segment, waits to be uploaded."""
        if previous_segment(self.log_path).exists():
            return True
        try:
            st = self.log_path.stat()
        except FileNotFoundError:
            return False
        return st.st_size - (self._offset if st.st_ino == self._inode else 0) >= PART_BYTES

    def _put(self, data: bytes) -> int:
        """Append what fits of ``data`` to the last part; how many bytes that took."""
        taken = data[:PART_BYTES - len(self._open)]
        held = self._open + taken
        put_bytes(part_url(self.attempt_url, self._number), held)
        self._started = True
        if len(held) >= OPEN_PART_BYTES:  # sealed: never rewritten
            self._number, self._open = self._number + 1, b""
        else:
            self._open = held
        return len(taken)

    def _new_bytes(self) -> Iterator[tuple[bytes, int, int]]:
        """(bytes, segment inode, offset after them) for everything not yet uploaded."""
        segments = _segments(self.log_path)
        if segments is None:
            return
        previous, current = segments
        with contextlib.ExitStack() as stack:
            for f in (previous, current):
                if f is not None:
                    stack.enter_context(f)
            inode = os.fstat(current.fileno()).st_ino
            offset = self._offset if inode == self._inode else 0
            if inode != self._inode and previous is not None:
                before = os.fstat(previous.fileno()).st_ino
                if before != self._inode and self._inode is not None:
                    yield _DROPPED, before, 0
                yield from _read(previous, before, self._offset if before == self._inode else 0)
                # all of it is in storage: the host's copy goes, and the tee may rotate again
                with contextlib.suppress(FileNotFoundError):
                    previous_segment(self.log_path).unlink()
            elif inode != self._inode and self._inode is not None:
                yield _DROPPED, inode, 0
            yield from _read(current, inode, offset)
            # Held open until the next upload, so that no new segment can be given the inode
            # number remembered here (a file deleted while still open keeps its inode).
            held = [os.dup(f.fileno()) for f in (previous, current) if f is not None]
            for fd in self._pinned:
                os.close(fd)
            self._pinned = held


def _segments(path: Path) -> tuple[BinaryIO | None, BinaryIO] | None:
    """The older and the current segment, opened as one consistent pair (no rotation between
    the two opens); None while there is no log."""
    while True:
        previous = _open_or_none(previous_segment(path))
        current = _open_or_none(path)
        if current is None:
            if previous is not None:
                previous.close()
            return None
        if previous is None or _inode(previous_segment(path)) == os.fstat(previous.fileno()).st_ino:
            return previous, current
        previous.close()  # rotated while we opened: again
        current.close()


def _open_or_none(path: Path) -> BinaryIO | None:
    try:
        return open(path, "rb")  # the caller closes it
    except FileNotFoundError:
        return None


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _read(f: BinaryIO, inode: int, offset: int) -> Iterator[tuple[bytes, int, int]]:
    f.seek(offset)
    while data := f.read(PART_BYTES):
        offset += len(data)
        yield data, inode, offset


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
