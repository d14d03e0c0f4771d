"""The in-job runtime: ``python -m gridbridge.runtime --launch URL [--scratch DIR]``.

It runs one attempt on whatever host a site started it on, sharing nothing with the control
plane but storage (:mod:`gridbridge.wire` lists the records)::

    <attempt_url>/launch.json ──> claim: SCRATCH/started (this host) and <attempt_url>/claim.json
                                  (storage, exclusive) -- a relaunch exits ALREADY_RAN_EXIT_CODE
        ──> SCRATCH/pid; stdout+stderr teed into SCRATCH/attempt.log
        ──> every heartbeat_s: <attempt_url>/heartbeat.json and <attempt_url>/output.log
        ──> run the pickled callable, or the command as a child (SIGTERM/SIGUSR1 forwarded)
        ──> with --imds: a spot interruption notice from the instance metadata service is a
            stop request, as a SIGTERM is (the job checkpoints and exits 75 before the deadline)
        ──> <attempt_url>/output.log, <attempt_url>/result.json, then SCRATCH/result.json last

``SCRATCH`` is a local folder only (default: a folder under the system's temp dir). Exit codes:
0 succeeded, 1 failed (the result's reason says ``out_of_memory`` when ``--memory-gb`` was
exceeded), 75 stopped on request after checkpointing (preempted), 76 this attempt had already
been started (a requeued or duplicated launch; never a success).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from gridbridge import job_context as ctx_mod
from gridbridge.job_context import Preempted
from gridbridge.procinfo import oom_killed, proc_start_time
from gridbridge.wire import (
    ALREADY_RAN_EXIT_CODE,
    FORMAT,
    OUT_OF_MEMORY,
    PREEMPTED_EXIT_CODE,
    SPOT_NOTICE,
    FormatMismatch,
    Heartbeat,
    Launch,
    Result,
    check_format,
    get_bytes,
    load_log,
    out_of_memory_message,
    put_bytes,
    read_result,
)

__all__ = [
    "Launch",
    "Result",
    "SpotWatch",
    "join_cgroup",
    "limit_memory",
    "load_log",
    "main",
    "read_result",
    "run",
    "user_traceback",
]

_LOG_TAIL_BYTES = 16 * 1024 * 1024



def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _claim(scratch: Path, launch: Launch, rerun: int = 0) -> bool:
    """Claim the attempt on this host and in storage; False if it was already started.

    ``rerun`` > 0 is the site's own rerun of the same attempt (a Slurm requeue), which the site
    starts only after it ended the earlier run: it claims ``claim-rerun-N.json`` instead."""
    try:
        fd = os.open(scratch / "started", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    _write_atomic(scratch / "pid", f"{os.getpid()} {proc_start_time(os.getpid())}\n")
    claim = {"host": socket.gethostname(), "pid": os.getpid(), "at": time.time(), "rerun": rerun}
    name = f"claim-rerun-{rerun}.json" if rerun else "claim.json"
    local = _local_dir(launch.attempt_url)
    if local is not None:  # no storage library to import for a local prefix
        local.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(local / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(claim).encode())
        return True
    from gridbridge.checkpoint._backend import open_backend

    backend = open_backend(launch.attempt_url, None)
    return backend.create(f"{backend.root}/{name}", json.dumps(claim).encode())


def _get(url: str) -> bytes:
    """Read a record; a local one without importing the storage library (a trivial job's
    start-up is mostly imports)."""
    local = _local_dir(url)
    return local.read_bytes() if local is not None else get_bytes(url)


def _local_dir(url: str) -> Path | None:
    """The path of a local storage URL (``file:///p`` or a plain path), else None."""
    if url.startswith("file:///"):
        return Path(url[len("file://"):])
    if "://" in url or "::" in url:
        return None
    return Path(url)


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
    if launch.keep_last is not None:
        env["GRIDBRIDGE_KEEP_LAST"] = str(launch.keep_last)
    if launch.checkpoint_interval_s is not None:
        env["GRIDBRIDGE_CHECKPOINT_INTERVAL"] = f"{launch.checkpoint_interval_s:g}"
    return env


class _Tee:
    """Copies everything written to fds 1 and 2 (this process's and its children's) into a
    scratch log, and on to where fd 1 pointed before."""

    def __init__(self, log_path: Path) -> None:
        self.path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in close()
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


class _Beacon:
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
                         last_step=_last_step(self.launch))
        put_bytes(f"{self.launch.attempt_url}/heartbeat.json", beat.model_dump_json().encode())
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
        put_bytes(f"{self.launch.attempt_url}/output.log", data)
        self._uploaded = size

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


"""How a result record's ``error`` begins when the attempt stopped for a spot notice."""
IMDS_ENDPOINT_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
"""The AWS SDKs' setting for where the instance metadata service is; it wins over ``--imds``."""


class SpotWatch:
    """Polls the EC2 instance metadata service (IMDSv2) for a spot interruption notice.

    Every ``interval_s``: a session token (``PUT /latest/api/token``, renewed before it expires),
    then ``GET /latest/meta-data/spot/instance-action``: 404 while no interruption is planned,
    else ``{"action": "terminate", "time": "2026-11-26T22:40:00Z"}``. On a notice it calls
    ``on_notice(action, deadline)`` once and stops. An unreachable service is reported once and
    polled again: it never ends the attempt."""

    def __init__(self, endpoint: str, on_notice: Any, interval_s: float = 5.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.interval_s = interval_s
        self.on_notice = on_notice
        self.notice: dict[str, Any] | None = None
        self._token: tuple[str, float] | None = None
        self._complained = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gridbridge-imds", daemon=True)

    def start(self) -> SpotWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _request(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        import urllib.error
        import urllib.request

        url = f"{self.endpoint}{path}"
        if not url.startswith(("http://", "https://")):
            raise OSError(f"not an http(s) endpoint: {self.endpoint!r}")
        req = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=2.0) as answer:  # noqa: S310
                return int(answer.status), bytes(answer.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), b""

    def _session(self) -> str:
        if self._token is None or self._token[1] < time.monotonic():
            code, body = self._request("PUT", "/latest/api/token",
                                       {"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
            if code != 200:
                raise OSError(f"IMDS token request answered HTTP {code}")
            self._token = (body.decode().strip(), time.monotonic() + 21000)
        return self._token[0]

    def check(self) -> dict[str, Any] | None:
        """One poll: the notice, or None while no interruption is planned."""
        token = self._session()
        code, body = self._request("GET", "/latest/meta-data/spot/instance-action",
                                   {"X-aws-ec2-metadata-token": token})
        if code == 401:  # the token expired early (the service restarted): get another
            self._token = None
            return None
        if code == 404:
            return None
        if code != 200:
            raise OSError(f"IMDS spot/instance-action answered HTTP {code}")
        notice: dict[str, Any] = json.loads(body)
        return notice

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                notice = self.check()
            except (OSError, ValueError) as exc:
                if not self._complained:
                    print(f"gridbridge-run: the instance metadata service at {self.endpoint} "
                          f"does not answer ({exc}); still watching", file=sys.stderr,
                          flush=True)
                    self._complained = True
                notice = None
            if notice is not None:
                self.notice = notice
                self.on_notice(str(notice.get("action", "terminate")), str(notice.get("time")))
                return
            self._stop.wait(self.interval_s)


def _spot_notice(action: str, deadline: str) -> None:
    print(f"gridbridge-run: {SPOT_NOTICE}: {action} at {deadline}; asking the job "
          "to checkpoint and stop", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)  # the same path as the site's own stop signal


def _run_command(launch: Launch) -> tuple[int, str, str | None]:
    assert launch.command is not None
    if ctx_mod._stop.is_set():  # asked to stop before the command even started
        return PREEMPTED_EXIT_CODE, "preempted", "stopped on request before it started"
    try:
        child = subprocess.Popen(list(launch.command), env=_env(launch))
    except FileNotFoundError:
        return 127, "failed", f"command not found: {launch.command[0]}"
    except PermissionError:
        return 126, "failed", f"command not executable: {launch.command[0]}"

    def forward(signum: int, _frame: object) -> None:
        ctx_mod.request_stop(signum)
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGUSR1, forward)
    if ctx_mod._stop.is_set():  # the request came while the child was being started
        child.send_signal(signal.SIGTERM)
    code = child.wait()
    if code == 0:
        return 0, "succeeded", None
    if ctx_mod._stop.is_set() or code == PREEMPTED_EXIT_CODE:
        return PREEMPTED_EXIT_CODE, "preempted", f"command exited {code} after a stop request"
    return code if code > 0 else 128 - code, "failed", f"command exited with {code}"


def _run_callable(launch: Launch) -> tuple[int, str, str | None]:
    import cloudpickle

    assert launch.callable_ref is not None
    os.environ.update(_env(launch))
    ctx_mod.install_stop_handlers()
    fn, args, kwargs = cloudpickle.loads(_get(launch.callable_ref))
    try:
        value = fn(*args, **kwargs)
    except Preempted as exc:
        return PREEMPTED_EXIT_CODE, "preempted", str(exc)
    except MemoryError as exc:
        return 1, OUT_OF_MEMORY, f"{_oom_words()}\n{user_traceback(exc)}"
    except Exception as exc:
        return 1, "failed", user_traceback(exc)
    put_bytes(f"{launch.attempt_url}/return.pkl", cloudpickle.dumps(value))
    return 0, "succeeded", None


def user_traceback(exc: BaseException) -> str:
    """The traceback of an exception the job's function raised, from the function down.

    cloudpickle ships a function defined in a script or notebook by value and names its code
    ``<dynamic-code>``; it keeps the line numbers and the defining module's ``__file__`` in
    the function's globals, so each such frame is shown with that file, and its source line
    where the file is on this host. The runtime's own frame that called the function is left
    out."""
    tb = exc.__traceback__
    te = traceback.TracebackException(type(exc), exc, tb.tb_next if tb is not None else None)
    _restore_files(te, exc, skip_first=tb is not None)
    return "".join(te.format())


def _restore_files(te: traceback.TracebackException, exc: BaseException | None,
                   skip_first: bool = False, depth: int = 0) -> None:
    if exc is None or depth > 20:
        return
    frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
    if skip_first:
        frames = frames[1:]
    fixed = []
    for summary, frame in zip(te.stack, frames, strict=False):
        path = frame.f_globals.get("__file__")
        if summary.filename == "<dynamic-code>" and isinstance(path, str):
            summary = traceback.FrameSummary(path, summary.lineno, summary.name)
        fixed.append(summary)
    te.stack = traceback.StackSummary.from_list(fixed + list(te.stack)[len(fixed):])
    if te.__cause__ is not None:
        _restore_files(te.__cause__, exc.__cause__, depth=depth + 1)
    if te.__context__ is not None:
        _restore_files(te.__context__, exc.__context__, depth=depth + 1)


def _last_step(launch: Launch) -> int | None:
    local = _local_dir(launch.checkpoint_url)
    if local is not None and not (local / "commits").is_dir():
        return None  # nothing committed yet (see checkpoint._layout): skip the store's imports
    try:
        from gridbridge import checkpoint

        return checkpoint.open(launch.checkpoint_url).latest()
    except Exception:  # a broken store must not hide the attempt's own result
        return None


def run(launch_url: str, scratch: Path | None = None, rerun: int = 0,
        imds: str | None = None, imds_interval_s: float = 5.0,
        memory_gb: float | None = None, memory_cgroup: str | None = None) -> int:
    """Run the attempt whose launch record is at ``launch_url``; returns the exit code.
    ``rerun`` counts the site's own reruns of the attempt (see :func:`main`); ``imds``, the
    instance metadata service to watch for a spot interruption notice; ``memory_gb``, the
    memory the job may use (see :func:`limit_memory`); ``memory_cgroup``, a cgroup made and
    limited for the attempt, which the runtime joins before it starts the job."""
    ctx_mod.install_stop_handlers()  # a SIGTERM from now on is a stop request, not a death
    raw: dict[str, Any] = json.loads(_get(launch_url))
    try:
        check_format(raw, "the launch record")
        launch = Launch.model_validate(raw)
    except (FormatMismatch, ValueError) as exc:
        return _refuse(raw, launch_url, str(exc))
    scratch = scratch or Path(tempfile.gettempdir()) / "gridbridge" / launch.attempt_id
    if rerun:
        scratch = scratch / f"rerun-{rerun}"
    scratch.mkdir(parents=True, exist_ok=True)
    if not _claim(scratch, launch, rerun):
        print(f"gridbridge-run: attempt {launch.attempt_id} was already started; this "
              "duplicate launch exits without running it", file=sys.stderr, flush=True)
        return ALREADY_RAN_EXIT_CODE
    tee = _Tee(scratch / "attempt.log")  # not output.log: a site may send stdout there
    beacon = _Beacon(launch, scratch / "attempt.log")
    started = time.time()
    again = f" (rerun {rerun}: requeued by the site)" if rerun else ""
    print(f"gridbridge-run: job {launch.job_id} attempt {launch.attempt} on "
          f"{socket.gethostname()}{again}", flush=True)
    runner = _run_command if launch.command is not None else _run_callable
    endpoint = (os.environ.get(IMDS_ENDPOINT_ENV) or imds) if imds else None
    watch = SpotWatch(endpoint, _spot_notice, imds_interval_s).start() if endpoint else None
    in_cgroup = join_cgroup(memory_cgroup)
    restore = limit_memory(memory_gb)
    try:
        code, reason, error = runner(launch)
    except Exception:  # the runtime itself broke (payload unreadable, storage gone)
        code, reason, error = 1, "failed", traceback.format_exc()
    finally:
        restore()
    if memory_gb is not None and reason == "failed":
        tee.drain()  # the command's last words must be in the log before it is read
        if (in_cgroup and oom_killed(str(memory_cgroup))) or _oom_in_log(tee.path):
            reason, error = OUT_OF_MEMORY, f"{_oom_words()}\n{error or ''}".rstrip()
    if watch is not None:
        watch.stop()
        if watch.notice is not None and code == PREEMPTED_EXIT_CODE:
            reason = "preempted"
            error = (f"{SPOT_NOTICE}: {watch.notice.get('action')} at "
                     f"{watch.notice.get('time')}")
    if reason == "preempted" and _cancelled(scratch, rerun):  # a cancel: never "preempted"
        error = f"cancelled ({error or 'stopped on request'})"
        print(f"gridbridge-run: {error}", file=sys.stderr, flush=True)
    elif error:
        print(f"gridbridge-run: {reason}: {error}", file=sys.stderr, flush=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = Result(
        job_id=launch.job_id, attempt=launch.attempt, attempt_id=launch.attempt_id,
        exit_code=code, reason=reason, last_step=_last_step(launch),
        wall_s=time.time() - started,
        cpu_s=usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime,
        started_at=started, ended_at=time.time(), host=socket.gethostname(), error=error,
    )
    tee.close()
    beacon.stop()
    beacon.upload_log()
    _publish(scratch, launch, result)
    return code


_OOM_SIGNS = (b"MemoryError", b"Cannot allocate memory", b"std::bad_alloc",
              b"Unable to allocate", b"out of memory")
"""How a command that ran out of memory usually says so on its way out (Python, libc, C++,
NumPy, CUDA): the limit makes allocations fail, and the process reports it and exits."""


def limit_memory(memory_gb: float | None) -> Any:
    """Hold the job to ``memory_gb`` (None: no limit); returns what lifts the limit again.

    The limit is ``RLIMIT_DATA`` (private writable memory: heap, anonymous mappings, thread
    stacks) over what the runtime already uses, set on this process so that a function job
    and a command started now both get it. Not ``RLIMIT_AS``: address space counts what is
    only reserved (64 MiB per thread's malloc arena, shared libraries), so a job that imports
    ``distributed`` and starts a few threads failed to allocate 76 MB under a 1 GiB limit."""
    if memory_gb is None:
        return lambda: None
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = _data_bytes() + int(memory_gb * 2**30)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    return lambda: resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def join_cgroup(group: str | None) -> bool:
    """Move this process into ``group`` (a cgroup directory the adapter made and limited), so
    that it and every process the job starts are counted there; False if it could not."""
    if group is None:
        return False
    try:
        with open(os.path.join(group, "cgroup.procs"), "w") as f:
            f.write("0")  # 0: the writing process
    except OSError as exc:
        print(f"gridbridge-run: cannot join memory cgroup {group} ({exc.strerror or exc}); "
              "holding the job to its memory by RLIMIT_DATA alone", file=sys.stderr, flush=True)
        return False
    return True



def _data_bytes() -> int:
    """This process's private writable memory now (``VmData``), 0 if unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _oom_words() -> str:
    gb = os.environ.get("GRIDBRIDGE_MEMORY_GB")
    return out_of_memory_message(float(gb) if gb else None)



def _oom_in_log(path: Path) -> bool:
    """Whether the tail of the attempt's log shows an allocation that failed."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
            tail = f.read()
    except OSError:
        return False
    return any(sign in tail for sign in _OOM_SIGNS)


def _cancelled(scratch: Path, rerun: int) -> bool:
    """Whether the site said, before it signalled, that the stop request is a cancel: a site
    that cancels writes ``cancelled`` into the attempt's scratch folder first (the local
    adapter does), so the log does not call a cancel a preemption."""
    base = scratch.parent if rerun else scratch
    return (base / "cancelled").exists()


def _refuse(raw: dict[str, Any], launch_url: str, why: str) -> int:
    """A launch record this runtime cannot read: say so in a result record, if it can."""
    print(f"gridbridge-run: refusing the launch record {launch_url}: {why}", file=sys.stderr,
          flush=True)
    url = raw.get("attempt_url") or launch_url.rsplit("/", 1)[0]
    now = time.time()
    body = {
        "format": FORMAT, "job_id": str(raw.get("job_id", "")),
        "attempt": int(raw.get("attempt", 0) or 0), "attempt_id": str(raw.get("attempt_id", "")),
        "exit_code": 1, "reason": "failed", "wall_s": 0.0, "cpu_s": 0.0, "started_at": now,
        "ended_at": now, "host": socket.gethostname(), "error": why,
    }
    try:
        put_bytes(f"{url}/result.json", json.dumps(body).encode())
    except Exception as exc:
        print(f"gridbridge-run: could not write the result record: {exc}", file=sys.stderr)
    return 1


def _publish(scratch: Path, launch: Launch, result: Result) -> None:
    body = result.model_dump_json(indent=2)
    put_bytes(f"{launch.attempt_url}/result.json", body.encode())
    _write_atomic(scratch / "result.json", body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gridbridge.runtime",
                                     description="Run one gridbridge attempt.")
    parser.add_argument("--launch", required=True, help="URL of the attempt's launch.json")
    parser.add_argument("--scratch", type=Path, default=None,
                        help="a local folder for this attempt's run files")
    parser.add_argument("--rerun-env", default=None, metavar="NAME",
                        help="an environment variable holding how many times the site has "
                             "requeued this attempt (e.g. SLURM_RESTART_COUNT); a rerun "
                             "continues the attempt from its last checkpoint")
    parser.add_argument("--imds", default=None, metavar="URL",
                        help="an EC2 instance metadata service to watch for a spot "
                             "interruption notice, e.g. http://169.254.169.254 "
                             f"(${IMDS_ENDPOINT_ENV} overrides it)")
    parser.add_argument("--imds-interval", type=float, default=5.0, metavar="SECONDS",
                        help="how often to ask it (default 5)")
    parser.add_argument("--memory-gb", type=float, default=None, metavar="GB",
                        help="hold the job to this much memory; more ends the attempt FAILED "
                             "with the reason out of memory")
    parser.add_argument("--memory-cgroup", default=None, metavar="DIR",
                        help="a cgroup directory, limited to the job's memory by the adapter, "
                             "that the runtime joins before it starts the job")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    rerun = 0
    if args.rerun_env:
        value = os.environ.get(args.rerun_env, "0").strip() or "0"
        rerun = int(value) if value.isdigit() else 0
    if args.memory_gb is not None:
        os.environ["GRIDBRIDGE_MEMORY_GB"] = f"{args.memory_gb:g}"
    return run(args.launch, args.scratch, rerun, args.imds, args.imds_interval, args.memory_gb,
               args.memory_cgroup)


if __name__ == "__main__":
    sys.exit(main())
