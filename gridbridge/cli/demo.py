"""``gridbridge demo``: the whole loop on this machine (see :mod:`gridbridge.demo`).

Invariant: the demo runs on its own state folder, never on a configured store.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import console

__all__ = ["demo"]


def demo(
    steps: Annotated[int, typer.Option(min=100, help="training steps of the demo model")] = 3000,
    keep: Annotated[bool, typer.Option(help="keep the demo's state folder")] = False,
) -> None:
    """Train a small model on the embedded default, preempt it, resume it, check the weights."""
    from gridbridge.demo import run_demo

    raise typer.Exit(run_demo(console, steps=steps, keep=keep))
