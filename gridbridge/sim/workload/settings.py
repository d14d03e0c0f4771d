"""The simulated federation (``--sites YAML``): its sites and the job model, with defaults.

Invariant: the file is validated as a whole by frozen pydantic models that forbid unknown
fields, so a misspelt key fails and names the valid ones; every default is written here and in
docs/simulate.md, and nothing is read from the trace being replayed except the HPC size when
``hpc.cores`` is left out (the trace header's ``MaxProcs``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from gridbridge.frozen import Frozen

__all__ = ["AvailabilityFile", "CloudSite", "EdgeSite", "HpcSite", "JobModel", "SimSites",
           "SitesError", "load_sites"]


class HpcSite(Frozen):
    """An HPC cluster with an EASY-backfill queue and a rate card."""

    name: str = "hpc"
    cores: Annotated[int, Field(ge=1)] | None = None
    """Default: the trace header's ``MaxProcs`` (the machine it was recorded on)."""
    per_core_hour: Annotated[float, Field(ge=0)] = 0.01
    """The rate card: dollars per core-hour held (after any allocation)."""
    allocation_core_hours: Annotated[float, Field(ge=0)] = 0.0
    """Prepaid core-hours at zero marginal cost; ``per_core_hour`` applies once they are used."""
    max_walltime_s: Annotated[float, Field(gt=0)] | None = None
    """The cluster's time limit: a longer job runs in several attempts (checkpointing at the
    limit, queued again). None: no limit."""
    restart_overhead_s: Annotated[float, Field(ge=0)] = 60.0


class AvailabilityFile(Frozen):
    """A real spot availability trace replayed for one (type, zone) instead of Poisson draws."""

    file: str
    instance_type: str
    zone: str
    nodes: Annotated[int, Field(ge=1)] | None = None


class CloudSite(Frozen):
    """EC2 in the price history's region: spot per (type, zone), on-demand per type."""

    spot_site: str = "spot"
    on_demand_site: str = "on-demand"
    spot: bool = True
    on_demand: bool = True
    region: str | None = None
    """The on-demand table's region when no spot price history names one (default us-east-1)."""
    families: tuple[str, ...] = ("c5", "m5", "r5", "c4", "m4")
    """Instance families offered (every size the price table lists, bare metal excepted)."""
    types: tuple[str, ...] | None = None
    """An explicit list of instance types; wins over ``families``."""
    restart_overhead_s: Annotated[float, Field(ge=0)] = 120.0
    """Boot, install and restore from the checkpoint after an interruption."""
    unknown_bucket: Annotated[int, Field(ge=0, le=4)] = 4
    """Spot Advisor bucket assumed for a type the advisor file lacks (4: the worst)."""
    availability: tuple[AvailabilityFile, ...] = ()


class EdgeSite(Frozen):
    """A pool of edge cores: no queue, an amortised price, flaps as interruptions."""

    name: str = "edge"
    cores: Annotated[int, Field(ge=1)]
    per_core_hour: Annotated[float, Field(ge=0)] = 0.0
    interruptions_per_hour: Annotated[float, Field(ge=0)] = 0.0
    restart_overhead_s: Annotated[float, Field(ge=0)] = 60.0


class JobModel(Frozen):
    """How the replayed jobs behave: checkpoints, deadlines, memory, scheduling rounds."""

    checkpoint_interval_s: Annotated[float, Field(gt=0)] = 3600.0
    """The jobs' own interval; placement shortens it to Young's optimum where that is shorter."""
    checkpoint_cost_s: Annotated[float, Field(ge=0)] = 30.0
    """Wall time each checkpoint takes (held and billed, no work done)."""
    deadline_factor: Annotated[float, Field(gt=0)] = 3.0
    """Deadline = submit + ``round_s`` + factor x requested time."""
    memory_gb_per_core: Annotated[float, Field(gt=0)] = 1.0
    """For traces that record no memory."""
    round_s: Annotated[float, Field(ge=0)] = 60.0
    """Pending jobs are placed in rounds at most this often (0: at every arrival)."""


class SimSites(Frozen):
    """The whole simulated federation; a site section set to null is left out."""

    hpc: HpcSite | None = HpcSite()
    cloud: CloudSite | None = CloudSite()
    edge: tuple[EdgeSite, ...] = ()
    jobs: JobModel = JobModel()

    @model_validator(mode="after")
    def _names_differ(self) -> SimSites:
        names = [*([self.hpc.name] if self.hpc else []),
                 *([self.cloud.spot_site, self.cloud.on_demand_site] if self.cloud else []),
                 *(e.name for e in self.edge)]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"site names must differ; used twice: {', '.join(twice)}")
        return self


class SitesError(ValueError):
    """A sites file that is not valid: the message names the file and the field."""


def load_sites(path: str | Path | None) -> SimSites:
    """The federation from a YAML file (None: the defaults)."""
    if path is None:
        return SimSites()
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise SitesError(f"{p}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise SitesError(f"{p}: not YAML: {exc}") from None
    try:
        return SimSites.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(e["loc"], e["msg"], e["type"]) for e in exc.errors())
        raise SitesError(f"{p}: {problems}") from None


def _problem(loc: tuple[int | str, ...], msg: str, kind: str) -> str:
    where = ".".join(str(x) for x in loc) or "(top)"
    if kind != "extra_forbidden":
        return f"{where}: {msg}"
    names = [x for x in loc[:-1] if isinstance(x, str)]
    model: type[BaseModel] = SimSites
    for name in names:
        model = _SECTIONS.get(name, model)
    return f"{where}: unknown field; valid: {', '.join(model.model_fields)}"


_SECTIONS: dict[str, type[BaseModel]] = {"hpc": HpcSite, "cloud": CloudSite, "edge": EdgeSite,
                                         "jobs": JobModel, "availability": AvailabilityFile}
