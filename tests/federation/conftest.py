"""The dev federation for the ``federation`` tests: every tier at once
(``deploy/dev/federation-up.sh``), up for the session and taken down at its end
(``federation-down.sh``) only if this session brought it up."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO

SCRIPTS = REPO / "deploy" / "dev"
STATE = REPO / ".peers" / "federation"


@dataclass(frozen=True)
class Federation:
    config: Path
    """The gridbridge.yaml federation-up.sh wrote."""
    env: dict[str, str]
    """What the control plane needs in its environment (STATE/env)."""
    ec2: Path
    """The EC2 emulation's folder: its interrupt/ inbox."""


def _read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    return env


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
        yield Federation(Path(proc.stdout.split()[-1]), _read_env(STATE / "env"),
                         STATE / "ec2")
    finally:
        if not was_up:
            subprocess.run(["bash", str(SCRIPTS / "federation-down.sh"), str(STATE)],
                           capture_output=True, timeout=300, check=False)
