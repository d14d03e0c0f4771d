"""``gridbridge debug ...``: tools for exercising failure paths on a live federation.

Invariant: ``debug preempt`` preempts only an attempt that is running now, as its site sees
it; anything else is refused with exit 2 and nothing is reclaimed. Through a service, only
the attempt's owner or an operator may preempt it (exit 4 otherwise).
"""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import client, console, err
from ._shell import Group

__all__ = ["app"]

app = typer.Typer(cls=Group, help="Tools for exercising failure paths.", no_args_is_help=True)


@app.command("preempt")
def debug_preempt(
    ctx: typer.Context,
    attempt: Annotated[str, typer.Argument(help="the attempt id, JOB.N (see status JOB)")],
) -> None:
    """Deliver a real preemption to a running attempt (SIGTERM, grace, SIGKILL). An attempt
    that has ended is refused (exit 2)."""
    made = client(ctx)
    made.store.attempt(attempt)  # an unknown attempt (or another user's) is refused first
    try:
        a = made.preempt_running(attempt)  # through the service: checked there, as here
    except RuntimeError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from None
    console.print(f"preempted {attempt} on {a.site}")
