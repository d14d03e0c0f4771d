"""What one worker job is: its shape (cores, memory, GPUs, processes), its gridbridge settings
(:class:`WorkerOptions`), and the dask-jobqueue keywords that set them, each checked once.

Invariant: every keyword a :class:`~gridbridge.dask.GridCluster` takes ends up in exactly one
of two places, the job's spec (:func:`spec_options`) or the worker's argv
(:func:`argv_builder`); nothing is read again later, so ``job_script()`` and the jobs submitted
agree. Precedence, as dask-jobqueue's: a keyword, then ``worker_options``, then the
``jobqueue.gridbridge`` section of dask's config, then the defaults here::

    cores= memory= processes= gpus=     ──> _Shape            ──> resources (cpus, memory_gb, gpus)
    walltime= python= death_timeout=    ──┐
    local_directory= job_extra_directives ├─> WorkerOptions  ──> resources, owner, env, ...
    worker_options={...}                ──┘                  ──> worker argv (timeouts, python)
    worker_extra_args=[...]             ──> checked against the worker's own options ──> argv
"""

from __future__ import annotations

import math
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import Field, ValidationError

from gridbridge.config import GridConfig
from gridbridge.frozen import Frozen
from gridbridge.spec import Policy
from gridbridge.units import gib, parse_duration

__all__ = ["DIRECTIVES", "WorkerOptions", "job_name"]


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


DIRECTIVES: Mapping[str, str] = {
    "--team": "team", "--project": "project", "--priority": "priority",
    "--max-cost": "max_cost", "--max-attempts": "max_attempts",
    "--expected-runtime-s": "expected_runtime_s", "--env": "env",
}
"""``job_extra_directives``: a gridbridge job has no ``#SBATCH`` header, so its directives are
the ``gridbridge submit`` options a worker's spec can carry, by their CLI names."""


def job_name(worker: str) -> str:
    """A worker's gridbridge job name: the worker's name, tagged ``dask-`` at the front
    (``gridbridge status`` and the cost report tell Dask workers by it)."""
    return worker if worker.startswith("dask-") else f"dask-{worker}"


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


def merge_options(given: WorkerOptions | Mapping[str, Any] | None,
                  keywords: Mapping[str, Any], defaults: Mapping[str, Any],
                  directives: Sequence[str]) -> WorkerOptions:
    """One :class:`WorkerOptions` from ``worker_options``, the dask-jobqueue ``keywords``
    (set ones win), the config's ``defaults`` (for fields neither sets) and the
    ``job_extra_directives``."""
    options = _worker_options(given)
    update = {k: v for k, v in defaults.items()
              if v is not None and k not in options.model_fields_set}
    update.update({k: v for k, v in keywords.items() if v is not None})
    update.update(_directives(directives, options))
    if "walltime_s" in update:
        update["walltime_s"] = _walltime_s(update["walltime_s"])
    return _worker_options({**options.model_dump(exclude_unset=True), **update})


def _walltime_s(value: Any) -> Any:
    """dask-jobqueue's walltime: a string as Slurm reads it (``'00:30:00'``, ``'90'`` is 90
    minutes), or a number of seconds."""
    if isinstance(value, str):
        seconds = parse_duration(value)
        if seconds is None:
            raise ValueError(f"walltime={value!r}: not a walltime like '00:30:00' or "
                             "'1-00:00:00'")
        return seconds
    return value


def _directives(directives: Sequence[str], options: WorkerOptions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    env = dict(options.env)
    for directive in directives:
        words = shlex.split(str(directive))
        flag, _, value = (words[0] if words else "").partition("=")
        value = value or " ".join(words[1:])
        field = DIRECTIVES.get(flag)
        if field is None or not value:
            raise ValueError(f"job_extra_directives: {directive!r} is not a gridbridge submit "
                             f"option with a value; valid: {', '.join(DIRECTIVES)}")
        if field == "env":
            name, sep, text = value.partition("=")
            if not sep:
                raise ValueError(f"job_extra_directives: --env {name}: expected NAME=VALUE")
            env[name] = text
            out["env"] = env
        else:
            out[field] = value
    return out


def check_policy(policy: str | Policy | Mapping[str, Any] | None) -> Policy | None:
    """The workers' own placement policy (each worker job carries it)."""
    if policy is None or isinstance(policy, Policy):
        return policy
    value = {"name": policy} if isinstance(policy, str) else dict(policy)
    try:
        return Policy.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"policy={policy!r}: {problems}") from None


def check_sites(config: GridConfig, sites: Sequence[str] | None) -> list[str]:
    names = [s.name for s in config.sites]
    if isinstance(sites, str):
        raise TypeError("sites must be a list of site names, e.g. ['spot-local']")
    unknown = sorted(set(sites or ()) - set(names))
    if unknown:
        raise ValueError(f"sites: unknown site(s) {', '.join(map(repr, unknown))}; "
                         f"valid choices: {', '.join(names)}")
    return list(sites) if sites else names


def spec_options(shape: _Shape, options: WorkerOptions, sites: Sequence[str] | None,
                 policy: Policy | None) -> dict[str, Any]:
    """A worker job's spec, less its name and command."""
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


def argv_builder(shape: _Shape, options: WorkerOptions, extra_args: Sequence[str] = (),
                 interface: str | None = None) -> Any:
    """``argv_of(scheduler, name)``: one worker job's command. ``extra_args`` (dask-jobqueue's
    ``worker_extra_args``) must be options of ``python -m gridbridge.dask.worker``."""
    from gridbridge.dask.worker import check_extra_args, worker_argv

    extra = {"death-timeout": f"{options.death_timeout_s:g}",
             "retire-timeout": f"{options.retire_timeout_s:g}"}
    if shape.processes > 1:
        extra["processes"] = str(shape.processes)
    if shape.gpus:
        extra["resources"] = f"GPU={shape.gpus / shape.processes:g}"
    if options.local_directory:
        extra["local-directory"] = options.local_directory
    if interface:
        extra["interface"] = interface
    tail = [str(a) for a in extra_args]
    check_extra_args(tail)
    python = options.python or sys.executable

    def argv_of(scheduler: str, name: str) -> list[str]:
        return [*worker_argv(python, scheduler, name, nthreads=shape.cores // shape.processes,
                             memory_limit=shape.memory_bytes // shape.processes, extra=extra),
                *tail]

    return argv_of
