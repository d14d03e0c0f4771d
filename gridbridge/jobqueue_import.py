"""dask-jobqueue's configuration (``jobqueue.yaml``) turned into ``gridbridge.yaml`` sites.

Each ``jobqueue.slurm`` / ``jobqueue.pbs`` section that says how big a job is (``cores``)
becomes one site of the ``slurm`` or ``pbs`` adapter. What has a home in gridbridge is carried
over; everything else is named in a note, one per setting, with where it belongs instead::

    queue               -> options.partitions.<queue> (slurm) / options.queue (pbs)
    account (project)   -> options.account
    walltime            -> max_walltime_s
    cores, memory       -> capacity (one job's worth: jobqueue never says how much a queue holds)
    job-script-prologue -> runtime.prologue   (env-extra, its old name, too)
    python              -> runtime.python
    job-extra-directives: --qos, --account/-A, --partition/-p (slurm) are read; others are noted
    processes, interface, death-timeout, local-directory, ... -> GridCluster arguments (noted)

dask-jobqueue prices nothing, so each site is free to gridbridge until a price is set: the
notes say so. The result is validated with :func:`gridbridge.config.parse_config` before it is
returned, so what comes out is a configuration ``gridbridge config check`` reads.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gridbridge.config import ConfigError, parse_config
from gridbridge.units import gib, parse_duration, parse_memory

__all__ = ["JobqueueImport", "default_jobqueue_path", "import_jobqueue", "load_dask_config",
           "load_jobqueue"]

KINDS = ("slurm", "pbs")
"""The dask-jobqueue sections gridbridge has an adapter for."""
_DEFAULTS: Mapping[str, Any] = {
    "name": "dask-worker", "death-timeout": 60, "shebang": "#!/usr/bin/env bash",
    "worker-command": "distributed.cli.dask_worker", "processes": None,
}
"""dask-jobqueue's own defaults: a setting left at one of these is not worth a note."""
_CLUSTER_ARGS = {
    "processes": "GridCluster(processes=...)",
    "interface": "GridCluster(scheduler_options={'interface': ...})",
    "death-timeout": "GridCluster(worker_options={'death_timeout_s': ...})",
    "local-directory": "GridCluster(worker_options={'local_directory': ...})",
    "scheduler-options": "GridCluster(scheduler_options=...)",
    "name": "GridCluster(name=...)",
}
_IGNORED = {
    "worker-command": "gridbridge starts its own worker (python -m gridbridge.dask.worker)",
    "worker-extra-args": "gridbridge's worker takes its settings from GridCluster arguments",
    "extra": "gridbridge's worker takes its settings from GridCluster arguments",
    "shebang": "gridbridge renders its own batch scripts",
    "log-directory": "attempt logs live under the attempt's storage prefix "
                     "(gridbridge logs JOB)",
    "job-directives-skip": "gridbridge renders its own directives",
    "job-cpu": "a job asks for its own cpus (the worker's cores)",
    "job-mem": "a job asks for its own memory (the worker's memory)",
    "resource-spec": "a job asks for its own cpus and memory (the worker's cores and memory)",
    "shared-temp-directory": "gridbridge's workers need no shared temporary directory",
    "memory-per-core-property-name": "a job asks for its own memory",
}
_SLURM_FLAGS = {"--qos": "qos", "-q": "qos", "--account": "account", "-A": "account",
                "--partition": "partition", "-p": "partition"}
_SITE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class JobqueueImport:
    """The result: ``config`` (a mapping ready to be written as ``gridbridge.yaml``) and one
    note per setting that was not carried over, or carried over with a caveat."""

    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_yaml(self) -> str:
        head = "# gridbridge.yaml made by `gridbridge config import-jobqueue`; check the notes\n"
        return head + yaml.safe_dump(self.config, sort_keys=False)


def default_jobqueue_path() -> Path:
    """Where dask looks for its configuration: ``$DASK_CONFIG`` or ``~/.config/dask``."""
    import os

    root = os.environ.get("DASK_CONFIG") or str(Path.home() / ".config" / "dask")
    return Path(root) / "jobqueue.yaml"


def load_jobqueue(path: str | Path) -> JobqueueImport:
    """Read a dask-jobqueue ``jobqueue.yaml`` (or every YAML/JSON file in a dask config folder,
    merged in dask's order) with dask's own loader, and convert it (see
    :func:`import_jobqueue`)."""
    p = Path(path)
    try:
        data = _read(p)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    return import_jobqueue(data, source=str(p))


def load_dask_config() -> JobqueueImport:
    """Convert what dask-jobqueue itself reads: dask's configuration as ``dask.config``
    collects it (every file under ``/etc/dask``, ``<prefix>/etc/dask``, ``~/.config/dask`` or
    ``$DASK_CONFIG``, then ``DASK_JOBQUEUE__...`` variables). Needs the dask extra."""
    import os

    import dask.config

    where = ", ".join([*dask.config.paths, "DASK_* variables"])
    try:
        data = dask.config.collect(paths=dask.config.paths, env=os.environ)
    except ValueError as exc:  # dask's words for a malformed file name the file
        raise ConfigError(f"dask's configuration: {exc}") from exc
    return import_jobqueue(data, source=f"dask's configuration ({where})")


def _read(p: Path) -> Any:
    """The file as dask reads it (a folder: its files merged in name order, as dask merges a
    config folder); without the dask extra, the one file as YAML."""
    try:
        import dask.config
    except ImportError:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    if not p.is_dir():
        p.open("rb").close()  # dask skips a file it cannot read; we say why
    return dask.config.merge(*dask.config.collect_yaml([str(p)]))


def import_jobqueue(data: Any, *, source: str = "<jobqueue.yaml>",
                    state_dir: str = "state") -> JobqueueImport:
    """Convert dask-jobqueue's configuration (the parsed YAML, with its ``jobqueue:`` top
    key) into a gridbridge configuration whose state lives under ``state_dir``."""
    if not isinstance(data, Mapping) or not isinstance(data.get("jobqueue"), Mapping):
        raise ConfigError(f"{source}: not a dask-jobqueue configuration (no 'jobqueue:' "
                          "mapping at the top)")
    notes: list[str] = []
    if any(key != "jobqueue" for key in data):
        others = ", ".join(sorted(str(k) for k in data if k != "jobqueue"))
        notes.append(f"{others}: dask's own settings, not gridbridge's; they still apply "
                     "wherever dask reads its configuration (e.g. ~/.config/dask on the "
                     "worker hosts)")
    sites: list[dict[str, Any]] = []
    for kind, section in data["jobqueue"].items():
        if kind == "gridbridge":  # GridCluster's own section: dask reads it as it is
            if _set(section):
                notes.append("jobqueue.gridbridge: GridCluster's own defaults; dask applies "
                             "them when a GridCluster starts, so they stay where they are")
            continue
        if kind not in KINDS:
            if _set(section):
                notes.append(f"jobqueue.{kind}: gridbridge has no {kind} adapter; only "
                             f"{' and '.join(KINDS)} sections are carried over")
            continue
        if not isinstance(section, Mapping):
            raise ConfigError(f"{source}: jobqueue.{kind}: must be a mapping of settings")
        section = _canonical(section)
        if section.get("cores") in (None, ""):
            if _set(section):
                notes.append(f"jobqueue.{kind}: no 'cores', so no job size to make a site "
                             "from; skipped")
            continue
        sites.append(_site(kind, section, source, notes))
    if not sites:
        raise ConfigError(f"{source}: no jobqueue.slurm or jobqueue.pbs section with 'cores' "
                          "set: nothing to make a site from")
    config: dict[str, Any] = {
        "state_url": f"sqlite:///{state_dir}/gridbridge.db",
        "checkpoint_root": f"{state_dir}/checkpoints",
        "workdir": f"{state_dir}/run",
        "sites": sites,
    }
    parse_config(config, source=f"the import of {source}")  # what we write must validate
    return JobqueueImport(config, notes)


def _canonical(section: Mapping[str, Any]) -> dict[str, Any]:
    """Keys as dask-jobqueue's file spells them: dask's config reads ``job_extra_directives``
    and ``job-extra-directives`` as one setting (``dask.config.canonical_name``), so do we."""
    return {str(k).replace("_", "-"): v for k, v in section.items()}


def _set(section: Any) -> bool:
    """Whether a section sets anything beyond dask-jobqueue's defaults."""
    if not isinstance(section, Mapping):
        return section is not None
    return any(v not in (None, [], {}, "") and _DEFAULTS.get(k, object()) != v
               for k, v in section.items() if k != "walltime")


def _site(kind: str, s: Mapping[str, Any], source: str, notes: list[str]) -> dict[str, Any]:
    where = f"jobqueue.{kind}"
    queue = s.get("queue")
    name = _SITE_NAME.sub("-", f"{kind}-{queue}" if queue else kind).strip("-.")[:63]
    cores = _int(s.get("cores"), f"{source}: {where}.cores")
    site: dict[str, Any] = {"name": name, "adapter": kind, "tier": "hpc",
                            "capacity": {"cpus": cores}}
    memory = s.get("memory")
    if memory not in (None, ""):
        site["capacity"]["memory_gb"] = _gigabytes(memory, f"{source}: {where}.memory")
    notes.append(f"{where}: capacity is one job's worth ({cores} core"
                 f"{'s' if cores != 1 else ''}); dask-jobqueue does "
                 "not say how much of the queue you may use, so raise capacity.cpus to that")
    notes.append(f"{where}: dask-jobqueue has no prices; set price (per_core_hour, or an "
                 "allocation) or placement takes this site as free")
    walltime = s.get("walltime")
    if walltime not in (None, ""):
        site["max_walltime_s"] = _seconds(str(walltime), f"{source}: {where}.walltime")
    # dask-jobqueue runs from a login node whose filesystem the compute nodes share
    runtime: dict[str, Any] = {"shared_filesystem": True}
    notes.append(f"{where}: runtime.shared_filesystem: true, as dask-jobqueue assumes; run "
                 "gridbridge on the cluster's shared filesystem, or set checkpoint_root to "
                 "object storage (s3://...)")
    prologue = [*(s.get("job-script-prologue") or []), *(s.get("env-extra") or [])]
    if prologue:
        runtime["prologue"] = [str(line) for line in prologue]
    if s.get("python"):
        runtime["python"] = str(s["python"])
    site["runtime"] = runtime
    # a batch system's reply can be lost, and neither adapter can adopt by attempt id
    site["uncertain_submit"] = "replace"
    notes.append(f"{where}: uncertain_submit: replace (a submission left in doubt is "
                 "given up and the worker placed again; 'resubmit' is the other choice)")
    options = (_slurm_options if kind == "slurm" else _pbs_options)(s, where, notes)
    if options:
        site["options"] = options
    _note_rest(s, where, notes)
    return site


def _slurm_options(s: Mapping[str, Any], where: str, notes: list[str]) -> dict[str, Any]:
    found: dict[str, str] = {}
    for directive in [*(s.get("job-extra-directives") or []), *(s.get("job-extra") or [])]:
        flag, value = _flag(str(directive))
        key = _SLURM_FLAGS.get(flag)
        if key is None or not value:
            notes.append(f"{where}.job-extra-directives: {directive!r} not carried over: "
                         "gridbridge's slurm adapter takes no free-form #SBATCH lines (it "
                         "knows partition, account and qos)")
            continue
        found[key] = value
    options: dict[str, Any] = {}
    partition = s.get("queue") or found.get("partition")
    if partition:
        options["partitions"] = {str(partition): {}}
    account = s.get("account") or s.get("project") or found.get("account")
    if account:
        options["account"] = str(account)
    if found.get("qos"):
        options["qos"] = found["qos"]
    return options


def _pbs_options(s: Mapping[str, Any], where: str, notes: list[str]) -> dict[str, Any]:
    for directive in [*(s.get("job-extra-directives") or []), *(s.get("job-extra") or [])]:
        notes.append(f"{where}.job-extra-directives: {directive!r} not carried over: "
                     "gridbridge's pbs adapter takes no free-form #PBS lines (it knows queue "
                     "and account)")
    options: dict[str, Any] = {}
    if s.get("queue"):
        options["queue"] = str(s["queue"])
    account = s.get("account") or s.get("project")
    if account:
        options["account"] = str(account)
    return options


def _note_rest(s: Mapping[str, Any], where: str, notes: list[str]) -> None:
    for key, value in s.items():
        if value in (None, [], {}, "") or _DEFAULTS.get(key, object()) == value or (
            key == "processes" and value == 1
        ):
            continue
        if key in _CLUSTER_ARGS:
            notes.append(f"{where}.{key}: {value!r} is a worker setting, not a site's: pass "
                         f"it as {_CLUSTER_ARGS[key]}")
        elif key in _IGNORED:
            notes.append(f"{where}.{key}: {value!r} not carried over: {_IGNORED[key]}")


def _flag(directive: str) -> tuple[str, str]:
    parts = shlex.split(directive)
    if not parts:
        return "", ""
    flag, _, value = parts[0].partition("=")
    if not value and len(parts) > 1:
        value = parts[1]
    return flag, value


def _int(value: Any, what: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: {value!r} is not a whole number of cores") from None
    if n < 1:
        raise ConfigError(f"{what}: {n} cores; it must be at least 1")
    return n


def _gigabytes(value: Any, what: str) -> float:
    """dask's memory strings ('109 GB', '4GiB', '500MB') or a number of bytes, as a
    ``memory_gb`` (GiB, as Slurm and PBS count it; dask-jobqueue asks them in GiB too), rounded
    up to a hundredth as :class:`~gridbridge.dask.GridCluster` rounds a worker's, so a worker
    of the imported size fits."""
    try:
        n_bytes = parse_memory(value)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    return math.ceil(gib(n_bytes) * 100) / 100


def _seconds(text: str, what: str) -> float:
    """Slurm's and PBS's time formats: [D-]HH:MM:SS, MM:SS, or minutes."""
    seconds = parse_duration(text)
    if seconds is None:
        raise ConfigError(f"{what}: {text!r} is not a walltime like '01:30:00' or '2-00:00:00'")
    return seconds
