"""The ``gridbridge`` command line: submit, watch, cancel, serve, report.

Every command takes ``--config gridbridge.yaml`` (or ``$GRIDBRIDGE_CONFIG``); without one it
works on the embedded default under ``$GRIDBRIDGE_HOME`` or the per-user data folder.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console

from gridbridge.adapter import BootstrapAdapter, Capability, CheckAdapter
from gridbridge.config import ConfigError, config_schema
from gridbridge.report_cli import app as report_app
from gridbridge.spec import Tier
from gridbridge.states import JobState
from gridbridge.views import Format, emit, fmt_money, fmt_time

if TYPE_CHECKING:
    from gridbridge.client import Client

__all__ = ["app", "main"]

app = typer.Typer(help="gridbridge: one job, the cheapest site that can run it, resumed "
                  "from its checkpoint when preempted.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
sites_app = typer.Typer(help="The sites of the federation.", no_args_is_help=True)
config_app = typer.Typer(help="The gridbridge.yaml file.", no_args_is_help=True)
debug_app = typer.Typer(help="Tools for exercising failure paths.", no_args_is_help=True)
app.add_typer(sites_app, name="sites")
app.add_typer(report_app, name="report")
app.add_typer(config_app, name="config")
app.add_typer(debug_app, name="debug")
simulate_app = typer.Typer(help="What-if replays of real traces against a simulated federation.")
app.add_typer(simulate_app, name="simulate")

console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Optional[Path], typer.Option(  # noqa: UP045 - typer needs Optional
    "--config", "-c", envvar="GRIDBRIDGE_CONFIG", help="gridbridge.yaml (default: embedded)",
    show_default=False)]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, csv or json")]


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.out(f"gridbridge {version('gridbridge')}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    config: ConfigOpt = None,
    _version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True, expose_value=True,
        help="print the version and exit")] = False,
) -> None:
    ctx.obj = {"config_path": config,  # a subcommand's own --config replaces it
               "checkpoint_url_of": lambda job: _client(ctx).store.job(job).checkpoint_url,
               "configured_root": lambda: _client(ctx).config.checkpoint_root}


def _client(ctx: typer.Context, start: bool = False) -> Client:
    from gridbridge.client import Client

    cached = ctx.obj.get("client")
    if cached is not None and not start:
        return cached  # type: ignore[no-any-return]
    client = Client(ctx.obj.get("config_path"), start=start)
    ctx.obj["client"] = client
    ctx.obj["checkpoint_root"] = client.config.checkpoint_root
    ctx.call_on_close(client.close)
    return client


@app.command()
def submit(
    ctx: typer.Context,
    command: Annotated[list[str], typer.Argument(help="the command, after --")],
    name: Annotated[str | None, typer.Option(help="job name", show_default=False)] = None,
    cpus: Annotated[int, typer.Option(min=1, help="CPU cores per attempt")] = 1,
    memory_gb: Annotated[float, typer.Option(min=0, help="memory per attempt (GB)")] = 1.0,
    gpus: Annotated[int, typer.Option(min=0, help="GPUs per attempt")] = 0,
    walltime_s: Annotated[float, typer.Option(
        min=0, help="the longest one attempt may run (s)")] = 3600.0,
    site: Annotated[list[str] | None, typer.Option(
        help="a site the job may run on (repeat; default: any)", show_default=False)] = None,
    deny_site: Annotated[list[str] | None, typer.Option(
        help="a site the job must not run on (repeat)", show_default=False)] = None,
    tier: Annotated[list[Tier] | None, typer.Option(
        case_sensitive=False, help="a tier the job may run on (repeat; default: all)",
        show_default=False)] = None,
    max_attempts: Annotated[int, typer.Option(
        min=1, help="attempts the job may use (preemptions that advanced its checkpoint "
        "not counted)")] = 5,
    priority: Annotated[int, typer.Option(help="higher is placed first")] = 0,
    max_cost: Annotated[float | None, typer.Option(
        min=0, help="the most the job may cost ($)", show_default=False)] = None,
    env: Annotated[list[str] | None, typer.Option(
        help="KEY=VALUE in the job's environment (repeat)", show_default=False)] = None,
    checkpoint_url: Annotated[str | None, typer.Option(
        help="the job's checkpoint prefix (default: <checkpoint_root>/<job id>)",
        show_default=False)] = None,
    checkpoint_interval_s: Annotated[float | None, typer.Option(
        min=0, help="how often the job should checkpoint (s; default: 600)",
        show_default=False)] = None,
    policy: Annotated[str | None, typer.Option(
        help="placement policy for this job: cheapest, fastest, balanced or deadline",
        show_default=False)] = None,
    user: Annotated[str | None, typer.Option(
        help="who pays: user (default: you)", show_default=False)] = None,
    team: Annotated[str | None, typer.Option(
        help="who pays: team (default: default)", show_default=False)] = None,
    project: Annotated[str | None, typer.Option(
        help="who pays: project (default: default)", show_default=False)] = None,
    wait: Annotated[bool, typer.Option(help="run a reconciler here until the job ends")] = False,
) -> None:
    """Submit a command: gridbridge submit --cpus 2 -- python train.py"""
    client = _client(ctx, start=wait)
    options: dict[str, Any] = dict(cpus=cpus, memory_gb=memory_gb, gpus=gpus,
                                   walltime_s=walltime_s, max_attempts=max_attempts,
                                   priority=priority, max_cost=max_cost, env=_env(env))
    owner = {k: v for k, v in (("user", user), ("team", team), ("project", project)) if v}
    options["owner"] = owner
    if policy:
        options["policy"] = {"name": policy}
    if name:
        options["name"] = name
    constraints: dict[str, Any] = {}
    if site:
        constraints["allowed_sites"] = site
    if deny_site:
        constraints["denied_sites"] = deny_site
    if tier:
        constraints["tiers"] = tier
    if constraints:
        options["constraints"] = constraints
    checkpoint = {k: v for k, v in (("url", checkpoint_url),
                                    ("interval_s", checkpoint_interval_s)) if v is not None}
    if checkpoint:
        options["checkpoint"] = checkpoint
    future = client.submit_command(command, **options)
    console.print(future.job_id)
    if wait:
        state = future.wait()
        _story(client, future.job_id)
        raise typer.Exit(0 if state == "SUCCEEDED" else 1)
    from gridbridge.scheduler.reconciler import LEASE

    holder = client.store.lease_holder(LEASE)
    if holder is None:
        err.print("note: no reconciler is running on this store; start `gridbridge serve` "
                  "or submit with --wait")


@app.command()
def status(
    ctx: typer.Context,
    job: Annotated[Optional[str], typer.Argument(help="a job id for its whole story")] = None,  # noqa: UP045
    fmt: FormatOpt = Format.TABLE,
    limit: Annotated[int, typer.Option(min=1, help="show the newest N matching jobs")] = 50,
    state: Annotated[list[JobState] | None, typer.Option(
        case_sensitive=False, help="only jobs in this state (repeat)", show_default=False)] = None,
    user: Annotated[str | None, typer.Option(
        help="only jobs this user submitted", show_default=False)] = None,
    team: Annotated[str | None, typer.Option(
        help="only jobs this team pays for", show_default=False)] = None,
    name: Annotated[str | None, typer.Option(
        help="only jobs with this name", show_default=False)] = None,
) -> None:
    """All jobs as a table, newest first, or one job's story from its events. When more jobs
    match than --limit shows, stderr says how many are hidden."""
    client = _client(ctx)
    if job is not None:
        client.store.job(job)  # an unknown id is an error
        _story(client, job, fmt)
        return
    match = {"user": user, "team": team, "name": name}
    jobs = client.store.jobs(state or None, limit, **match)
    total = len(jobs) if len(jobs) < limit else client.store.count_jobs(state or None, **match)
    details = client.store.details([j.id for j in jobs])
    sites = client.store.last_sites([j.id for j in jobs])
    rows = []
    for j in jobs:
        rows.append({"job": j.id, "name": j.name, "state": j.state.value,
                     "attempts": j.attempts, "site": sites.get(j.id, ""),
                     "user": j.spec.owner.user, "team": j.spec.owner.team,
                     "submitted": fmt_time(j.created_at), "why": details.get(j.id, "")})
    emit(console, "jobs", ["job", "name", "state", "attempts", "site", "user", "team",
                           "submitted", "why"], rows, fmt)
    if total > len(jobs):
        err.print(f"showing the newest {len(jobs)} of {total} jobs; "
                  f"{total - len(jobs)} hidden (raise --limit or filter)",
                  highlight=False, markup=False)


def _env(pairs: list[str] | None) -> dict[str, str]:
    env = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="'--env'")
        env[key] = value
    return env


def _story(client: Client, job_id: str, fmt: Format = Format.TABLE) -> None:
    rows = [{"time": fmt_time(e.at), "attempt": e.attempt_id or "", "what": e.kind,
             "from": e.old, "to": e.new, "why": e.reason} for e in client.store.events(job_id)]
    emit(console, f"job {job_id}", ["time", "attempt", "what", "from", "to", "why"], rows, fmt)


@app.command()
def explain(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="the job id")],
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """The latest placement decision for a job: every candidate site, its expected cost and
    finish, and why it won or lost."""
    client = _client(ctx)
    client.store.job(job)  # an unknown id is an error
    rows = client.store.decisions(job)
    if not rows:
        console.print(f"{job}: no placement decision yet ({client.store.detail(job)})")
        return
    latest = [r for r in rows if r.at == rows[-1].at]
    emit(console, f"job {job}: attempt {latest[0].attempt}, decided {fmt_time(latest[0].at)}",
         ["site", "offer", "chosen", "feasible", "expected_cost", "expected_finish", "why"],
         [{"site": r.site, "offer": r.offer_key or "", "chosen": r.chosen,
           "feasible": r.feasible, "expected_cost": r.expected_cost if fmt is not Format.TABLE
           else fmt_money(r.expected_cost), "expected_finish": fmt_time(r.expected_finish),
           "why": r.reason} for r in latest], fmt)


@app.command()
def logs(ctx: typer.Context, job: Annotated[str, typer.Argument(help="the job id")]) -> None:
    """Every attempt's output."""
    client = _client(ctx)
    client.store.job(job)  # an unknown id is an error
    console.out(client.logs(job), highlight=False)


@app.command()
def cancel(ctx: typer.Context, job: Annotated[str, typer.Argument(help="the job id")]) -> None:
    """Cancel a job (its running attempt gets SIGTERM, then SIGKILL after the grace period)."""
    j = _client(ctx).store.request_cancel(job)
    console.print(f"{job}: {'cancel requested' if not j.state.terminal else j.state.value}")


@sites_app.command("list")
def sites_list(
    ctx: typer.Context,
    fmt: FormatOpt = Format.TABLE,
    timeout_s: Annotated[float, typer.Option(help="how long to wait for each site")] = 10.0,
) -> None:
    """Sites with their live offers (free capacity, price, preemption rate) and their health
    as the reconciler last saw it."""
    from gridbridge.scheduler.sitecalls import SiteCalls

    client = _client(ctx)
    health = client.store.site_health()
    calls = SiteCalls([s.name for s in client.config.sites], timeout_s)
    answers = calls.run("offers", {name: a.offers for name, a in client.adapters.items()})
    calls.close()
    money = fmt_money if fmt is Format.TABLE else (lambda x: x)  # JSON and CSV: numbers
    rows: list[dict[str, Any]] = []
    for site in client.config.sites:
        h = health.get(site.name)
        state = "unknown" if h is None else ("healthy" if h.healthy else "degraded")
        base = {"site": site.name, "adapter": site.adapter, "tier": site.tier.value,
                "health": state, "since": fmt_time(h.since) if h else "",
                "last_error": "" if h is None or h.healthy else f"{h.phase}: {h.error}"}
        if site.name not in answers:
            rows.append({**base, "note": f"offers: {calls.outcomes[site.name].error}"})
            continue
        for o in answers[site.name]:
            rows.append({**base, "offer": o.key, "free_cpus": o.cpus, "free_gpus": o.gpus,
                         "price_core_h": money(o.price.per_core_hour),
                         "price_h": money(o.price.per_hour), "preemptible": o.preemptible,
                         "preempt_per_h": o.preemption_rate_per_hour, "note": o.note})
    emit(console, "sites", ["site", "adapter", "tier", "health", "since", "last_error",
                            "offer", "free_cpus", "free_gpus", "price_core_h", "price_h",
                            "preemptible", "preempt_per_h", "note"], rows, fmt)


@sites_app.command("check")
def sites_check(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="the site's name")],
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Check a site's hosts: per node (edge sites) reachable, host key, the Python and
    gridbridge versions there, free resources and round-trip time; for other sites, whether
    the site answers and what it offers. Exits 1 when something is unreachable."""
    client = _client(ctx)
    names = [s.name for s in client.config.sites]
    if site not in client.adapters:
        err.print(f"error: no site {site!r}; valid choices: {', '.join(names)}")
        raise typer.Exit(2)
    adapter = client.adapters[site]
    rows: list[dict[str, Any]] = []
    if Capability.CHECK in adapter.capabilities() and isinstance(adapter, CheckAdapter):
        for c in adapter.check():
            rows.append({**c.model_dump(), "host_key_ok": _yes_no(c.host_key_ok),
                         "reachable": _yes_no(c.reachable)})
        columns = ["node", "reachable", "host_key_ok", "python", "gridbridge", "cpus",
                   "memory_gb", "rtt_ms", "error"]
    else:
        try:
            offers = adapter.offers()
            rows = [{"offer": o.key, "reachable": "yes", "free_cpus": o.cpus,
                     "memory_gb": round(o.memory_gb, 1), "error": ""} for o in offers]
        except Exception as exc:
            from gridbridge.scheduler.sitecalls import describe

            rows = [{"offer": "", "reachable": "no", "error": describe(exc)}]
        columns = ["offer", "reachable", "free_cpus", "memory_gb", "error"]
    emit(console, f"site {site}", columns, rows, fmt)
    if any(r["reachable"] != "yes" for r in rows):
        raise typer.Exit(1)


@sites_app.command("bootstrap")
def sites_bootstrap(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="the site's name")],
    fmt: FormatOpt = Format.TABLE,
    wheelhouse: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="wheels to install from (gridbridge, its dependencies, pip); default: built "
        "from the checkout gridbridge runs from", show_default=False)] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="where the built wheelhouse is kept (default: <workdir>/bootstrap)",
        show_default=False)] = None,
    base_python: Annotated[str, typer.Option(
        help="the interpreter on the nodes that makes the venv")] = "python3",
) -> None:
    """Install gridbridge on a site's bare nodes (edge sites): upload a wheelhouse, make the
    venv runtime.python names and pip install into it, without a package index on the nodes.
    Nodes that already have this version are left alone. Exits 1 when a node failed."""
    client = _client(ctx)
    names = [s.name for s in client.config.sites]
    if site not in client.adapters:
        err.print(f"error: no site {site!r}; valid choices: {', '.join(names)}")
        raise typer.Exit(2)
    target = client.adapters[site]
    if not (Capability.BOOTSTRAP in target.capabilities()
            and isinstance(target, BootstrapAdapter)):
        able = [n for n, a in client.adapters.items() if Capability.BOOTSTRAP in a.capabilities()]
        adapter = next(s.adapter for s in client.config.sites if s.name == site)
        err.print(f"error: site {site!r} (adapter {adapter}) has no bootstrap; only edge sites "
                  f"do{' (here: ' + ', '.join(able) + ')' if able else ''}")
        raise typer.Exit(2)
    report = target.bootstrap(wheelhouse=wheelhouse, cache_dir=cache_dir,
                              base_python=base_python)
    if report.wheelhouse:
        how = f"built in {report.build_s:g}s" if report.built else "cached" if (
            wheelhouse is None) else "given"
        err.print(f"wheelhouse ({how}): {report.wheelhouse}", highlight=False, markup=False)
    rows = [r.model_dump() for r in report.nodes]
    emit(console, f"site {site}: gridbridge {report.version}",
         ["node", "before", "after", "action", "seconds", "upload_s", "install_s", "detail",
          "error"], rows, fmt)
    if any(r.action == "failed" for r in report.nodes):
        raise typer.Exit(1)


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


@app.command()
def serve(
    ctx: typer.Context,
    log_format: Annotated[LogFormat, typer.Option(
        help="text lines, or one JSON object a line (time, level, logger, message and the "
        "event's fields)")] = LogFormat.TEXT,
) -> None:
    """Run the reconciler in the foreground over the configured store. It logs a line per
    placement, submission, attempt state change, site health change, lease change and its
    shutdown; a second serve on the same store stands by until the lease is free."""
    import time

    from gridbridge.clishell import log_handler
    from gridbridge.scheduler.reconciler import LEASE

    logging.basicConfig(level=logging.INFO, handlers=[log_handler(log_format.value)], force=True)
    log = logging.getLogger("gridbridge.serve")
    client = _client(ctx)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("gridbridge serve: %d sites, store %s", len(client.config.sites), client.store.url,
             extra={"event": "start", "sites": len(client.config.sites)})
    holder = client.store.lease_holder(LEASE)
    if holder is not None and holder[1] > time.time():
        log.info("standing by: %s holds the reconciler lease on this store (until %s); this "
                 "serve takes over when it stops or its lease lapses", holder[0],
                 fmt_time(holder[1]), extra={"event": "standby", "holder": holder[0]})
    client.reconciler.run(stop)


@config_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of gridbridge.yaml (generated from the models)."""
    import json

    console.out(json.dumps(config_schema(), indent=2), highlight=False)


@config_app.command("check")
def check(ctx: typer.Context) -> None:
    """Validate the configuration, then check that the checkpoint root and the state store
    can be written and that every site can reach the storage its jobs need."""
    from gridbridge.checks import (
        check_prologues,
        check_sites_reach_storage,
        check_storage_writable,
    )

    client = _client(ctx)
    config = client.config
    findings = [check_storage_writable(config.checkpoint_root), _state_writable(client)]
    findings += check_sites_reach_storage(config, client.adapters)
    findings += check_prologues(config)
    rows = [{"check": f.what, "ok": "yes" if f.ok else "NO", "detail": f.detail}
            for f in findings]
    emit(console, "config check", ["check", "ok", "detail"], rows)
    if not all(f.ok for f in findings):
        raise typer.Exit(1)
    console.print(f"ok: {len(config.sites)} sites: {', '.join(s.name for s in config.sites)}")


@config_app.command("import-jobqueue")
def import_jobqueue(
    path: Annotated[Optional[Path], typer.Argument(  # noqa: UP045 - typer needs Optional
        help="dask-jobqueue's jobqueue.yaml (default: ~/.config/dask/jobqueue.yaml)",
        show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--output", "-o", help="write gridbridge.yaml here (default: print it)",
        show_default=False)] = None,
) -> None:
    """Turn dask-jobqueue's configuration (slurm and pbs sections) into gridbridge.yaml
    sites; each setting that could not be carried over gets a note on stderr."""
    from gridbridge.jobqueue_import import default_jobqueue_path, load_jobqueue

    result = load_jobqueue(path or default_jobqueue_path())
    text = result.to_yaml()
    if output is None:
        console.out(text, highlight=False, end="")
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}: {len(result.config['sites'])} sites", highlight=False,
                  markup=False)
    for note in result.notes:
        err.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)


def _state_writable(client: Client) -> Any:
    from gridbridge.checks import Finding

    try:
        client.store.probe_write()
    except Exception as exc:
        return Finding("state_url", False, f"not writable: {type(exc).__name__}: {exc}")
    return Finding("state_url", True, "writable")


@debug_app.command("preempt")
def debug_preempt(
    ctx: typer.Context,
    attempt: Annotated[str, typer.Argument(help="the attempt id, JOB.N (see status JOB)")],
) -> None:
    """Deliver a real preemption to a running attempt (SIGTERM, grace, SIGKILL). An attempt
    that has ended is refused (exit 2)."""
    client = _client(ctx)
    a = client.store.attempt(attempt)
    try:
        if not a.state.active:
            raise RuntimeError(f"attempt {attempt} is {a.state.value}, not running: "
                               "only a running attempt can be preempted")
        if a.native_id is None:
            raise RuntimeError(f"attempt {attempt} has no native job yet")
        seen = client.adapters[a.site].poll([a.native_id]).get(a.native_id)
        if seen is not None and seen.state.terminal:  # ended since the reconciler last looked
            raise RuntimeError(f"attempt {attempt} has ended on {a.site} ({seen.state.value}): "
                               "only a running attempt can be preempted")
        client.preempt_attempt(a.site, a.native_id, wait=True)
    except RuntimeError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from None
    console.print(f"preempted {attempt} on {a.site}")


@simulate_app.command("deadline")
def simulate_deadline(
    availability: Annotated[list[Path], typer.Option(
        help="a spot-traces JSON file (.json or .json.gz), one zone; repeat for the zones "
        "of one region", exists=True, dir_okay=False, show_default=False)],
    job_hours: Annotated[list[float], typer.Option(help="job length (repeat)")] = [48.0],  # noqa: B006
    deadline_hours: Annotated[list[float], typer.Option(
        help="deadline after the start (repeat)")] = [52.0, 70.0],  # noqa: B006
    restart_hours: Annotated[list[float], typer.Option(
        help="restart overhead of each new instance (repeat)")] = [0.02, 0.05, 0.1],  # noqa: B006
    stride_hours: Annotated[float, typer.Option(help="hours between starts")] = 6.0,
    on_demand_price: Annotated[float, typer.Option(help="$/h")] = 3.06,
    spot_price: Annotated[float, typer.Option(help="$/h where a file has no prices")] = 0.9731,
    hpc_hours: Annotated[Optional[float], typer.Option(  # noqa: UP045
        help="offer an HPC tier with this allocation (hours)", show_default=False)] = None,
    hpc_price: Annotated[float, typer.Option(help="$/h inside the allocation")] = 0.0,
    hpc_overage_price: Annotated[Optional[float], typer.Option(  # noqa: UP045
        help="$/h beyond the allocation (default: on-demand)", show_default=False)] = None,
    hpc_wait_hours: Annotated[float, typer.Option(help="HPC queue wait")] = 0.0,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Replay one long job with a deadline on spot availability traces, started every
    --stride-hours: greedy, uniform-progress, gridbridge and omniscient, each file alone and
    (gridbridge, omniscient) all files as zones of one region. Cost is a fraction of
    on-demand only; gap_to_omniscient is mean cost / omniscient's - 1."""
    from rich.progress import Progress

    from gridbridge.scheduler import simulate_deadline as sim

    try:
        traces = [sim.load_trace(p) for p in availability]
        hpc = None if hpc_hours is None else sim.HpcTier(
            hpc_wait_hours, hpc_price, hpc_hours,
            on_demand_price if hpc_overage_price is None else hpc_overage_price)
        prices = sim.Prices(on_demand_price, spot_price, hpc)
        settings = [sim.Setting(j, d, r) for j in job_hours for d in deadline_hours
                    for r in restart_hours]
        with Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task("simulating", total=None)
            rows = sim.evaluate(traces, settings, prices, stride_hours,
                                lambda done, total: bar.update(task, completed=done,
                                                               total=total))
    except ValueError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if fmt is Format.TABLE:
        rows = [{**r, **{k: round(r[k], 4) for k in ("mean_cost_fraction", "gap_to_omniscient")
                         if r[k] is not None}, "mean_cost": fmt_money(r["mean_cost"])}
                for r in rows]
    emit(console, "deadline jobs on spot availability", [
        "policy", "zones", "traces", "job_hours", "deadline_hours", "restart_hours", "runs",
        "mean_cost_fraction", "deadline_misses", "gap_to_omniscient", "mean_cost"], rows, fmt)


@app.command()
def demo(
    steps: Annotated[int, typer.Option(min=100, help="training steps of the demo model")] = 3000,
    keep: Annotated[bool, typer.Option(help="keep the demo's state folder")] = False,
) -> None:
    """Train a small model on the embedded default, preempt it, resume it, check the weights."""
    from gridbridge.demo import run_demo

    raise typer.Exit(run_demo(console, steps=steps, keep=keep))


@simulate_app.callback(invoke_without_command=True)
def simulate(
    ctx: typer.Context,
    trace: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="an SWF workload trace (.swf or .swf.gz) to replay", show_default=False)] = None,
    spot_prices: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="spot price history CSV (one region)", show_default=False)] = None,
    spot_advisor: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="AWS Spot Advisor JSON (interruption buckets)", show_default=False)] = None,
    spot_availability: Annotated[Optional[list[Path]], typer.Option(  # noqa: UP045
        help="spot availability trace JSON to replay instead of Poisson draws (repeat)",
        show_default=False)] = None,
    ondemand: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="on-demand price table CSV (instance shapes and prices)", show_default=False)] = None,
    sites: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="YAML of the simulated federation (default: see docs/simulate.md)",
        show_default=False)] = None,
    policy: Annotated[str, typer.Option(help="a policy name, or all")] = "all",
    seed: Annotated[int, typer.Option(help="seeds the interruption draws")] = 0,
    fmt: FormatOpt = Format.TABLE,
    plots: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="write cost-over-time and turnaround plots (SVG) into this folder",
        show_default=False)] = None,
    limit: Annotated[Optional[int], typer.Option(  # noqa: UP045
        min=1, help="replay only the trace's first N jobs", show_default=False)] = None,
    store: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="also write the replay of --policy (one policy) into this new state store "
        "(e.g. sqlite:///whatif.db), for gridbridge report ... --store", show_default=False)
    ] = None,
) -> None:
    """Replay an SWF trace: every policy (gridbridge's placement and the hpc-only,
    on-demand-only and spot-greedy baselines) on the same trace, sites and seed."""
    if ctx.invoked_subcommand is not None:
        return
    if trace is None:
        err.print("error: give --trace SWF (or a subcommand; see --help)")
        raise typer.Exit(2)
    from gridbridge.scheduler.sim.command import run_command
    from gridbridge.scheduler.sim.run import Inputs

    inputs = Inputs(trace=str(trace), spot_prices=_opt(spot_prices),
                    spot_advisor=_opt(spot_advisor), ondemand=_opt(ondemand),
                    spot_availability=tuple(str(p) for p in spot_availability or ()),
                    sites=_opt(sites), limit=limit)
    run_command(inputs, policy, seed, fmt, plots, (console, err), store)


def _opt(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _mount_checkpoints() -> None:
    try:
        from gridbridge.checkpoint.cli import app as checkpoints_app
    except ImportError:
        return
    app.add_typer(checkpoints_app, name="checkpoints", help="Inspect and verify checkpoints.")


_mount_checkpoints()


def main() -> None:
    from gridbridge.clishell import fail, run, tidy
    from gridbridge.scheduler._db import StoreUnavailable

    try:
        code = run(tidy(typer.main.get_command(app)))
    except StoreUnavailable as exc:
        fail(f"{exc}; try again", 3)
    except ConfigError as exc:
        fail(str(exc))
    except (LookupError, ValueError) as exc:
        fail(str(exc))
    sys.exit(code)


if __name__ == "__main__":
    main()
