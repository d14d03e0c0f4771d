"""The in-job runtime: ``python -m gridbridge.runtime ATTEMPT_DIR``.

It runs one attempt on whatever site started it::

    launch.json ──> claim ATTEMPT_DIR/started (exclusive: a duplicate launch exits at once)
                ──> write ATTEMPT_DIR/pid, set GRIDBRIDGE_* env, SIGTERM/SIGUSR1 -> stop request
                ──> run the pickled callable, or the command as a child (signals forwarded)
                ──> upload the log, write result.json to the attempt's storage prefix,
                    then ATTEMPT_DIR/result.json last (what a site adapter polls for)

Exit codes: 0 succeeded, 1 failed, 75 stopped on request after checkpointing (preempted).
"""

from __future__ import annotations

import io
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from gridbridge import job_context as ctx_mod
from gridbridge.job_context import PREEMPTED_EXIT_CODE, Preempted

__all__ = ["Launch", "Result", "main", "proc_start_time", "read_result"]


class Launch(BaseModel):
    """What the site adapter hands the runtime in ``launch.json``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    attempt: int
    attempt_id: str
    token: int
    checkpoint_url: str
    attempt_url: str
    command: tuple[str, ...] | None = None
    callable_ref: str | None = None
    env: dict[str, str] = {}


class Result(BaseModel):
    """The attempt's result record, written next to the checkpoints."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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


def proc_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (to tell a reused pid apart), None if gone/zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in {"Z", "X"}:
        return None
    return fields[19]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _put(url: str, data: bytes) -> None:
    import fsspec

    with fsspec.open(url, "wb", auto_mkdir=True) as f:
        f.write(data)


def read_result(attempt_url: str) -> Result | None:
    """The result record of an attempt from its storage prefix, None if it has none."""
    import fsspec

    try:
        with fsspec.open(f"{attempt_url}/result.json", "rb") as f:
            return Result.model_validate_json(f.read())
    except FileNotFoundError:
        return None


def _claim(attempt_dir: Path) -> bool:
    try:
        fd = os.open(attempt_dir / "started", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    _write_atomic(attempt_dir / "pid", f"{os.getpid()} {proc_start_time(os.getpid())}\n")
    return True


def _env(launch: Launch) -> dict[str, str]:
    env = dict(os.environ)
    env.update(launch.env)
    env.update(
        GRIDBRIDGE_JOB_ID=launch.job_id,
        GRIDBRIDGE_ATTEMPT=str(launch.attempt),
        GRIDBRIDGE_TOKEN=str(launch.token),
        GRIDBRIDGE_CHECKPOINT=launch.checkpoint_url,
        GRIDBRIDGE_ATTEMPT_URL=launch.attempt_url,
    )
    return env


def _run_command(launch: Launch) -> tuple[int, str, str | None]:
    assert launch.command is not None
    child = subprocess.Popen(list(launch.command), env=_env(launch))

    def forward(signum: int, _frame: object) -> None:
        ctx_mod.request_stop(signum)
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGUSR1, forward)
    code = child.wait()
    if code == 0:
        return 0, "succeeded", None
    if ctx_mod._stop.is_set() or code == PREEMPTED_EXIT_CODE:
        return PREEMPTED_EXIT_CODE, "preempted", f"command exited {code} after a stop request"
    return code if code > 0 else 128 - code, "failed", f"command exited with {code}"


def _run_callable(launch: Launch) -> tuple[int, str, str | None]:
    import cloudpickle
    import fsspec

    assert launch.callable_ref is not None
    os.environ.update(_env(launch))
    ctx_mod.install_stop_handlers()
    with fsspec.open(launch.callable_ref, "rb") as f:
        fn, args, kwargs = cloudpickle.loads(f.read())
    try:
        value = fn(*args, **kwargs)
    except Preempted as exc:
        return PREEMPTED_EXIT_CODE, "preempted", str(exc)
    except Exception:
        return 1, "failed", traceback.format_exc()
    _put(f"{launch.attempt_url}/return.pkl", cloudpickle.dumps(value))
    return 0, "succeeded", None


def _last_step(launch: Launch) -> int | None:
    try:
        from gridbridge import checkpoint

        return checkpoint.open(launch.checkpoint_url).latest()
    except Exception:  # a broken store must not hide the attempt's own result
        return None


def run(attempt_dir: Path) -> int:
    """Run the attempt described by ``attempt_dir/launch.json``; returns the exit code."""
    launch = Launch.model_validate_json((attempt_dir / "launch.json").read_text())
    if not _claim(attempt_dir):
        print("gridbridge-run: attempt already started; duplicate launch exits", file=sys.stderr)
        return 0
    started = time.time()
    print(f"gridbridge-run: job {launch.job_id} attempt {launch.attempt} on {socket.gethostname()}",
          flush=True)
    runner = _run_command if launch.command is not None else _run_callable
    try:
        code, reason, error = runner(launch)
    except Exception:  # the runtime itself broke (payload unreadable, command not found)
        code, reason, error = 1, "failed", traceback.format_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = Result(
        job_id=launch.job_id,
        attempt=launch.attempt,
        attempt_id=launch.attempt_id,
        exit_code=code,
        reason=reason,
        last_step=_last_step(launch),
        wall_s=time.time() - started,
        cpu_s=usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime,
        started_at=started,
        ended_at=time.time(),
        host=socket.gethostname(),
        error=error,
    )
    if error:
        print(f"gridbridge-run: {reason}: {error}", file=sys.stderr, flush=True)
    _publish(attempt_dir, launch, result)
    return code


def _publish(attempt_dir: Path, launch: Launch, result: Result) -> None:
    log = attempt_dir / "output.log"
    if log.exists():
        _put(f"{launch.attempt_url}/output.log", log.read_bytes())
    body = result.model_dump_json(indent=2)
    _put(f"{launch.attempt_url}/result.json", body.encode())
    _write_atomic(attempt_dir / "result.json", body)


def load_log(attempt_url: str) -> str | None:
    """The uploaded log of a finished attempt, None if there is none."""
    import fsspec

    try:
        with fsspec.open(f"{attempt_url}/output.log", "rb") as f:
            return io.TextIOWrapper(io.BytesIO(f.read()), errors="replace").read()
    except FileNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m gridbridge.runtime ATTEMPT_DIR", file=sys.stderr)
        return 2
    return run(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
