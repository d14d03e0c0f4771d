"""``GridJob``: dask-jobqueue's ``Job`` for gridbridge, one worker job submitted through a
gridbridge client instead of ``sbatch``/``qsub``.

Invariant: a ``GridJob`` holds no setting of its own; everything it submits comes from its
cluster's :class:`_Launcher`, so ``job_script()`` renders exactly the spec and argv that
:meth:`_Launcher.submit` sends. Constructing one submits nothing (dask-jobqueue builds a
"dummy" job for ``job_script()`` and on every ``scale``)::

    SpecCluster ──> GridJob(scheduler, name=N).start()
        ──> _Launcher.submit: client.submit_command(argv, name=dask-N, **spec)   (a thread)
        ──> TLS clusters: the worker's bundle under the job's checkpoint prefix
    GridJob.close()   (scale down, close, or its job ended for good)
        ──> the cluster has already asked the scheduler to retire the worker: wait for the
            job to end by itself (exit 0, SUCCEEDED); cancel only what did not
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shlex
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from dask_jobqueue.core import Job
from distributed.deploy.spec import ProcessInterface

from gridbridge.client import Client, JobFuture
from gridbridge.dask._config import CONFIG_NAME
from gridbridge.dask._options import job_name
from gridbridge.dask._tls import ClusterTLS

__all__ = ["GridJob", "GridWorker", "off_loop"]

_T = TypeVar("_T")

logger = logging.getLogger("gridbridge.dask.cluster")
_CLUSTER_KEYWORDS = frozenset({"cores", "memory", "processes", "interface", "protocol",
                                "security"})


async def off_loop(fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` in a thread (the store blocks), or here when no thread may start: at
    interpreter exit distributed closes a cluster left open from an ``atexit`` hook, after
    ``concurrent.futures`` has stopped taking work, and the workers must still be retired
    and their jobs ended rather than left to the scheduler's teardown."""
    loop = asyncio.get_running_loop()
    try:
        future = loop.run_in_executor(None, functools.partial(fn, *args))
    except RuntimeError:  # raised when scheduling, never by fn: it has not run
        return fn(*args)
    return await future


class _Launcher:
    """Submits and stops one cluster's worker jobs (in threads: the store is blocking), and
    renders what it submits. ``job_kwargs`` are the resolved dask-jobqueue keywords a
    :class:`GridJob` hands dask-jobqueue's ``Job``."""

    def __init__(self, client: Client, argv_of: Callable[[str, str], list[str]],
                 options: dict[str, Any], stop_wait_s: float, tls: ClusterTLS | None,
                 job_kwargs: Mapping[str, Any]) -> None:
        self.client = client
        self.argv_of = argv_of
        self.options = options
        self.stop_wait_s = stop_wait_s
        self.tls = tls
        self.job_kwargs = dict(job_kwargs)
        self.jobs: list[JobFuture] = []

    def submit(self, scheduler: str, name: str) -> JobFuture:
        future = self.client.submit_command(self.argv_of(scheduler, name),
                                            name=job_name(name), **self.options)
        self.jobs.append(future)
        if self.tls is not None:  # the worker waits for it (up to its death timeout)
            try:
                self.tls.publish(self._prefix(future))
            except BaseException:
                future.cancel()  # a worker without credentials could only time out
                raise
        logger.info("worker %s is gridbridge job %s", name, future.job_id)
        return future

    def stop(self, job: JobFuture, retired: bool) -> None:
        """End the job: a ``retired`` worker (the scheduler closed it) ends by itself, so
        wait for that; cancel whatever has not ended then (a running worker gets SIGTERM and
        retires), and wait again. Then its TLS credentials go. At interpreter exit nothing
        here can see a job end (the reconciler's threads are gone): a retired worker is left
        to exit, any other is only marked for cancelling, and the next reconciler records
        both."""
        exiting = not threading.main_thread().is_alive()
        if retired and not exiting:
            self._wait(job, self.stop_wait_s)
        if not (retired and exiting) and not job.done():
            job.cancel(reason="scaled down (the dask cluster no longer needs this worker)")
            if not exiting:
                self._wait(job, self.stop_wait_s)
        if self.tls is not None:
            self.tls.withdraw(self._prefix(job))

    @staticmethod
    def _wait(job: JobFuture, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            job.wait(timeout_s)

    def render(self, scheduler: str, name: str) -> str:
        """The submission as a ``gridbridge submit`` line (see :meth:`GridJob.job_script`)."""
        spec, r = self.options, self.options["resources"]
        flags: list[tuple[str, Any]] = [
            ("--name", job_name(name)), ("--cpus", r["cpus"]), ("--memory-gb", r["memory_gb"]),
            ("--gpus", r["gpus"]), ("--walltime-s", r["walltime_s"]),
            ("--expected-runtime-s", r.get("expected_runtime_s")),
            ("--team", spec["owner"]["team"]), ("--project", spec["owner"]["project"]),
            ("--max-attempts", spec["max_attempts"]), ("--priority", spec["priority"]),
            ("--max-cost", spec.get("max_cost")),
            ("--policy", (spec.get("policy") or {}).get("name")),
        ]
        flags += [("--site", s) for s in spec.get("constraints", {}).get("allowed_sites", ())]
        # an env value may be a secret: the line reads each from the submitting shell
        flags += [("--env", f"{k}=${k}") for k in sorted(spec["env"])]
        lines = [f"  {flag} {_quote_env(v) if flag == '--env' else shlex.quote(_text(v))}"
                 for flag, v in flags if v is not None]
        argv = shlex.join(self.argv_of(scheduler, name))
        head = ["# gridbridge places this job on the cheapest allowed site, places it again",
                "# after a preemption, and bills it; by hand, the same job is:"]
        if self.tls is not None:
            head.append("# (TLS: the cluster puts the worker's certificate under the job's "
                        "checkpoint prefix after submitting it)")
        return "\n".join([*head, "gridbridge submit \\", *(f"{x} \\" for x in lines),
                          f"  -- {argv}", ""])

    def _prefix(self, job: JobFuture) -> str:
        return self.client.store.job(job.job_id).checkpoint_url


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _quote_env(assignment: str) -> str:
    """``NAME=$NAME`` in double quotes: the shell expands the value, the name is plain."""
    return f'"{assignment}"'


class GridJob(Job):
    """One worker job as dask-jobqueue and distributed's ``SpecCluster`` see it: started by
    submitting it through gridbridge, closed by letting it end (or cancelling it). ``job``
    is the gridbridge job (``job_id`` its id, as dask-jobqueue's jobs carry the batch id)."""

    config_name = CONFIG_NAME

    def __init__(self, scheduler: str | None = None, name: str | None = None, *,
                 launcher: _Launcher, config_name: str | None = None,
                 **cluster_keywords: Any) -> None:
        # cores, memory and processes (which JobQueueCluster and SpecCluster read from the
        # worker spec to count jobs), interface, protocol and security: the launcher already
        # resolved them all. The scheduler's address says tls://, and a worker's certificate
        # travels with its job, never as --tls-key on its command line.
        unknown = set(cluster_keywords) - _CLUSTER_KEYWORDS
        if unknown:
            raise TypeError(f"GridJob got an unexpected keyword argument {sorted(unknown)[0]!r}")
        super().__init__(scheduler=scheduler, name=name,  # type: ignore[no-untyped-call]
                         config_name=config_name, **launcher.job_kwargs)
        self.launcher = launcher
        self.job: JobFuture | None = None
        self.job_header = ""  # no #SBATCH header: the spec is the submit line's flags
        self.ended = False
        """The job ended for good (the cluster's watcher sets it)."""
        self.retired = False
        """The cluster asked the scheduler to retire this worker (it exits by itself)."""

    def job_script(self) -> str:
        """What is submitted for this worker, as the ``gridbridge submit`` command line that
        would submit the same job by hand: gridbridge's analogue of the batch script, since
        the site's own script is rendered later, by whichever adapter placement picks."""
        return self.launcher.render(str(self.scheduler), str(self.name))

    async def start(self) -> None:
        self.job = await off_loop(self.launcher.submit, str(self.scheduler), str(self.name))
        self.job_id = self.job.job_id
        await ProcessInterface.start(self)  # type: ignore[no-untyped-call]  # not Job.start: no sbatch

    async def close(self) -> None:
        if self.job is not None:
            await off_loop(self.launcher.stop, self.job, self.retired)
        await ProcessInterface.close(self)  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        job = self.job.job_id if self.job is not None else "-"
        return f"<GridJob {self.name} job={job} status={self.status.name}>"


GridWorker = GridJob
"""The name this class had before it was dask-jobqueue's ``Job``."""

