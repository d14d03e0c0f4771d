"""``GridCluster``: one Dask cluster whose workers are gridbridge jobs, placed across sites.

The scheduler runs here, in the process that made the cluster; each worker (or group of
``processes`` workers) is one gridbridge command job, ``python -m gridbridge.dask.worker``,
with the worker's cores, memory and GPUs as the job's resources. Placement chooses its site
like any job's, and every attempt of it is a row in the cost ledger::

    cluster.scale(n) / adapt()  ──> SpecCluster: worker spec names  ──> GridWorker.start()
        ──> client.submit_command([... gridbridge.dask.worker <scheduler> --name N ...])
        ──> reconciler: place (cheapest site) ──> the runtime starts the worker there
    preemption on a site ──> the worker retires (its results move to other workers), the
        attempt ends PREEMPTED, gridbridge places the job again ──> a new worker, same name,
        on a site with capacity (not one whose capacity was just reclaimed)
    scale down / close ──> scheduler.retire_workers, then the job is cancelled

distributed's ``SpecCluster`` does the scaling and adaptivity; this module only says how a
worker is started and stopped, and keeps two promises of its own: a worker that left the
scheduler while its job lives is gridbridge's to replace (not closed after
``lost-worker-timeout``), and a worker whose job ended for good while the cluster still wants
it is started afresh.

Workers reach the scheduler over plain tcp on loopback only when every site they may use runs
on this host; a cluster that may place a worker on any other site (or is asked for
``security=True``) speaks mutual TLS with its own CA (:mod:`gridbridge.dask._tls`), with
``require_encryption``, so nobody without the cluster's certificate can join or submit work.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import math
import os
import re
import sys
import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from distributed.core import Status
from distributed.deploy.cluster import Cluster
from distributed.deploy.spec import ProcessInterface, SpecCluster
from pydantic import Field, ValidationError

from gridbridge.client import Client, JobFuture
from gridbridge.config import GridConfig
from gridbridge.dask._tls import ClusterTLS, on_this_host, wants_tls
from gridbridge.dask.worker import worker_argv
from gridbridge.frozen import Frozen
from gridbridge.spec import JobSpec, Policy
from gridbridge.units import NAME_PATTERN, gib

__all__ = ["GridCluster", "GridWorker", "WorkerOptions", "job_name"]

logger = logging.getLogger(__name__)
_NAME_RE = re.compile(NAME_PATTERN)
_WATCH_S = 1.0
"""How often the cluster looks at its workers' jobs."""


class WorkerOptions(Frozen):
    """How each worker job is submitted (``worker_options=`` of :class:`GridCluster`)."""

    walltime_s: Annotated[float, Field(gt=0)] = 3600.0
    """Walltime of one worker attempt; at its end the worker retires like on a preemption."""
    expected_runtime_s: Annotated[float, Field(gt=0)] | None = None
    """What placement prices a worker attempt at; default: ``walltime_s``."""
    team: str = "default"
    project: str = "default"
    """The cost ledger's team and project for the workers (the user is who runs this)."""
    python: str | None = None
    """The interpreter that runs the worker on the sites (with distributed installed);
    default: this one (right for local sites and a shared filesystem)."""
    death_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    """A worker that cannot reach the scheduler this long exits."""
    retire_timeout_s: Annotated[float, Field(gt=0)] = 8.0
    """How long a preempted worker may spend handing its results over; keep it below the
    sites' grace period (``grace_s`` of local sites, ``signal_before_s`` of Slurm)."""
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 1000
    """Attempts per worker job. A worker keeps no checkpoint, so every preemption counts."""
    priority: int = 0
    max_cost: Annotated[float, Field(ge=0)] | None = None
    local_directory: str | None = None
    env: dict[str, str] = Field(default_factory=dict)


def job_name(worker: str) -> str:
    """A worker's gridbridge job name: the worker's name, tagged ``dask-`` at the front
    (``gridbridge status`` and the cost report tell Dask workers by it)."""
    return worker if worker.startswith("dask-") else f"dask-{worker}"


class _Launcher:
    """Submits and stops worker jobs for one cluster (in threads: the store is blocking)."""

    def __init__(self, client: Client, argv_of: Any, options: dict[str, Any],
                 stop_wait_s: float, tls: ClusterTLS | None) -> None:
        self.client = client
        self.argv_of = argv_of
        self.options = options
        self.stop_wait_s = stop_wait_s
        self.tls = tls
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

    def stop(self, job: JobFuture) -> None:
        """Cancel the job (a running worker gets SIGTERM and retires) and wait for its end;
        then its TLS credentials go."""
        if not job.done():
            job.cancel()
            with contextlib.suppress(TimeoutError):
                job.wait(self.stop_wait_s)
        if self.tls is not None:
            self.tls.withdraw(self._prefix(job))

    def _prefix(self, job: JobFuture) -> str:
        return self.client.store.job(job.job_id).checkpoint_url


class GridWorker(ProcessInterface):
    """One worker job as distributed's ``SpecCluster`` sees it: started by submitting the job,
    closed by cancelling it. ``job`` is the gridbridge job."""

    def __init__(self, scheduler: str, name: str, *, launcher: _Launcher) -> None:
        super().__init__(scheduler=scheduler, name=name)  # type: ignore[no-untyped-call]
        self.scheduler_address = scheduler
        self.name = name
        self.launcher = launcher
        self.job: JobFuture | None = None
        self.ended = False
        """The job ended for good (the cluster's watcher sets it)."""

    async def start(self) -> None:
        self.job = await asyncio.to_thread(self.launcher.submit, self.scheduler_address,
                                           self.name)
        await super().start()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        if self.job is not None:
            await asyncio.to_thread(self.launcher.stop, self.job)
        await super().close()  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        job = self.job.job_id if self.job is not None else "-"
        return f"<GridWorker {self.name} job={job} status={self.status.name}>"


class GridCluster(SpecCluster):
    """A Dask cluster whose workers gridbridge places on the federation's cheapest sites.

    >>> from dask.distributed import Client as DaskClient                   # doctest: +SKIP
    >>> with GridCluster(cores=2, memory="4 GiB") as cluster:               # doctest: +SKIP
    ...     cluster.scale(4)            # or cluster.adapt(minimum=0, maximum=20)
    ...     with DaskClient(cluster) as dc:
    ...         print(dc.submit(sum, [1, 2, 3]).result())
    6

    ``config`` is a ``gridbridge.yaml`` path, a :class:`~gridbridge.GridConfig`, a running
    :class:`~gridbridge.Client` (its reconciler is used and it is left open), or None for the
    embedded default. Each worker job has ``cores`` threads (split over ``processes`` worker
    processes), ``memory`` (``"4 GiB"`` or bytes) and ``gpus`` (offered to tasks as the
    resource ``GPU``). ``sites`` limits where workers may go; ``policy`` is the workers'
    placement policy (``"cheapest"``, ``"fastest"``, ... or a :class:`~gridbridge.spec.Policy`;
    default: the federation's); ``worker_options`` are
    :class:`WorkerOptions`; ``scheduler_options`` go to distributed's ``Scheduler``.
    ``security``: None (default) for TLS exactly when a worker may run on another host,
    True for TLS always; False for plain tcp, refused when a site is not on this host.
    """

    def __init__(
        self,
        config: str | os.PathLike[str] | GridConfig | Client | None = None,
        *,
        cores: int,
        memory: str | int,
        gpus: int = 0,
        processes: int = 1,
        policy: str | Policy | Mapping[str, Any] | None = None,
        sites: Sequence[str] | None = None,
        worker_options: WorkerOptions | Mapping[str, Any] | None = None,
        scheduler_options: Mapping[str, Any] | None = None,
        name: str | None = None,
        security: bool | None = None,
        asynchronous: bool = False,
        loop: Any = None,
    ) -> None:
        shape = _Shape.of(cores, memory, gpus, processes)
        options = _worker_options(worker_options)
        name = name or f"dask-{uuid.uuid4().hex[:8]}"
        if not _NAME_RE.fullmatch(job_name(f"{name}-0000")):
            raise ValueError(f"cluster name {name!r}: letters, digits, '_', '.', '-' "
                             "(at most 53 characters)")
        chosen = _policy(policy)
        self.grid, self._owns_client = _grid_client(config)
        self._tls: ClusterTLS | None = None
        try:
            site_names = _check_sites(self.grid.config, sites)
            spec_options = _spec_options(shape, options, sites, chosen)
            from gridbridge.scheduler.admission import check_admissible

            check_admissible(JobSpec.model_validate({**spec_options, "command": ("dask",),
                                                     "name": f"{name}-0"}), self.grid.config)
            self.shape = shape
            self.worker_options = options
            if wants_tls(self.grid.config, site_names, security):
                self._tls = ClusterTLS.create(name)
            launcher = _Launcher(self.grid, _argv_builder(shape, options), spec_options,
                                 options.retire_timeout_s + 30.0, self._tls)
            self.launcher = launcher
            worker: dict[str, Any] = {"cls": GridWorker, "options": {"launcher": launcher}}
            if shape.processes > 1:
                worker["group"] = [f"-{i}" for i in range(shape.processes)]
            tls = self._tls.security() if self._tls is not None else None
            scheduler = {"cls": "distributed.Scheduler",
                         "options": _scheduler_options(self.grid.config, site_names,
                                                       scheduler_options, tls)}
            self._watcher: asyncio.Task[None] | None = None
            super().__init__(scheduler=scheduler, worker=worker, name=name,  # type: ignore[no-untyped-call]
                             security=tls, asynchronous=asynchronous, loop=loop)
        except BaseException:
            if self._tls is not None:
                self._tls.close()
            if self._owns_client:
                self.grid.close()
            raise

    # what the cluster reports ---------------------------------------------------------------

    @property
    def jobs(self) -> list[JobFuture]:
        """Every worker job this cluster submitted, replacements included, in order."""
        return list(self.launcher.jobs)

    def _banner(self) -> str:
        has_bokeh = importlib.util.find_spec("bokeh") is not None
        link = self.dashboard_link if has_bokeh else "not available (pip install bokeh)"
        where = ", ".join(s.name for s in self.grid.config.sites)
        return (f"GridCluster {self.name}: scheduler {self.scheduler_address}; dashboard "
                f"{link}; workers of {self.shape.cores} cores, {self.shape.memory_gb:g} GiB "
                f"placed by gridbridge on: {where}")

    # scaling, counted as dask-jobqueue counts it -------------------------------------------

    def scale(  # type: ignore[override]  # dask-jobqueue's signature: jobs comes second
        self, n: int | None = None, jobs: int = 0, memory: str | None = None,
        cores: int | None = None,
    ) -> Any:
        """Scale to ``n`` workers (``processes`` of them per job), or to ``jobs`` jobs, or
        to enough jobs for ``memory`` or ``cores`` in all; the largest of these wins."""
        from dask.utils import parse_bytes

        if n is not None:
            jobs = max(jobs, math.ceil(n / self.shape.processes))
        if memory is not None:
            jobs = max(jobs, math.ceil(parse_bytes(memory) / self.shape.memory_bytes))
        if cores is not None:
            jobs = max(jobs, math.ceil(cores / self.shape.cores))
        return super().scale(jobs)  # type: ignore[no-untyped-call]

    def _threads_per_worker(self) -> int:
        return self.shape.cores // self.shape.processes

    def _memory_per_worker(self) -> int:
        return self.shape.memory_bytes // self.shape.processes

    # SpecCluster hooks ------------------------------------------------------------------------

    def _new_worker_name(self, worker_number: int) -> str:
        return f"{self.name}-{worker_number}"

    async def _start(self) -> None:
        await super()._start()  # type: ignore[no-untyped-call]
        if self._watcher is None:
            print(self._banner(), flush=True)
            self._watcher = asyncio.ensure_future(self._watch())

    def _update_worker_status(self, op: str, msg: Any) -> None:
        """A worker that left while its job lives is gridbridge's to replace: skip the
        SpecCluster rule that closes it after ``lost-worker-timeout``."""
        if op == "remove":
            name = self.scheduler_info["workers"].get(msg, {}).get("name")
            worker = self.workers.get(name)
            if isinstance(worker, GridWorker) and not worker.ended:
                Cluster._update_worker_status(self, op, msg)  # type: ignore[no-untyped-call]
                return
        super()._update_worker_status(op, msg)  # type: ignore[no-untyped-call]

    async def _watch(self) -> None:
        """Start afresh a worker whose job ended for good (failed, out of attempts, walltime)
        while the cluster still wants it."""
        while self.status not in (Status.closing, Status.closed):
            await asyncio.sleep(_WATCH_S)
            watched = {name: w.job for name, w in self.workers.items()
                       if isinstance(w, GridWorker) and w.job is not None and not w.ended}
            ended = await asyncio.to_thread(_ended, watched)  # one hop to the store for all
            ended = [name for name in ended if name in self.workers]  # not scaled down since
            for name in ended:
                self.workers[name].ended = True
            if not ended or self.status in (Status.closing, Status.closed):
                continue
            for name in ended:
                worker = self.workers.pop(name)
                await worker.close()
                if name in self.worker_spec:
                    logger.info("worker %s: job %s ended; starting a new one", name,
                                worker.job.job_id if worker.job else "-")
            await self._correct_state()  # type: ignore[no-untyped-call]

    async def _close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        try:
            await super()._close()  # type: ignore[no-untyped-call]
        finally:
            if self._tls is not None:
                self._tls.close()
            if self._owns_client:
                await asyncio.to_thread(self.grid.close)
                self._owns_client = False


def _ended(jobs: Mapping[str, JobFuture]) -> list[str]:
    """The names whose job has ended (a blocking read of the store)."""
    return [name for name, job in jobs.items() if job.done()]


class _Shape(Frozen):
    """One worker job's resources, checked."""

    cores: Annotated[int, Field(ge=1)]
    memory_bytes: Annotated[int, Field(ge=1)]
    gpus: Annotated[int, Field(ge=0)]
    processes: Annotated[int, Field(ge=1)]

    @classmethod
    def of(cls, cores: int, memory: str | int, gpus: int, processes: int) -> _Shape:
        from dask.utils import parse_bytes

        try:
            memory_bytes = parse_bytes(memory)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"memory={memory!r}: not an amount of memory, e.g. '4 GiB' or "
                             f"4294967296 ({exc})") from None
        try:
            shape = cls(cores=cores, memory_bytes=memory_bytes, gpus=gpus, processes=processes)
        except ValidationError as exc:
            fields = "; ".join(f"{e['loc'][0]}: {e['msg']} (got {e['input']!r})"
                               for e in exc.errors())
            raise ValueError(f"GridCluster: {fields}") from None
        if processes > cores:
            raise ValueError(f"processes={processes} exceeds cores={cores}: each worker "
                             "process needs at least one core")
        return shape

    @property
    def memory_gb(self) -> float:
        """The job's ``memory_gb``: GiB, as Slurm and PBS count it (``'4 GiB'`` is 4.0),
        rounded up to a hundredth so the worker's memory limit always fits."""
        return math.ceil(gib(self.memory_bytes) * 100) / 100


def _worker_options(given: WorkerOptions | Mapping[str, Any] | None) -> WorkerOptions:
    if isinstance(given, WorkerOptions):
        return given
    try:
        return WorkerOptions.model_validate(dict(given or {}))
    except ValidationError as exc:
        valid = ", ".join(sorted(WorkerOptions.model_fields))
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"worker_options: {problems}; valid fields: {valid}") from None


def _grid_client(config: Any) -> tuple[Client, bool]:
    """The gridbridge client the workers are submitted through, and whether we own it."""
    if isinstance(config, Client):
        return config, False
    return Client(config), True


def _policy(policy: str | Policy | Mapping[str, Any] | None) -> Policy | None:
    """The workers' own placement policy (each worker job carries it)."""
    if policy is None or isinstance(policy, Policy):
        return policy
    value = {"name": policy} if isinstance(policy, str) else dict(policy)
    try:
        return Policy.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"policy={policy!r}: {problems}") from None


def _check_sites(config: GridConfig, sites: Sequence[str] | None) -> list[str]:
    names = [s.name for s in config.sites]
    if isinstance(sites, str):
        raise TypeError("sites must be a list of site names, e.g. ['spot-local']")
    unknown = sorted(set(sites or ()) - set(names))
    if unknown:
        raise ValueError(f"sites: unknown site(s) {', '.join(map(repr, unknown))}; "
                         f"valid choices: {', '.join(names)}")
    return list(sites) if sites else names


def _spec_options(shape: _Shape, options: WorkerOptions, sites: Sequence[str] | None,
                  policy: Policy | None) -> dict[str, Any]:
    resources: dict[str, Any] = {"cpus": shape.cores, "memory_gb": shape.memory_gb,
                                 "gpus": shape.gpus, "walltime_s": options.walltime_s}
    if options.expected_runtime_s is not None:
        resources["expected_runtime_s"] = options.expected_runtime_s
    spec: dict[str, Any] = {
        "resources": resources, "owner": {"team": options.team, "project": options.project},
        "max_attempts": options.max_attempts, "priority": options.priority, "env": options.env,
    }
    if sites:
        spec["constraints"] = {"allowed_sites": list(sites)}
    if options.max_cost is not None:
        spec["max_cost"] = options.max_cost
    if policy is not None:
        spec["policy"] = policy.model_dump()
    return spec


def _argv_builder(shape: _Shape, options: WorkerOptions) -> Any:
    extra = {"death-timeout": f"{options.death_timeout_s:g}",
             "retire-timeout": f"{options.retire_timeout_s:g}"}
    if shape.processes > 1:
        extra["processes"] = str(shape.processes)
    if shape.gpus:
        extra["resources"] = f"GPU={shape.gpus / shape.processes:g}"
    if options.local_directory:
        extra["local-directory"] = options.local_directory
    python = options.python or sys.executable

    def argv_of(scheduler: str, name: str) -> list[str]:
        return worker_argv(python, scheduler, name, nthreads=shape.cores // shape.processes,
                           memory_limit=shape.memory_bytes // shape.processes, extra=extra)

    return argv_of


def _scheduler_options(config: GridConfig, sites: Sequence[str],
                       given: Mapping[str, Any] | None, tls: Any = None) -> dict[str, Any]:
    """Listen on loopback when every candidate site runs on this host, else where the
    sites can reach us (``host``/``interface`` in ``scheduler_options`` choose). With
    ``tls`` (a distributed ``Security``) only ``tls://`` is spoken, whatever ``given`` says."""
    options: dict[str, Any] = {"dashboard": importlib.util.find_spec("bokeh") is not None}
    if on_this_host(config, sites):
        options["host"] = "127.0.0.1"
    options.update(given or {})
    if tls is not None:
        options.update(protocol="tls://", security=tls)
    if "dashboard_address" in options and not options["dashboard"]:
        del options["dashboard_address"]
    return options
