"""Commit protocol on file:// and memory://: visibility, sweep, conflicts, fencing, corruption,
incremental saves and retention."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest

import gridbridge.checkpoint as ckpt


def _state(n_arrays: int = 10, size: int = 10_000, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {f"layer{i}": rng.standard_normal(size).astype("float32") for i in range(n_arrays)}


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, payload: Any) -> None:
        self.seen.append((name, dict(payload)))

    def names(self) -> list[str]:
        return [n for n, _ in self.seen]


def _fs(url: str) -> Any:
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


def _folder(store: ckpt.CheckpointStore, step: int) -> str:
    """The folder under ``steps/`` that the COMMIT of ``step`` names."""
    return str(store.commit_record(step)["folder"])


def test_uncommitted_step_is_invisible_and_swept(url: str) -> None:
    fs, root = _fs(url)
    with ckpt.open(url) as store:
        store.save(1, _state())
        store.save(2, _state(seed=1))
        one, two = _folder(store, 1), _folder(store, 2)
        assert one == f"0000000001.{store.writer}" and two == f"0000000002.{store.writer}"
        fs.rm(f"{root}/commits/0000000002.json")  # as if the writer died before committing
        assert store.steps() == [1] and store.latest() == 1
        assert store.restore().step == 1
        with pytest.raises(ckpt.NoCheckpoint):
            store.restore(2)
        assert store.sweep(older_than_s=3600) == []  # too young to be swept
        removed = store.sweep(older_than_s=0)
        assert [p.rsplit("/", 1)[-1] for p in removed] == [two]
        assert not fs.exists(f"{root}/steps/{two}")
        assert fs.exists(f"{root}/steps/{one}/zarr.json")
        assert store.restore().step == 1


def test_sweep_keeps_folders_that_commits_reference(url: str) -> None:
    fs, root = _fs(url)
    state = _state()
    with ckpt.open(url) as store:
        store.save(1, state)
        state["layer0"] = state["layer0"] + 1
        store.save(2, state)  # nine arrays still live in step 1's folder
        fs.rm(f"{root}/commits/0000000001.json")
        assert store.sweep(older_than_s=0) == []
        np.testing.assert_array_equal(store.restore(2).state["layer5"], state["layer5"])


def test_same_step_twice_conflicts(url: str) -> None:
    with ckpt.open(url) as a, ckpt.open(url) as b:
        a.save(4, {"x": np.ones(2)})
        with pytest.raises(ckpt.CommitConflict):
            b.save(4, {"x": np.zeros(2)})
        np.testing.assert_array_equal(b.restore(4).state["x"], np.ones(2))


def test_commit_create_race_has_one_winner(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both writers pass the pre-check; the conditional create alone decides."""
    with ckpt.open(url) as a, ckpt.open(url) as b:
        monkeypatch.setattr(b, "steps", lambda: [])  # b's early check sees nothing committed
        a.save(7, {"x": np.ones(2)})
        with pytest.raises(ckpt.CommitConflict):
            b.save(7, {"x": np.ones(2)})
        monkeypatch.undo()
        assert a.steps() == [7]


def test_fencing_refuses_older_token(url: str) -> None:
    events = Events()
    old = ckpt.open(url, token=1, on_event=events)
    old.save(1, {"x": np.ones(2)})
    new = ckpt.open(url, token=2)  # a newer attempt opens: the fence moves to 2
    with pytest.raises(ckpt.FencedError):
        old.save(2, {"x": np.zeros(2)})
    assert "checkpoint.fenced" in events.names()
    new.save(2, {"x": np.full(2, 2.0)})
    assert new.latest() == 2
    # a zombie opening late with an old token cannot move the fence back
    zombie = ckpt.open(url, token=1)
    with pytest.raises(ckpt.FencedError):
        zombie.save(3, {"x": np.zeros(2)})
    assert new.steps() == [1, 2]
    # no token: no fencing
    free = ckpt.open(url)
    free.save(3, {"x": np.zeros(2)})
    assert free.commit_record(3)["token"] == 0
    for s in (old, new, zombie, free):
        s.close()


def test_fencing_uses_newest_commit_token_without_fence_object(url: str) -> None:
    fs, root = _fs(url)
    with ckpt.open(url, token=5) as newer:
        newer.save(1, {"x": np.ones(2)})
    fs.rm(f"{root}/fence.json")
    with ckpt.open(url, token=3) as older, pytest.raises(ckpt.FencedError):
        older.save(2, {"x": np.ones(2)})


def test_commit_is_retracted_when_fenced_during_commit(url: str) -> None:
    store = ckpt.open(url, token=1)
    original = store._backend.create

    def create_then_newer_attempt_opens(path: str, data: bytes) -> bool:
        ok = original(path, data)
        ckpt.open(url, token=9).close()
        return ok

    store._backend.create = create_then_newer_attempt_opens  # type: ignore[method-assign]
    with pytest.raises(ckpt.FencedError):
        store.save(1, {"x": np.ones(2)})
    assert store.steps() == []
    store.close()


def _chunk_files(store: ckpt.CheckpointStore, step: int, name: str) -> list[Path]:
    folder = Path(store.step_url(step).removeprefix("file://")) / name / "c"
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_corruption_falls_back_and_explicit_step_raises(file_url: str, tmp_path: Path) -> None:
    events = Events()
    with ckpt.open(file_url, on_event=events) as store:
        store.save(1, _state(seed=1))
        store.save(2, _state(seed=2))
        store.save(3, _state(seed=3))
        # step 3: flip bytes in place (same size); step 2: truncate a chunk
        chunk = _chunk_files(store, 3, "layer4")[0]
        data = bytearray(chunk.read_bytes())
        data[100:108] = b"\x00" * 8 if data[100:108] != b"\x00" * 8 else b"\x01" * 8
        chunk.write_bytes(bytes(data))
        truncated = _chunk_files(store, 2, "layer0")[0]
        truncated.write_bytes(truncated.read_bytes()[:17])
        with pytest.warns(ckpt.CorruptCheckpointWarning) as caught:
            back = store.restore()
        assert back.step == 1
        np.testing.assert_array_equal(back.state["layer4"], _state(seed=1)["layer4"])
        assert len(caught) == 2
        corrupt = [p["step"] for n, p in events.seen if n == "checkpoint.corrupt"]
        assert corrupt == [3, 2]
        with pytest.raises(ckpt.CorruptCheckpoint, match="digest mismatch"):
            store.restore(3)
        with pytest.raises(ckpt.CorruptCheckpoint, match="bytes, expected"):
            store.restore(2)
        results = {r.step: r for r in store.verify()}
        assert results[1].ok and not results[2].ok and not results[3].ok
        assert any("layer4" in p for p in results[3].problems)


def test_missing_chunk_and_unreadable_commit(file_url: str, tmp_path: Path) -> None:
    with ckpt.open(file_url) as store:
        store.save(1, _state(seed=1))
        store.save(2, _state(seed=2))
        _chunk_files(store, 2, "layer9")[0].unlink()
        with pytest.raises(ckpt.CorruptCheckpoint, match="missing chunk"):
            store.restore(2)
        (tmp_path / "job" / "commits" / "0000000001.json").write_text("{not json")
        with pytest.raises(ckpt.CorruptCheckpoint, match="unreadable"):
            store.restore(1)
        with pytest.warns(ckpt.CorruptCheckpointWarning), pytest.raises(ckpt.NoCheckpoint):
            store.restore()


def test_commit_with_hostile_array_path_is_rejected(file_url: str, tmp_path: Path) -> None:
    with ckpt.open(file_url) as store:
        store.save(1, {"x": np.ones(4)})
        path = tmp_path / "job" / "commits" / "0000000001.json"
        commit = json.loads(path.read_text())
        commit["arrays"]["x"]["path"] = "../../../outside"
        path.write_text(json.dumps(commit))
        with pytest.raises(ckpt.CorruptCheckpoint, match="unsafe"):
            store.restore(1)


def test_incremental_writes_only_changed_arrays(url: str) -> None:
    state = _state(n_arrays=20, size=50_000)
    with ckpt.open(url) as store:
        full = store.save(1, state)
        for i in (3, 11):  # 10% of the arrays change
            state[f"layer{i}"] = state[f"layer{i}"] * 2
        inc = store.save(2, state)
        assert (inc.arrays_written, inc.arrays_reused) == (2, 18)
        ratio = inc.bytes_written / full.bytes_written
        assert 0.09 < ratio < 0.12, ratio
        record = store.commit_record(2)["arrays"]
        assert record["layer3"]["step"] == 2 and record["layer4"]["step"] == 1
        back = store.restore(2).state
        for name, arr in state.items():
            np.testing.assert_array_equal(back[name], arr)
        # a third save references step 1 directly, not through step 2
        state["layer3"] = state["layer3"] + 1
        store.save(3, state)
        assert store.commit_record(3)["arrays"]["layer4"]["step"] == 1
        assert store.commit_record(3)["arrays"]["layer11"]["step"] == 2


def test_gc_keeps_last_every_and_referenced_steps(url: str) -> None:
    state = {"frozen": np.arange(1000.0), "live": np.zeros(10)}
    with ckpt.open(url, keep_last=2, keep_every=10) as store:
        for step in range(1, 13):
            state["live"] = state["live"] + 1
            store.save(step, state)
        deleted = store.gc()
        # kept: last two (11, 12), every 10th (10), and step 1 which holds "frozen"
        assert store.steps() == [1, 10, 11, 12]
        assert deleted == [2, 3, 4, 5, 6, 7, 8, 9]
        np.testing.assert_array_equal(store.restore(12).state["frozen"], np.arange(1000.0))
        assert all(r.ok for r in store.verify())
        assert store.gc() == []


def test_gc_without_retention_deletes_nothing(url: str) -> None:
    with ckpt.open(url) as store:
        for step in range(3):
            store.save(step, {"x": np.full(3, step)})
        assert store.gc() == [] and store.steps() == [0, 1, 2]


@pytest.mark.parametrize("name", ["we'ird; name", 'dq"uote', "new\nline", "sp ace$(x)"])
def test_hostile_characters_in_prefix_stay_inside(tmp_path: Path, name: str) -> None:
    base = tmp_path / "root"
    base.mkdir()
    url = f"file://{base}/{name}/job"
    with ckpt.open(url) as store:
        store.save(1, {"x": np.arange(3)})
        np.testing.assert_array_equal(store.restore().state["x"], np.arange(3))
    assert sorted(os.listdir(tmp_path)) == ["root"]
    assert os.listdir(base) == [name]
    mem = f"memory://hostile-{time.time_ns()}/{name}/job"
    with ckpt.open(mem) as store:
        store.save(1, {"x": np.arange(3)})
        assert store.steps() == [1]


def test_open_validates_arguments(url: str) -> None:
    with pytest.raises(ValueError):
        ckpt.open(url, token=-1)
    with pytest.raises(ValueError):
        ckpt.open(url, keep_last=0)
    with ckpt.open(url) as store, pytest.raises(ValueError):
        store.save(-1, {"x": np.ones(1)})
