"""The job commands: ``submit``, ``status``, ``explain``, ``logs``, ``cancel``.

Invariant: an unknown job id is an error (exit 2) before anything is printed; times are
written as :func:`gridbridge.units.fmt_time` writes them, and JSON/CSV carry numbers.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from gridbridge.spec import Tier, env_name_problem
from gridbridge.states import JobState
from gridbridge.units import fmt_money, fmt_time
from gridbridge.views import Format, emit, plain

from ._common import FormatOpt, client, console, err, remote

if TYPE_CHECKING:
    from gridbridge.client import Client

__all__ = ["cancel", "explain", "logs", "status", "submit"]


def submit(
    ctx: typer.Context,
    command: Annotated[list[str], typer.Argument(help="the command, after --")],
    name: Annotated[str | None, typer.Option(help="job name", show_default=False)] = None,
    cpus: Annotated[int, typer.Option(min=1, help="CPU cores per attempt")] = 1,
    memory_gb: Annotated[float, typer.Option(min=0, help="memory per attempt (GB)")] = 1.0,
    gpus: Annotated[int, typer.Option(min=0, help="GPUs per attempt")] = 0,
    walltime_s: Annotated[float, typer.Option(
        min=0, help="the longest one attempt may run (s)")] = 3600.0,
    expected_runtime_s: Annotated[float | None, typer.Option(
        min=0, help="how long the job should take (s; costs and budgets are estimated from "
        "it; default: the walltime)", show_default=False)] = None,
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
    resumable: Annotated[bool, typer.Option(
        "--resumable", help="the job checkpoints and resumes, so it may run on a site whose "
        "walltime is shorter than its own, in several attempts")] = False,
    policy: Annotated[str | None, typer.Option(
        help="placement policy for this job: cheapest, fastest, balanced or deadline",
        show_default=False)] = None,
    user: Annotated[str | None, typer.Option(
        help="who pays: user (default: you)", show_default=False)] = None,
    team: Annotated[str | None, typer.Option(
        help="who pays: team (default: default)", show_default=False)] = None,
    project: Annotated[str | None, typer.Option(
        help="who pays: project (default: default)", show_default=False)] = None,
    chdir: Annotated[str | None, typer.Option(
        help="run in this folder on every site (default: this folder where the site shares "
             "it, else the attempt's scratch folder)", show_default=False)] = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="wait until the job ends (without --url: running a reconciler here)")
    ] = False,
) -> None:
    """Submit a command: gridbridge submit --cpus 2 -- python train.py

    The command runs in this folder on sites that share this host's files (local sites,
    runtime.shared_filesystem: true), elsewhere in its scratch folder; --chdir names one."""
    made = client(ctx, start=wait)
    options: dict[str, Any] = dict(cpus=cpus, memory_gb=memory_gb, gpus=gpus,
                                   walltime_s=walltime_s, max_attempts=max_attempts,
                                   priority=priority, max_cost=max_cost, env=_env(env))
    if expected_runtime_s is not None:
        options["resources"] = {"expected_runtime_s": expected_runtime_s}
    options["owner"] = {k: v for k, v in (("user", user), ("team", team),
                                          ("project", project)) if v}
    if policy:
        options["policy"] = {"name": policy}
    if name:
        options["name"] = name
    constraints = {k: v for k, v in (("allowed_sites", site), ("denied_sites", deny_site),
                                     ("tiers", tier)) if v}
    if constraints:
        options["constraints"] = constraints
    checkpoint = {k: v for k, v in (("url", checkpoint_url),
                                    ("interval_s", checkpoint_interval_s),
                                    ("resumable", resumable or None)) if v is not None}
    if checkpoint:
        options["checkpoint"] = checkpoint
    if chdir is not None:
        options["chdir"] = os.path.abspath(chdir)
    elif not remote(ctx):
        _note_unshared_paths(made, command, site, deny_site)
    future = made.submit_command(command, **options)
    console.print(future.job_id)
    if wait:
        state = future.wait()
        _story(made, future.job_id)
        raise typer.Exit(0 if state == "SUCCEEDED" else 1)
    from gridbridge.scheduler.reconciler import LEASE

    if made.store.lease_holder(LEASE) is None:
        err.print("note: no reconciler is running on this store; start `gridbridge serve` "
                  "or submit with --wait")


def _note_unshared_paths(made: Client, command: list[str], allowed: list[str] | None,
                         denied: list[str] | None) -> None:
    """Say so when the command names a file of this folder and a site it may go to does not
    share this host's files: there it runs in its scratch folder, where the file is not."""
    from gridbridge.adapter import Capability

    relative = [a for a in command if not a.startswith("-") and not os.path.isabs(a)
                and os.path.exists(a)]
    unshared = [s.name for s in made.config.sites
                if (not allowed or s.name in allowed) and s.name not in (denied or ())
                and not s.shares_files(Capability.LOCAL_FILES
                                       in made.adapters[s.name].capabilities())]
    if relative and unshared:
        err.print(f"note: {relative[0]} is in this folder, which sites {', '.join(unshared)} "
                  "do not share: there the command runs in its scratch folder. Give --chdir "
                  "with a folder their hosts have, absolute paths, or --site",
                  highlight=False, markup=False, soft_wrap=True)


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
        help="only jobs with this name (a glob: 'dask-*')", show_default=False)] = None,
    watch: Annotated[float | None, typer.Option(
        min=0.5, metavar="SECONDS", help="show it again every SECONDS until Ctrl-C, as "
        "watch(1) does (tables only)", show_default=False)] = None,
) -> None:
    """All jobs as a table, newest first, or one job's story from its events. When more jobs
    match than --limit shows, stderr says how many are hidden."""
    made = client(ctx)
    if job is not None:
        made.store.job(job)  # an unknown id is an error
    if watch is None:
        _status(made, job, fmt, limit, state, {"user": user, "team": team, "name": name})
        return
    if fmt is not Format.TABLE:
        raise typer.BadParameter("refreshes a table; --format csv or json prints once, for "
                                 "a program to read", param_hint="'--watch'")
    try:
        while True:
            console.clear()
            console.print(f"every {watch:g} s: {fmt_time(time.time())} (Ctrl-C stops)",
                          style="dim", highlight=False)
            _status(made, job, fmt, limit, state, {"user": user, "team": team, "name": name})
            console.file.flush()
            time.sleep(watch)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _status(made: Client, job: str | None, fmt: Format, limit: int,
            state: list[JobState] | None, match: dict[str, str | None]) -> None:
    """What ``status`` shows once."""
    if job is not None:
        _story(made, job, fmt)
        return
    jobs = made.store.jobs(state or None, limit, user=match["user"], team=match["team"],
                           name=match["name"])
    total = len(jobs) if len(jobs) < limit else made.store.count_jobs(state or None, **match)
    details = made.store.details([j.id for j in jobs])
    sites = made.store.last_sites([j.id for j in jobs])
    rows = [{"job": j.id, "name": j.name, "state": j.state.value, "attempts": j.attempts,
             "site": sites.get(j.id, ""), "user": j.spec.owner.user, "team": j.spec.owner.team,
             "submitted": fmt_time(j.created_at), "why": details.get(j.id, "")} for j in jobs]
    emit(console, "jobs", ["job", "name", "state", "attempts", "site", "user", "team",
                           "submitted", "why"], rows, fmt,
         drop=("team", "attempts", "user", "submitted", "name"), notes=err)
    if not jobs and (state or any(match.values())):
        everything = made.store.count_jobs(None)
        err.print(f"no job matches; {everything} job(s) in the store, all filtered out by "
                  f"{_filters(state, match)}", highlight=False, markup=False, soft_wrap=True)
    if total > len(jobs):
        err.print(f"showing the newest {len(jobs)} of {total} jobs; "
                  f"{total - len(jobs)} hidden (raise --limit or filter)",
                  highlight=False, markup=False)


def _filters(state: list[JobState] | None, match: dict[str, str | None]) -> str:
    """The filters given to ``status``, as the user typed them."""
    given = [f"--{k} {plain(v)}" for k, v in match.items() if v is not None]
    given += [f"--state {s.value.lower()}" for s in state or ()]
    return " ".join(given)


def _env(pairs: list[str] | None) -> dict[str, str]:
    """``--env KEY=VALUE`` pairs as a mapping; an error names the variable, never a value
    (the job's environment holds its secrets)."""
    env = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter("not KEY=VALUE (a value is never shown)",
                                     param_hint="'--env'")
        problem = env_name_problem(key)
        if problem:
            raise typer.BadParameter(problem, param_hint="'--env'")
        env[key] = value
    return env


def _story(made: Client, job_id: str, fmt: Format = Format.TABLE) -> None:
    rows = [{"time": fmt_time(e.at), "attempt": e.attempt_id or "", "what": e.kind,
             "from": e.old, "to": e.new, "why": e.reason} for e in made.store.events(job_id)]
    emit(console, f"job {job_id}", ["time", "attempt", "what", "from", "to", "why"], rows, fmt)


def explain(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="the job id")],
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """The latest placement decision for a job: every candidate site, its expected cost and
    finish, and why it won or lost."""
    made = client(ctx)
    made.store.job(job)  # an unknown id is an error
    rows = made.store.decisions(job)
    if not rows:
        console.print(plain(f"{job}: no placement decision yet ({made.store.detail(job)})"),
                      markup=False, highlight=False)
        return
    latest = [r for r in rows if r.at == rows[-1].at]
    emit(console, f"job {job}: attempt {latest[0].attempt}, decided {fmt_time(latest[0].at)}",
         ["site", "offer", "chosen", "feasible", "expected_cost", "expected_finish", "why"],
         [{"site": r.site, "offer": r.offer_key or "", "chosen": r.chosen,
           "feasible": r.feasible, "expected_cost": r.expected_cost if fmt is not Format.TABLE
           else fmt_money(r.expected_cost), "expected_finish": fmt_time(r.expected_finish),
           "why": r.reason} for r in latest], fmt,
         drop=("feasible", "expected_finish", "offer", "chosen"), notes=err)


def logs(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="the job id")],
    raw: Annotated[bool, typer.Option(
        help="print the output as the job wrote it, escape sequences and all (they can "
        "move the cursor or retitle the terminal)")] = False,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="go on printing what the job writes, as each heartbeat "
        "uploads it, until the job ends (as tail -f; Ctrl-C stops following, not the job)")
    ] = False,
) -> None:
    """Every attempt's output; control characters are shown escaped (\\x1b) unless --raw."""
    from gridbridge.logview import escaped

    made = client(ctx)
    made.store.job(job)  # an unknown id is an error
    if not follow and not made.store.attempts(job):
        err.print(plain(f"job {job} has no attempts yet, so no output ({made.store.detail(job)})"),
                  highlight=False, markup=False, soft_wrap=True)
        return
    # streamed: a huge log fits in memory; over --url, checked by the service
    pieces = made.iter_logs(job, follow=follow)
    try:
        for piece in pieces if raw else escaped(pieces):
            console.file.write(piece)
            if follow:
                console.file.flush()
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    console.file.write("\n")


def cancel(ctx: typer.Context, job: Annotated[str, typer.Argument(help="the job id")]) -> None:
    """Cancel a job (its running attempt gets SIGTERM, then SIGKILL after the grace period)."""
    j = client(ctx).store.request_cancel(job)
    if j.state.terminal:  # as scancel: nothing to cancel is an error
        err.print(f"error: job {job} already ended {j.state.value}; nothing to cancel",
                  highlight=False, markup=False)
        raise typer.Exit(1)
    console.print(f"{job}: cancel requested")
