"""A Dask worker as a gridbridge command job: ``python -m gridbridge.dask.worker SCHEDULER ...``.

A preemption reaches a worker as a stop request (SIGTERM or SIGUSR1: a spot notice, Slurm's
signal before the time limit or at preemption, a cancel), and the worker *retires* instead of
dying: it asks the scheduler to copy every result it alone holds to other workers, waits
until that is done (or ``--retire-timeout`` passes), and only then exits::

    SIGTERM ──> Worker.close_gracefully(): scheduler.retire_workers([me])
                  ──> the scheduler stops sending me tasks and copies my unique results
                      to the other workers (the active memory manager's RetireWorker)
                  ──> I leave the cluster; no finished task is computed again
            ──> exit 75 (stopped on request): the attempt is PREEMPTED and gridbridge
                places the job again, which is the replacement worker

With ``--processes N`` (N > 1) this process starts N single workers named ``NAME-0`` ...
``NAME-<N-1>`` and passes stop requests on to them. The worker runs without a nanny: one
process per worker keeps the stop signal on one path.

A ``tls://`` scheduler address means the cluster speaks mutual TLS only: the worker takes its
certificate and key from ``dask-tls.json`` under its job's checkpoint prefix
(``$GRIDBRIDGE_CHECKPOINT``), never from its argv or environment (see
:mod:`gridbridge.dask._tls` for why), and keeps them in 0600 files for its life.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["STOPPED_EXIT_CODE", "check_extra_args", "main", "worker_argv"]

STOPPED_EXIT_CODE = 75
"""A worker that retired on a stop request exits with this (EX_TEMPFAIL, as a preempted job)."""
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def worker_argv(
    python: str, scheduler: str, name: str, *, nthreads: int, memory_limit: int,
    extra: dict[str, str],
) -> list[str]:
    """The argv of one worker job (every value a separate argument, never a shell string).
    ``extra`` holds the optional settings by long option name (``processes``, ``resources``,
    ``death-timeout``, ``retire-timeout``, ``local-directory``, ``interface``)."""
    argv = [python, "-m", "gridbridge.dask.worker", scheduler, "--name", name,
            "--nthreads", str(nthreads), "--memory-limit", str(memory_limit)]
    for option, value in sorted(extra.items()):
        argv += [f"--{option}", value]
    return argv


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gridbridge.dask.worker",
                                description="Run Dask worker(s) that retire on a stop request.")
    p.add_argument("scheduler", help="the scheduler's address, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--name", required=True, help="the worker's name (NAME-i with --processes)")
    p.add_argument("--nthreads", type=int, default=1, help="threads per worker process")
    p.add_argument("--memory-limit", type=int, default=0, help="bytes per worker process")
    p.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--resources", default="",
                   help="abstract resources per process, e.g. 'GPU=1' (comma-separated)")
    p.add_argument("--death-timeout", type=float, default=60.0,
                   help="seconds to wait for the scheduler before giving up")
    p.add_argument("--retire-timeout", type=float, default=8.0,
                   help="seconds a stop request may spend handing results over")
    p.add_argument("--local-directory", default=None, help="scratch for spilled data")
    p.add_argument("--interface", default=None, help="network interface, e.g. 'ib0'")
    return p


def check_extra_args(args: list[str]) -> None:
    """Raise ValueError unless ``args`` are options this entry point takes (what a
    cluster's ``worker_extra_args`` may hold): a worker that could not start its job would
    only fail on the site, attempt after attempt."""
    known = ("--nthreads", "--memory-limit", "--processes", "--resources", "--death-timeout",
             "--retire-timeout", "--local-directory", "--interface")
    parser = _parser()
    parser.exit_on_error = False
    try:
        _, unknown = parser.parse_known_args(["tcp://check:1", "--name", "check", *args])
    except (argparse.ArgumentError, SystemExit) as exc:
        raise ValueError(f"worker_extra_args {args!r}: {exc}; valid options: "
                         f"{', '.join(known)}") from None
    if unknown:
        raise ValueError(f"worker_extra_args: {' '.join(unknown)!r} is not an option of "
                         f"python -m gridbridge.dask.worker; valid options: {', '.join(known)}")


def _resources(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--resources: {item!r} is not NAME=AMOUNT")
        out[key] = float(value)
    return out


@contextlib.contextmanager
def _security(args: argparse.Namespace) -> Iterator[Any]:
    """The worker's TLS credentials for a ``tls://`` scheduler (None for plain tcp)."""
    if not args.scheduler.startswith("tls://"):
        yield None
        return
    prefix = os.environ.get("GRIDBRIDGE_CHECKPOINT")
    if not prefix:
        raise SystemExit("gridbridge.dask.worker: a tls:// scheduler's worker runs as a "
                         "gridbridge job (its credentials are under $GRIDBRIDGE_CHECKPOINT)")
    from gridbridge.dask._tls import worker_security

    with worker_security(prefix, args.death_timeout) as security:
        yield security


async def _serve(args: argparse.Namespace, security: Any) -> int:
    from distributed import Worker

    worker = Worker(
        args.scheduler, name=args.name, nthreads=args.nthreads,
        memory_limit=args.memory_limit or "auto", resources=_resources(args.resources) or None,
        death_timeout=args.death_timeout, local_directory=args.local_directory,
        security=security, interface=args.interface,
    )
    retiring: list[asyncio.Task[None]] = []

    async def retire() -> None:
        try:
            await asyncio.wait_for(worker.close_gracefully(reason="stop requested by the site"),
                                   args.retire_timeout)
        except (TimeoutError, OSError) as exc:
            print(f"gridbridge.dask.worker: could not hand over in time ({exc!r}); closing",
                  file=sys.stderr, flush=True)
            await worker.close(reason="stop requested; hand-over timed out")

    def on_stop() -> None:
        if not retiring:  # the site may signal the group and the runtime forward it: once
            retiring.append(asyncio.ensure_future(retire()))

    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, on_stop)
    await worker
    await worker.finished()  # type: ignore[no-untyped-call]
    if retiring:
        await retiring[0]
        return STOPPED_EXIT_CODE
    # the scheduler closed us: the cluster scaled down (or closed) and retired this worker
    print(f"gridbridge.dask.worker: {args.name} retired by the scheduler (scaled down)",
          file=sys.stderr, flush=True)
    return 0


def _fan_out(args: argparse.Namespace) -> int:
    """Start one single-process worker per ``--processes`` and pass stop requests on."""
    extra = {"resources": args.resources, "death-timeout": str(args.death_timeout),
             "retire-timeout": str(args.retire_timeout)}
    if args.local_directory:
        extra["local-directory"] = args.local_directory
    if args.interface:
        extra["interface"] = args.interface
    children = [
        subprocess.Popen(worker_argv(sys.executable, args.scheduler, f"{args.name}-{k}",
                                     nthreads=args.nthreads, memory_limit=args.memory_limit,
                                     extra=extra))
        for k in range(args.processes)
    ]

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    for sig in _STOP_SIGNALS:
        signal.signal(sig, forward)
    codes = [child.wait() for child in children]
    return max(codes, key=lambda c: (c != 0, abs(c)))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.processes > 1:
        return _fan_out(args)
    with _security(args) as security:
        return asyncio.run(_serve(args, security))


if __name__ == "__main__":
    sys.exit(main())
