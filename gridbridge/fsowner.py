"""Local files of a job that runs as its own Unix user, touched by a control plane that runs
as root.

A site with ``run_as: user`` starts each job as its owner's Unix account, so the job's run
folder and its checkpoint prefix are that user's. The control plane still reads and writes
them (launch records, fences, results, logs, the run folder's files), and as root it could be
led anywhere by a link the job planted there: ``result.json -> /etc/shadow`` read back as the
job's log, ``fence.json.tmp -> /etc/passwd`` overwritten. The rule that closes this:

    as root, a local path is touched with the file-system identity of the first account other
    than root that owns a component along it (``setfsuid``/``setfsgid``, this thread only)

so whatever link a job plants leads only where its own user may go, and what the control plane
creates in a job's folder belongs to that user. Components are examined top-down with
``lstat``: everything above the first foreign one is root's, hence cannot change under us. A
process that is not root skips all of this (the kernel already holds it to its own rights).

Linux only; elsewhere there is no ``run_as: user`` and :func:`as_owner` does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import pwd
import stat
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

__all__ = ["Account", "account", "as_owner", "give", "owner_along", "reachable_problem"]


class Account:
    """A Unix account a job runs as: login, uid, primary gid, home."""

    __slots__ = ("gid", "home", "login", "uid")

    def __init__(self, login: str, uid: int, gid: int, home: str) -> None:
        self.login, self.uid, self.gid, self.home = login, uid, gid, home

    def __repr__(self) -> str:
        return f"Account({self.login!r}, uid={self.uid}, gid={self.gid})"


def account(login: str) -> Account:
    """The account named ``login``; KeyError naming it when this host has none, ValueError
    for root (a job never runs as root under ``run_as: user``)."""
    try:
        entry = pwd.getpwnam(login)
    except KeyError:
        raise KeyError(f"no Unix user {login!r} on this host") from None
    if entry.pw_uid == 0:
        raise ValueError(f"Unix user {login!r} is root: run_as: user never runs a job as root")
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    return libc if hasattr(libc, "setfsuid") else None


def _primary_gid(uid: int, fallback: int) -> int:
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return fallback


def owner_along(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(uid, gid)`` of the first component of ``path`` (top-down, not following the
    component itself) owned by an account other than root; None when root owns every
    existing component, or when this process is not root."""
    if os.geteuid() != 0:
        return None
    parts = Path(os.path.abspath(os.fspath(path))).parts
    current = parts[0]
    for part in parts[1:]:
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if st.st_uid != 0:
            return st.st_uid, _primary_gid(st.st_uid, st.st_gid)
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            return None
    return None


@contextlib.contextmanager
def as_owner(path: str | os.PathLike[str]) -> Iterator[None]:
    """Touch ``path`` inside this block with the identity :func:`owner_along` finds (this
    thread's file-system uid and gid only); a no-op where that is root or nobody."""
    owner = owner_along(path)
    libc = _libc() if owner is not None else None
    if owner is None or libc is None:
        yield
        return
    uid, gid = owner
    old_gid = libc.setfsgid(gid)
    old_uid = libc.setfsuid(uid)
    try:
        yield
    finally:
        libc.setfsuid(old_uid)
        libc.setfsgid(old_gid)


def give(folder: str | os.PathLike[str], who: Account) -> None:
    """Make ``folder`` ``who``'s (0700): created if missing (its parents root's, 0755), and
    handed over with everything in it if root owns it (what the control plane wrote there,
    e.g. a payload, before the job's first attempt on a ``run_as: user`` site). A folder that
    another account owns, or a link, is refused with PermissionError."""
    path = os.path.abspath(os.fspath(folder))
    owner = owner_along(os.path.dirname(path))
    if owner is not None:
        raise PermissionError(f"{os.path.dirname(path)} belongs to uid {owner[0]}, not root: "
                              f"cannot hand {path} to {who.login}")
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise PermissionError(f"{path} is not a folder")
    if st.st_uid == who.uid:
        return
    if st.st_uid != 0:
        raise PermissionError(f"{path} belongs to uid {st.st_uid}, not {who.login} "
                              f"(uid {who.uid})")
    # Root owns the tree, so nothing in it can change while it is walked.
    for top, dirs, files in os.walk(path, topdown=True, followlinks=False):
        for name in [*dirs, *files]:
            os.chown(os.path.join(top, name), who.uid, who.gid, follow_symlinks=False)
    os.chown(path, who.uid, who.gid, follow_symlinks=False)
    os.chmod(path, 0o700)


def reachable_problem(path: str | os.PathLike[str], who: Account) -> str | None:
    """Why ``who`` cannot reach ``path`` (a folder above it that others may not enter), or
    None."""
    current = os.path.abspath(os.fspath(path))
    while True:
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent
        try:
            st = os.stat(current)
        except OSError:
            continue
        if st.st_uid == who.uid:
            continue
        if st.st_mode & 0o001 or (st.st_gid == who.gid and st.st_mode & 0o010):
            continue
        return (f"{who.login} cannot enter {current} (mode {stat.S_IMODE(st.st_mode):o}, "
                f"owner uid {st.st_uid}): let others enter it (chmod o+x) or move the folder")
