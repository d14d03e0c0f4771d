"""``GridCluster``: a dask-jobqueue cluster whose jobs are gridbridge jobs, placed across sites.

It is dask-jobqueue's ``JobQueueCluster`` with :class:`~gridbridge.dask._job.GridJob` as its
``Job``: the keywords (``cores``, ``memory``, ``processes``, ``walltime``,
``job_extra_directives``, ``worker_extra_args``, ``name``, ...), ``scale(jobs=...)``,
``adapt(minimum_jobs=...)``, ``job_script()`` and the ``jobqueue.gridbridge`` section of dask's
config work as for ``SLURMCluster``. The scheduler runs here; each job is one gridbridge command
job, ``python -m gridbridge.dask.worker``, that placement sends to the cheapest site and the
cost ledger bills::

    cluster.scale(n) / adapt()  ──> JobQueueCluster: job names  ──> GridJob.start()
        ──> client.submit_command([... gridbridge.dask.worker <scheduler> --name N ...])
        ──> reconciler: place (cheapest site) ──> the runtime starts the worker there
    preemption on a site ──> the worker retires (its results move to other workers), the
        attempt ends PREEMPTED, gridbridge places the job again ──> a new worker, same name,
        on a site with capacity (not one whose capacity was just reclaimed)
    scale down / close ──> scheduler.retire_workers(close_workers=True): results move, the
        worker exits 0, its job ends SUCCEEDED ──> the job is cancelled only if it did not

Two promises beyond dask-jobqueue's: a worker that left the scheduler while its job lives is
gridbridge's to replace (not closed after ``lost-worker-timeout``), and a worker whose job
ended for good while the cluster still wants it is started afresh.

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
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from dask_jobqueue.core import JobQueueCluster
from distributed.core import Status
from distributed.deploy.cluster import Cluster

from gridbridge.client import Client, JobFuture
from gridbridge.config import GridConfig
from gridbridge.dask._config import CONFIG_NAME, register_defaults, setting
from gridbridge.dask._job import GridJob, GridWorker, _Launcher, off_loop
from gridbridge.dask._options import (
    WorkerOptions,
    _Shape,
    argv_builder,
    check_policy,
    check_sites,
    job_name,
    merge_options,
    spec_options,
)
from gridbridge.dask._tls import ClusterTLS, on_this_host, wants_tls
from gridbridge.spec import JobSpec, Policy
from gridbridge.units import NAME_PATTERN

__all__ = ["GridCluster", "GridJob", "GridWorker", "WorkerOptions", "job_name"]

logger = logging.getLogger(__name__)
_NAME_RE = re.compile(NAME_PATTERN)
_WATCH_S = 1.0
"""How often the cluster looks at its workers' jobs."""
_spec_options = spec_options  # the name tests and older callers import
_FROM_CONFIG = {"walltime_s": "walltime", "python": "python",
                "death_timeout_s": "death-timeout", "local_directory": "local-directory"}
"""WorkerOptions fields that ``jobqueue.<config_name>`` sets when neither a keyword nor
``worker_options`` does."""

register_defaults()


class GridCluster(JobQueueCluster):
    """A Dask cluster whose workers gridbridge places on the federation's cheapest sites.

    >>> from dask.distributed import Client as DaskClient                   # doctest: +SKIP
    >>> with GridCluster(cores=2, memory="4 GiB", walltime="01:00:00") as cluster:  # +SKIP
    ...     cluster.scale(jobs=4)       # or cluster.adapt(minimum_jobs=0, maximum_jobs=20)
    ...     print(cluster.job_script()) # the gridbridge submission of one worker job
    ...     with DaskClient(cluster) as dc:
    ...         print(dc.submit(sum, [1, 2, 3]).result())
    6

    ``config`` is a ``gridbridge.yaml`` path, a :class:`~gridbridge.GridConfig`, a running
    :class:`~gridbridge.Client` (its reconciler is used and it is left open), or None for the
    embedded default. dask-jobqueue's keywords mean what they mean there (``cores`` threads
    split over ``processes`` worker processes per job, ``memory`` per job, ``walltime`` per
    attempt as ``'HH:MM:SS'``); ``job_extra_directives`` are ``gridbridge submit`` options
    (``--team``, ``--project``, ``--priority``, ``--max-cost``, ``--max-attempts``,
    ``--expected-runtime-s``, ``--env``); ``worker_extra_args`` options of
    ``python -m gridbridge.dask.worker``; unset ones come from ``jobqueue.gridbridge`` in dask's
    config. ``gpus`` are offered to tasks as the resource ``GPU``. ``sites`` limits where
    workers may go; ``policy`` is their placement policy (``"cheapest"``, ``"fastest"``, ...;
    default: the federation's); ``worker_options`` are :class:`WorkerOptions`;
    ``scheduler_options`` go to distributed's ``Scheduler``. ``security``: None (default) for
    TLS exactly when a worker may run on another host, True for TLS always; False for plain
    tcp, refused when a site is not on this host.
    """

    job_cls = GridJob

    def __init__(
        self,
        config: str | os.PathLike[str] | GridConfig | Client | None = None,
        *,
        cores: int | None = None,
        memory: str | int | None = None,
        processes: int | None = None,
        gpus: int | None = None,
        walltime: str | float | None = None,
        job_extra_directives: Sequence[str] | None = None,
        worker_extra_args: Sequence[str] | None = None,
        python: str | None = None,
        death_timeout: float | None = None,
        local_directory: str | None = None,
        interface: str | None = None,
        policy: str | Policy | Mapping[str, Any] | None = None,
        sites: Sequence[str] | None = None,
        worker_options: WorkerOptions | Mapping[str, Any] | None = None,
        scheduler_options: Mapping[str, Any] | None = None,
        name: str | None = None,
        security: bool | None = None,
        n_workers: int = 0,
        config_name: str | None = None,
        silence_logs: str | bool = "error",
        asynchronous: bool = False,
        loop: Any = None,
    ) -> None:
        cn = config_name or CONFIG_NAME
        shape = _shape(cn, cores, memory, gpus, processes)
        directives = list(setting(cn, "job-extra-directives", job_extra_directives) or ())
        options = merge_options(
            worker_options,
            {"walltime_s": walltime, "python": python, "death_timeout_s": death_timeout,
             "local_directory": local_directory},
            {key: setting(cn, name) for key, name in _FROM_CONFIG.items()}, directives)
        interface = setting(cn, "interface", interface)
        extra_args = list(setting(cn, "worker-extra-args", worker_extra_args) or ())
        argv_of = argv_builder(shape, options, extra_args, interface)
        name = name or f"dask-{uuid.uuid4().hex[:8]}"
        if not _NAME_RE.fullmatch(job_name(f"{name}-0000")):
            raise ValueError(f"cluster name {name!r}: letters, digits, '_', '.', '-' "
                             "(at most 53 characters)")
        chosen = check_policy(policy)
        self.grid, self._owns_client = _grid_client(config)
        self._tls: ClusterTLS | None = None
        try:
            site_names = check_sites(self.grid.config, sites)
            spec = spec_options(shape, options, sites, chosen)
            from gridbridge.scheduler.admission import check_admissible

            check_admissible(JobSpec.model_validate({**spec, "command": ("dask",),
                                                     "name": f"{name}-0"}), self.grid.config)
            self.shape, self.worker_options = shape, options
            if wants_tls(self.grid.config, site_names, security):
                self._tls = ClusterTLS.create(name)
            job_kwargs = _job_kwargs(shape, options, extra_args, directives, interface)
            self.launcher = _Launcher(self.grid, argv_of, spec, options.retire_timeout_s + 30.0,
                                      self._tls, job_kwargs)
            tls = self._tls.security() if self._tls is not None else None
            given = setting(cn, "scheduler-options", scheduler_options)
            self._watcher: asyncio.Task[None] | None = None
            super().__init__(
                n_workers=n_workers, loop=loop, security=tls, name=name,
                asynchronous=asynchronous, silence_logs=silence_logs,
                scheduler_options=_scheduler_options(self.grid.config, site_names, given, tls),
                interface=interface, config_name=cn, launcher=self.launcher,
                cores=shape.cores, memory=shape.memory_bytes, processes=shape.processes)
        except BaseException:
            self.status = Status.closed  # nothing started: Cluster.__del__ has nothing to warn of
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
        where = ", ".join(s.name for s in self.grid.config.sites)
        return (f"GridCluster {self.name}: scheduler {self.scheduler_address}; dashboard "
                f"{self._dashboard()}; workers of {self.shape.cores} cores, "
                f"{self.shape.memory_gb:g} GiB placed by gridbridge on: {where}")

    def _dashboard(self) -> str:
        """The dashboard line, true either way: distributed serves its HTTP endpoints at the
        address it reports whether or not bokeh (the dashboard's pages) is installed."""
        link = self.dashboard_link
        if importlib.util.find_spec("bokeh") is not None:
            return link or "not started"
        if not link:
            return "not available (bokeh is not installed: pip install bokeh)"
        served = link.removesuffix("/status")
        return (f"not available (bokeh is not installed: pip install bokeh); {served} "
                "serves only distributed's HTTP endpoints, e.g. /health")

    # JobQueueCluster and SpecCluster hooks --------------------------------------------------

    def _get_worker_security(self, security: Any) -> None:
        """No worker credentials in the job's arguments: a worker takes its certificate from
        its job's checkpoint prefix (:mod:`gridbridge.dask._tls`), not ``--tls-key FILE``."""
        return None

    async def _start(self) -> None:
        await super()._start()  # type: ignore[no-untyped-call]
        if self._watcher is None:
            print(self._banner(), flush=True)
            self._watcher = asyncio.ensure_future(self._watch())

    async def _correct_state_internal(self) -> None:
        """Before jobs go (scale down, close): the scheduler retires their workers and closes
        them, so each moves its results away and exits 0; its job then ends by itself
        (SUCCEEDED), not as a job cancelled by its user, and no worker is cut off mid-comm."""
        leaving = [w for n, w in self.workers.items()
                   if n not in self.worker_spec and isinstance(w, GridJob) and not w.retired]
        scheduler = self.scheduler
        if (leaving and self.scheduler_comm is not None and scheduler is not None
                and scheduler.status == Status.running):
            await self._retire(scheduler, self.scheduler_comm, leaving)
        await super()._correct_state_internal()

    async def _retire(self, scheduler: Any, comm: Any, leaving: list[GridJob]) -> None:
        joined = {w: {a: str(ws.name) for a, ws in scheduler.workers.items()
                      if _of_job(str(ws.name), str(w.name))} for w in leaving}
        names = [n for found in joined.values() for n in found.values()]
        if not names:
            return
        streams = scheduler.incoming_comms_active  # each worker holds one open stream
        await comm.retire_workers(names=names, close_workers=True)
        for worker, found in joined.items():
            # a result no staying worker can take (the last workers go) is given up, as
            # scaling to zero must: the worker is closed even so, and still exits 0
            for address in set(found) & set(scheduler.workers):
                scheduler.close_worker(address)
            worker.retired = bool(found)
        # the scheduler must not close on a worker still hanging up (a traceback each)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.worker_options.retire_timeout_s
        while scheduler.incoming_comms_active > streams - len(names) and loop.time() < deadline:
            await asyncio.sleep(0.05)

    def _update_worker_status(self, op: str, msg: Any) -> None:
        """A worker that left while its job lives is gridbridge's to replace: skip the
        SpecCluster rule that closes it after ``lost-worker-timeout``."""
        if op == "remove":
            name = self.scheduler_info["workers"].get(msg, {}).get("name")
            worker = self.workers.get(name)
            if isinstance(worker, GridJob) and not worker.ended:
                Cluster._update_worker_status(self, op, msg)  # type: ignore[no-untyped-call]
                return
        super()._update_worker_status(op, msg)  # type: ignore[no-untyped-call]

    async def _watch(self) -> None:
        """Start afresh a worker whose job ended for good (failed, out of attempts, walltime)
        while the cluster still wants it."""
        while self.status not in (Status.closing, Status.closed):
            await asyncio.sleep(_WATCH_S)
            watched = {name: w.job for name, w in self.workers.items()
                       if isinstance(w, GridJob) and w.job is not None and not w.ended}
            ended = await off_loop(_ended, watched)  # one hop to the store for all
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
                await off_loop(self.grid.close)
                self._owns_client = False


def _of_job(worker: str, job: str) -> bool:
    """Whether the scheduler's worker ``worker`` runs in job ``job`` (itself, or one of its
    ``processes``, named ``<job>-<i>``)."""
    return worker == job or (worker.startswith(f"{job}-") and
                             worker.removeprefix(f"{job}-").isdigit())


def _ended(jobs: Mapping[str, JobFuture]) -> list[str]:
    """The names whose job has ended (a blocking read of the store)."""
    return [name for name, job in jobs.items() if job.done()]


def _shape(cn: str, cores: int | None, memory: str | int | None, gpus: int | None,
           processes: int | None) -> _Shape:
    """The job's shape from the keywords, else from ``jobqueue.<cn>`` in dask's config."""
    cores, memory = setting(cn, "cores", cores), setting(cn, "memory", memory)
    if cores is None or memory is None:
        raise ValueError(f"GridCluster needs cores= and memory= per job (or jobqueue.{cn}."
                         "cores and .memory in dask's config), e.g. "
                         "GridCluster(cores=1, memory='4 GiB')")
    return _Shape.of(cores, memory, int(setting(cn, "gpus", gpus) or 0),
                     int(setting(cn, "processes", processes) or 1))


def _job_kwargs(shape: _Shape, options: WorkerOptions, extra_args: list[str],
                directives: list[str], interface: str | None) -> dict[str, Any]:
    """The resolved keywords each :class:`GridJob` hands dask-jobqueue's ``Job`` (which then
    reads nothing from the config itself): what ``job.worker_cores`` and its kin report."""
    return {"cores": shape.cores, "memory": shape.memory_bytes, "processes": shape.processes,
            "python": options.python, "death_timeout": options.death_timeout_s,
            "local_directory": options.local_directory, "worker_extra_args": extra_args,
            "job_extra_directives": directives, "shebang": "", "interface": interface,
            "worker_command": "gridbridge.dask.worker"}


def _grid_client(config: Any) -> tuple[Client, bool]:
    """The gridbridge client the workers are submitted through, and whether we own it."""
    if isinstance(config, Client):
        return config, False
    return Client(config), True


def _scheduler_options(config: GridConfig, sites: Sequence[str],
                       given: Mapping[str, Any] | None, tls: Any = None) -> dict[str, Any]:
    """Listen on loopback (the scheduler and its HTTP endpoints) when every candidate site
    runs on this host, else where the sites can reach us (``host``/``interface`` in
    ``scheduler_options`` choose). With ``tls`` (a distributed ``Security``) only ``tls://``
    is spoken, whatever ``given`` says."""
    options: dict[str, Any] = {}
    if on_this_host(config, sites):
        options.update(host="127.0.0.1", dashboard_address="127.0.0.1:8787")
    options.update(given or {})
    if tls is not None:
        options.update(protocol="tls://", security=tls)
    return options
