"""``gridbridge config ...``: the JSON Schema of gridbridge.yaml, a check of a configuration
against the storage and sites it names, and the import of dask-jobqueue's settings.

Invariant: ``config check`` exits 1 unless every finding is ok; nothing here writes a
configuration except ``import-jobqueue --output``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from gridbridge.config import config_schema
from gridbridge.views import emit

from ._common import client, console, err
from ._shell import Group

if TYPE_CHECKING:
    from gridbridge.checks import Finding
    from gridbridge.client import Client

__all__ = ["app"]

app = typer.Typer(cls=Group, help="The gridbridge.yaml file.", no_args_is_help=True)


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of gridbridge.yaml (generated from the models)."""
    import json

    console.out(json.dumps(config_schema(), indent=2), highlight=False)


@app.command("check")
def check(ctx: typer.Context) -> None:
    """Validate the configuration, then check that the checkpoint root and the state store
    can be written and that every site can reach the storage its jobs need."""
    from gridbridge.checks import (
        check_identities,
        check_prologues,
        check_sites_reach_storage,
        check_storage_writable,
    )

    made = client(ctx)
    config = made.config
    findings = [check_storage_writable(config.checkpoint_root), _state_writable(made)]
    findings += check_sites_reach_storage(config, made.adapters)
    findings += check_prologues(config)
    findings += check_identities(config)
    rows = [{"check": f.what, "ok": "NO" if not f.ok else "warn" if f.warning else "yes",
             "detail": f.detail} for f in findings]
    emit(console, "config check", ["check", "ok", "detail"], rows)
    if not all(f.ok for f in findings):
        raise typer.Exit(1)
    console.print(f"ok: {len(config.sites)} sites: {', '.join(s.name for s in config.sites)}")


@app.command("import-jobqueue")
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


def _state_writable(made: Client) -> Finding:
    from gridbridge.checks import Finding

    try:
        made.store.probe_write()
    except Exception as exc:
        return Finding("state_url", False, f"not writable: {type(exc).__name__}: {exc}")
    return Finding("state_url", True, "writable")
