"""A fake OpenPBS command set (``qsub``, ``qstat``, ``qdel``, ``pbsnodes``) for the PBS adapter's
tests: an emulation of a peer that cannot be installed here. See :mod:`tests.fakepbs.main`."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

__all__ = ["COMMANDS", "install"]

COMMANDS = ("qsub", "qstat", "qdel", "pbsnodes")
MAIN = Path(__file__).resolve().parent / "main.py"


def install(bin_dir: Path, python: str = sys.executable) -> Path:
    """Write the four commands into ``bin_dir`` as tiny scripts that run ``main.py`` with
    ``python`` (the test's own interpreter: ``/usr/bin/env python3`` would miss the venv),
    passing the command's name first. Returns ``bin_dir``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        shim = bin_dir / name
        shim.write_text(
            f"#!{python}\n"
            "import runpy, sys\n"
            f"sys.argv.insert(1, {name!r})  # runpy sets argv[0] to main.py's path\n"
            f"runpy.run_path({str(MAIN)!r}, run_name='__main__')\n"
        )
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir

