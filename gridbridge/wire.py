"""The records an attempt leaves under its storage prefix, and how to read and write them.

Everything that crosses between the control plane and a site lives under the attempt's prefix
(any fsspec URL; object storage for remote sites), so the two share nothing else::

    <attempt_url>/launch.json     written by the adapter before it starts the runtime
    <attempt_url>/claim.json      created once, exclusively, by the runtime that runs it
    <attempt_url>/heartbeat.json  rewritten every few seconds: time, host, pid, last step
    <attempt_url>/output.log      the attempt's output so far, uploaded every few seconds
    <attempt_url>/result.json     written last, once the attempt ended
    <attempt_url>/return.pkl      a function job's return value

Each record carries ``format`` = "MAJOR.MINOR". A reader refuses another major version with a
message that says what to upgrade, and ignores fields it does not know (a newer minor version
only adds fields).
"""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "FORMAT",
    "FormatMismatch",
    "Heartbeat",
    "Launch",
    "Result",
    "check_format",
    "exists",
    "get_bytes",
    "load_log",
    "put_bytes",
    "read_heartbeat",
    "read_launch",
    "read_result",
]

FORMAT = "1.0"
"""The wire format this gridbridge writes; it reads any ``1.x``."""


class FormatMismatch(ValueError):
    """A record of a major format version this gridbridge cannot read."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    format: str = FORMAT


class Launch(_Record):
    """What the adapter hands the runtime: ``<attempt_url>/launch.json``."""

    job_id: str
    attempt: int
    attempt_id: str
    token: int
    checkpoint_url: str
    attempt_url: str
    command: tuple[str, ...] | None = None
    callable_ref: str | None = None
    env: dict[str, str] = {}
    heartbeat_s: float = 10.0
    """How often the runtime writes its heartbeat and uploads its log."""
    keep_last: int | None = None
    """Committed checkpoint steps the job keeps (``checkpoint.keep_last`` of its spec)."""
    checkpoint_interval_s: float | None = None
    """How often the job should checkpoint, as placement chose for the site it runs on."""


class Result(_Record):
    """The attempt's result record: ``<attempt_url>/result.json``."""

    job_id: str
    attempt: int
    attempt_id: str
    exit_code: int
    reason: str
    """``succeeded``, ``failed`` or ``preempted``."""
    last_step: int | None = None
    wall_s: float
    cpu_s: float
    started_at: float
    ended_at: float
    host: str
    error: str | None = None


class Heartbeat(_Record):
    """The runtime's last sign of life: ``<attempt_url>/heartbeat.json``."""

    attempt_id: str
    at: float
    host: str
    pid: int
    last_step: int | None = None


def check_format(data: Any, what: str) -> None:
    """Raise :class:`FormatMismatch` unless ``data['format']`` has this gridbridge's major."""
    version = str(data.get("format", "1.0")) if isinstance(data, dict) else "?"
    if version.split(".", 1)[0] != FORMAT.split(".", 1)[0]:
        raise FormatMismatch(
            f"{what} has format {version}, but this gridbridge reads {FORMAT.split('.')[0]}.x: "
            "install the same major version of gridbridge on the site and the control plane"
        )


def put_bytes(url: str, data: bytes) -> None:
    """Write ``data`` at ``url``; a local path (``file://`` or none) is written atomically
    without fsspec, which costs a millisecond per small record."""
    path = _local_path(url)
    if path is not None:
        import os
        import tempfile

        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".put-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return
    import fsspec

    with fsspec.open(url, "wb", auto_mkdir=True) as f:
        f.write(data)


def _local_path(url: str) -> str | None:
    """The path of a local URL (``file:///p``, ``/p``, ``p``) as fsspec reads it (no
    percent-decoding), None for anything fsspec must handle."""
    if url.startswith("file://"):
        rest = url[len("file://"):]
        return rest if rest.startswith("/") else None
    if "://" in url or "::" in url:
        return None
    return url


def exists(url: str) -> bool:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    fs.invalidate_cache(path)
    return bool(fs.exists(path))


def get_bytes(url: str) -> bytes:
    import fsspec

    with fsspec.open(url, "rb") as f:
        data: bytes = f.read()
    return data


def _read(url: str, model: type[_Record], what: str) -> Any:
    try:
        data = json.loads(get_bytes(url))
    except FileNotFoundError:
        return None
    check_format(data, what)
    return model.model_validate(data)


def read_launch(attempt_url: str) -> Launch:
    """The launch record; raises FileNotFoundError if there is none."""
    launch: Launch | None = _read(f"{attempt_url}/launch.json", Launch, "the launch record")
    if launch is None:
        raise FileNotFoundError(f"{attempt_url}/launch.json")
    return launch


def read_result(attempt_url: str) -> Result | None:
    """The result record of an attempt, None if it has none yet."""
    result: Result | None = _read(f"{attempt_url}/result.json", Result, "the result record")
    return result


def read_heartbeat(attempt_url: str) -> Heartbeat | None:
    """The attempt's last heartbeat, None if it never wrote one."""
    beat: Heartbeat | None = _read(f"{attempt_url}/heartbeat.json", Heartbeat, "the heartbeat")
    return beat


def load_log(attempt_url: str) -> str | None:
    """The attempt's uploaded log (all of it, or what was uploaded before it was killed)."""
    try:
        data = get_bytes(f"{attempt_url}/output.log")
    except FileNotFoundError:
        return None
    return io.TextIOWrapper(io.BytesIO(data), errors="replace").read()
