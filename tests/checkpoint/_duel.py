"""Same-step races between two real processes (``_worker.py duel``), and what must hold after.

Each round, both processes open a store on a fresh prefix, wait for one start signal sent to both
at once, and save the same step with different arrays. Exactly one must win, and the committed
step must hold exactly the winner's arrays.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import numpy as np

import gridbridge.checkpoint as ckpt

from ._worker import DUEL_STEP, duel_state

WORKER = Path(__file__).with_name("_worker.py")
REPO = Path(__file__).resolve().parents[2]
TOKEN = 7


def _line(proc: subprocess.Popen[str], err: IO[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        err.seek(0)
        raise AssertionError(f"duel worker died: {err.read()[-3000:]}")
    return line.strip()


def run_duels(urls: list[str], options: dict[str, Any]) -> list[list[dict[str, str]]]:
    """Race two processes once per prefix in ``urls``; return both outcomes of every round."""
    with tempfile.TemporaryFile("w+") as err1, tempfile.TemporaryFile("w+") as err2:
        return _duels(urls, options, [err1, err2])


def _duels(urls: list[str], options: dict[str, Any], errs: list[IO[str]]) -> list[list[Any]]:
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "duel", json.dumps(options), who, str(TOKEN)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO,
        )
        for who, err in zip(("p1", "p2"), errs, strict=True)
    ]
    rounds = []
    try:
        for index, url in enumerate(urls):
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(f"{url} {index}\n")
                proc.stdin.flush()
            for proc, err in zip(procs, errs, strict=True):
                assert _line(proc, err) == "ready"
            for proc in procs:  # both start within a few microseconds of each other
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            rounds.append([json.loads(_line(p, e)) for p, e in zip(procs, errs, strict=True)])
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("quit\n")
            proc.stdin.flush()
        for proc in procs:
            assert proc.wait(timeout=60) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
    return rounds


def check_round(
    url: str, options: dict[str, Any], index: int, results: list[dict[str, str]]
) -> bool:
    """Assert one round's invariants; return whether the loser had written data of its own."""
    where = f"round {index} at {url}: {results}"
    assert sorted(r["result"] for r in results) == ["conflict", "won"], where
    winner = next(r for r in results if r["result"] == "won")
    loser = next(r for r in results if r["result"] == "conflict")
    assert winner["writer"] != loser["writer"]
    with ckpt.open(url, storage_options=options) as store:
        assert store.steps() == [DUEL_STEP], where
        commit = store.commit_record(DUEL_STEP)
        assert (commit["writer"], commit["token"]) == (winner["writer"], TOKEN), where
        assert commit["folder"] == f"{DUEL_STEP:010d}.{winner['writer']}", where
        assert commit["metadata"] == {"who": winner["who"]}, where
        mine, theirs = duel_state(winner["who"], index), duel_state(loser["who"], index)
        back = store.restore(DUEL_STEP)  # raises CorruptCheckpoint if any loser byte got in
        assert sorted(back.state) == sorted(mine)
        for name, arr in mine.items():
            np.testing.assert_array_equal(back.state[name], arr)
            assert not np.array_equal(back.state[name], theirs[name])
        assert all(r.ok for r in store.verify())
        loser_folder = f"{DUEL_STEP:010d}.{loser['writer']}"
        swept = [p.rsplit("/", 1)[-1] for p in store.sweep(older_than_s=0)]
        assert swept in ([], [loser_folder]), (where, swept)
        backend, paths = store._backend, store._paths
        assert backend.newest_mtime(paths.folder(loser_folder)) is None, where  # all swept
        np.testing.assert_array_equal(store.restore(DUEL_STEP).state["a0"], mine["a0"])
    return bool(swept)
