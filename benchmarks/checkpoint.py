"""Checkpoint store throughput against raw fsspec transfers of the same bytes.

Usage: python benchmarks/checkpoint.py [--url URL] [--size-mib N] [--reps R] [--json FILE]

Without --url it runs on file:// (a temp folder) and on the SeaweedFS S3 gateway (started with
deploy/dev/s3-start.sh when it is not running). For each URL, in one process, side by side:

* save / restore MiB/s of ``store.save`` / ``store.restore`` vs ``fs.pipe`` / ``fs.cat`` of the
  same arrays' bytes (fsspec's own bulk calls, concurrent on async filesystems), median of R;
* how long ``save_async`` blocks the caller (steady state, host buffers reused) vs a sync save;
* bytes written when 10% of the arrays change vs a full save;
* peak extra resident memory of save, save_async and restore against the state's size, each
  in a process of its own (the kernel's peak-RSS counter reset just before the operation).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
from rich.console import Console
from rich.table import Table

import gridbridge.checkpoint as ckpt

REPO = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
TARGETS = {"save_ratio": 0.85, "restore_ratio": 0.85, "async_block": 0.10, "incremental": 0.15,
           "save_extra_fraction": 0.10, "save_async_extra_fraction": 1.0,
           "restore_extra_fraction": 0.10}


def make_state(size_mib: int, seed: int = 0) -> dict[str, Any]:
    """A training-like mix: big float32 matrices, many small tensors, int64 and bf16 buffers."""
    rng = np.random.default_rng(seed)
    total = size_mib * MIB
    state: dict[str, Any] = {"model": {}, "optim": {}, "buffers": {}, "step": 0}
    big = int(total * 0.62) // 8
    for i in range(8):
        rows = max(1, big // (4 * 1024))
        state["model"][f"block{i}.weight"] = rng.standard_normal((rows, 1024), dtype=np.float32)
    for i in range(4):
        n = int(total * 0.06) // 8
        state["buffers"][f"index{i}"] = rng.integers(0, 1 << 40, max(1, n), dtype=np.int64)
    try:
        import ml_dtypes

        half: Any = ml_dtypes.bfloat16
    except ImportError:
        half = np.uint16  # bf16-sized stand-in
    for i in range(4):
        n = int(total * 0.06) // 2
        state["optim"][f"ema{i}"] = rng.standard_normal(max(1, n), dtype=np.float32).astype(half)
    small = int(total * 0.08) // 240
    for i in range(240):
        state["model"][f"norm{i}.bias"] = rng.standard_normal(max(1, small // 4), dtype=np.float32)
    return state


def leaves(state: Any, prefix: str = "") -> dict[str, np.ndarray]:
    if isinstance(state, dict):
        out: dict[str, np.ndarray] = {}
        for k, v in state.items():
            out.update(leaves(v, f"{prefix}{k}/"))
        return out
    return {prefix.rstrip("/"): state} if isinstance(state, np.ndarray) else {}


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bench_url(base: str, size_mib: int, reps: int, options: dict[str, Any]) -> dict[str, Any]:
    state = make_state(size_mib)
    arrays = leaves(state)
    nbytes = sum(a.nbytes for a in arrays.values())
    payload = {name: a.tobytes() for name, a in arrays.items()}
    fs, root = fsspec.core.url_to_fs(base, **options)
    runs: dict[str, list[float]] = {k: [] for k in ("save", "raw_put", "restore", "raw_get")}
    for rep in range(reps):
        run = f"{root.rstrip('/')}/bench-{uuid.uuid4().hex[:8]}"
        raw = {f"{run}/raw/{i:04d}": b for i, b in enumerate(payload.values())}
        fs.makedirs(f"{run}/raw", exist_ok=True)
        url = base.rstrip("/") + run[len(root.rstrip("/")) :] + "/store"
        with ckpt.open(url, storage_options=options) as store:
            # Both sides start from flushed dirty pages, and which goes first alternates, so
            # neither pays for the other's writeback.
            sides = [
                ("raw_put", "raw_get", lambda r=raw: fs.pipe(r), lambda r=raw: fs.cat(list(r))),
                ("save", "restore", lambda s=store: s.save(0, state), lambda s=store: s.restore(0)),
            ]
            for put_key, get_key, put, get in sides if rep % 2 == 0 else sides[::-1]:
                os.sync()
                runs[put_key].append(_timed(put)[0])
                runs[get_key].append(_timed(get)[0])
        fs.rm(run, recursive=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    result: dict[str, Any] = {"url": base, "bytes": nbytes, "reps": reps, "seconds": runs}
    for op, raw_op in (("save", "raw_put"), ("restore", "raw_get")):
        result[f"{op}_mib_s"] = nbytes / MIB / med[op]
        result[f"{raw_op}_mib_s"] = nbytes / MIB / med[raw_op]
        result[f"{op}_ratio"] = med[raw_op] / med[op]
    result.update(bench_async_and_incremental(base, root, fs, state, reps, options))
    return result


def bench_async_and_incremental(
    base: str, root: str, fs: Any, state: dict[str, Any], reps: int, options: dict[str, Any]
) -> dict[str, Any]:
    run = f"bench-{uuid.uuid4().hex[:8]}"
    url = f"{base.rstrip('/')}/{run}"
    blocks, syncs = [], []
    with ckpt.open(url, storage_options=options) as store:
        full = store.save(0, state)
        names = sorted(leaves(state))
        chosen = names[::10]  # 10% of the arrays
        changed_bytes = 0
        for name in chosen:
            arr = _lookup(state, name)
            arr.view(np.uint8)[:8] ^= 0xFF
            changed_bytes += arr.nbytes
        inc = store.save(1, state)
        store.save_async(2, _bumped(state, 2))  # first call allocates the host buffers
        store.wait()
        for i in range(reps):
            step = 10 + 2 * i
            t_block, _ = _timed(lambda s=step: store.save_async(s, _bumped(state, s)))
            t_async, _ = _timed(store.wait)
            blocks.append(t_block)
            syncs.append(_timed(lambda s=step: store.save(s + 1, _bumped(state, s + 1)))[0])
            _ = t_async
    fs.rm(f"{root.rstrip('/')}/{run}", recursive=True)
    return {
        "async_block_s": statistics.median(blocks),
        "sync_save_s": statistics.median(syncs),
        "async_block": statistics.median(blocks) / statistics.median(syncs),
        "incremental": inc.bytes_written / full.bytes_written,
        "changed_fraction": changed_bytes / sum(a.nbytes for a in leaves(state).values()),
        "arrays_changed": len(chosen),
        "arrays_total": len(names),
    }


def _lookup(state: dict[str, Any], name: str) -> np.ndarray:
    node: Any = state
    for part in name.split("/"):
        node = node[part]
    return node  # type: ignore[no-any-return]


def _bumped(state: dict[str, Any], step: int) -> dict[str, Any]:
    """Same arrays, every one touched, so an incremental save cannot skip any of them."""
    for arr in leaves(state).values():
        arr.view(np.uint8)[:1] = step % 251
    return state


# peak memory ---------------------------------------------------------------------------------

_MEMORY_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[5])
import gridbridge.checkpoint as ckpt
from checkpoint import make_state, leaves

def rss_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)

url, size, op, options = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
state = make_state(size) if op != "restore" else None
with ckpt.open(url, storage_options=options) as store:
    if op == "prepare":  # a checkpoint for the restore child to read
        store.save(0, state)
        print(json.dumps({"state_bytes": sum(a.nbytes for a in leaves(state).values())}))
        sys.exit(0)
    time.sleep(0.2)
    before = rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) starts again from here
    if op == "save":
        store.save(1, state)
    elif op == "save_async":
        store.save_async(1, state)
        store.wait()
    else:
        got = store.restore(0)
    peak = rss_kib("VmHWM")
print(json.dumps({"op": op, "extra_bytes": (peak - before) * 1024}))
"""


def bench_memory(base: str, size_mib: int, options: dict[str, Any]) -> dict[str, Any]:
    """Peak extra resident memory of a process's first save, first save_async (with the host
    buffers it allocates then and reuses after) and a restore, each in a process of its own
    (the kernel's peak-RSS counter reset just before), as fractions of the state's size;
    restore's extra is what it holds beyond the state it returns."""

    def child(url: str, op: str) -> dict[str, Any]:
        run = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, url, str(size_mib), op,
                              json.dumps(options), str(REPO / "benchmarks")],
                             capture_output=True, text=True, check=True)
        return json.loads(run.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    out: dict[str, Any] = {}
    url = f"{base.rstrip('/')}/mem-{uuid.uuid4().hex[:8]}"
    state_bytes = child(url, "prepare")["state_bytes"]
    for op in ("save", "save_async", "restore"):
        where = url if op == "restore" else f"{url}-{op}"
        extra = child(where, op)["extra_bytes"] - (state_bytes if op == "restore" else 0)
        out[f"{op}_extra_fraction"] = max(0, extra) / state_bytes
        out[f"{op}_extra_mib"] = max(0, extra) / MIB
    fs, root = fsspec.core.url_to_fs(base, **options)
    for path in fs.glob(f"{root.rstrip('/')}/mem-*"):
        fs.rm(path, recursive=True)
    return out


S3_DIR = REPO / ".peers" / "s3"


def seaweed_running() -> bool:
    try:
        pid = int((S3_DIR / "s3.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return Path(f"/proc/{pid}").exists()


def seaweed(python: str) -> str:
    out = subprocess.run(
        [str(REPO / "deploy" / "dev" / "s3-start.sh"), str(S3_DIR)],
        env={**os.environ, "PYTHON": python}, capture_output=True, text=True, check=True,
    )
    endpoint = out.stdout.strip().splitlines()[-1]
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="bench", secret="bench")
    if not fs.exists("gridbridge-bench"):
        fs.mkdir("gridbridge-bench")
    return endpoint


def render(results: list[dict[str, Any]]) -> None:
    table = Table(
        title="checkpoint store benchmark",
        caption="raw put/get = fs.pipe/fs.cat of the same bytes, one object per array, in one "
        "batched fsspec call (no Zarr metadata, no digests)",
    )
    for col in ("url", "metric", "value", "target", "met"):
        table.add_column(col)
    for r in results:
        rows = [
            ("save MiB/s (raw put)", f"{r['save_mib_s']:.0f} ({r['raw_put_mib_s']:.0f})", "", None),
            ("save / raw put", f"{r['save_ratio']:.2f}", ">= 0.85", r["save_ratio"] >= 0.85),
            ("restore MiB/s (raw get)",
             f"{r['restore_mib_s']:.0f} ({r['raw_get_mib_s']:.0f})", "", None),
            ("restore / raw get", f"{r['restore_ratio']:.2f}", ">= 0.85",
             r["restore_ratio"] >= 0.85),
            ("save_async block / sync save",
             f"{r['async_block']:.1%} ({r['async_block_s'] * 1e3:.0f} / "
             f"{r['sync_save_s'] * 1e3:.0f} ms)", "<= 10%", r["async_block"] <= 0.10),
            ("incremental bytes / full",
             f"{r['incremental']:.1%} ({r['arrays_changed']}/{r['arrays_total']} arrays, "
             f"{r['changed_fraction']:.1%} of bytes)", "<= 15%", r["incremental"] <= 0.15),
        ]
        if "save_extra_fraction" in r:
            for op, target in (("save", 0.10), ("save_async", 1.0), ("restore", 0.10)):
                frac = r[f"{op}_extra_fraction"]
                rows.append((f"{op} peak extra memory / state", f"{frac:.1%} "
                             f"({r[f'{op}_extra_mib']:.0f} MiB)", f"<= {target:.0%}",
                             frac <= target))
        url = r["url"].split("/bench")[0]
        for name, value, target, met in rows:
            verdict = "" if met is None else ("met" if met else "NOT met")
            table.add_row(url, name, value, target, verdict)
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", help="fsspec URL prefix (repeatable)")
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the peak-memory rows (a process per operation)")
    args = parser.parse_args()
    targets: list[tuple[str, dict[str, Any]]] = []
    tmp = None
    started_s3 = False
    if args.url:
        targets = [(u, {}) for u in args.url]
    else:
        tmp = tempfile.TemporaryDirectory(prefix="gb-bench-")
        started_s3 = not seaweed_running()
        endpoint = seaweed(sys.executable)
        targets = [
            (f"file://{tmp.name}", {}),
            ("s3://gridbridge-bench",
             {"endpoint_url": endpoint, "key": "bench", "secret": "bench"}),
        ]
    results = []
    for url, options in targets:
        print(f"benchmarking {url} with {args.size_mib} MiB x {args.reps} ...", file=sys.stderr)
        result = bench_url(url, args.size_mib, args.reps, options)
        if not args.no_memory:
            result.update(bench_memory(url, args.size_mib, options))
        results.append(result)
    render(results)
    if args.json:
        args.json.write_text(json.dumps({"targets": TARGETS, "results": results}, indent=2))
    if tmp is not None:
        tmp.cleanup()
    if started_s3:  # leave the machine as we found it
        subprocess.run([str(REPO / "deploy" / "dev" / "s3-stop.sh"), str(S3_DIR)], check=False)


if __name__ == "__main__":
    main()
