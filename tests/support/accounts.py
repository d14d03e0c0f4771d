"""Real Unix accounts for the ``run_as: user`` tests (root only): made with ``useradd`` and
removed after, and the folders above the interpreter and the checkout opened for others to
enter (search, not list) while a test runs jobs as those accounts, then closed again."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import gridbridge


@contextlib.contextmanager
def unix_users(count: int) -> Iterator[list[str]]:
    """``count`` fresh accounts (own group, no home, no shell), deleted at the end."""
    names = [f"gbu{uuid.uuid4().hex[:8]}" for _ in range(count)]
    made = []
    try:
        for name in names:
            subprocess.run(["useradd", "--no-create-home", "--user-group", "--shell",
                            "/bin/false", name], check=True, capture_output=True)
            made.append(name)
        yield names
    finally:
        for name in made:
            subprocess.run(["userdel", name], check=False, capture_output=True)


def _ancestors(path: Path) -> list[Path]:
    path = path.resolve()
    return [*reversed(path.parents), path] if path.is_dir() else [*reversed(path.parents)]


@contextlib.contextmanager
def enterable_by_others(paths: Sequence[Path]) -> Iterator[None]:
    """Every folder above ``paths`` lets others enter it (o+x) for the block; the modes
    changed are put back after. (The project's interpreter may lie under root's 0700 home.)"""
    changed: dict[Path, int] = {}
    try:
        for path in paths:
            for folder in _ancestors(path):
                mode = stat.S_IMODE(folder.stat().st_mode)
                if not mode & 0o001 and folder not in changed:
                    changed[folder] = mode
                    os.chmod(folder, mode | 0o001)
        yield
    finally:
        for folder, mode in changed.items():
            with contextlib.suppress(OSError):
                os.chmod(folder, mode)


def runtime_paths() -> list[Path]:
    """What a job's account must reach to run the runtime: the interpreter (through every
    link), the environment's packages and the checkout."""
    exe = Path(sys.executable)
    found = [exe.parent, Path(os.path.realpath(exe)), Path(sys.prefix), Path(sys.base_prefix),
             Path(gridbridge.__file__).resolve().parent.parent]
    return [p for p in found if p.exists()]
