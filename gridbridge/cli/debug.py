"""``gridbridge debug ...``: tools for exercising failure paths on a live federation.

Invariant: ``debug preempt`` preempts only an attempt that is running now, as its site sees
it; anything else is refused with exit 2 and nothing is reclaimed. Through a service, only
the attempt's owner or an operator may preempt it (exit 4 otherwise).
"""

from __future__ import annotations

import re
from typing import Annotated

import typer

from ._common import client, console, err
from ._shell import Group

__all__ = ["app"]

_ATTEMPT_ID = re.compile(r"\.\d+$")
"""An attempt id ends ``.N``; a job id never does."""

app = typer.Typer(cls=Group, help="Tools for exercising failure paths.", no_args_is_help=True)


@app.command("preempt")
def debug_preempt(
    ctx: typer.Context,
    attempt: Annotated[str, typer.Argument(
        help="a job id (its running attempt) or an attempt id, JOB.N (see status JOB)")],
) -> None:
    """Deliver a real preemption to a job's running attempt, or to one attempt (SIGTERM,
    grace, SIGKILL). An attempt that has ended, or a job with none running, is refused
    (exit 2)."""
    made = client(ctx)
    if not _ATTEMPT_ID.search(attempt):  # a job id: its running attempt
        made.store.job(attempt)  # an unknown job (or another user's) is refused first
        running = [a for a in made.store.attempts(attempt) if a.state.active]
        if not running:
            err.print(f"error: job {attempt} has no running attempt to preempt",
                      highlight=False, markup=False)
            raise typer.Exit(2)
        attempt = running[-1].id
    made.store.attempt(attempt)  # an unknown attempt (or another user's) is refused first
    try:
        a = made.preempt_running(attempt)  # through the service: checked there, as here
    except RuntimeError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from None
    console.print(f"preempted {attempt} on {a.site}")
