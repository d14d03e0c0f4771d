"""Round trips of pytrees and dtypes, chunking, and reading steps with plain zarr."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import zarr

import gridbridge.checkpoint as ckpt
from gridbridge.checkpoint import _layout

DTYPES = ["bool", "int8", "uint8", "int16", "int32", "int64", "uint64", "float16", "float32",
          "float64", "complex64", "complex128"]


def _arr(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if dtype.startswith("complex"):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    if dtype.startswith(("int", "uint")):
        return rng.integers(0, 100, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _assert_same(a: object, b: object) -> None:
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b)
    else:
        assert a == b


def test_pytree_roundtrip(url: str) -> None:
    state = {
        "model": OrderedDict(w=_arr("float32", (7, 5)), b=_arr("float64", (5,))),
        "opt": [{"m": _arr("float32", (7, 5), 1)}, ("adam", 0.9, 1e-8)],
        "step": 12, "lr": 3e-4, "nan": float("nan"), "name": "run", "none": None,
        "flag": True, "big": 2**70, "z": 1 + 2j, "raw": b"\x00\xff", 7: "int key",
        "np_scalar": np.float32(2.5), "np_int": np.int64(-3), "zero_d": np.array(4.0),
        "empty": np.zeros((0, 3), "int16"), "bigendian": np.arange(6, dtype=">i4"),
    }
    with ckpt.open(url) as store:
        info = store.save(3, state, metadata={"epoch": 1, "note": "x"})
        assert info.step == 3 and info.token == 0 and info.arrays_reused == 0
        back = store.restore(3)
    assert back.step == 3 and back.metadata == {"epoch": 1, "note": "x"}
    expected = dict(state, bigendian=np.arange(6, dtype="<i4"))
    _assert_same(expected, back.state)
    assert isinstance(back.state["model"], OrderedDict)
    assert isinstance(back.state["np_scalar"], np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (3, 4), (2, 3, 5)])
def test_dtypes_and_shapes(file_url: str, dtype: str, shape: tuple[int, ...]) -> None:
    arr = _arr(dtype, shape)
    with ckpt.open(file_url) as store:
        store.save(1, {"a": arr})
        back = store.restore().state["a"]
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def test_bfloat16_via_ml_dtypes(url: str) -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    arr = np.arange(12, dtype=np.float32).reshape(3, 4).astype(ml_dtypes.bfloat16)
    with ckpt.open(url) as store:
        store.save(1, {"w": arr})
        back = store.restore().state["w"]
        record = store.commit_record(1)["arrays"]["w"]
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(back.view(np.uint16), arr.view(np.uint16))
    assert record["dtype"] == "bfloat16" and record["storage_dtype"] == "uint16"


@pytest.mark.parametrize(
    ("shape", "itemsize", "target", "expected"),
    [
        ((100, 10), 4, 400, [10, 10]),
        ((10,), 8, 1024, [10]),
        ((4, 1000), 4, 400, [1, 100]),
        ((), 8, 16, []),
        ((0, 5), 4, 400, [1, 5]),
    ],
)
def test_chunk_shape(
    shape: tuple[int, ...], itemsize: int, target: int, expected: list[int]
) -> None:
    chunks = _layout.chunk_shape(shape, itemsize, target)
    assert chunks == expected
    assert math.prod(chunks) * itemsize <= max(target, itemsize * max(1, shape[-1] if shape else 1))


def test_multi_chunk_arrays_read_by_plain_zarr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small chunk target so arrays split on the first and on later axes, with edge chunks."""
    monkeypatch.setattr(_layout, "CHUNK_BYTES", 1000)
    state = {
        "rows": _arr("float32", (103, 7)),        # split on axis 0, short last chunk
        "wide": _arr("int64", (3, 5, 400)),       # one row exceeds the target: split on axis 2
        "flag": _arr("bool", (2001,)),
        "c": _arr("complex128", (9, 11)),
        "s": np.float16(1.5),
    }
    url = f"file://{tmp_path}/job"
    with ckpt.open(url) as store:
        store.save(5, state, metadata={"epoch": 2, "tags": ["a"]})
        record = store.commit_record(5)
        back = store.restore(5).state
        assert store.step_url(5) == f"{url}/steps/0000000005.{store.writer}"
    # At most 125 int64 per chunk: 400 split into 4 equal pieces of 100 (not 125+125+125+25).
    assert record["arrays"]["wide"]["chunks"] == [1, 1, 100]
    group = zarr.open_group(str(tmp_path / "job" / "steps" / record["folder"]), mode="r")
    assert dict(group.attrs) == {"epoch": 2, "tags": ["a"]}
    assert sorted(group.array_keys()) == sorted(state)
    for name, arr in state.items():
        plain = group[name][...]
        np.testing.assert_array_equal(plain, arr)
        np.testing.assert_array_equal(back[name], arr)
        assert plain.dtype == np.asarray(arr).dtype


def test_plain_zarr_reads_memory_and_file_urls(url: str) -> None:
    arr = _arr("float64", (50, 3))
    with ckpt.open(url) as store:
        store.save(1, {"x": arr, "y": [np.int32(3)]})
        step_url = store.step_url(1)
    opts = {"auto_mkdir": True} if url.startswith("file://") else None
    group = zarr.open_group(step_url, mode="r", storage_options=opts)
    np.testing.assert_array_equal(group["x"][...], arr)
    assert group["y.0"][...] == 3


def test_commit_object_is_documented_shape(file_url: str, tmp_path: Path) -> None:
    with ckpt.open(file_url, token=4) as store:
        store.save(2, {"a": np.ones(3)}, metadata={"k": 1})
    commit = json.loads((tmp_path / "job" / "commits" / "0000000002.json").read_text())
    assert commit["format"] == "gridbridge-checkpoint/2"
    assert commit["step"] == 2 and commit["token"] == 4 and commit["metadata"] == {"k": 1}
    assert commit["writer"].startswith("t4-")
    assert commit["folder"] == f"0000000002.{commit['writer']}"
    assert (tmp_path / "job" / "steps" / commit["folder"] / "zarr.json").is_file()
    assert commit["time"].endswith("Z")
    entry = commit["arrays"]["a"]
    import blake3

    assert entry["digest"] == "blake3:" + blake3.blake3(np.ones(3).tobytes()).hexdigest()
    assert entry["step"] == 2 and entry["path"] == "a" and entry["shape"] == [3]
    assert entry["folder"] == commit["folder"]
    fence = json.loads((tmp_path / "job" / "fence.json").read_text())
    assert fence["token"] == 4


def test_unsupported_values_are_refused(url: str) -> None:
    with ckpt.open(url) as store:
        with pytest.raises(TypeError):
            store.save(1, {"when": np.array(["2020-01-01"], dtype="datetime64[D]")})
        with pytest.raises(TypeError):
            store.save(1, {"obj": object()})
        with pytest.raises(TypeError):
            store.save(1, {"a": np.ones(2)}, metadata={"bad": object()})
        assert store.steps() == []


def _rewrite_digests_as_sha256(commit_path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Turn a COMMIT into what a writer before the blake3 switch produced."""
    import hashlib

    commit = json.loads(commit_path.read_text())
    for name, entry in commit["arrays"].items():
        data = np.ascontiguousarray(arrays[name]).astype(arrays[name].dtype.newbyteorder("<"))
        entry["digest"] = "sha256:" + hashlib.sha256(data.tobytes()).hexdigest()
    commit_path.write_text(json.dumps(commit))


def test_sha256_checkpoint_still_verifies_and_restores(file_url: str, tmp_path: Path) -> None:
    arrays = {"w": _arr("float32", (300, 7)), "i": _arr("int64", (5,))}
    with ckpt.open(file_url) as store:
        store.save(1, dict(arrays))
    _rewrite_digests_as_sha256(tmp_path / "job" / "commits" / "0000000001.json", arrays)
    with ckpt.open(file_url) as store:
        assert all(r.ok for r in store.verify(1))
        got = store.restore(1).state
        np.testing.assert_array_equal(got["w"], arrays["w"])
        np.testing.assert_array_equal(got["i"], arrays["i"])
    # a flipped byte is still caught under the old algorithm
    folder = json.loads((tmp_path / "job" / "commits" / "0000000001.json").read_text())["folder"]
    chunk = tmp_path / "job" / "steps" / folder / "w" / "c" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[0] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    with ckpt.open(file_url) as store, pytest.raises(ckpt.CorruptCheckpoint, match="digest"):
        store.restore(1)


def test_incremental_save_on_top_of_sha256_commit(file_url: str, tmp_path: Path) -> None:
    arrays = {"same": _arr("float64", (64,)), "moved": _arr("float64", (64,), seed=1)}
    with ckpt.open(file_url) as store:
        store.save(1, dict(arrays))
    _rewrite_digests_as_sha256(tmp_path / "job" / "commits" / "0000000001.json", arrays)
    changed = dict(arrays, moved=arrays["moved"] + 1)
    with ckpt.open(file_url) as store:
        info = store.save(2, changed)
        assert (info.arrays_written, info.arrays_reused) == (1, 1)
        entries = store.commit_record(2)["arrays"]
        assert entries["same"]["step"] == 1 and entries["same"]["digest"].startswith("sha256:")
        assert entries["moved"]["step"] == 2
        assert all(r.ok for r in store.verify())
        np.testing.assert_array_equal(store.restore(2).state["moved"], changed["moved"])


def test_unknown_digest_algorithm_is_corruption(file_url: str, tmp_path: Path) -> None:
    with ckpt.open(file_url) as store:
        store.save(1, {"a": np.ones(4)})
    path = tmp_path / "job" / "commits" / "0000000001.json"
    commit = json.loads(path.read_text())
    commit["arrays"]["a"]["digest"] = "md5:" + "0" * 32
    path.write_text(json.dumps(commit))
    with ckpt.open(file_url) as store:
        with pytest.raises(ckpt.CorruptCheckpoint, match="unsupported digest"):
            store.restore(1)
        assert not store.verify(1)[0].ok


def test_digest_does_not_depend_on_chunking() -> None:
    from gridbridge.checkpoint import _digest, _io

    data = _arr("float32", (9, 1000))
    whole = _digest.digest_bytes(data.tobytes())
    assert _io.digest_of(data) == whole
    hasher = _digest.new_hasher("blake3")
    for row in data:
        hasher.update(row.tobytes())
    assert _digest.format_digest("blake3", hasher) == whole


def test_chunks_split_an_axis_into_equal_pieces_to_avoid_padding() -> None:
    target = 16 * 1024 * 1024
    for rows in (10_158, 4_097, 12_288, 1):
        chunks = _layout.chunk_shape((rows, 1024), 4, target)
        pieces = -(-rows // chunks[0])
        assert chunks[0] * 1024 * 4 <= target or rows == 1
        assert pieces * chunks[0] - rows < pieces  # padding is under one row per chunk


def test_a_restored_large_array_is_an_ordinary_writable_array(url: str) -> None:
    """Arrays of 1 MiB and more are read into memory of their own (not numpy's huge-page
    allocation); they behave as any array: writable, contiguous, kept alive by themselves."""
    import gc
    import pickle

    big = _arr("float32", (512, 1024), seed=3)  # 2 MiB
    with ckpt.open(url) as store:
        store.save(1, {"w": big, "b": big[:2].copy()})
        got = store.restore(1).state
    del store
    gc.collect()
    w = got["w"]
    np.testing.assert_array_equal(w, big)
    assert w.flags.writeable and w.flags.c_contiguous and w.dtype == np.float32
    w += 1  # in place
    np.testing.assert_array_equal(w, big + 1)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(w)), big + 1)
    np.testing.assert_array_equal(got["b"], big[:2])
