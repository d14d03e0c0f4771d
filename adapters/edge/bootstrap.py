"""``gridbridge sites bootstrap`` for an edge site: bring every node to running jobs, with no
package index on the nodes.

Invariant: a node is only ever changed inside the venv the runtime's interpreter names
(``<venv>/bin/python``), never where something that is not a venv is in the way, and one
bootstrap at a time per venv (``install.sh`` holds a lock folder beside it). Per node, all
nodes at once, a node's failure being its row::

    probe.sh ── has this version? ──yes──► skipped
       │no
    wheelhouse (the operator's, or built here once) ── wheels.sh: what the node has
       │
    put.sh, per wheel (only the wheels missing there or of another size, base64 on stdin)
       │
    install.sh: lock, venv --without-pip, pip (run from its wheel) install --no-index
       │
    probe.sh ── imports this version? ──► installed | skipped (a node sharing the filesystem
                                                                installed it meanwhile)
"""

from __future__ import annotations

import base64
import os
import re
import time
import tomllib
from pathlib import Path

from gridbridge.adapter import BootstrapReport, NodeBootstrap
from gridbridge.adapters._run import RunnerError
from gridbridge.adapters.edge._fleet import Fleet
from gridbridge.adapters.edge._scripts import script
from gridbridge.adapters.edge._wheelhouse import Wheelhouse, checkout, local_tag, wheel_of

__all__ = ["bootstrap"]

_CHUNK = 4 << 20
"""Bytes of a wheel per upload round trip (base64 on the command's stdin)."""
_VENV_PYTHON = re.compile(r"(/[^\n\t]*[^/\n\t])/bin/python[0-9.]*")


def bootstrap(fleet: Fleet, workdir: Path, *, wheelhouse: str | os.PathLike[str] | None = None,
              cache_dir: str | os.PathLike[str] | None = None,
              base_python: str = "python3") -> BootstrapReport:
    """Bring every node to running jobs: where the runtime's interpreter
    (``runtime.python``, else ``options.python``; it must be ``<venv>/bin/python``) does
    not import this gridbridge version, upload a wheelhouse (only the wheels missing there
    or of another size) to ``<run folder>/.wheelhouse``, make the venv with
    ``base_python -m venv`` and ``pip install --no-index`` gridbridge into it, then check
    the import. The nodes need no package index.

    The wheelhouse is ``wheelhouse`` (made by the operator: a gridbridge wheel, its
    dependencies, and a pip wheel), else built here from the checkout gridbridge runs from
    (``pip wheel``, once a node needs it) and kept under ``cache_dir`` (default
    ``<workdir>/bootstrap``) for as long as the version and ``pyproject.toml`` stay the
    same. All nodes at once; a node's failure is its row. ValueError when the site's
    configuration cannot be bootstrapped at all."""
    python, venv = _venv_of(fleet)
    given, source, version = _source(wheelhouse)
    cache = Path(cache_dir) if cache_dir is not None else workdir / "bootstrap"
    house = Wheelhouse(source, given, cache.resolve(), version)
    found = fleet.each(list(fleet.nodes), lambda n: _Node(fleet, n, house).run(
        python, venv, base_python))
    nodes = [got if isinstance(got, NodeBootstrap) else
             NodeBootstrap(node=n, action="failed", error=str(got))
             for n, got in found.items()]
    return BootstrapReport(version=version, nodes=nodes, built=house.built,
                           build_s=house.build_s,
                           wheelhouse=str(house.path) if house.path else None)


def _venv_of(fleet: Fleet) -> tuple[str, str]:
    """The runtime's interpreter and its venv; ValueError when it is not in one."""
    site = fleet.site
    python = site.runtime.python or fleet.options.python
    match = _VENV_PYTHON.fullmatch(python or "")
    if python is None or match is None:
        raise ValueError(
            f"site {site.name}: bootstrap makes the venv the runtime uses, so "
            f"runtime.python must be an absolute venv path like "
            f"/opt/gridbridge-edge/venv/bin/python (it is {python!r})")
    venv = match.group(1)
    if "/../" in f"{venv}/" or "/./" in f"{venv}/":
        raise ValueError(f"site {site.name}: runtime.python {python!r} is not a plain path")
    return python, venv


def _source(wheelhouse: str | os.PathLike[str] | None) -> tuple[Path | None, Path | None, str]:
    """(the operator's wheelhouse, the checkout to build one from, the version to install)."""
    if wheelhouse is not None:
        given = Path(wheelhouse).resolve()
        try:
            wheel = wheel_of(given, "gridbridge")
            wheel_of(given, "pip")
        except RunnerError as exc:
            raise ValueError(f"--wheelhouse {given}: {exc}") from None
        return given, None, wheel.name.split("-")[1]
    source = checkout()
    if source is None:
        raise ValueError(
            "gridbridge is not installed from a source checkout, so there is nothing "
            "to build a wheelhouse from: give one (a gridbridge wheel, its "
            "dependencies and pip, e.g. `pip wheel --wheel-dir DIR gridbridge pip`)")
    meta = tomllib.loads((source / "pyproject.toml").read_text())
    version = str(meta["project"].get("version") or "")
    if not version:
        from importlib.metadata import version as dist_version

        version = dist_version("gridbridge")
    return None, source, version


class _Node:
    """One node's bootstrap, its report row filled in as it goes."""

    def __init__(self, fleet: Fleet, node: str, house: Wheelhouse) -> None:
        self.fleet, self.node, self.house = fleet, node, house
        self.row: dict[str, object] = {"node": node}
        self.t0 = time.monotonic()

    def done(self, action: str, **more: object) -> NodeBootstrap:
        return NodeBootstrap.model_validate(
            {**self.row, "action": action, **more,
             "seconds": round(time.monotonic() - self.t0, 1)})

    def run(self, python: str, venv: str, base_python: str) -> NodeBootstrap:
        house = self.house
        try:
            facts = self.probe(python, base_python, venv)
            self.row["before"] = facts.get("have")
            if facts.get("have") == house.version:
                return self.done("skipped", after=house.version,
                                 detail=f"already has gridbridge {house.version}")
            if facts.get("venv") == "other":
                return self.done("failed", error=f"{venv} exists and is not a virtual "
                                 "environment: refusing to touch it (point runtime.python at "
                                 "a venv of its own)")
            if "base" not in facts:
                return self.done("failed", error=f"no base interpreter {base_python!r} there: "
                                 f"{facts.get('nobase', '')}")
            if house.given is None and tuple(facts["base"].split()) != local_tag():
                return self.done("failed", error=(
                    f"{base_python} there is {facts['base']}, the wheelhouse built here fits "
                    f"{' '.join(local_tag())}: build one for it and pass --wheelhouse"))
            return self.install(python, venv, base_python)
        except RunnerError as exc:  # HostKeyRefused included
            return self.done("failed", error=str(exc))

    def install(self, python: str, venv: str, base_python: str) -> NodeBootstrap:
        """Upload what the node lacks, install, and check the import."""
        house, node = self.house, self.node
        local = house.get()
        remote = f"{self.fleet.base(node)}/.wheelhouse"
        t1 = time.monotonic()
        files, size = self.upload(local, remote)
        self.row.update(uploaded_files=files, uploaded_bytes=size,
                        upload_s=round(time.monotonic() - t1, 1))
        t2 = time.monotonic()
        out = self.fleet.runners[node].run(
            ["sh", "-c", script("install.sh"), "gridbridge-bootstrap", base_python, venv,
             remote, wheel_of(local, "pip").name, f"gridbridge=={house.version}", python,
             house.version], timeout=max(900.0, self.fleet.options.command_timeout_s))
        self.row["install_s"] = round(time.monotonic() - t2, 1)
        if out.returncode != 0:
            words = (out.stderr or out.stdout).strip()[-1500:]
            return self.done("failed", error=f"install failed (exit {out.returncode}): {words}")
        after = self.probe(python, base_python, venv)
        self.row["after"] = after.get("have")
        if after.get("have") != house.version:
            return self.done("failed", error=f"after the install {python} imports gridbridge "
                             f"{after.get('have')!r}, not {house.version}: "
                             f"{after.get('missing', '')}")
        if out.stdout.split()[-1:] == ["already"]:
            return self.done("skipped", detail="installed meanwhile (a node that shares "
                             "this filesystem?)")
        return self.done("installed", detail=f"{files} wheels ({size / 2**20:.1f} MiB) "
                         f"uploaded to {remote}")

    def probe(self, python: str, base_python: str, venv: str) -> dict[str, str]:
        out = self.fleet.sh(self.node, "probe.sh", python, base_python, venv)
        facts: dict[str, str] = {}
        for line in out.splitlines():
            word, _, rest = line.partition(" ")
            facts[word] = rest.strip()
        return facts

    def upload(self, local: Path, remote: str) -> tuple[int, int]:
        """Copy the wheels the node lacks (or has with another size) to ``remote``, through
        base64 on the stdin of a constant script (any Runner, no SFTP subsystem needed)."""
        listing = self.fleet.sh(self.node, "wheels.sh", remote)
        there: dict[str, int] = {}
        for line in listing.splitlines():
            name, _, length = line.partition("\t")
            if length.strip().isdigit():
                there[name] = int(length.strip())
        files = total = 0
        for wheel in sorted(local.glob("*.whl")):
            size = wheel.stat().st_size
            if there.get(wheel.name) == size:
                continue
            self.put(wheel, f"{remote}/{wheel.name}")
            files += 1
            total += size
        return files, total

    def put(self, wheel: Path, dest: str) -> None:
        """One wheel to ``dest`` on the node, :data:`_CHUNK` bytes a round trip."""
        timeout = max(120.0, self.fleet.options.command_timeout_s)
        size = wheel.stat().st_size
        with wheel.open("rb") as f:
            first = True
            while True:
                chunk = f.read(_CHUNK)
                last = f.tell() >= size
                done = self.fleet.runners[self.node].run(
                    ["sh", "-c", script("put.sh"), "gridbridge-put", dest,
                     "first" if first else "more", "last" if last else "more", self.node],
                    input=base64.b64encode(chunk).decode("ascii"), timeout=timeout)
                done.check(f"uploading {wheel.name} to {self.node}")
                first = False
                if last:
                    break
