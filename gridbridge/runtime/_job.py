"""The job itself: a command run as a child process, or a pickled callable run in-process.

Invariant: each runner returns ``(exit code, reason, error)`` (a callable's, with the digest of
the value it stored) and never raises for the job's own failure; a payload whose bytes are not
the ones its launch pins is never unpickled (the attempt fails ``digest mismatch``); a stop
request (SIGTERM/SIGUSR1, or the spot notice) that ends the job makes the attempt
``preempted`` with ``PREEMPTED_EXIT_CODE``, never ``failed``::

    command:   Popen(argv, GRIDBRIDGE_* env) ── SIGTERM/SIGUSR1 forwarded ──> exit code
    callable:  --launch digest == digest callable_ref pins? ── bytes of callable_ref have it?
               ──> cloudpickle.loads ──> fn(*args)
               ──> <attempt_url>/return.pkl, its digest for the result record
               another pin ──> failed, "digest mismatch";  no pin ──> failed, "unpinned payload"
               other bytes ──> failed, "digest mismatch"  (nothing unpickled, nothing run)
               Preempted ──> 75;  MemoryError ──> out_of_memory;  other ──> user_traceback
"""

from __future__ import annotations

import os
import signal
import subprocess
import traceback

from gridbridge import job_context as ctx_mod
from gridbridge.job_context import Preempted
from gridbridge.wire import (
    OUT_OF_MEMORY,
    PREEMPTED_EXIT_CODE,
    DigestMismatch,
    Launch,
    Record,
    check_digest,
    digest_of,
    put_bytes,
    unpin,
)

from ._files import read_bytes
from ._memory import oom_words

__all__ = ["run_callable", "run_command", "user_traceback"]

Outcome = tuple[int, str, str | None]
"""What a runner returns: the exit code, the result's reason and its error (None: none)."""


def _env(launch: Launch) -> dict[str, str]:
    """The job's environment: the runtime's own, then the job's ``env``, then gridbridge's.

    The runtime's own environment is what its site gave it, never the control plane's: each
    adapter hands the runtime only what a process needs (``PATH``, ``HOME``, the locale...),
    the site's ``runtime.env_names`` and the batch system's own variables (``sbatch
    --export=NONE``, ``qsub -v`` of those names only, a fresh SSH session or instance), and
    the operator's prologue may add to it (``module load`` sets ``PATH`` and
    ``LD_LIBRARY_PATH`` for the job). So it is passed on whole: cutting it down here would
    undo the prologue, and would hide nothing the adapter had not already kept back."""
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


def run_command(launch: Launch) -> Outcome:
    """Run the launch's command as a child, forwarding stop signals to it."""
    assert launch.command is not None
    if ctx_mod.stop_requested():  # asked to stop before the command even started
        return PREEMPTED_EXIT_CODE, "preempted", "stopped on request before it started"
    folder = _enter_problem(launch)
    if folder:
        return 1, "failed", folder
    try:
        child = subprocess.Popen(list(launch.command), env=_env(launch), cwd=launch.cwd)
    except FileNotFoundError:
        return 127, "failed", f"command not found: {launch.command[0]}"
    except PermissionError:
        return 126, "failed", f"command not executable: {launch.command[0]}"

    def forward(signum: int, _frame: object) -> None:
        ctx_mod.request_stop(signum)
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGUSR1, forward)
    if ctx_mod.stop_requested():  # the request came while the child was being started
        child.send_signal(signal.SIGTERM)
    code = child.wait()
    if code == 0:
        return 0, "succeeded", None
    if ctx_mod.stop_requested() or code == PREEMPTED_EXIT_CODE:
        return PREEMPTED_EXIT_CODE, "preempted", f"command exited {code} after a stop request"
    return code if code > 0 else 128 - code, "failed", f"command exited with {code}"


def _enter_problem(launch: Launch) -> str | None:
    """Why the job cannot run in its working folder (``launch.cwd``) on this host, or None."""
    if launch.cwd is None:
        return None
    try:
        if not os.path.isdir(launch.cwd):
            return f"the working folder {launch.cwd} does not exist on this host"
        if not os.access(launch.cwd, os.X_OK):
            return f"the working folder {launch.cwd} cannot be entered (permission denied)"
    except OSError as exc:
        return f"the working folder {launch.cwd} cannot be entered: {exc.strerror or exc}"
    return None


def run_callable(launch: Launch) -> tuple[Outcome, str | None]:
    """Run the pickled ``(fn, args, kwargs)`` in this process, if its bytes have the digest
    the launch pins; store what it returns. Returns the outcome and the digest of the stored
    return value (None: nothing stored). The launch record itself is the one the control
    plane wrote (its digest is on the command line), so its pin is the control plane's."""
    import cloudpickle

    assert launch.callable_ref is not None
    url, pinned = unpin(launch.callable_ref)
    os.environ.update(_env(launch))
    ctx_mod.install_stop_handlers()
    payload = read_bytes(url)
    if pinned is not None:  # unpinned: a launch made by hand, not by a client
        try:
            check_digest(payload, pinned, f"the payload {url}")
        except DigestMismatch as exc:
            return (1, "failed", str(exc)), None
    folder = _enter_problem(launch)
    if folder:
        return (1, "failed", folder), None
    if launch.cwd is not None:
        os.chdir(launch.cwd)
    fn, args, kwargs = cloudpickle.loads(payload)
    try:
        value = fn(*args, **kwargs)
    except Preempted as exc:
        return (PREEMPTED_EXIT_CODE, "preempted", str(exc)), None
    except MemoryError as exc:
        return (1, OUT_OF_MEMORY, f"{oom_words()}\n{user_traceback(exc)}"), None
    except Exception as exc:
        return (1, "failed", user_traceback(exc)), None
    data = cloudpickle.dumps(value)
    put_bytes(f"{launch.attempt_url}/{Record.RETURN}", data)
    return (0, "succeeded", None), digest_of(data)


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
