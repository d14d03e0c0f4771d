"""Memory limits for local attempts through the kernel's memory cgroup controller.

A local attempt whose job asks for ``memory_gb`` gets a cgroup of its own, a child of a parent
the adapter may use, holding its runtime and every process the job starts. The kernel then
counts what the whole attempt really uses (resident memory and page cache, children included),
and when it would go over, reclaims, and failing that kills the largest process in the group.
That kill is read back from the group's event counters (:func:`gridbridge.procinfo.oom_killed`),
so the attempt ends FAILED with the reason ``out_of_memory`` even when the process killed was
the runtime itself.

Both hierarchies are supported, as the same three files under different names:

========  ============================  ==========================  ============================
version   limit                         swap                        OOM kills
========  ============================  ==========================  ============================
v2        ``memory.max``                ``memory.swap.max`` = 0     ``oom_kill`` in
                                                                    ``memory.events``
v1        ``memory.limit_in_bytes``     ``memory.memsw.limit_in_    ``oom_kill`` in
                                        bytes`` = the limit         ``memory.oom_control``
========  ============================  ==========================  ============================

Which parent (``options.memory_cgroup`` of a local site):

* ``auto`` (the default): on cgroup v2, the adapter's own group if the memory controller is
  enabled for its children (``memory`` in its ``cgroup.subtree_control``: the root group, in
  practice, since v2 lets no group with processes of its own hand controllers down); else, on
  v1, the adapter's own group in the memory hierarchy, if it may create groups there. If
  neither holds, there is no cgroup and the runtime's ``RLIMIT_DATA`` alone holds the job.
* a path: that group, which must be a delegated v2 group with ``memory`` in its
  ``cgroup.subtree_control`` or a v1 memory group (a ``systemd`` unit with ``Delegate=yes``, or
  one made by hand: ``mkdir /sys/fs/cgroup/gridbridge; echo +memory >
  /sys/fs/cgroup/cgroup.subtree_control``). A path that is neither is a config error.
* ``off``: no cgroup.

The runtime moves itself into the attempt's group (``--memory-cgroup``) before it starts the
job, so nothing the job allocates escapes it; it also keeps ``RLIMIT_DATA``, under which a
single process that asks for too much gets a clean ``MemoryError`` instead of a kill.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from gridbridge.adapters._rundir import RunFile
from gridbridge.procinfo import oom_killed

__all__ = ["RUNTIME_ALLOWANCE", "MemoryCgroups", "attempt_group", "attempt_oom_killed",
           "drop_attempt_group", "find_parent"]

RUNTIME_ALLOWANCE = 128 * 2**20
"""Bytes added to the job's ``memory_gb`` for the runtime itself (the interpreter, the
job's pickled function, log buffers), which shares the attempt's group."""

_PREFIX = "gridbridge-"


def _mounts(mountinfo: str) -> list[tuple[str, str, str, str]]:
    """(fstype, mount root, mount point, super options) of each line of a mountinfo file."""
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 5 or len(fields) < sep + 4:
            continue
        point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        found.append((fields[sep + 1], fields[3], point, fields[sep + 3]))
    return found


def _own_groups(proc_cgroup: str) -> dict[str, str]:
    """Hierarchy -> this process's group in it: ``""`` for v2, ``"memory"`` for v1 memory."""
    groups = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            groups[""] = path
        elif "memory" in controllers.split(","):
            groups["memory"] = path
    return groups


def _under(point: str, mount_root: str, group: str) -> Path | None:
    """The directory of ``group`` in a hierarchy mounted at ``point`` from ``mount_root``."""
    if mount_root != "/" and not (group == mount_root or group.startswith(mount_root + "/")):
        return None  # this mount does not show our group
    rest = group[len(mount_root):] if mount_root != "/" else group
    return Path(point) / rest.lstrip("/")


def _v2_delegates_memory(path: Path) -> bool:
    try:
        return "memory" in (path / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False


def _v1_usable(path: Path) -> bool:
    return (path / "memory.limit_in_bytes").exists() and os.access(path, os.W_OK | os.X_OK)


@dataclass(frozen=True)
class MemoryCgroups:
    """Makes the attempts' groups under one parent (the local adapter removes each once its
    attempt has ended and nothing is left in it)."""

    parent: Path
    version: int
    """2 or 1."""

    def create(self, attempt_id: str, limit_bytes: int) -> Path:
        """The attempt's group with its limit set (made if missing; the same on a repeat)."""
        group = self.parent / f"{_PREFIX}{attempt_id}"
        with contextlib.suppress(FileExistsError):
            group.mkdir()
        limit = str(int(limit_bytes))
        if self.version == 2:
            (group / "memory.max").write_text(limit)
            swap = group / "memory.swap.max"
            if swap.exists():
                swap.write_text("0")
        else:
            (group / "memory.limit_in_bytes").write_text(limit)
            swap = group / "memory.memsw.limit_in_bytes"  # memory + swap: no swap on top
            if swap.exists():
                with contextlib.suppress(OSError):
                    swap.write_text(limit)
        return group


def find_parent(setting: str, *, mountinfo: str | None = None,
                proc_cgroup: str | None = None) -> MemoryCgroups | None:
    """The groups a local site makes its attempts' cgroups in (see the module's text for
    ``setting``); None for none. Raises ValueError for a path that cannot serve."""
    if setting == "off":
        return None
    if setting != "auto":
        path = Path(setting)
        if _v2_delegates_memory(path) and os.access(path, os.W_OK | os.X_OK):
            return MemoryCgroups(path, 2)
        if _v1_usable(path):
            return MemoryCgroups(path, 1)
        raise ValueError(
            f"{setting} is not a cgroup this process may make memory-limited groups in: it "
            "needs 'memory' in its cgroup.subtree_control (cgroup v2) or to be a writable "
            "group of the v1 memory hierarchy; use 'auto' or 'off' otherwise")
    try:
        mountinfo = mountinfo if mountinfo is not None else Path(
            "/proc/self/mountinfo").read_text()
        proc_cgroup = proc_cgroup if proc_cgroup is not None else Path(
            "/proc/self/cgroup").read_text()
    except OSError:
        return None
    groups = _own_groups(proc_cgroup)
    mounts = _mounts(mountinfo)
    if "" in groups:
        for fstype, root, point, _ in mounts:
            if fstype == "cgroup2":
                v2 = _under(point, root, groups[""])
                if v2 is not None and _v2_delegates_memory(v2) and os.access(
                        v2, os.W_OK | os.X_OK):
                    return MemoryCgroups(v2, 2)
    if "memory" in groups:
        for fstype, root, point, options in mounts:
            if fstype == "cgroup" and "memory" in options.split(","):
                v1 = _under(point, root, groups["memory"])
                if v1 is not None and _v1_usable(v1):
                    return MemoryCgroups(v1, 1)
    return None


# An attempt's group, as its run folder records it (``cgroup``: written by the local adapter).

_DROP_WAIT_S = 30.0
"""How long a background removal waits for the last processes of a group to exit."""
_DROPPING: set[Path] = set()
_DROPPING_LOCK = threading.Lock()


def attempt_group(d: Path) -> Path | None:
    """The memory cgroup of the attempt whose run folder is ``d``, if the adapter made one
    (only ever ``gridbridge-<attempt id>``: a folder naming another group is ignored)."""
    try:
        group = Path((d / RunFile.CGROUP).read_text().strip())
    except OSError:
        return None
    return group if group.name == f"{_PREFIX}{d.name}" else None


def attempt_oom_killed(d: Path) -> bool:
    """Whether the kernel killed a process of the attempt for going over its memory."""
    group = attempt_group(d)
    return group is not None and oom_killed(group)


def drop_attempt_group(d: Path) -> None:
    """Remove the attempt's memory cgroup once nothing is left in it: at once, or from a
    background thread while its last processes finish exiting (a process the kernel just
    killed can stay in the group for a moment). The sweep's ``owned()`` tries again later."""
    group = attempt_group(d)
    if group is None or _try_rmdir(d, group):
        return
    with _DROPPING_LOCK:
        if group in _DROPPING:
            return
        _DROPPING.add(group)

    def drop() -> None:
        try:
            deadline = time.monotonic() + _DROP_WAIT_S
            while not _try_rmdir(d, group) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            with _DROPPING_LOCK:
                _DROPPING.discard(group)

    threading.Thread(target=drop, name=f"drop-{group.name}", daemon=True).start()


def _try_rmdir(d: Path, group: Path) -> bool:
    try:
        group.rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        return False  # a process is still in it
    with contextlib.suppress(OSError):
        (d / RunFile.CGROUP).unlink()
    return True
