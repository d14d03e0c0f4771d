"""The checkpoint store against a real object store (SeaweedFS's S3 gateway) and real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import s3fs
import zarr

import gridbridge.checkpoint as ckpt

from ._duel import check_round, run_duels

pytestmark = pytest.mark.s3
WORKER = Path(__file__).with_name("_worker.py")
REPO = Path(__file__).resolve().parents[2]


def _fs(server: dict[str, Any]) -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(skip_instance_cache=True, **server["storage_options"])


def _state(seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "model": {"w": rng.standard_normal((300, 200)).astype("float32"), "b": np.zeros(200)},
        "ids": rng.integers(0, 1 << 40, 1000),
        "epoch": seed,
    }


def test_roundtrip_and_plain_zarr(s3_url: str, s3_server: dict[str, Any]) -> None:
    opts = s3_server["storage_options"]
    state = _state(1)
    with ckpt.open(s3_url, storage_options=opts, token=1) as store:
        store.save(10, state, metadata={"epoch": 1})
        back = store.restore()
        assert back.step == 10 and back.metadata == {"epoch": 1} and back.state["epoch"] == 1
        np.testing.assert_array_equal(back.state["model"]["w"], state["model"]["w"])
        step_url = store.step_url(10)
    assert step_url == f"{s3_url}/steps/0000000010.{store.writer}"
    group = zarr.open_group(step_url, mode="r", storage_options=opts)
    np.testing.assert_array_equal(group["model.w"][...], state["model"]["w"])
    np.testing.assert_array_equal(group["ids"][...], state["ids"])
    assert dict(group.attrs) == {"epoch": 1}


def test_uncommitted_invisible_and_swept(s3_url: str, s3_server: dict[str, Any]) -> None:
    fs = _fs(s3_server)
    prefix = s3_url.removeprefix("s3://")
    with ckpt.open(s3_url, storage_options=s3_server["storage_options"]) as store:
        store.save(1, _state(1))
        store.save(2, _state(2))
        two = store.commit_record(2)["folder"]
        fs.rm(f"{prefix}/commits/0000000002.json")
        assert store.steps() == [1] and store.restore().step == 1
        assert store.sweep(older_than_s=3600) == []
        removed = store.sweep(older_than_s=0)
        assert [p.rsplit("/", 1)[-1] for p in removed] == [two]
        fs.invalidate_cache()
        left = fs.find(f"{prefix}/steps/{two}", detail=True).values()
        assert not [i for i in left if i["type"] == "file"]
        assert store.sweep(older_than_s=0) == []  # reported once only


def _run_race(url: str, opts: dict[str, Any], step: int) -> list[dict[str, str]]:
    start_at = time.time() + 4.0  # both interpreters are up and connected by then
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "race", url, json.dumps(opts), str(step),
             str(start_at), who],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        )
        for who in ("p1", "p2")
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_commit_race_between_two_processes(s3_url: str, s3_server: dict[str, Any]) -> None:
    opts = s3_server["storage_options"]
    results = _run_race(s3_url, opts, step=3)
    outcomes = sorted(r["result"] for r in results)
    assert outcomes == ["conflict", "won"], results
    winner = next(r["who"] for r in results if r["result"] == "won")
    with ckpt.open(s3_url, storage_options=opts) as store:
        assert store.steps() == [3]
        back = store.restore(3)
        assert back.metadata == {"who": winner}
        assert all(r.ok for r in store.verify())


def test_same_step_race_twenty_times(
    s3_server: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Two processes save step 100 of one job with different arrays at the same moment, 20
    times: one COMMIT wins each time and the step holds exactly the winner's arrays (with one
    shared step folder, 13 of 20 such rounds committed a step holding the loser's chunks)."""
    opts = s3_server["storage_options"]
    base = f"s3://{s3_server['bucket']}/duel-{time.time_ns()}"
    urls = [f"{base}/r{i:02d}/job" for i in range(20)]
    rounds = run_duels(urls, opts)
    overlapped = [check_round(u, opts, i, r) for i, (u, r) in enumerate(zip(urls, rounds))]
    with capsys.disabled():
        print(f"\nsame-step race on S3: the loser had uploaded data in {sum(overlapped)}/20 rounds")
    assert any(overlapped), "no round raced: the losers never got to upload"


def test_raise_fence_on_object_store(s3_url: str, s3_server: dict[str, Any]) -> None:
    opts = s3_server["storage_options"]
    assert ckpt.raise_fence(s3_url, 3, storage_options=opts) == 3
    assert ckpt.raise_fence(s3_url, 2, storage_options=opts) == 3
    with ckpt.open(s3_url, storage_options=opts, token=2) as old, pytest.raises(ckpt.FencedError):
        old.save(1, _state(1))
    with ckpt.open(s3_url, storage_options=opts, token=3) as current:
        current.save(1, _state(1))
        assert current.steps() == [1]


def test_fencing_between_two_processes(s3_url: str, s3_server: dict[str, Any]) -> None:
    opts = s3_server["storage_options"]
    old = subprocess.Popen(
        [sys.executable, str(WORKER), "fenced", s3_url, json.dumps(opts), "1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=REPO,
    )
    assert old.stdout is not None and old.stdin is not None
    assert json.loads(old.stdout.readline()) == {"step1": "won"}
    assert old.stdout.readline().strip() == "ready"
    newer = subprocess.run(  # a second attempt, in its own process, opens with token 2
        [sys.executable, "-c",
         "import sys, json, gridbridge.checkpoint as c; "
         "s = c.open(sys.argv[1], storage_options=json.loads(sys.argv[2]), token=2); "
         "print(s.restore().step); s.close()", s3_url, json.dumps(opts)],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=True,
    )
    assert newer.stdout.strip() == "1"
    old.stdin.write("go\n")
    old.stdin.flush()
    out, err = old.communicate(timeout=60)
    assert json.loads(out.strip().splitlines()[-1]) == {"step2": "fenced"}, err
    with ckpt.open(s3_url, storage_options=opts, token=2) as store:
        assert store.steps() == [1]
        store.save(2, _state(2))
        assert store.commit_record(2)["token"] == 2


def test_corruption_on_object_store(s3_url: str, s3_server: dict[str, Any]) -> None:
    fs = _fs(s3_server)
    prefix = s3_url.removeprefix("s3://")
    events: list[tuple[str, Any]] = []
    opts = s3_server["storage_options"]
    with ckpt.open(s3_url, storage_options=opts, on_event=lambda n, p: events.append((n, p))) as st:
        for step in (1, 2, 3):
            st.save(step, _state(step))
        folders = {s: st.commit_record(s)["folder"] for s in (2, 3)}
        chunk3 = f"{prefix}/steps/{folders[3]}/model.w/c/0/0"
        size = fs.info(chunk3)["size"]
        fs.pipe_file(chunk3, np.random.default_rng(9).bytes(size))  # same size, other bytes
        chunk2 = f"{prefix}/steps/{folders[2]}/ids/c/0"
        fs.pipe_file(chunk2, fs.cat_file(chunk2)[:100])  # truncated
        with pytest.warns(ckpt.CorruptCheckpointWarning):
            back = st.restore()
        assert back.step == 1 and back.state["epoch"] == 1
        assert [p["step"] for n, p in events if n == "checkpoint.corrupt"] == [3, 2]
        with pytest.raises(ckpt.CorruptCheckpoint, match="digest mismatch"):
            st.restore(3)
        with pytest.raises(ckpt.CorruptCheckpoint):
            st.restore(2)
        assert [r.ok for r in st.verify()] == [True, False, False]


def test_incremental_and_gc_on_object_store(s3_url: str, s3_server: dict[str, Any]) -> None:
    opts = s3_server["storage_options"]
    rng = np.random.default_rng(0)
    state = {f"p{i}": rng.standard_normal(20_000).astype("float32") for i in range(10)}
    with ckpt.open(s3_url, storage_options=opts, keep_last=1) as store:
        full = store.save(1, state)
        state["p0"] = state["p0"] + 1
        inc = store.save(2, state)
        assert inc.arrays_written == 1 and inc.bytes_written < 0.15 * full.bytes_written
        assert store.gc() == []  # step 1 is referenced by step 2
        state = {k: v + 1 for k, v in state.items()}
        store.save(3, state)
        assert store.gc() == [1, 2]
        assert store.steps() == [3]
        np.testing.assert_array_equal(store.restore().state["p5"], state["p5"])
