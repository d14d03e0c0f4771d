"""save_async, wait, close and checkpoint_now: non-blocking, ordered, errors never lost."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

import gridbridge.checkpoint as ckpt


class Gate:
    """Wraps a store's backend ``put`` so uploads block until released (or fail)."""

    def __init__(self, store: ckpt.CheckpointStore) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        self.fail: Exception | None = None
        self._put = store._backend.put
        store._backend.put = self.put  # type: ignore[method-assign]

    def put(self, path: str, data: Any) -> None:
        self.entered.set()
        if not self.open.wait(timeout=30):
            raise TimeoutError("gate never opened")
        if self.fail is not None:
            raise self.fail
        self._put(path, data)


def test_save_async_returns_before_upload_and_copies_state(url: str) -> None:
    store = ckpt.open(url)
    gate = Gate(store)
    state = {"w": np.arange(1000.0)}
    t0 = time.perf_counter()
    store.save_async(1, state, metadata={"e": 1})
    assert time.perf_counter() - t0 < 5
    assert gate.entered.wait(10)  # the upload started in the background ...
    assert store.steps() == []    # ... and nothing is committed while it is held
    state["w"][:] = -1            # the caller may change its state at once
    gate.open.set()
    store.wait()
    back = store.restore(1)
    np.testing.assert_array_equal(back.state["w"], np.arange(1000.0))
    assert back.metadata == {"e": 1}
    store.close()


def test_second_save_async_waits_for_the_first(url: str) -> None:
    with ckpt.open(url) as store:
        store.save_async(1, {"x": np.ones(10)})
        store.save_async(2, {"x": np.full(10, 2.0)})
        store.wait()
        assert store.steps() == [1, 2]
        assert store.commit_record(2)["arrays"]["x"]["step"] == 2
        # the second copy reused the first one's host buffer only after it was uploaded
        np.testing.assert_array_equal(store.restore(1).state["x"], np.ones(10))
        np.testing.assert_array_equal(store.restore(2).state["x"], np.full(10, 2.0))


@pytest.mark.parametrize("surface", ["wait", "save", "save_async", "close"])
def test_async_error_is_raised_by_the_next_call(url: str, surface: str) -> None:
    events: list[str] = []
    store = ckpt.open(url, on_event=lambda name, _p: events.append(name))
    gate = Gate(store)
    gate.fail = OSError("disk on fire")
    store.save_async(1, {"x": np.ones(3)})
    gate.open.set()
    with pytest.raises(OSError, match="disk on fire"):
        if surface == "wait":
            store.wait()
        elif surface == "save":
            store.save(2, {"x": np.ones(3)})
        elif surface == "save_async":
            store.save_async(2, {"x": np.ones(3)})
        else:
            store.close()
    assert "checkpoint.save_failed" in events
    gate.fail = None
    if surface != "close":
        store.save(3, {"x": np.ones(3)})  # the store is usable again
        assert store.steps() == [3]
        store.close()


def test_checkpoint_now_waits_for_inflight_then_saves(url: str) -> None:
    with ckpt.open(url) as store:
        store.save_async(1, {"x": np.ones(100)})
        info = store.checkpoint_now(2, {"x": np.zeros(100)}, deadline_s=30)
        assert info is not None and info.step == 2
        assert store.steps() == [1, 2]


def test_checkpoint_now_gives_up_at_the_deadline(url: str) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    store = ckpt.open(url, on_event=lambda n, p: events.append((n, dict(p))))
    gate = Gate(store)
    t0 = time.perf_counter()
    assert store.checkpoint_now(5, {"x": np.ones(10)}, deadline_s=0.3) is None
    elapsed = time.perf_counter() - t0
    assert 0.25 < elapsed < 3
    missed = [p for n, p in events if n == "checkpoint.deadline_missed"]
    assert missed and missed[0]["step"] == 5
    gate.open.set()
    store.wait()  # the save went on in the background and finished
    assert store.steps() == [5]
    store.close()


def test_checkpoint_now_gives_up_while_previous_save_is_stuck(url: str) -> None:
    events: list[str] = []
    store = ckpt.open(url, on_event=lambda n, _p: events.append(n))
    gate = Gate(store)
    store.save_async(1, {"x": np.ones(10)})
    assert store.checkpoint_now(2, {"x": np.ones(10)}, deadline_s=0.2) is None
    assert "checkpoint.deadline_missed" in events
    gate.open.set()
    store.close()
    assert ckpt.open(url).steps() == [1]


def test_checkpoint_now_reports_failed_previous_save_and_still_saves(url: str) -> None:
    events: list[str] = []
    store = ckpt.open(url, on_event=lambda n, _p: events.append(n))
    gate = Gate(store)
    gate.fail = OSError("flaky")
    store.save_async(1, {"x": np.ones(10)})
    gate.open.set()
    time.sleep(0.2)
    gate.fail = None
    info = store.checkpoint_now(2, {"x": np.ones(10)}, deadline_s=30)
    assert info is not None and info.step == 2
    assert "checkpoint.save_failed" in events
    store.close()
