"""A second real process for the s3 tests: races a commit, or holds an old-token store open.

Usage: python _worker.py race URL OPTIONS_JSON STEP START_AT WHO
       python _worker.py fenced URL OPTIONS_JSON TOKEN   (saves step 1, prints "ready",
                                                         waits for a line, saves step 2)
       python _worker.py duel OPTIONS_JSON WHO TOKEN     (rounds of same-step races: reads
                                                         "URL ROUND", opens a store there and
                                                         prints "ready"; reads "go", saves
                                                         duel_state(WHO, ROUND) as DUEL_STEP,
                                                         prints the outcome; "quit" ends)
Prints one JSON line per outcome.
"""

from __future__ import annotations

import json
import sys
import time
import zlib

import numpy as np

import gridbridge.checkpoint as ckpt


def _state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)  # both racers save the same arrays (deterministic replay)
    return {f"a{i}": rng.standard_normal(250_000).astype("float32") for i in range(4)}


DUEL_STEP = 100


def duel_state(who: str, round_: int) -> dict[str, np.ndarray]:
    """What racer ``who`` saves in round ``round_``: same names and shapes, other values."""
    rng = np.random.default_rng(zlib.crc32(f"{who}/{round_}".encode()))
    return {f"a{i}": rng.standard_normal(250_000).astype("float32") for i in range(4)}


def _duel(options: dict[str, object], who: str, token: int) -> None:
    for line in sys.stdin:
        if line.strip() == "quit":
            return
        url, round_ = line.split()
        state = duel_state(who, int(round_))
        store = ckpt.open(url, storage_options=options, token=token)
        store.steps()  # connected before the start signal
        print("ready", flush=True)
        sys.stdin.readline()  # "go"
        try:
            store.save(DUEL_STEP, state, metadata={"who": who})
            result = "won"
        except ckpt.CommitConflict:
            result = "conflict"
        print(json.dumps({"who": who, "result": result, "writer": store.writer}), flush=True)
        store.close()


def _outcome(store: ckpt.CheckpointStore, step: int, meta: dict[str, object]) -> str:
    try:
        store.save(step, _state(), metadata=meta)
    except ckpt.CommitConflict:
        return "conflict"
    except ckpt.FencedError:
        return "fenced"
    return "won"


def main(argv: list[str]) -> None:
    if argv[0] == "duel":
        _duel(json.loads(argv[1]), argv[2], int(argv[3]))
        return
    mode, url, options = argv[0], argv[1], json.loads(argv[2])
    if mode == "race":
        step, start_at, who = int(argv[3]), float(argv[4]), argv[5]
        store = ckpt.open(url, storage_options=options)
        store.steps()  # connect before the start line
        time.sleep(max(0.0, start_at - time.time()))
        print(json.dumps({"who": who, "result": _outcome(store, step, {"who": who})}), flush=True)
    elif mode == "fenced":
        store = ckpt.open(url, storage_options=options, token=int(argv[3]))
        print(json.dumps({"step1": _outcome(store, 1, {})}), flush=True)
        print("ready", flush=True)
        sys.stdin.readline()
        print(json.dumps({"step2": _outcome(store, 2, {})}), flush=True)
    store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
