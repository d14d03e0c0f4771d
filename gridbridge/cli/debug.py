"""``gridbridge debug ...``: tools for exercising failure paths on a live federation.

Invariant: ``debug preempt`` preempts only an attempt that is running now, as its site sees
it; anything else is refused with exit 2 and nothing is reclaimed.
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
    a = made.store.attempt(attempt)
    try:
        if not a.state.active:
            raise RuntimeError(f"attempt {attempt} is {a.state.value}, not running: "
                               "only a running attempt can be preempted")
        if a.native_id is None:
            raise RuntimeError(f"attempt {attempt} has no native job yet")
        seen = made.adapters[a.site].poll([a.native_id]).get(a.native_id)
        if seen is not None and seen.state.terminal:  # ended since the reconciler last looked
            raise RuntimeError(f"attempt {attempt} has ended on {a.site} ({seen.state.value}): "
                               "only a running attempt can be preempted")
        made.preempt_attempt(a.site, a.native_id, wait=True)
    except RuntimeError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from None
    console.print(f"preempted {attempt} on {a.site}")
