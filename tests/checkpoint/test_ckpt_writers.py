"""Writer-unique step folders (same-step races), format-1 checkpoints, the control plane's
``raise_fence``, and retention after every save (``auto_gc``, ``checkpoint.keep_last``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

import gridbridge.checkpoint as ckpt
from gridbridge import job_context
from gridbridge.checkpoint.cli import app

from ._duel import check_round, run_duels


def _state(seed: int, n: int = 4, size: int = 5_000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"a{i}": rng.standard_normal(size).astype("float32") for i in range(n)}


def _files(url: str) -> list[str]:
    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    return sorted(p.removeprefix(root) for p in fs.find(root))


# ----------------------------------------------------------------- same-step races
def test_losing_writer_never_touches_the_winners_step(url: str) -> None:
    """Both writers upload all their arrays before either commits; the loser's late uploads
    used to land in the winner's folder and corrupt it."""
    mine, theirs = _state(1), _state(2)
    with ckpt.open(url, token=3) as a, ckpt.open(url, token=3) as b:
        b_steps = b.steps
        b.steps = lambda: []  # type: ignore[method-assign]  # b's pre-check sees nothing
        a.save(100, mine)
        with pytest.raises(ckpt.CommitConflict):
            b.save(100, theirs)  # uploads everything, then loses the COMMIT create
        b.steps = b_steps  # type: ignore[method-assign]
        commit = a.commit_record(100)
        assert commit["writer"] == a.writer and commit["folder"] == f"0000000100.{a.writer}"
        back = b.restore(100).state
        for name, arr in mine.items():
            np.testing.assert_array_equal(back[name], arr)
        assert all(r.ok for r in b.verify())
        swept = a.sweep(older_than_s=0)
        assert [p.rsplit("/", 1)[-1] for p in swept] == [f"0000000100.{b.writer}"]
        assert a.sweep(older_than_s=0) == []
        np.testing.assert_array_equal(a.restore(100).state["a1"], mine["a1"])


def test_same_step_race_between_processes_on_local_disk(tmp_path: Path) -> None:
    urls = [f"file://{tmp_path}/r{i}/job" for i in range(20)]
    rounds = run_duels(urls, {})
    overlapped = [check_round(u, {}, i, r) for i, (u, r) in enumerate(zip(urls, rounds))]
    assert any(overlapped), "no round raced: the losers never got to upload"


def test_writer_ids_are_unique_and_name_the_token(url: str) -> None:
    with ckpt.open(url, token=12) as a, ckpt.open(url, token=12) as b, ckpt.open(url) as c:
        assert a.writer != b.writer
        assert a.writer.startswith("t12-") and c.writer.startswith("t0-")


# ----------------------------------------------------------------- format-1 checkpoints
def _to_format_1(url: str, step: int) -> None:
    """Turn a step into what a writer before writer-unique folders produced: data in
    ``steps/<step:010d>/``, a ``gridbridge-checkpoint/1`` COMMIT naming no folder."""
    fs, root = fsspec.core.url_to_fs(url)
    commit_path = f"{root}/commits/{step:010d}.json"
    commit = json.loads(fs.cat_file(commit_path))
    fs.mv(f"{root}/steps/{commit.pop('folder')}", f"{root}/steps/{step:010d}", recursive=True)
    commit["format"] = "gridbridge-checkpoint/1"
    for entry in commit["arrays"].values():
        entry.pop("folder")
    fs.pipe_file(commit_path, json.dumps(commit).encode())
    fs.invalidate_cache()


def test_format_1_checkpoint_restores_verifies_and_feeds_incremental_saves(url: str) -> None:
    frozen = np.arange(3000.0)
    states = {s: {"frozen": frozen, "live": np.full(50, float(s))} for s in (1, 2, 3, 4)}
    with ckpt.open(url) as old:
        old.save(1, states[1])
        old.save(2, states[2])  # "frozen" is held by step 1
    _to_format_1(url, 1)
    _to_format_1(url, 2)
    assert "/steps/0000000001/frozen/zarr.json" in _files(url)
    with ckpt.open(url, keep_last=1) as store:
        assert store.commit_record(2)["arrays"]["frozen"]["step"] == 1
        assert "folder" not in store.commit_record(2)
        for s in (1, 2):
            back = store.restore(s).state
            np.testing.assert_array_equal(back["frozen"], frozen)
            np.testing.assert_array_equal(back["live"], states[s]["live"])
        assert [r.ok for r in store.verify()] == [True, True]
        assert store.step_url(2) == f"{url}/steps/0000000002"
        # new steps reuse arrays that live in format-1 folders, naming them explicitly
        info = store.save(3, states[3])
        assert (info.arrays_written, info.arrays_reused) == (1, 1)
        entry = store.commit_record(3)["arrays"]["frozen"]
        assert (entry["step"], entry["folder"]) == (1, "0000000001")
        store.save(4, states[4])
        assert store.commit_record(4)["arrays"]["frozen"]["folder"] == "0000000001"
        np.testing.assert_array_equal(store.restore(4).state["frozen"], frozen)
        assert store.sweep(older_than_s=0) == []  # every folder is committed or referenced
        assert store.gc() == [2, 3]  # step 1 holds "frozen" for step 4
        assert store.steps() == [1, 4]
        files = _files(url)
        assert not any("/steps/0000000002" in f or "/steps/0000000003." in f for f in files)
        assert any(f.startswith("/steps/0000000001/frozen/") for f in files)
        assert all(r.ok for r in store.verify())
        np.testing.assert_array_equal(store.restore().state["live"], states[4]["live"])


def test_format_1_uncommitted_folder_is_swept(url: str) -> None:
    with ckpt.open(url) as store:
        store.save(1, _state(1))
        store.save(2, _state(2))
        _to_format_1(url, 2)
        fs, root = fsspec.core.url_to_fs(url)
        fs.rm(f"{root}/commits/0000000002.json")
        fs.invalidate_cache()
        removed = store.sweep(older_than_s=0)
        assert [p.rsplit("/", 1)[-1] for p in removed] == ["0000000002"]
        assert store.restore().step == 1


def test_format_1_plain_zarr_and_cli(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/root/job-1"
    with ckpt.open(url) as store:
        store.save(1, {"w": np.arange(10.0)}, metadata={"epoch": 1})
        store.save(2, {"w": np.arange(10.0) + 1}, metadata={"epoch": 2})
    _to_format_1(url, 1)
    group = zarr.open_group(str(tmp_path / "root" / "job-1" / "steps" / "0000000001"), mode="r")
    np.testing.assert_array_equal(group["w"][...], np.arange(10.0))
    runner = CliRunner()
    root = f"file://{tmp_path}/root"
    res = runner.invoke(app, ["list", "job-1", "--root", root, "-f", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["folder"] for r in rows] == ["0000000001", f"0000000002.{store.writer}"]
    res = runner.invoke(app, ["verify", "job-1", "--root", root, "-f", "json"])
    assert res.exit_code == 0 and all(r["ok"] for r in json.loads(res.output))
    res = runner.invoke(app, ["gc", "job-1", "--root", root, "--keep-last", "1"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "root" / "job-1" / "steps" / "0000000001").exists()
    assert ckpt.open(url).restore().step == 2


@pytest.mark.parametrize(
    "folder",
    ["../0000000001", "0000000001/..", "0000000002.x", "0000000001.a/b", "", 7, "0000000001.",
     "0000000001\n", "0000000001.x\n", "0000000001." + "x" * 65],
)
def test_commit_naming_a_foreign_folder_is_rejected(
    file_url: str, tmp_path: Path, folder: Any
) -> None:
    with ckpt.open(file_url) as store:
        store.save(1, {"x": np.ones(4)})
        path = tmp_path / "job" / "commits" / "0000000001.json"
        good = json.loads(path.read_text())
        for where in ("commit", "entry"):
            commit = json.loads(json.dumps(good))
            (commit if where == "commit" else commit["arrays"]["x"])["folder"] = folder
            path.write_text(json.dumps(commit))
            with pytest.raises(ckpt.CorruptCheckpoint, match="unreadable"):
                store.restore(1)


def test_format_2_commit_must_name_its_folder(file_url: str, tmp_path: Path) -> None:
    with ckpt.open(file_url) as store:
        store.save(1, {"x": np.ones(4)})
        path = tmp_path / "job" / "commits" / "0000000001.json"
        commit = json.loads(path.read_text())
        del commit["folder"]
        path.write_text(json.dumps(commit))
        with pytest.raises(ckpt.CorruptCheckpoint, match="must name its folder"):
            store.restore(1)


# ----------------------------------------------------------------- raise_fence
def test_raise_fence_fences_older_attempts(url: str) -> None:
    assert "raise_fence" in ckpt.__all__
    assert ckpt.raise_fence(url, 3) == 3
    with ckpt.open(url, token=2) as old, pytest.raises(ckpt.FencedError):
        old.save(1, {"x": np.ones(2)})
    with ckpt.open(url, token=3) as current:
        current.save(1, {"x": np.ones(2)})
        assert current.commit_record(1)["token"] == 3
    assert ckpt.raise_fence(url, 1) == 3  # never lowered
    assert ckpt.raise_fence(url, 3) == 3
    with ckpt.open(url, token=3) as current:
        current.save(2, {"x": np.ones(2)})
    # the reconciler declares attempt 3 lost: a store that is already open stops committing
    with ckpt.open(url, token=3) as zombie:
        assert ckpt.raise_fence(url, 4) == 4
        with pytest.raises(ckpt.FencedError):
            zombie.save(3, {"x": np.ones(2)})
        assert zombie.steps() == [1, 2]


def test_raise_fence_validates_its_token(url: str) -> None:
    for bad in (-1, True, 1.5, "3"):
        with pytest.raises(ValueError):
            ckpt.raise_fence(url, bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------- retention after each save
def test_auto_gc_keeps_the_last_steps(url: str) -> None:
    events: list[str] = []
    with ckpt.open(url, keep_last=3, auto_gc=True, on_event=lambda n, p: events.append(n)) as st:
        for step in range(1, 10):
            st.save(step, {"x": np.full(100, float(step))})
            assert st.steps() == list(range(max(1, step - 2), step + 1))
        assert st.steps() == [7, 8, 9]
        back = st.restore()
        assert back.step == 9
        np.testing.assert_array_equal(back.state["x"], np.full(100, 9.0))
        assert "checkpoint.gc" in events and "checkpoint.gc_failed" not in events
        commits = [st.commit_record(s)["folder"] for s in (7, 8, 9)]
    assert sorted({f.split("/")[2] for f in _files(url) if f.startswith("/steps/")}) == commits


def test_auto_gc_keeps_referenced_and_just_committed_steps(url: str) -> None:
    state = {"frozen": np.arange(500.0), "live": np.zeros(5)}
    with ckpt.open(url, keep_last=2, auto_gc=True) as store:
        for step in (10, 11, 12, 13):
            state["live"] = state["live"] + 1
            store.save(step, state)
        assert store.steps() == [10, 12, 13]  # 10 holds "frozen"
        store.save(5, {"frozen": np.arange(500.0), "live": np.ones(5)})  # an older step number
        assert 5 in store.steps()
        np.testing.assert_array_equal(store.restore(13).state["frozen"], np.arange(500.0))


def test_auto_gc_after_save_async(url: str) -> None:
    with ckpt.open(url, keep_last=2, auto_gc=True) as store:
        for step in range(6):
            store.save_async(step, {"x": np.full(10, step)})
        store.wait()
        assert store.steps() == [4, 5]


def test_auto_gc_is_skipped_by_a_fenced_store(url: str) -> None:
    events: list[str] = []
    hook = lambda n, p: events.append(n)  # noqa: E731
    with ckpt.open(url, token=1, keep_last=1, auto_gc=True, on_event=hook) as old:
        old.save(1, {"x": np.ones(2)})
        old.save(2, {"x": np.ones(2) * 2})
        assert old.steps() == [2]
        original = old._retract_if_fenced

        def committed_then_newer_attempt_fences(step: int) -> None:
            original(step)
            ckpt.raise_fence(url, 2)

        old._retract_if_fenced = committed_then_newer_attempt_fences  # type: ignore[method-assign]
        events.clear()
        old.save(3, {"x": np.ones(2) * 3})  # committed just before the fence rose
        assert old.steps() == [2, 3]  # a fenced attempt leaves retention to its successor
        assert "checkpoint.fenced" in events and "checkpoint.gc" not in events


def test_checkpoint_now_leaves_retention_to_the_next_save(url: str) -> None:
    with ckpt.open(url, keep_last=1, auto_gc=True) as store:
        store.save(1, {"x": np.ones(2)})
        store.save(2, {"x": np.ones(2) * 2})
        assert store.steps() == [2]
        assert store.checkpoint_now(3, {"x": np.ones(2) * 3}, deadline_s=30) is not None
        assert store.steps() == [2, 3]
        store.save(4, {"x": np.ones(2) * 4})
        assert store.steps() == [4]


def test_auto_gc_failure_does_not_fail_the_save(url: str) -> None:
    events: list[str] = []
    with ckpt.open(url, keep_last=1, auto_gc=True, on_event=lambda n, p: events.append(n)) as st:
        st.save(1, {"x": np.ones(2)})

        def broken(*args: Any, **kwargs: Any) -> None:
            raise OSError("storage hiccup")

        st._backend.remove = broken  # type: ignore[method-assign]
        info = st.save(2, {"x": np.ones(2) * 2})
        assert info.step == 2 and "checkpoint.gc_failed" in events
        assert st.steps() == [1, 2]


def test_gc_without_auto_gc_waits_for_an_explicit_call(url: str) -> None:
    with ckpt.open(url, keep_last=1) as store:
        for step in range(3):
            store.save(step, {"x": np.full(2, step)})
        assert store.steps() == [0, 1, 2]
        assert store.gc() == [0, 1]


@pytest.fixture
def job_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    url = f"file://{tmp_path}/job"
    monkeypatch.setenv("GRIDBRIDGE_JOB_ID", f"job-{os.getpid()}-{tmp_path.name}")
    monkeypatch.setenv("GRIDBRIDGE_ATTEMPT", "2")
    monkeypatch.setenv("GRIDBRIDGE_TOKEN", "2")
    monkeypatch.setenv("GRIDBRIDGE_CHECKPOINT", url)
    monkeypatch.setattr(job_context, "_current", None)
    monkeypatch.setattr(job_context, "_handlers_installed", True)  # leave pytest's handlers
    return url


def test_job_context_applies_keep_last(job_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDBRIDGE_KEEP_LAST", "3")
    ctx = job_context.context()
    assert ctx.keep_last == 3
    store = ctx.checkpoint
    try:
        for step in range(1, 10):
            store.save(step, {"w": np.full(64, float(step)), "step": step})
        assert store.steps() == [7, 8, 9]
        back = store.restore()
        assert back.step == 9 and back.state["step"] == 9
        np.testing.assert_array_equal(back.state["w"], np.full(64, 9.0))
        assert store.commit_record(9)["token"] == 2
    finally:
        store.close()


def test_job_context_without_keep_last_keeps_everything(
    job_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRIDBRIDGE_KEEP_LAST", raising=False)
    ctx = job_context.context()
    assert ctx.keep_last is None
    with ctx.checkpoint as store:
        for step in range(5):
            store.save(step, {"w": np.full(4, step)})
        assert store.steps() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("raw", ["0", "-2", "three"])
def test_job_context_ignores_an_invalid_keep_last(
    job_env: str, monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("GRIDBRIDGE_KEEP_LAST", raw)
    with pytest.warns(RuntimeWarning, match="GRIDBRIDGE_KEEP_LAST"):
        ctx = job_context.context()
    assert ctx.keep_last is None


# ----------------------------------------------------------------- conditional create
class _LostReplyFS:
    """A memory filesystem whose conditional creates land but report a failed precondition,
    as when the client retries a PUT whose reply was lost (``lose``), or fail outright."""

    def __init__(self, lose: bool) -> None:
        self.inner = fsspec.filesystem("memory")
        self.lose = lose

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def pipe_file(self, path: str, data: bytes, mode: str = "overwrite", **kw: Any) -> None:
        if self.lose:
            self.inner.pipe_file(path, data, mode=mode, **kw)
        raise OSError("At least one of the pre-conditions you specified did not hold")


def test_create_recognises_its_own_write_after_a_retried_put() -> None:
    from gridbridge.checkpoint._backend import Backend

    root = f"/lost-reply-{os.getpid()}-{id(object())}"
    backend = Backend(_LostReplyFS(lose=True), root)
    assert backend.create(f"{root}/commits/a.json", b"mine") is True
    backend = Backend(_LostReplyFS(lose=False), root)
    assert backend.create(f"{root}/commits/a.json", b"other writer's") is False
    with pytest.raises(OSError):
        backend.create(f"{root}/commits/b.json", b"mine")
    fsspec.filesystem("memory").rm(root, recursive=True)
