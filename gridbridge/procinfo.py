"""What the kernel says about a process and a memory cgroup, read from ``/proc`` and the
cgroup's own files. Both sides use it: the runtime records its own start time beside its pid,
and the control plane (the local adapter, the reconciler's lease) tells a live process from a
reused pid and an out-of-memory kill from any other death."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["boot_id", "oom_killed", "proc_start_time"]


def proc_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (to tell a reused pid apart), None if gone/zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in {"Z", "X"}:
        return None
    return fields[19]


def boot_id() -> str:
    """This boot of this machine (the kernel's random boot id, without dashes), or "" where
    the kernel does not say. Another host, or this host before a reboot, never matches."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
    except OSError:
        return ""


def oom_killed(group: str | os.PathLike[str]) -> bool:
    """Whether the kernel killed a process of this cgroup for going over its memory limit
    (``oom_kill`` in ``memory.events`` on cgroup v2, in ``memory.oom_control`` on v1)."""
    for name in ("memory.events", "memory.oom_control"):
        try:
            text = Path(group, name).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return value.strip().isdigit() and int(value) > 0
    return False
