"""An attempt's output, on the host that runs it and in storage, and how to read it back in
pieces.

Invariant: every byte of the output is kept once on the host, in at most two segments of
:data:`SEGMENT_BYTES` (so a chatty job never fills the node's disk), and is uploaded once, as
numbered parts that a reader concatenates in order; nothing here ever holds a whole log in
memory::

    host (the run folder)            storage (the attempt's prefix)
    attempt.log.1  (older segment)   output.log          part 0 (also an old attempt's whole log)
    attempt.log    (being written)   output.log.000001   part 1
         │ each beat, or a part's    output.log.000002   ... the last part is rewritten with new
         └─ worth: new bytes only ──►                     bytes only while under OPEN_PART_BYTES

The runtime rotates ``attempt.log`` to ``attempt.log.1`` when it reaches
:data:`SEGMENT_BYTES`; the upload removes ``attempt.log.1`` once it is in storage, and a
rotation waits for that (briefly: storage that does not answer gets the older segment dropped,
and the upload marks where). Slurm keeps whole output files; we keep at most 64 MiB on the
host, because the site's disk is shared and storage holds the log. Part 0 keeps the name
``output.log``, so an attempt of an older gridbridge (one whole ``output.log``) reads the same.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "CHUNK_CHARS",
    "OPEN_PART_BYTES",
    "PART_BYTES",
    "SEGMENT_BYTES",
    "LogTail",
    "host_segments",
    "iter_log",
    "open_log",
    "part_url",
    "previous_segment",
]

SEGMENT_BYTES = 32 * 1024 * 1024
"""A segment of the host's copy is rotated at this size; the host keeps two (64 MiB at most)."""
PART_BYTES = 4 * 1024 * 1024
"""The most one part in storage holds, and the most of the log an upload holds in memory."""
OPEN_PART_BYTES = 1024 * 1024
"""The last part is rewritten with the new bytes appended while it is smaller than this (a
quiet job's log stays a few objects); a heartbeat thus uploads at most this much again."""
CHUNK_CHARS = 256 * 1024
"""What a reader takes at a time."""

_OUTPUT_LOG = "output.log"  # gridbridge.wire.Record.OUTPUT_LOG, which names part 0


def part_url(attempt_url: str, number: int) -> str:
    """Where part ``number`` of the attempt's log is kept (part 0: ``output.log``)."""
    return f"{attempt_url}/{_OUTPUT_LOG}" + (f".{number:06d}" if number else "")


def previous_segment(path: Path) -> Path:
    """The older segment of the host's log at ``path`` (``attempt.log`` -> ``attempt.log.1``)."""
    return path.with_name(path.name + ".1")


def host_segments(path: Path) -> list[Path]:
    """The segments of the host's log at ``path`` that exist, oldest first."""
    return [p for p in (previous_segment(path), path) if p.exists()]


class _Parts(io.RawIOBase):
    """The parts of one attempt's log as one stream of bytes, opened one after another; the
    first missing part ends it."""

    def __init__(self, attempt_url: str, first: Any) -> None:
        self._url = attempt_url
        self._number = 0
        self._file: Any = first

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._file is not None:
            got = self._file.readinto(buffer)
            if got:
                return int(got)
            self._file.close()
            self._number += 1
            try:
                self._file = _open_part(part_url(self._url, self._number))
            except (FileNotFoundError, PermissionError):
                self._file = None
        return 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()


def _open_part(url: str) -> Any:
    """One part opened for reading: a local one as its job's own user
    (:mod:`gridbridge.fsowner`), anything else through fsspec."""
    from gridbridge.wire import local_path

    path = local_path(url)
    if path is not None:
        from gridbridge.fsowner import as_owner

        with as_owner(path):
            return open(path, "rb")  # the caller closes it
    import fsspec

    return fsspec.open(url, "rb").open()


def open_log(attempt_url: str) -> io.TextIOWrapper | None:
    """The attempt's log in storage as text (UTF-8, undecodable bytes replaced, line endings
    as ``\\n``), read part by part as the caller reads; None if it has none."""
    try:
        first = _open_part(part_url(attempt_url, 0))
    except (FileNotFoundError, PermissionError):  # none, or a job's link to what it may not read
        return None
    return io.TextIOWrapper(io.BufferedReader(_Parts(attempt_url, first)), encoding="utf-8",
                            errors="replace")


class LogTail:
    """What of one attempt's log in storage has not been read yet: :meth:`read_new` returns
    the text added since the last call (decoded as :func:`open_log` decodes: UTF-8 with
    undecodable bytes replaced, ``\r\n`` as ``\n``; a character split between two reads
    comes whole with the second). Only the last part grows, so a part with a later one is
    read to its end once and never again."""

    def __init__(self, attempt_url: str) -> None:
        self.attempt_url = attempt_url
        self._part = 0
        self._offset = 0
        self._text = io.IncrementalNewlineDecoder(
            codecs.getincrementaldecoder("utf-8")(errors="replace"), translate=True)

    def read_new(self, final: bool = False) -> str:
        """The text uploaded since the last call; ``final``: the log is complete (a held
        partial character or ``\r`` comes out)."""
        from gridbridge.wire import exists, get_bytes_from

        out = []
        while True:
            # a later part, seen before this one is read, means this one is read to its end
            later = exists(part_url(self.attempt_url, self._part + 1))
            data = get_bytes_from(part_url(self.attempt_url, self._part), self._offset)
            if data is None:
                break
            out.append(self._text.decode(data))
            self._offset += len(data)
            if not later:
                break
            self._part, self._offset = self._part + 1, 0
        if final:
            out.append(self._text.decode(b"", final=True))
        return "".join(out)


def iter_log(attempt_url: str) -> Iterator[str] | None:
    """The attempt's log in storage in pieces of :data:`CHUNK_CHARS`; None if it has none."""
    stream = open_log(attempt_url)
    return None if stream is None else _chunks(stream)


def _chunks(stream: io.TextIOWrapper) -> Iterator[str]:
    with stream:
        while chunk := stream.read(CHUNK_CHARS):
            yield chunk
