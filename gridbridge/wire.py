"""The records an attempt leaves under its storage prefix, and how to read and write them.

Everything that crosses between the control plane and a site lives under the attempt's prefix
(any fsspec URL; object storage for remote sites), so the two share nothing else::

    <attempt_url>/launch.json     written by the adapter before it starts the runtime
    <attempt_url>/claim.json      created once, exclusively, by the runtime that runs it
    <attempt_url>/heartbeat.json  rewritten every few seconds: time, host, pid, last step
    <attempt_url>/output.log      the attempt's output so far, uploaded every few seconds in
                                  numbered parts (output.log.000001, ...: gridbridge.logparts)
    <attempt_url>/result.json     written last, once the attempt ended
    <attempt_url>/return.pkl      a function job's return value (its digest in result.json)

A function job's pickled call, ``<checkpoint_root>/<job_id>/payload.pkl``, is written by the
client. A pickle is code, so none is unpickled unless its bytes have the digest the control
plane recorded (:func:`check_digest`, else :class:`DigestMismatch`): the payload's digest is
pinned to its URL (``callable_ref`` = ``url#blake3:<hex>``, kept in the job's row of the state
store and copied into the launch record, whose own digest the runtime's command line
carries, :func:`launch_arg`, since a job could rewrite the record), and the return value's is
the one the runtime reported when it wrote it, as the control plane read it when it concluded
the attempt (kept in the attempt's row of the state store). A job that can write storage
thus cannot run its code in another job's attempt or in another user's ``result()``; it can
still lie about its own return value.

Each record carries ``format`` = "MAJOR.MINOR". A reader refuses another major version with a
message that says what to upgrade, and ignores fields it does not know (a newer minor version
only adds fields). On the host that runs it, the runtime also keeps a few local files in its
run folder (``--scratch``, :class:`ScratchFile`), which the local and edge adapters read.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, Self

__all__ = [
    "ALREADY_RAN_EXIT_CODE",
    "FORMAT",
    "OUT_OF_MEMORY",
    "PREEMPTED_EXIT_CODE",
    "SPOT_NOTICE",
    "DigestMismatch",
    "FormatMismatch",
    "Heartbeat",
    "Launch",
    "Record",
    "Result",
    "ScratchFile",
    "check_digest",
    "check_format",
    "digest_of",
    "exists",
    "get_bytes",
    "launch_arg",
    "launch_target",
    "load_log",
    "out_of_memory_message",
    "pin",
    "put_bytes",
    "read_heartbeat",
    "read_launch",
    "read_result",
    "unpin",
]

FORMAT = "1.2"
"""The wire format this gridbridge writes; it reads any ``1.x``."""

class Record(StrEnum):
    """A record under an attempt's storage prefix: ``f"{attempt_url}/{Record.RESULT}"``."""

    LAUNCH = "launch.json"
    """The adapter, before it starts the runtime: what to run and how."""
    CLAIM = "claim.json"
    """The runtime, once and exclusively: this launch runs the attempt."""
    HEARTBEAT = "heartbeat.json"
    """The runtime, every few seconds: time, host, pid, last step."""
    OUTPUT_LOG = "output.log"
    """The runtime: the attempt's output so far, uploaded every few seconds."""
    RESULT = "result.json"
    """The runtime, last: how the attempt ended."""
    RETURN = "return.pkl"
    """The runtime: a function job's return value."""


class ScratchFile(StrEnum):
    """A file the runtime keeps in its local run folder (``--scratch``) on the host that runs
    it; the adapters' run-folder protocol (``gridbridge.adapters._rundir``) reads these names."""

    STARTED = "started"
    """The runtime's claim on this host, created exclusively: a second launch exits 76."""
    PID = "pid"
    """``PID STARTTIME``, written before the job starts."""
    ATTEMPT_LOG = "attempt.log"
    """The runtime's own log of the attempt (not ``output.log``: a site may send stdout
    there)."""
    RESULT = "result.json"
    """The result record again, written last, after the copy in storage."""
    CANCELLED = "cancelled"
    """A marker the adapter writes before SIGTERM on cancel; the runtime reads it."""


# What a runtime's exit says, read by the adapters (the runtime's exit code is often all a
# batch scheduler keeps) and by the runtime itself.

PREEMPTED_EXIT_CODE = 75
"""An attempt that stopped on request after checkpointing exits with this (``EX_TEMPFAIL``):
adapters read it as PREEMPTED, never FAILED."""

ALREADY_RAN_EXIT_CODE = 76
"""A launch of an attempt that had already been started exits with this; adapters map it to
PREEMPTED (a requeue) or LOST, never SUCCEEDED."""

OUT_OF_MEMORY = "out_of_memory"
"""The result's ``reason`` when the job needed more memory than it asked for."""

SPOT_NOTICE = "spot interruption notice"
"""How a stop asked for by the cloud's interruption notice is named in logs and results."""


def out_of_memory_message(memory_gb: float | None) -> str:
    """What an attempt that ran out of the memory it asked for says, everywhere."""
    asked = f" (memory_gb={memory_gb:g})" if memory_gb else ""
    return f"out of memory: the job needed more memory than it asked for{asked}"


class FormatMismatch(ValueError):
    """A record of a major format version this gridbridge cannot read."""


# Digests of pickles: ``blake3:<hex>`` (sha256 is read too). blake3 is imported only when a
# digest is asked for, so a trivial local job's start-up does not pay for it.

_DIGEST = re.compile(r"(blake3|sha256):[0-9a-f]{64}")


class DigestMismatch(ValueError):
    """Bytes that are not the ones the control plane recorded; they were not unpickled."""


def digest_of(data: bytes, algorithm: str = "blake3") -> str:
    """``algorithm:<hex>`` of ``data``."""
    if algorithm == "blake3":
        import blake3

        # all cores only for a large pickle: a thread pool would outlive a small job's hash
        threads = blake3.blake3.AUTO if len(data) >= 1 << 24 else 1
        return f"blake3:{blake3.blake3(data, max_threads=threads).hexdigest()}"
    import hashlib

    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def pin(url: str, data: bytes) -> str:
    """``url#blake3:<hex>``: a reference to ``url`` that names the bytes it must hold."""
    return f"{url}#{digest_of(data)}"


def unpin(ref: str) -> tuple[str, str | None]:
    """The URL of a reference and the digest it is pinned to (None: it is not pinned)."""
    url, _, tail = ref.rpartition("#")
    return (url, tail) if url and _DIGEST.fullmatch(tail) else (ref, None)


_LAUNCH_MARK = "#launch="


def launch_arg(launch_url: str, record: bytes) -> str:
    """The runtime's ``--launch`` argument: the launch record's URL and the digest of the
    record's bytes as the control plane wrote them (``<url>#launch=blake3:<hex>``). The
    record sits in storage a job can rewrite; the command line does not, so the runtime
    runs only the record the control plane wrote (:func:`launch_target`): its command, its
    environment, its pinned payload. The record carries a random ``nonce``, so the digest,
    which ``ps`` shows, tells nothing of the values in the record's ``env``."""
    return f"{launch_url}{_LAUNCH_MARK}{digest_of(record)}"


def launch_target(arg: str) -> tuple[str, str | None]:
    """The launch record's URL in a ``--launch`` argument, and the record digest it carries
    (None: a launch made by hand, whose record is read unchecked)."""
    url, mark, tail = arg.rpartition(_LAUNCH_MARK)
    return (url, tail) if mark and url and _DIGEST.fullmatch(tail) else (arg, None)


def check_digest(data: bytes, expected: str | None, what: str) -> bytes:
    """``data`` if its digest is ``expected``; :class:`DigestMismatch` naming ``what`` if it
    is not, or if no digest was recorded (``expected`` None): unchecked bytes are never
    handed on to be unpickled."""
    if expected is None or not _DIGEST.fullmatch(expected):
        raise DigestMismatch(f"digest mismatch: {what} has no valid recorded digest "
                             f"({expected!r:.80}); it was not unpickled")
    found = digest_of(data, expected.split(":", 1)[0])
    if found != expected:
        raise DigestMismatch(f"digest mismatch: {what} is {found}, but {expected} was "
                             "recorded; it was replaced by someone else and was not unpickled")
    return data


# The records are plain frozen dataclasses, checked field by field, not pydantic models: every
# job's runtime reads one and writes two, and importing pydantic and building its schemas was
# most of a trivial job's start-up.

_KINDS: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "tuple[str, ...]": (list, tuple),
    "dict[str, str]": (dict,),
}


def _checked(record: str, name: str, hint: str, value: Any) -> Any:
    """``value`` as field ``name`` of type ``hint`` holds it; ValueError naming both if not."""
    kind = hint.removesuffix(" | None")
    if value is None and kind != hint:
        return None
    ok = isinstance(value, _KINDS[kind]) and not isinstance(value, bool)
    if ok and kind == "tuple[str, ...]":
        ok = all(isinstance(v, str) for v in value)
        value = tuple(value)
    elif ok and kind == "dict[str, str]":
        ok = all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        value = dict(value)
    elif ok and kind == "float":
        value = float(value)
    if not ok:  # a mapping may be the job's environment: name its type, never its values
        shown = type(value).__name__ if isinstance(value, dict) else f"{value!r:.80}"
        raise ValueError(f"{record}.{name}: expected {hint}, got {shown}")
    return value


@dataclass(frozen=True, kw_only=True)
class _Record:
    format: str = FORMAT

    def __post_init__(self) -> None:
        for f in fields(self):
            hint = f.type if isinstance(f.type, str) else f.type.__name__
            value = _checked(type(self).__name__, f.name, hint, getattr(self, f.name))
            object.__setattr__(self, f.name, value)

    @classmethod
    def model_validate(cls, data: Any) -> Self:
        """The record from a decoded JSON object; fields it does not know are ignored (a
        newer minor format only adds fields), a missing or mistyped one is a ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        missing = sorted(f.name for f in fields(cls) if f.name not in data
                         and f.default is MISSING and f.default_factory is MISSING)
        if missing:
            raise ValueError(f"{cls.__name__}: missing field(s) {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def model_dump(self) -> dict[str, Any]:
        return asdict(self)

    def model_dump_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.model_dump(), indent=indent, allow_nan=False)


@dataclass(frozen=True, kw_only=True)
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
    """The payload's URL, pinned to its digest (:func:`pin`, format 1.1); the runtime refuses
    other bytes. An unpinned URL (a hand-made launch) is read unchecked; a runtime older than
    1.1 cannot open a pinned one, so it fails the attempt rather than run unchecked bytes."""
    env: dict[str, str] = field(default_factory=dict)
    heartbeat_s: float = 10.0
    """How often the runtime writes its heartbeat and uploads its log."""
    keep_last: int | None = None
    """Committed checkpoint steps the job keeps (``checkpoint.keep_last`` of its spec)."""
    checkpoint_interval_s: float | None = None
    """How often the job should checkpoint, as placement chose for the site it runs on."""
    nonce: str = ""
    """Random, so that the record's digest on the runtime's command line (:func:`launch_arg`)
    cannot be used to guess a value in ``env``; a rewrite of a launch keeps it."""
    cwd: str | None = None
    """The folder the job runs in (format 1.2; the adapter's choice from the spec's ``chdir``
    and ``submit_dir``); None: the runtime's own working folder, the attempt's scratch."""


@dataclass(frozen=True, kw_only=True)
class Result(_Record):
    """The attempt's result record: ``<attempt_url>/result.json``."""

    job_id: str
    attempt: int
    attempt_id: str
    exit_code: int
    reason: str
    """``succeeded``, ``failed``, ``preempted`` (a cancel too; ``error`` then says
    ``cancelled``) or ``out_of_memory`` (the job went over its ``memory_gb``)."""
    last_step: int | None = None
    wall_s: float
    cpu_s: float
    started_at: float
    ended_at: float
    host: str
    error: str | None = None
    return_digest: str | None = None
    """The digest of the ``return.pkl`` it wrote (format 1.1; a function job that succeeded)."""


@dataclass(frozen=True, kw_only=True)
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
    without fsspec, which costs a millisecond per small record, and readable by its owner
    only (0600, or less under a stricter umask): a launch record holds the job's environment,
    a log or a result whatever the job printed."""
    path = local_path(url)
    if path is not None:
        import os
        import tempfile

        from gridbridge.fsowner import as_owner

        with as_owner(path):  # a job's own folder is written as its own user
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            # mkstemp creates the file 0600 less the umask, and keeps that mode when renamed
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".put-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        return
    import fsspec

    with fsspec.open(url, "wb", auto_mkdir=True) as f:
        f.write(data)


def local_path(url: str) -> str | None:
    """The path of a local URL (``file:///p``, ``/p``, ``p``) as fsspec reads it (no
    percent-decoding), None for anything fsspec must handle."""
    if url.startswith("file://"):
        rest = url[len("file://"):]
        return rest if rest.startswith("/") else None
    if "://" in url or "::" in url:
        return None
    return url


def exists(url: str) -> bool:
    path = local_path(url)
    if path is not None:
        import os

        from gridbridge.fsowner import as_owner

        with as_owner(path):
            return os.path.exists(path)
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    fs.invalidate_cache(path)
    return bool(fs.exists(path))


def get_bytes(url: str) -> bytes:
    path = local_path(url)
    if path is not None:
        from gridbridge.fsowner import as_owner

        with as_owner(path), open(path, "rb") as f:  # as the job's user, if it has one
            local: bytes = f.read()
        return local
    import fsspec

    with fsspec.open(url, "rb") as f:
        data: bytes = f.read()
    return data


def get_bytes_from(url: str, offset: int) -> bytes | None:
    """The object's bytes from ``offset`` on (b'' when it has no more); None when there is
    no such object, or none the caller may read."""
    path = local_path(url)
    try:
        if path is not None:
            from gridbridge.fsowner import as_owner

            with as_owner(path), open(path, "rb") as f:
                f.seek(offset)
                return f.read()
        import fsspec

        fs, key = fsspec.core.url_to_fs(url)
        fs.invalidate_cache(key)
        size = int(fs.size(key))
        return bytes(fs.cat_file(key, start=offset, end=size)) if size > offset else b""
    except (FileNotFoundError, PermissionError):
        return None


def _read(url: str, model: type[_Record], what: str) -> Any:
    try:
        data = json.loads(get_bytes(url))
    except FileNotFoundError:
        return None
    check_format(data, what)
    return model.model_validate(data)


def read_launch(attempt_url: str) -> Launch:
    """The launch record; raises FileNotFoundError if there is none."""
    launch: Launch | None = _read(f"{attempt_url}/{Record.LAUNCH}", Launch, "the launch record")
    if launch is None:
        raise FileNotFoundError(f"{attempt_url}/{Record.LAUNCH}")
    return launch


def read_result(attempt_url: str) -> Result | None:
    """The result record of an attempt, None if it has none yet."""
    result: Result | None = _read(f"{attempt_url}/{Record.RESULT}", Result, "the result record")
    return result


def read_heartbeat(attempt_url: str) -> Heartbeat | None:
    """The attempt's last heartbeat, None if it never wrote one."""
    beat: Heartbeat | None = _read(f"{attempt_url}/{Record.HEARTBEAT}", Heartbeat, "the heartbeat")
    return beat


def load_log(attempt_url: str) -> str | None:
    """The attempt's uploaded log (all of it, or what was uploaded before it was killed),
    whole: :func:`gridbridge.logparts.iter_log` reads it in pieces."""
    from gridbridge.logparts import open_log

    stream = open_log(attempt_url)
    if stream is None:
        return None
    with stream:
        return stream.read()
