"""``gridbridge config check`` beyond the schema: can the storage be used, and by whom?

A configuration can be valid and still unusable: a checkpoint root under a regular file, a bucket
that does not exist, a ``file://`` root that sites on other hosts cannot see, an object store
this host reaches but a site's nodes do not (a gateway on 127.0.0.1, a private network). Each
check returns a :class:`Finding`; the CLI prints them all and fails when one is a problem.

Invariant: storage is checked from where jobs run wherever a site can say so: a site whose
adapter probes storage on its nodes (:class:`StorageProbeAdapter`) gets one finding per node,
from the runtime's interpreter started there as an attempt's is::

    config check ──> this host: write, read, delete a probe object under checkpoint_root
                 └─> each site ──(probe_storage)──> each node: the same probe ──> a finding
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gridbridge.adapter import Adapter, Capability
from gridbridge.config import GridConfig
from gridbridge.wire import put_bytes

__all__ = [
    "Finding",
    "StorageProbeAdapter",
    "check_identities",
    "check_prologues",
    "check_sites_reach_storage",
    "check_storage_writable",
    "probe_findings",
]


@dataclass(frozen=True)
class Finding:
    what: str
    ok: bool
    detail: str
    warning: bool = False
    """Worth an operator's attention, not a problem: the check still passes."""


@runtime_checkable
class StorageProbeAdapter(Protocol):
    """An adapter that can run the storage probe where its jobs run: on each node (edge), in
    each partition (Slurm)."""

    probe_unit: str
    """What the probe's answer is keyed by: ``node``, ``partition``."""

    def probe_storage(self, url: str) -> Mapping[str, str]:
        """Per node or partition: '' when the runtime there can use ``url``, else why not."""
        ...


NOT_PROBED = "not probed: "
"""How a probe's answer begins when it could not be made for a reason that says nothing about
the storage (a busy queue): the finding then says so and does not fail."""

PROBE_SCRIPT = """\
import sys
from gridbridge.checks import check_storage_writable
found = check_storage_writable(sys.argv[1])
print(found.detail)
sys.exit(0 if found.ok else 1)
"""
"""The storage probe a site's node runs (``python -c PROBE_SCRIPT URL``: the probe ``config
check`` runs on this host); it prints ``URL: writable`` when the runtime there can use URL,
else why not."""


def probe_answer(url: str, said: str, code: int | None) -> str:
    """What a probe's output says: '' when it found ``url`` writable, else why not (its last
    line, the URL prefix dropped, any password in a URL hidden). ``code``: its exit status,
    where the site keeps it (None: judged by the output alone)."""
    from gridbridge.units import redact_urls

    lines = said.strip().splitlines()
    last = lines[-1].strip() if lines else ""
    if last == f"{url}: writable":
        return "" if code in (0, None) else f"the probe exited {code} after writing"
    why = last or (f"the probe exited {code}" if code is not None else "the probe said nothing")
    return redact_urls(why.removeprefix(f"{url}: "))[-500:]


def check_storage_writable(url: str, what: str = "checkpoint_root") -> Finding:
    """Write, read back and delete a probe object under ``url``."""
    import fsspec

    probe = f"{url.rstrip('/')}/.gridbridge-probe-{uuid.uuid4().hex[:12]}"
    try:
        put_bytes(probe, b"probe")  # creates a local root's folders, as the runtime would
        fs, path = fsspec.core.url_to_fs(probe)
        if fs.cat_file(path) != b"probe":
            return Finding(what, False, f"{url}: a probe object read back different bytes")
        fs.rm_file(path)
    except Exception as exc:  # every storage error is a finding, whatever its type
        return Finding(what, False, f"{url}: not writable: {type(exc).__name__}: {exc}")
    return Finding(what, True, f"{url}: writable")


def check_sites_reach_storage(
    config: GridConfig, adapters: Mapping[str, Adapter]
) -> list[Finding]:
    """Whether each site's jobs can reach the checkpoint root: a ``file://`` root only where
    they see this host's files; any root, probed on every node where the adapter can
    (:class:`StorageProbeAdapter`); elsewhere assumed, and said to be."""
    root = config.checkpoint_root
    local = root.startswith("file://") or "://" not in root
    findings = []
    for site in config.sites:
        adapter = adapters[site.name]
        shared = site.shares_files(Capability.LOCAL_FILES in adapter.capabilities())
        what = f"site {site.name}"
        if local and not shared:
            findings.append(Finding(what, False, (
                f"its jobs run on other hosts, which cannot reach the checkpoint root {root}; "
                "use object storage (s3://...) or set runtime.shared_filesystem: true if they "
                "mount the same folder")))
        elif isinstance(adapter, StorageProbeAdapter):
            findings += probe_findings(what, root, adapter.probe_storage(root),
                                       adapter.probe_unit)
        elif local:
            findings.append(Finding(what, True, f"its jobs see this host's files: {root}"))
        else:  # nothing tried from there: say so rather than claim it works
            findings.append(Finding(what, True, f"assumed to reach {root} (not probed from "
                                                "its hosts; this host reaches it)"))
    return findings


def probe_findings(what: str, url: str, found: Mapping[str, str],
                   unit: str = "node") -> list[Finding]:
    """One finding per node (or partition: ``unit``) of a storage probe's answer: '' or why
    not; an answer that begins :data:`NOT_PROBED` passes, saying it was assumed."""
    return [Finding(f"{what} {unit} {key}", True, f"its runtime reaches {url}") if not why
            else Finding(f"{what} {unit} {key}", True, f"assumed to reach {url} ({why})")
            if why.startswith(NOT_PROBED)
            else Finding(f"{what} {unit} {key}", False, f"cannot reach {url}: {why}")
            for key, why in sorted(found.items())]


def check_identities(config: GridConfig) -> list[Finding]:
    """Whose account each site runs jobs as (``run_as``): a warning where users share the
    service's; where each job runs as its owner's, whether that can work from here (root,
    the mapped logins, folders the accounts can enter) and what stays shared."""
    import os

    from gridbridge.fsowner import account, owner_along, reachable_problem

    findings = []
    for site in config.sites:
        what = f"site {site.name} run_as"
        if site.run_as == "service":
            findings.append(Finding(what, True, (
                "service: every user's jobs run as the service's own account here, so they "
                "can read each other's files and the service's; run_as: user gives each job "
                "its owner's account (local sites)"), warning=True))
            continue
        problems = []
        if os.geteuid() != 0:
            problems.append("the control plane must run as root to start jobs as their "
                            "owners' accounts")
        for user, login in sorted(site.users.items()):
            try:
                who = account(login)
            except (KeyError, ValueError) as exc:
                problems.append(f"users.{user}: {exc.args[0]}")
                continue
            for folder in (config.workdir, config.checkpoint_root):
                path = folder.removeprefix("file://")
                if "://" not in path and (why := reachable_problem(path + "/x", who)):
                    problems.append(why)
        root = config.checkpoint_root
        local = "://" not in root.removeprefix("file://")
        if local and owner_along(root.removeprefix("file://")) is not None:
            problems.append(f"checkpoint_root {root} lies in a folder another account "
                            "owns: the jobs' prefixes are handed over from root's folders only")
        if problems:
            findings += [Finding(what, False, p) for p in problems]
        elif not local:
            findings.append(Finding(what, True, (
                f"user: jobs run as their owners' accounts; their checkpoints in {root} are "
                "kept apart only by the control plane's prefix checks, since every job gets "
                "the site's storage credentials"), warning=True))
        else:
            findings.append(Finding(what, True, (
                f"user: jobs run as their owners' accounts, each job's prefix under {root} "
                "its owner's alone")))
    return findings


def check_prologues(config: GridConfig) -> list[Finding]:
    """Each site's prologue must parse as bash (``bash -n``): a stray quote would otherwise
    keep every attempt there from starting."""
    import subprocess

    from gridbridge.config import prologue_script

    findings = []
    for site in config.sites:
        if not site.runtime.prologue:
            continue
        what = f"site {site.name} prologue"
        try:
            proc = subprocess.run(["bash", "-n", "-c", prologue_script(site.runtime.prologue)],
                                  capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            findings.append(Finding(what, False, f"cannot check it with bash: {exc}"))
            continue
        ok = proc.returncode == 0
        findings.append(Finding(what, ok, "parses" if ok else proc.stderr.strip()[:300]))
    return findings
