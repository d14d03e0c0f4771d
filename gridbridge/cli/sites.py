"""``gridbridge sites ...``: the federation's sites, their live offers and health, a check of
their hosts, installing gridbridge on bare edge nodes, and draining a site (operators)::

    sites drain SITE     nothing new is placed there; its running jobs that may move
                         (resumable, ``migrate`` not never) are asked to checkpoint and stop,
                         and resume elsewhere; the others are left to end on their own
    sites undrain SITE   placements may use it again

Invariant: a site is named by its configured name; an unknown one is an error (exit 2) naming
the valid ones, and a verb a site lacks (``check``, ``bootstrap``) is found from its declared
capabilities, never by probing for a method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from gridbridge.adapter import Adapter, BootstrapAdapter, Capability, CheckAdapter
from gridbridge.units import fmt_money, fmt_time
from gridbridge.views import Format, emit

from ._common import FormatOpt, client, console, err, remote, site_adapter, yes_no
from ._shell import Group

__all__ = ["app"]

app = typer.Typer(cls=Group, help="The sites of the federation.", no_args_is_help=True)


@app.command("list")
def sites_list(
    ctx: typer.Context,
    fmt: FormatOpt = Format.TABLE,
    timeout_s: Annotated[float, typer.Option(help="how long to wait for each site")] = 10.0,
) -> None:
    """Sites with their live offers (free capacity, price, preemption rate) and their health
    as the reconciler last saw it ("not checked" before one has run on this store)."""
    from gridbridge.scheduler.sitecalls import SiteCalls

    made = client(ctx)
    health = made.store.site_health()
    calls = SiteCalls([s.name for s in made.config.sites], timeout_s)
    answers = calls.run("offers", {name: a.offers for name, a in made.adapters.items()})
    calls.close()
    money = fmt_money if fmt is Format.TABLE else (lambda x: x)  # JSON and CSV: numbers
    rows: list[dict[str, Any]] = []
    for site in made.config.sites:
        h = health.get(site.name)
        # health is what a reconciler saw; none has called the site yet on this store
        state = "not checked" if h is None else ("healthy" if h.healthy else "degraded")
        base = {"site": site.name, "adapter": site.adapter, "tier": site.tier.value,
                "health": state, "since": fmt_time(h.since) if h else "",
                "last_error": "" if h is None or h.healthy else f"{h.phase}: {h.error}"}
        if site.name not in answers:
            rows.append({**base, "note": f"offers: {calls.outcomes[site.name].error}"})
            continue
        for o in answers[site.name]:
            rows.append({**base, "offer": o.key, "free_cpus": o.cpus, "free_gpus": o.gpus,
                         "price_core_h": money(o.price.per_core_hour),
                         "price_h": money(o.price.per_hour), "preemptible": o.preemptible,
                         "preempt_per_h": o.preemption_rate_per_hour, "note": o.note})
    emit(console, "sites", ["site", "adapter", "tier", "health", "since", "last_error",
                            "offer", "free_cpus", "free_gpus", "price_core_h", "price_h",
                            "preemptible", "preempt_per_h", "note"], rows, fmt,
         drop=("since", "adapter", "last_error", "preempt_per_h", "free_gpus", "price_h",
               "note", "tier", "preemptible"), notes=err)


@app.command("check")
def sites_check(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="the site's name")],
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Check a site's hosts: per node (edge sites) reachable, host key, the Python and
    gridbridge versions there, free resources, round-trip time and whether a runtime there
    reaches the checkpoint root (a probe written and read back from the node); for other
    sites, whether the site answers and what it offers. Exits 1 when something is
    unreachable."""
    made = client(ctx)
    adapter = site_adapter(made, site)
    rows: list[dict[str, Any]] = []
    if Capability.CHECK in adapter.capabilities() and isinstance(adapter, CheckAdapter):
        for c in adapter.check():
            rows.append({**c.model_dump(), "host_key_ok": yes_no(c.host_key_ok),
                         "reachable": yes_no(c.reachable)})
        columns = ["node", "reachable", "host_key_ok", "storage", "python", "gridbridge",
                   "cpus", "memory_gb", "rtt_ms", "error"]
        _probe_storage(adapter, made.config.checkpoint_root, rows)
    else:
        try:
            offers = adapter.offers()
            rows = [{"offer": o.key, "reachable": "yes", "free_cpus": o.cpus,
                     "memory_gb": round(o.memory_gb, 1), "error": ""} for o in offers]
        except Exception as exc:
            from gridbridge.scheduler.sitecalls import describe

            rows = [{"offer": "", "reachable": "no", "error": describe(exc)}]
        columns = ["offer", "reachable", "free_cpus", "memory_gb", "error"]
    emit(console, f"site {site}", columns, rows, fmt)
    if any(r["reachable"] != "yes" or r.get("storage") == "NO" for r in rows):
        raise typer.Exit(1)


def _probe_storage(adapter: Adapter, root: str, rows: list[dict[str, Any]]) -> None:
    """Fill each node's ``storage``: whether a runtime there can write and read ``root``
    (empty where it cannot be told: an adapter that cannot run the probe on its nodes, or a
    node without gridbridge, which ``sites bootstrap`` installs)."""
    from gridbridge.checks import StorageProbeAdapter

    if not isinstance(adapter, StorageProbeAdapter):
        return
    found = adapter.probe_storage(root)
    for r in rows:  # a node without gridbridge has no runtime to probe with (yet)
        if r["reachable"] != "yes" or not r.get("gridbridge") or r["node"] not in found:
            continue
        why = found[r["node"]]
        r["storage"] = "NO" if why else "yes"
        if why:
            r["error"] = "; ".join(filter(None, [r.get("error"), f"cannot reach {root}: {why}"]))


@app.command("bootstrap")
def sites_bootstrap(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="the site's name")],
    fmt: FormatOpt = Format.TABLE,
    wheelhouse: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="wheels to install from (gridbridge, its dependencies, pip); default: built "
        "from the checkout gridbridge runs from", show_default=False)] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="where the built wheelhouse is kept (default: <workdir>/bootstrap)",
        show_default=False)] = None,
    base_python: Annotated[str, typer.Option(
        help="the interpreter on the nodes that makes the venv")] = "python3",
) -> None:
    """Install gridbridge on a site's bare nodes (edge sites): upload a wheelhouse, make the
    venv runtime.python names and pip install into it, without a package index on the nodes.
    Nodes that already have this version are left alone. Exits 1 when a node failed."""
    made = client(ctx)
    target = site_adapter(made, site)
    if not (Capability.BOOTSTRAP in target.capabilities()
            and isinstance(target, BootstrapAdapter)):
        able = [n for n, a in made.adapters.items() if Capability.BOOTSTRAP in a.capabilities()]
        adapter = next(s.adapter for s in made.config.sites if s.name == site)
        err.print(f"error: site {site!r} (adapter {adapter}) has no bootstrap; only edge sites "
                  f"do{' (here: ' + ', '.join(able) + ')' if able else ''}",
                  markup=False, highlight=False)
        raise typer.Exit(2)
    report = target.bootstrap(wheelhouse=wheelhouse, cache_dir=cache_dir,
                              base_python=base_python)
    if report.wheelhouse:
        how = f"built in {report.build_s:g}s" if report.built else "cached" if (
            wheelhouse is None) else "given"
        err.print(f"wheelhouse ({how}): {report.wheelhouse}", highlight=False, markup=False)
    rows = [r.model_dump() for r in report.nodes]
    emit(console, f"site {site}: gridbridge {report.version}",
         ["node", "before", "after", "action", "seconds", "upload_s", "install_s", "detail",
          "error"], rows, fmt)
    if any(r.action == "failed" for r in report.nodes):
        raise typer.Exit(1)


@app.command("drain")
def sites_drain(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="the site's name")],
    reason: Annotated[str, typer.Option(help="why, for the site's events")] = "",
) -> None:
    """Empty a site (operators): nothing new is placed there, and its running jobs that may
    move are asked to checkpoint and stop, and resume elsewhere."""
    _set_drained(ctx, site, True, reason)


@app.command("undrain")
def sites_undrain(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="the site's name")],
) -> None:
    """Reopen a drained site to placements (operators)."""
    _set_drained(ctx, site, False, "")


def _set_drained(ctx: typer.Context, site: str, drained: bool, reason: str) -> None:
    """Drain or reopen ``site``: in the store, as the operator running this on its host, or
    through the service as the token's user (operators only there too)."""
    from gridbridge.client import _current_user

    made = client(ctx)
    if not remote(ctx):
        site_adapter(made, site)  # an unknown site: exit 2, naming the valid ones
    changed = made.store.drain_site(site, drained, _current_user(), reason)
    state = "drained" if drained else "open"
    console.print(f"site {site} {state}" + ("" if changed else " already"), markup=False,
                  highlight=False)
