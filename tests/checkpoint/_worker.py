"""A second real process for the s3 tests: races a commit, or holds an old-token store open.

Usage: python _worker.py race URL OPTIONS_JSON STEP START_AT WHO
       python _worker.py fenced URL OPTIONS_JSON TOKEN   (saves step 1, prints "ready",
                                                         waits for a line, saves step 2)
Prints one JSON line per outcome.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

import gridbridge.checkpoint as ckpt


def _state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)  # both racers save the same arrays (deterministic replay)
    return {f"a{i}": rng.standard_normal(250_000).astype("float32") for i in range(4)}


def _outcome(store: ckpt.CheckpointStore, step: int, meta: dict[str, object]) -> str:
    try:
        store.save(step, _state(), metadata=meta)
    except ckpt.CommitConflict:
        return "conflict"
    except ckpt.FencedError:
        return "fenced"
    return "won"


def main(argv: list[str]) -> None:
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
