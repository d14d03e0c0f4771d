"""``gridbridge report ...``: finance's commands (costs, forecast, placements, html).

Invariant: they read the ledger and the placement decisions of the configured store, or of any
store given with ``--store`` (a simulator's what-if, say), and never write to it (nor make
one). Budgets, allocations and the currency come from the configuration. Over ``--url`` they
read the same through the service (``GET /v1/books``, ``/v1/ledger``, ``/v1/decisions``),
which shows a researcher only their own jobs' rows and their team's budget. The numbers come
from :mod:`gridbridge.reports`; this module only picks the rows and prints them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from gridbridge.reports import (
    FORECAST_COLUMNS,
    PLACEMENT_COLUMNS,
    Allocation,
    Every,
    GroupBy,
    Window,
    cost_report,
    cost_report_columns,
    csv_text,
    for_display,
    forecast,
    parse_instant,
    placements,
    placements_totals,
)
from gridbridge.units import fmt_time
from gridbridge.views import fit, json_text, left_out, plain, render

from ._common import client, console, err, remote
from ._shell import Group

if TYPE_CHECKING:
    from gridbridge.config import Budgets
    from gridbridge.scheduler.store import StateStore

__all__ = ["app"]

app = typer.Typer(cls=Group,
                  help="What was spent, where and by whom; budgets, forecast, placements.",
                  no_args_is_help=True)


class By(StrEnum):
    """``--by``: the ledger column rows are grouped by."""

    SITE = "site"
    TEAM = "team"
    PROJECT = "project"
    USER = "user"
    TIER = "tier"
    JOB = "job"
    JOB_ID = "job_id"
    """The same as ``job``: the ledger's column is ``job_id``, so both spellings work."""

    @property
    def group(self) -> GroupBy:
        return GroupBy.JOB if self in (By.JOB, By.JOB_ID) else GroupBy(self.value)


class ReportFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"
    HTML = "html"


PeriodOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045 - typer needs Optional
    "--period", "-p", help="A year (2026), month (2026-11) or day (2026-11-27), UTC.",
    show_default=False)]
SinceOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--since", help="Start (a date or ISO 8601 time, UTC); with --until instead of --period.",
    show_default=False)]
UntilOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--until", help="End, exclusive (default: now).", show_default=False)]
StoreOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--store", help="Read this state store (a SQLAlchemy URL, e.g. a simulator's "
    "sqlite:///whatif.db) instead of the configured one.", show_default=False)]
AtOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--at", help="Report as of this time instead of now (ISO 8601, UTC).",
    show_default=False)]


@dataclass
class _Books:
    """What a report reads: the budgets and allocations of the configuration (or, over
    ``--url``, of the service's: ``GET /v1/books``) and the store (or the service's reads)."""

    budgets: Budgets
    allocations: list[Allocation]
    store: StateStore
    now: float
    named: bool = False
    """The store was named with ``--store`` rather than configured."""

    @property
    def currency(self) -> str:
        return self.budgets.currency


def _books(ctx: typer.Context, store: str | None, at: str | None) -> _Books:
    from gridbridge.client import default_home
    from gridbridge.config import default_config, load_config
    from gridbridge.scheduler.store import StateStore
    from gridbridge.service._books import allocations, books_of

    now = parse_instant(at, "--at").timestamp() if at else time.time()
    if remote(ctx):
        if store is not None:
            raise ValueError("--store reads a store on this host; it does not go with --url")
        reads = client(ctx).store
        budgets, allocs = books_of(reads.books())  # type: ignore[attr-defined]
        return _Books(budgets, allocs, reads, now)
    path = (ctx.obj or {}).get("config_path")
    grid = load_config(path) if path else default_config(default_home())
    if store is None and not path:
        Path(default_home()).mkdir(parents=True, exist_ok=True)
    if store is not None and store.startswith("sqlite:///"):
        file = Path(store.removeprefix("sqlite:///"))
        if not file.is_file():  # a report never makes a store: a typo would read as empty
            raise ValueError(f"--store {store}: no such state store ({file} does not exist)")
    books = _Books(grid.budgets, allocations(grid), StateStore(store or grid.state_url), now,
                   named=store is not None)
    ctx.call_on_close(books.store.engine.dispose)
    return books


def _window(period: str | None, since: str | None, until: str | None, now: float,
            books: _Books | None = None) -> Window:
    """The span a report covers: the period, or since..until, or, for a store named with
    ``--store`` (a what-if replay, dated when its trace was), all of it; else this month."""
    if period is not None and (since or until):
        raise typer.BadParameter("give --period or --since/--until, not both")
    if period is not None:
        return Window.period(period)
    if since or until:
        return Window.between(since, until, now)
    if books is not None and books.named:
        return _whole_span(books)
    return Window.this_month(now)


def _whole_span(books: _Books) -> Window:
    """Every attempt and placement the store holds, labelled by its first and last days."""
    ends = [r["end"] for r in books.store.ledger_records()]
    ends += [d["at"] for d in books.store.decision_records(0.0, float("inf"))]
    if not ends:
        return Window(0.0, books.now, "the whole store")
    lo, hi = min(ends), max(ends)
    return Window(lo, hi + 1, f"{fmt_time(lo)[:10]}..{fmt_time(hi)[:10]} (the whole store)")


def _emit(title: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]],
          fmt: ReportFormat, empty: str = "nothing to report") -> None:
    """Table for people; CSV and JSON with exact decimal text, numbers as numbers. An
    empty table is its title on one line and ``empty`` (a table of no rows would wrap its
    title to the width of its headers)."""
    if fmt is ReportFormat.TABLE and not rows:
        console.print(plain(title), highlight=False, markup=False, soft_wrap=True)
        console.print(plain(empty), highlight=False, markup=False, soft_wrap=True)
    elif fmt is ReportFormat.TABLE:  # the currency is in the title; empty columns left out
        shown = [columns[0], *(c for c in columns[1:] if c != "currency"
                               and any(r.get(c) not in (None, "", 0) for r in rows))]
        display = for_display(rows)
        fits = fit(shown, display, console.width, compact=True)
        console.print(render(title, fits, display, compact=True))
        left_out(err, shown, fits, console.width)
    elif fmt is ReportFormat.JSON:
        console.file.write(json_text(columns, rows))
    else:
        console.file.write(csv_text(columns, rows))


@app.command("costs")
def costs(
    ctx: typer.Context,
    by_: Annotated[By, typer.Option("--by", help="Group rows by this.")] = By.SITE,
    period: PeriodOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    every: Annotated[Optional[Every], typer.Option(  # noqa: UP045
        help="Cut the period into days, weeks or months.", show_default=False)] = None,
    fmt: Annotated[ReportFormat, typer.Option(
        "--format", "-f", help="table, csv, json, or html (the whole report, see -o).")
    ] = ReportFormat.TABLE,
    output: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--output", "-o", help="Write the html report here.", show_default=False)] = None,
    store: StoreOpt = None,
    at: AtOpt = None,
) -> None:
    """Spend per site, team, project, user, tier or job over a period (default: this month):
    cost, on-demand equivalent, saving, work lost to preemption, budgets and allocations."""
    by = by_.group
    books = _books(ctx, store, at)
    window = _window(period, since, until, books.now, books)
    if fmt is ReportFormat.HTML:
        _write_html(books, window, output)
        return
    ledger = books.store.ledger_records()
    budgets = {GroupBy.TEAM: books.budgets.teams,
               GroupBy.PROJECT: books.budgets.projects}.get(by)
    jobs = (books.store.job_names(r["job_id"] for r in ledger if window.holds(r["end"]))
            if by is GroupBy.JOB else None)
    rows = cost_report(ledger, by, window, every=every, jobs=jobs,
                       budgets=budgets if budgets else None, allocations=books.allocations,
                       currency=books.currency)
    columns = cost_report_columns(by, every=every, budgets=bool(budgets),
                                  allocations=bool(books.allocations))
    _emit(f"costs by {by.value}, {window.label} ({books.currency}; charged when an attempt "
          "ends)", columns, rows, fmt, empty=f"no attempts ended in {window.label}")


@app.command("forecast")
def forecast_cmd(
    ctx: typer.Context,
    window_days: Annotated[float, typer.Option(
        "--rate-window-days", min=0.01, help="The run rate is the spend of this many days.")
    ] = 7.0,
    fmt: Annotated[ReportFormat, typer.Option(
        "--format", "-f", help="table, csv or json.")] = ReportFormat.TABLE,
    store: StoreOpt = None,
    at: AtOpt = None,
) -> None:
    """Month-end spend per team and project at the current run rate, against each budget,
    and when each budget runs out at that rate."""
    if fmt is ReportFormat.HTML:
        raise typer.BadParameter("forecast prints table, csv or json", param_hint="--format")
    books = _books(ctx, store, at)
    rows = forecast(books.store.ledger_records(), books.now,
                    teams=books.budgets.teams, projects=books.budgets.projects,
                    rate_window_s=window_days * 86400, currency=books.currency)
    month = Window.this_month(books.now).label
    _emit(f"forecast for {month} ({books.currency}; run rate over {window_days:g} days)",
          list(FORECAST_COLUMNS), rows, fmt)


@app.command("placements")
def placements_cmd(
    ctx: typer.Context,
    period: PeriodOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    fmt: Annotated[ReportFormat, typer.Option(
        "--format", "-f", help="table, csv or json.")] = ReportFormat.TABLE,
    store: StoreOpt = None,
    at: AtOpt = None,
) -> None:
    """What was placed where, the runner-up and what it would have cost, and what placement
    saved over always taking the runner-up and over always taking on-demand capacity."""
    if fmt is ReportFormat.HTML:
        raise typer.BadParameter("placements prints table, csv or json", param_hint="--format")
    books = _books(ctx, store, at)
    window = _window(period, since, until, books.now, books)
    rows = _placements(books, window)
    totals = placements_totals(rows)
    if fmt is ReportFormat.TABLE:  # the columns a person reads first; CSV and JSON have all
        _emit(f"placements, {window.label} ({books.currency}; expected costs at placement)",
              ["placed_at", "job_id", "site", "expected_cost", "runner_up", "vs_runner_up",
               "actual_cost"], rows, fmt, empty=f"no placements in {window.label}")
        console.print(
            f"{totals['placements']} placements ({totals['with_runner_up']} with a runner-up): "
            f"expected {totals['expected_cost']} {books.currency}; placement saved "
            f"{totals['saved_vs_runner_up']} over always the runner-up and "
            f"{totals['saved_vs_on_demand']} over always on-demand; charged so far "
            f"{totals['actual_cost']}.", highlight=False, markup=False)
        return
    total_row = {"placed_at": window.label, "job_id": "TOTAL",
                 "expected_cost": totals["expected_cost"],
                 "vs_runner_up": totals["saved_vs_runner_up"],
                 "vs_on_demand": totals["saved_vs_on_demand"],
                 "actual_cost": totals["actual_cost"], "currency": books.currency}
    _emit("placements", list(PLACEMENT_COLUMNS), [*rows, total_row] if rows else rows, fmt)


def _placements(books: _Books, window: Window) -> list[dict[str, Any]]:
    decisions = books.store.decision_records(window.since, window.until)
    jobs = books.store.job_names(d["job_id"] for d in decisions if d["chosen"])
    actual = {r["attempt_id"]: r["cost"] for r in books.store.ledger_records()}
    return placements(decisions, window, jobs=jobs, actual=actual, currency=books.currency)


@app.command("html")
def html_cmd(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")],
    period: PeriodOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    store: StoreOpt = None,
    at: AtOpt = None,
) -> None:
    """One self-contained HTML file: spend over time by team and tier, savings against
    on-demand, budget burn-down, lost work and the top jobs, with the tables beside."""
    books = _books(ctx, store, at)
    _write_html(books, _window(period, since, until, books.now, books), output)


def _write_html(books: _Books, window: Window, output: Path | None) -> None:
    from gridbridge.report_html import ReportInputs, render_html

    if output is None:
        raise typer.BadParameter("the html report needs --output FILE", param_hint="--output")
    ledger = books.store.ledger_records()
    inputs = ReportInputs(
        ledger=ledger, window=window, now=books.now,
        jobs=books.store.job_names(r["job_id"] for r in ledger if window.holds(r["end"])),
        team_budgets=books.budgets.teams,
        project_budgets=books.budgets.projects, allocations=books.allocations,
        placements=_placements(books, window), currency=books.currency)
    output.write_text(render_html(inputs), encoding="utf-8")
    err.print(f"wrote {output}", highlight=False, markup=False)
