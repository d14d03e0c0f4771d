"""``gridbridge config check`` beyond the schema: can the storage be used, and by whom?

A configuration can be valid and still unusable: a checkpoint root under a regular file, a bucket
that does not exist, a ``file://`` root that sites on other hosts cannot see. Each check returns
a :class:`Finding`; the CLI prints them all and fails when one is a problem.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from gridbridge.adapter import Adapter, Capability
from gridbridge.config import GridConfig
from gridbridge.wire import put_bytes

__all__ = [
    "Finding",
    "check_prologues",
    "check_sites_reach_storage",
    "check_storage_writable",
]


@dataclass(frozen=True)
class Finding:
    what: str
    ok: bool
    detail: str


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
    """A ``file://`` checkpoint root works only on sites whose jobs see this host's files."""
    root = config.checkpoint_root
    local = root.startswith("file://") or "://" not in root
    findings = []
    for site in config.sites:
        shared = site.runtime.shared_filesystem
        if shared is None:
            shared = Capability.LOCAL_FILES in adapters[site.name].capabilities()
        what = f"site {site.name}"
        if local and not shared:
            findings.append(Finding(what, False, (
                f"its jobs run on other hosts, which cannot reach the checkpoint root {root}; "
                "use object storage (s3://...) or set runtime.shared_filesystem: true if they "
                "mount the same folder")))
        else:
            findings.append(Finding(what, True, f"reaches {root}"))
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
