"""Opening a SQLite store: its files are private, and several processes opening the same new
store at once all succeed (the schema step takes turns instead of failing "database is
locked")."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gridbridge.scheduler.store import StateStore


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077, 0o177])
def test_a_new_sqlite_store_and_its_wal_and_shm_are_private(tmp_path: Path, umask: int) -> None:
    """Mode 0600 whatever the umask lets through (a stricter umask still applies)."""
    path = tmp_path / "state.db"
    old = os.umask(umask)
    try:
        store = StateStore(f"sqlite:///{path}")
        store.probe_write()
        modes = {p.name: stat.S_IMODE(p.stat().st_mode)
                 for p in tmp_path.iterdir() if p.name.startswith("state.db")}
        store.close()
    finally:
        os.umask(old)
    assert set(modes) >= {"state.db", "state.db-wal", "state.db-shm"}
    assert modes == dict.fromkeys(modes, 0o600 & ~umask), modes


_OPENER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gridbridge.scheduler.store import StateStore
    folder, start = Path(sys.argv[1]), float(sys.argv[2])
    rounds, period = int(sys.argv[3]), float(sys.argv[4])
    for r in range(rounds):
        while time.time() < start + r * period:  # every process starts round r together
            time.sleep(0.0005)
        store = StateStore(f"sqlite:///{folder / f'state-{r}.db'}")
        store.probe_write()
        store.close()
    """
)
ROUNDS, PROCESSES, PERIOD_S = 30, 8, 0.4


@pytest.mark.slow
def test_many_processes_open_one_new_store_at_once(tmp_path: Path) -> None:
    """Eight processes open the same new file at the same instant, round after round (a new
    file each round): no process ever fails (it failed with "database is locked")."""
    start = time.time() + 3.0  # after every interpreter has started
    procs = [subprocess.Popen([sys.executable, "-c", _OPENER, str(tmp_path), str(start),
                               str(ROUNDS), str(PERIOD_S)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(PROCESSES)]
    for p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    assert len(list(tmp_path.glob("state-*.db"))) == ROUNDS
