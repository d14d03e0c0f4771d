"""The wheelhouse a bootstrap uploads: the operator's (``--wheelhouse``), or one built here
from the source checkout gridbridge runs from, once, the first time a node needs it.

Invariant: a built wheelhouse is keyed by the version, ``pyproject.toml``, the package's
sources (a checkout changed since the last build builds anew, though its version is the same)
and what it fits (implementation, X.Y, platform), and only a complete one (``.complete``,
written last, then renamed into place) is ever used, so a build that died half-way is never
uploaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
import tomllib
from pathlib import Path

from gridbridge.adapters._run import RunnerError

__all__ = ["Wheelhouse", "checkout", "local_tag", "wheel_of"]


class Wheelhouse:
    """The local wheelhouse, built from the checkout the first time a node needs it."""

    def __init__(self, checkout: Path | None, given: Path | None, cache_dir: Path,
                 version: str) -> None:
        self.checkout, self.given, self.cache_dir, self.version = (
            checkout, given, cache_dir, version)
        self._lock = threading.Lock()
        self._path: Path | None = given
        self._error: str | None = None
        self.built = False
        self.build_s = 0.0

    def get(self) -> Path:
        """The wheelhouse's folder, built now if need be (RunnerError, every time, when the
        build failed once)."""
        with self._lock:
            if self._path is None and self._error is None:
                try:
                    self._path = self._build()
                except RunnerError as exc:
                    self._error = str(exc)
            if self._path is None:
                raise RunnerError(self._error or "no wheelhouse")
            return self._path

    @property
    def path(self) -> Path | None:
        return self._path

    def _build(self) -> Path:
        assert self.checkout is not None
        pyproject = (self.checkout / "pyproject.toml").read_bytes()
        key = hashlib.sha256(pyproject + "\0".join(
            [self.version, *local_tag(), _sources_digest(self.checkout)]).encode()
        ).hexdigest()[:16]
        dest = self.cache_dir / f"wheelhouse-{self.version}-{key}"
        if (dest / ".complete").exists():
            return dest
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_dir / f".wheelhouse-{key}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        t0 = time.monotonic()
        # The base install only (no extras), plus pip itself: the nodes run pip from its wheel.
        argv = [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--quiet",
                "--wheel-dir", str(tmp), str(self.checkout), "pip"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=1800,
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise RunnerError("pip wheel did not finish within 1800s") from None
        if done.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RunnerError(f"building the wheelhouse failed (pip wheel, exit "
                              f"{done.returncode}): {(done.stderr or done.stdout)[-2000:]}")
        wheel_of(tmp, "gridbridge")
        wheel_of(tmp, "pip")
        (tmp / ".complete").write_text(f"{self.version}\n")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        self.built, self.build_s = True, round(time.monotonic() - t0, 1)
        return dest


def local_tag() -> tuple[str, str, str]:
    """What a wheelhouse built here fits: implementation, X.Y, platform."""
    return (sys.implementation.name, "{}.{}".format(*sys.version_info[:2]),
            sysconfig.get_platform())


def wheel_of(folder: Path, project: str) -> Path:
    """The one wheel of ``project`` in ``folder`` (RunnerError when there is none or several)."""
    found = sorted(folder.glob(f"{project}-*.whl"))
    if len(found) != 1:
        raise RunnerError(f"{folder} holds {len(found)} {project} wheels, not exactly one")
    return found[0]


def checkout() -> Path | None:
    """The source checkout gridbridge runs from (the folder with its pyproject.toml above the
    package), else None (installed from a wheel)."""
    spec = importlib.util.find_spec("gridbridge")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).resolve().parent.parent
    try:
        meta = tomllib.loads((root / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return root if meta.get("project", {}).get("name") == "gridbridge" else None


def _sources_digest(checkout: Path) -> str:
    """A digest of the package's files in ``checkout`` (names and contents)."""
    h = hashlib.sha256()
    for top in ("gridbridge", "adapters", "scheduler"):
        for path in sorted((checkout / top).rglob("*")):
            if path.is_file() and path.suffix in {".py", ".sh", ".typed"}:
                h.update(path.relative_to(checkout).as_posix().encode() + b"\0")
                h.update(path.read_bytes())
    return h.hexdigest()
