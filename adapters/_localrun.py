"""The local adapter's attempts on this host: their logs, their process groups, and, on a
``run_as: user`` site, the accounts they run as.

Under ``run_as: user`` an attempt has two folders: the adapter's (root's alone: ``spawned``,
the markers, the resources, the memory cgroup's path) and the runtime's scratch, the job's
account's (``pid``, ``result.json``, the log, ``work/``). Before the first start the job's
local storage folders and the scratch are handed to the account (:func:`hand_over`); what the
adapter then reads there it reads as the account (:mod:`gridbridge.fsowner`), and the group
it signals is the one it spawned (:func:`spawned_pgid`)::

    submit ─> account_for(owner) ─> hand_over(prefix, checkpoints, scratch) ─> spawn as the
    account ─> into_group(memory cgroup) ... poll/cancel: signal spawned_pgid, read as it
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import BinaryIO

from gridbridge.adapter import SubmitRejected, SubmitRequest
from gridbridge.adapters._cgroup import attempt_group, drop_attempt_group
from gridbridge.adapters._rundir import RunFile, group_alive, read_text, runtime_alive
from gridbridge.config import SiteConfig
from gridbridge.fsowner import Account, account, as_owner, give, reachable_problem
from gridbridge.wire import local_path

__all__ = ["account_for", "hand_over", "into_group", "kill_after", "kill_group", "one_log",
           "prepare_run_as_user", "read_float", "readable", "spawned_pgid"]

log = logging.getLogger("gridbridge.adapters.local")

_GROUP_GONE_S = 5.0


# ------------------------------------------------------------------- run_as: user
def prepare_run_as_user(site: str, root: Path, jobs_root: Path) -> None:
    """Ready this process and the site's folders for jobs run as their owners' accounts;
    ValueError naming the site when this process is not root."""
    if os.geteuid() != 0:
        raise ValueError(f"site {site!r}: run_as: user needs the control plane to run as "
                         "root (it starts each job as its owner's account)")
    # Root's supplementary groups would still count when a job's files are read as its
    # account (setfsuid changes the uid and gid only); root needs none of them.
    os.setgroups([])
    os.chmod(root, 0o700)
    jobs_root.mkdir(parents=True, exist_ok=True)
    for folder in (jobs_root.parent, jobs_root):
        os.chmod(folder, 0o711)  # noqa: S103 - accounts enter their own folders, list none


def account_for(site: SiteConfig, request: SubmitRequest) -> Account:
    """The account ``request``'s job runs as; SubmitRejected when the host has none for its
    owner."""
    user = request.spec.owner.user
    try:
        return account(site.login_of(user))
    except (KeyError, ValueError) as exc:
        raise SubmitRejected(f"site {site.name!r} runs jobs as their owners' accounts "
                             f"(run_as: user), and the owner {user!r}: {exc.args[0]}") from None


def hand_over(request: SubmitRequest, who: Account, scratch: Path) -> None:
    """Make the job's local storage folders and the attempt's scratch ``who``'s;
    SubmitRejected naming the folder that cannot be."""
    folders = [scratch]
    attempts = local_path(request.attempt_url)
    if attempts is not None:  # <root>/<job>/attempts/<n>: the job's whole prefix
        folders.append(Path(attempts).parent.parent)
    checkpoints = local_path(request.checkpoint_url)
    if checkpoints is not None:
        folders.append(Path(checkpoints))
    for folder in folders:
        try:
            give(folder, who)
        except OSError as exc:
            raise SubmitRejected(f"cannot hand {folder} to {who.login}: {exc}") from None
        if problem := reachable_problem(folder, who):
            raise SubmitRejected(problem)


def into_group(site: str, d: Path, pid: int, who: Account) -> None:
    """Move the runtime into its memory cgroup, if it has one (the job's account may not move
    a process out of the service's group), and let the account's own join find it there."""
    group = attempt_group(d)
    if group is None:
        return
    try:
        os.chown(group / "cgroup.procs", who.uid, who.gid)
        (group / "cgroup.procs").write_text(f"{pid}\n")
    except OSError as exc:
        log.warning("site %s: cannot move %s into %s (%s); RLIMIT_DATA alone holds it",
                    site, d.name, group, exc)


def spawned_pgid(d: Path) -> int | None:
    """The process group the adapter spawned (the runtime leads it), from its own record."""
    try:
        return int((d / RunFile.SPAWNED).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# ------------------------------------------------------------------- logs and groups
def one_log(scratch: Path) -> BinaryIO:
    """The file the runtime's stdout and stderr go to: the runtime's own log, so the host keeps
    one copy of the output (its tee sees fd 1 is the log and writes each byte once), which
    also holds what was printed before the tee started. ``output.log``, the name the run
    folder protocol reads, links to it. Made as the scratch folder's owner."""
    path = scratch / RunFile.ATTEMPT_LOG
    with as_owner(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        with contextlib.suppress(FileExistsError):  # an adopted attempt has it already
            (scratch / RunFile.OUTPUT_LOG).symlink_to(RunFile.ATTEMPT_LOG.value)
    return open(fd, "ab")


def readable(segment: Path) -> str:
    """A log segment's text; empty when the job's account cannot read what is there (a job
    that put a link in place of its log gets no one else's file back)."""
    try:
        return read_text(segment)
    except OSError:
        return ""


def kill_group(d: Path, pgid: int | None) -> None:
    """SIGKILL what is left of the attempt's process group ``pgid`` and wait (briefly) until
    it is gone, then drop its memory cgroup. Only a group that still holds a process of this
    attempt is signalled."""
    if pgid is None:
        return
    deadline = time.monotonic() + _GROUP_GONE_S
    while group_alive(pgid, d.name) and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.02)
    drop_attempt_group(d)


def kill_after(d: Path, scratch: Path, pgid: int | None, grace_s: float) -> None:
    """Wait for the runtime to exit (up to the grace period), then kill whatever is left of
    the attempt's group: the runtime itself if it overstayed, or what it left behind."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and runtime_alive(d, scratch):
        time.sleep(0.05)
    kill_group(d, pgid)


def read_float(path: Path) -> float | None:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return None
