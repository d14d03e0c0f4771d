"""The ``gridbridge`` command line: submit, watch, cancel, serve, report.

Invariant: every command takes ``--config gridbridge.yaml`` (or ``$GRIDBRIDGE_CONFIG``),
before or after the subcommand; without one it works on the embedded default under
``$GRIDBRIDGE_HOME`` or the per-user data folder. ``--url`` (or ``$GRIDBRIDGE_URL``), before
the subcommand, sends the commands to a gridbridge service instead, as the user of
``$GRIDBRIDGE_TOKEN``. Every error is one line on stderr, ``error: ...``; a usage error exits
2, a refusal (no token, a revoked one, a verb the role may not use) exits 4. ``app`` is the
typer app, ``main`` the console script::

    gridbridge [--config F] [--url U] ─┬─ submit | status | explain | logs | cancel   (jobs)
                                       ├─ serve [--listen HOST:PORT]                  (serve)
                                       ├─ admin token create | list | revoke, audit   (admin)
                                       ├─ demo                                        (demo)
                                       ├─ sites list | check | bootstrap              (sites)
                                       ├─ report costs | forecast | placements | html (report)
                                       ├─ config schema | check | import-jobqueue     (config)
                                       ├─ debug preempt                               (debug)
                                       ├─ simulate [--trace] | deadline               (simulate)
                                       └─ checkpoints ...                (gridbridge.checkpoint.cli)
    main(): typer.main.get_command(app) ─> _shell.tidy ─> _shell.run ─> exit status

One module per sub-app; what they share (consoles, options, the client, a site by name) is in
``_common``, and the shell around typer (one-line errors, plain help) in ``_shell``.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from gridbridge.config import ConfigError

from . import demo, jobs, serve
from ._common import ConfigOpt, UrlOpt, client, console
from ._shell import Group, fail, run, tidy
from .admin import app as admin_app
from .config import app as config_app
from .debug import app as debug_app
from .report import app as report_app
from .simulate import app as simulate_app
from .sites import app as sites_app

__all__ = ["app", "main"]

app = typer.Typer(cls=Group, help="gridbridge: one job, the cheapest site that can run it, "
                  "resumed from its checkpoint when preempted.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.out(f"gridbridge {version('gridbridge')}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    config: ConfigOpt = None,
    url: UrlOpt = None,
    _version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True, expose_value=True,
        help="print the version and exit")] = False,
) -> None:
    ctx.obj = {"config_path": config,  # a subcommand's own --config replaces it
               "url": url,
               "checkpoint_url_of": lambda job: client(ctx).store.job(job).checkpoint_url,
               "configured_root": lambda: client(ctx).config.checkpoint_root}


for _command in (jobs.submit, jobs.status, jobs.explain, jobs.logs, jobs.cancel, serve.serve,
                 demo.demo):
    app.command()(_command)
app.add_typer(sites_app, name="sites")
app.add_typer(report_app, name="report")
app.add_typer(config_app, name="config")
app.add_typer(debug_app, name="debug")
app.add_typer(admin_app, name="admin")
app.add_typer(simulate_app, name="simulate")


def _mount_checkpoints() -> None:
    try:
        from gridbridge.checkpoint.cli import app as checkpoints_app
    except ImportError:
        return
    app.add_typer(checkpoints_app, name="checkpoints", help="Inspect and verify checkpoints.",
                  cls=Group)


_mount_checkpoints()


def main() -> None:
    from gridbridge.scheduler._db import StoreUnavailable
    from gridbridge.service import Refused

    root = typer.main.get_command(app)
    if not isinstance(root, Group):
        raise TypeError(f"the gridbridge app built a {type(root).__name__}, not a Group")
    try:
        code = run(tidy(root))
    except Refused as exc:
        fail(str(exc), 4)
    except StoreUnavailable as exc:
        fail(f"{exc}; try again", 3)
    except ConfigError as exc:
        fail(str(exc))
    except (LookupError, ValueError) as exc:
        fail(str(exc))
    sys.exit(code)
