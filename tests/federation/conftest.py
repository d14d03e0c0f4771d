"""The dev federation for the ``federation`` tests: every tier at once
(``deploy/dev/federation-up.sh``), up for the session and taken down at its end
(``federation-down.sh``) only if this session brought it up. The tour's machinery is the
demo's own (``deploy/dev/tour.py``), imported from there."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import REPO

SCRIPTS = REPO / "deploy" / "dev"
STATE = REPO / ".peers" / "federation"
sys.path.insert(0, str(SCRIPTS))

from tour import Federation  # noqa: E402 - deploy/dev is not a package

__all__ = ["SCRIPTS", "STATE", "Federation", "federation"]


def _emulation_up() -> bool:
    try:
        pid = int((STATE / "ec2" / "emulator.pid").read_text())
        return "ec2-emulator.py" in Path(f"/proc/{pid}/cmdline").read_text()
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def federation() -> Iterator[Federation]:
    if os.geteuid() != 0:
        pytest.skip("the dev federation needs root (Slurm, network namespaces)")
    was_up = _emulation_up()
    proc = subprocess.run(["bash", str(SCRIPTS / "federation-up.sh"), str(STATE)],
                          capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        pytest.fail(f"the federation did not come up: {proc.stderr[-3000:]}")
    try:
        yield Federation.at(STATE)
    finally:
        if not was_up:
            subprocess.run(["bash", str(SCRIPTS / "federation-down.sh"), str(STATE)],
                           capture_output=True, timeout=300, check=False)
