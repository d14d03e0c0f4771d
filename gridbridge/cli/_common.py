"""What the commands share: the consoles, the common options, the client opened once per run
from ``ctx.obj["config_path"]``, and the lookup of a site by name.

Invariant: a command reaches the federation only through :func:`client`, which opens one
``Client`` per invocation and closes it when the command's context closes. Given a service
URL (``--url`` or ``$GRIDBRIDGE_URL``) that client is a remote one, authenticated by
``$GRIDBRIDGE_TOKEN`` (never an option: a command line is visible to every user of a host);
``serve`` clears the URL first: it always opens this host's store.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console

from gridbridge.views import Format

if TYPE_CHECKING:
    from gridbridge.adapter import Adapter
    from gridbridge.client import Client

__all__ = [
    "ConfigOpt",
    "FormatOpt",
    "UrlOpt",
    "client",
    "console",
    "err",
    "opt_path",
    "remote",
    "site_adapter",
    "yes_no",
]

console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Optional[Path], typer.Option(  # noqa: UP045 - typer needs Optional
    "--config", "-c", envvar="GRIDBRIDGE_CONFIG", help="gridbridge.yaml (default: embedded)",
    show_default=False)]
UrlOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045 - typer needs Optional
    "--url", envvar="GRIDBRIDGE_URL", help="a gridbridge service, https://HOST:PORT (the "
    "token: $GRIDBRIDGE_TOKEN); default: this host's configuration", show_default=False)]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, csv or json")]


def remote(ctx: typer.Context) -> bool:
    """Whether this run's commands go to a service (``--url``)."""
    return bool(ctx.obj.get("url"))


def client(ctx: typer.Context, start: bool = False) -> Client:
    """The run's client (made on first use; ``start``: a fresh one running a reconciler,
    except through a service, which runs its own)."""
    import os

    from gridbridge.client import Client

    cached = ctx.obj.get("client")
    if cached is not None and not start:
        return cached  # type: ignore[no-any-return]
    if remote(ctx):
        made = Client(url=ctx.obj["url"], token=os.environ.get("GRIDBRIDGE_TOKEN"))
        ctx.obj["client"] = made
        ctx.call_on_close(made.close)
        return made
    made = Client(ctx.obj.get("config_path"), start=start, url="")
    ctx.obj["client"] = made
    ctx.obj["checkpoint_root"] = made.config.checkpoint_root
    ctx.call_on_close(made.close)
    return made


def site_adapter(made: Client, site: str) -> Adapter:
    """The adapter of the site named ``site``; an unknown name is a usage error (exit 2)
    naming the valid ones."""
    if site not in made.adapters:
        names = [s.name for s in made.config.sites]
        err.print(f"error: no site {site!r}; valid choices: {', '.join(names)}",
                  markup=False, highlight=False)  # the name is what the user typed
        raise typer.Exit(2)
    return made.adapters[site]


def opt_path(path: Path | None) -> str | None:
    return None if path is None else str(path)


def yes_no(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")
