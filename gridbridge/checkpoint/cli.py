"""``gridbridge checkpoints``: list, show, verify and garbage-collect job checkpoints.

Invariant: every command resolves the job prefix as ``<root>/<JOB>`` with JOB checked against a
strict name pattern (no ``/``, no ``..``), so no argument can reach outside the checkpoint root.
Under the main CLI, JOB is a job id and its prefix is the one the job's record holds
(``ctx.obj["checkpoint_url_of"]``); ``--root`` overrides that, taking JOB as a folder name under
it. Otherwise the root is ``ctx.obj["checkpoint_root"]``, else the environment variable
``GRIDBRIDGE_CHECKPOINT_ROOT``. A JOB with nothing under the root is an error (exit 2).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console

from . import open as open_store
from ._layout import commit_folder, entry_folder
from .store import CheckpointStore

JOB_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ROOT_ENV = "GRIDBRIDGE_CHECKPOINT_ROOT"

app = typer.Typer(help="Inspect, verify and garbage-collect checkpoints.", no_args_is_help=True)


class Format(StrEnum):
    """Output format of the listing commands."""

    table = "table"
    csv = "csv"
    json = "json"


RootOpt = Annotated[str | None, typer.Option(
    "--root", help="checkpoint root URL, overriding the configured one; JOB is then a folder "
    "name under it", show_default=False)]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, csv or json")]
JobArg = Annotated[str, typer.Argument(
    help="the job id (with --root: a folder name under that root)")]


def validate_job(job: str) -> str:
    """Return ``job`` if it is a safe single path segment, else raise ``typer.BadParameter``."""
    if not JOB_PATTERN.fullmatch(job) or ".." in job:
        raise typer.BadParameter(
            f"invalid job name {job!r}: use 1-63 of A-Z a-z 0-9 _ . - (no '..'), "
            "starting with a letter or digit"
        )
    return job


def _root(ctx: typer.Context, root: str | None) -> str:
    obj = ctx.obj if isinstance(ctx.obj, Mapping) else {}
    configured = obj.get("configured_root")
    value = root or obj.get("checkpoint_root") or (configured() if callable(configured) else None)
    value = value or os.environ.get(ROOT_ENV)
    if not value:
        raise typer.BadParameter(f"no checkpoint root: pass --root or set {ROOT_ENV}")
    return str(value).rstrip("/")


def _prefix(ctx: typer.Context, root: str | None, job: str) -> str:
    """JOB's checkpoint prefix: its record's (a job id), or ``<root>/<JOB>`` with ``--root``."""
    obj = ctx.obj if isinstance(ctx.obj, Mapping) else {}
    url_of = obj.get("checkpoint_url_of")
    if root is None and callable(url_of):
        return str(url_of(job)).rstrip("/")  # an unknown job id raises LookupError
    url = f"{_root(ctx, root)}/{validate_job(job)}"
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **dict(obj.get("checkpoint_storage_options") or {}))
    if not fs.exists(path):
        typer.echo(f"error: no checkpoints for {job!r} under {_root(ctx, root)}", err=True)
        raise typer.Exit(2)
    return url


def _to_second(stamp: str) -> str:
    """``2025-01-31T12:00:00.123Z`` as the CLI prints every time: ``2025-01-31T12:00:00Z``."""
    return re.sub(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.\d+Z$", r"\1Z", stamp)


def _store(ctx: typer.Context, root: str | None, job: str, **kw: Any) -> CheckpointStore:
    obj = ctx.obj if isinstance(ctx.obj, Mapping) else {}
    options = obj.get("checkpoint_storage_options")
    return open_store(_prefix(ctx, root, job), storage_options=options, **kw)


def _emit(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], fmt: Format, title: str
) -> None:
    """Rows as the CLI prints every listing (:func:`gridbridge.views.emit`): a table that
    keeps its words whole, CSV guarded against formulas, or JSON."""
    from gridbridge.views import Format as ViewFormat
    from gridbridge.views import emit

    emit(Console(), title, columns, rows, ViewFormat(fmt.value),
         drop=("metadata", "reused", "token"), notes=Console(stderr=True))


@app.command("list")
def list_steps(
    ctx: typer.Context, job: JobArg, root: RootOpt = None, fmt: FormatOpt = Format.table
) -> None:
    """List the committed steps of JOB, with the folder (under steps/) each commit names."""
    with _store(ctx, root, job) as store:
        rows = []
        for step in store.steps():
            commit = store.commit_record(step)
            arrays = commit["arrays"].values()
            rows.append(
                {
                    "step": step,
                    "time": _to_second(commit.get("time", "")),
                    "token": commit.get("token", 0),
                    "arrays": len(arrays),
                    "reused": sum(1 for e in arrays if e["step"] != step),
                    "bytes": sum(int(e.get("nbytes", 0)) for e in arrays),
                    "metadata": json.dumps(commit.get("metadata", {}), sort_keys=True),
                    "folder": commit_folder(commit),
                }
            )
    columns = ["step", "time", "token", "arrays", "reused", "bytes", "metadata", "folder"]
    _emit(rows, columns, fmt, f"checkpoints of {job}")


@app.command("show")
def show(
    ctx: typer.Context,
    job: JobArg,
    step: Annotated[int | None, typer.Argument(help="step (default: latest)")] = None,
    root: RootOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Show the arrays of one committed step of JOB (default: the latest)."""
    with _store(ctx, root, job) as store:
        chosen = step if step is not None else store.latest()
        if chosen is None:
            typer.echo(f"no committed checkpoint for {job}", err=True)
            raise typer.Exit(1)
        commit = store.commit_record(chosen)
    rows = [
        {
            "array": name,
            "dtype": e["dtype"],
            "shape": "x".join(str(n) for n in e["shape"]) or "()",
            "bytes": e.get("nbytes", 0),
            "held_by_step": e["step"],
            "folder": entry_folder(e),
            "digest": e["digest"],
        }
        for name, e in commit["arrays"].items()
    ]
    columns = ["array", "dtype", "shape", "bytes", "held_by_step", "folder", "digest"]
    _emit(rows, columns, fmt, f"{job} step {chosen} (token {commit.get('token', 0)})")


@app.command("verify")
def verify(
    ctx: typer.Context, job: JobArg, root: RootOpt = None, fmt: FormatOpt = Format.table
) -> None:
    """Verify every committed step of JOB; exit 1 if any is corrupt."""
    with _store(ctx, root, job) as store:
        results = store.verify()
    rows = [
        {
            "step": r.step,
            "ok": r.ok,
            "arrays": r.arrays,
            "bytes": r.nbytes,
            "problems": "; ".join(r.problems),
        }
        for r in results
    ]
    _emit(rows, ["step", "ok", "arrays", "bytes", "problems"], fmt, f"verify {job}")
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command("gc")
def gc(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Argument(help="job name (default: every job)")] = None,
    root: RootOpt = None,
    keep_last: Annotated[int | None, typer.Option(min=1, help="keep the newest N steps")] = None,
    keep_every: Annotated[int | None, typer.Option(min=1, help="keep steps divisible by K")] = None,
    sweep_older_than: Annotated[
        float, typer.Option(min=0, help="remove uncommitted step folders older than this (s)")
    ] = 3600.0,
) -> None:
    """Apply retention to JOB (or every job under the root) and sweep uncommitted steps."""
    jobs = [job] if job is not None else _jobs_under(ctx, root)
    rows = []
    for name in jobs:
        with _store(ctx, root, name, keep_last=keep_last, keep_every=keep_every) as store:
            deleted = store.gc()
            swept = store.sweep(sweep_older_than)
        rows.append({"job": name, "deleted steps": ", ".join(map(str, deleted)) or "-",
                     "swept folders": len(swept)})
    _emit(rows, ["job", "deleted steps", "swept folders"], Format.table, "checkpoint gc")


def _jobs_under(ctx: typer.Context, root: str | None) -> list[str]:
    import fsspec

    base = _root(ctx, root)
    obj = ctx.obj if isinstance(ctx.obj, Mapping) else {}
    fs, path = fsspec.core.url_to_fs(base, **dict(obj.get("checkpoint_storage_options") or {}))
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return []
    names = [
        str(e["name"]).rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "directory"
    ]
    return sorted(n for n in names if JOB_PATTERN.fullmatch(n) and ".." not in n)
