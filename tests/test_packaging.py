"""Every optional-dependency set of gridbridge resolves against today's package index, quickly.

``pip install '.[aws]'`` once failed with ResolutionImpossible after minutes of backtracking:
boto3's newest release needed a botocore that no aiobotocore (which s3fs needs) accepted, and
pip walked back through every s3fs/fsspec pair instead of through boto3. ``make test`` never
installed that extra, so nothing noticed. These tests ask pip itself, as a user would, to
resolve each extra and all of them together (``--dry-run``: nothing is installed) within a
time limit, and check that what it chose is consistent.

The wheel is built once for the module (from a copy of the source, so the working tree gets no
build output) and every resolution starts from it: building gridbridge's metadata again for each
extra told nothing new.

The ``torch`` extra is deliberately not resolved here: from the package index an unpinned torch
is the multi-GB CUDA build, whose wheels pip may have to download just to read their metadata.
``make test-deps`` installs the pinned CPU build separately instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
RESOLVE_TIMEOUT_S = 240

# The packages whose versions must agree for the aws extra: boto3 and aiobotocore each pin
# botocore to a narrow range, and s3fs pins fsspec to its own release.
AWS_STACK = ("boto3", "botocore", "aiobotocore", "s3fs", "fsspec")

EXTRAS = ["aws", "ssh", "dask", "dev", "aws,ssh,dask,dev"]
EXPECTED = {
    "aws": {"boto3", "botocore", "aiobotocore", "s3fs", "fsspec"},
    "ssh": {"paramiko"},
    "dask": {"dask", "distributed", "dask-jobqueue"},
    "dev": {"pytest", "ruff", "mypy", "s3fs", "aiobotocore", "botocore", "fsspec"},
}


_BUILD_ONLY = shutil.ignore_patterns(
    ".*", "build", "dist", "*.egg-info", "__pycache__", "tests", "benchmarks", "docs")
"""What the copy of the source that the wheel is built from leaves out: not part of the
distribution (dot-folders hold the venv, caches and the test services' state)."""


def _build_wheel(workdir: Path) -> Path:
    """gridbridge's wheel, built by pip (no dependencies resolved) from a copy of the source."""
    src = workdir / "src"
    shutil.copytree(REPO, src, ignore=_BUILD_ONLY, symlinks=True)
    out = workdir / "wheel"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=RESOLVE_TIMEOUT_S, cwd=workdir,
    )
    assert proc.returncode == 0, f"the wheel did not build:\n{proc.stderr[-4000:]}"
    [wheel] = out.glob("gridbridge-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_wheel(tmp_path_factory.mktemp("packaging"))


def _resolve(wheel: Path, extras: str) -> dict[str, Any]:
    """pip's installation report for ``gridbridge[extras]`` in an empty environment."""
    argv = [
        sys.executable, "-m", "pip", "install",
        "--dry-run", "--ignore-installed", "--quiet", "--report", "-",
        f"{wheel}[{extras}]",
    ]
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=RESOLVE_TIMEOUT_S, cwd=wheel.parent,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"pip did not resolve gridbridge[{extras}] within {RESOLVE_TIMEOUT_S} s "
            f"(long backtracking?)\n{str(exc.stderr or '')[-4000:]}"
        )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, (
        f"pip could not resolve gridbridge[{extras}] ({elapsed:.0f} s):\n{proc.stderr[-4000:]}"
    )
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def _versions(report: dict[str, Any]) -> dict[str, Version]:
    return {
        canonicalize_name(item["metadata"]["name"]): Version(item["metadata"]["version"])
        for item in report["install"]
    }


def _unmet(report: dict[str, Any]) -> list[str]:
    """Each requirement of a resolved distribution that the resolved set does not satisfy.

    Requirements behind an extra are checked for gridbridge's requested extras only (the report
    does not say which extras of a dependency were asked for).
    """
    env: dict[str, str] = dict(report["environment"])
    chosen = _versions(report)
    problems = []
    for item in report["install"]:
        meta = item["metadata"]
        wanted_extras = ["", *(item.get("requested_extras") or [])]
        for line in meta.get("requires_dist") or []:
            req = Requirement(line)
            marker: Marker | None = req.marker
            if marker is not None and not any(
                marker.evaluate({**env, "extra": e}) for e in wanted_extras
            ):
                continue
            name = canonicalize_name(req.name)
            have = chosen.get(name)
            if have is None:
                problems.append(f"{meta['name']} {meta['version']} needs {req}: not resolved")
            elif not req.specifier.contains(have, prereleases=True):
                problems.append(f"{meta['name']} {meta['version']} needs {req}: got {have}")
    return problems


def _requirement_on(report: dict[str, Any], package: str, dependency: str) -> Requirement:
    for item in report["install"]:
        if canonicalize_name(item["metadata"]["name"]) == package:
            for line in item["metadata"].get("requires_dist") or []:
                req = Requirement(line)
                if canonicalize_name(req.name) == dependency and req.marker is None:
                    return req
    raise AssertionError(f"{package} declares no requirement on {dependency}")


@pytest.mark.parametrize("extras", EXTRAS)
def test_extra_resolves_quickly_and_consistently(extras: str, wheel: Path) -> None:
    report = _resolve(wheel, extras)
    chosen = _versions(report)

    assert "gridbridge" in chosen
    assert "torch" not in chosen
    for extra in extras.split(","):
        missing = EXPECTED[extra] - chosen.keys()
        assert not missing, f"gridbridge[{extras}] resolved without {sorted(missing)}"
    assert _unmet(report) == []

    if "s3fs" in chosen:
        # s3fs pins fsspec to its own release; aiobotocore pins botocore to a narrow range.
        assert chosen["fsspec"] == chosen["s3fs"], (chosen["s3fs"], chosen["fsspec"])
        assert chosen["fsspec"] in _requirement_on(report, "s3fs", "fsspec").specifier
        assert chosen["aiobotocore"] in _requirement_on(report, "s3fs", "aiobotocore").specifier
        assert chosen["botocore"] in _requirement_on(report, "aiobotocore", "botocore").specifier
    if "boto3" in chosen:
        # boto3 pins the botocore of its own release line: the one chosen must satisfy both.
        assert chosen["botocore"] in _requirement_on(report, "boto3", "botocore").specifier
        assert all(name in chosen for name in AWS_STACK)
