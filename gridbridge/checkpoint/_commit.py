"""Building and validating COMMIT objects (``commits/<step:010d>.json``).

Invariant: a COMMIT that ``parse_commit`` accepts names only safe single path segments (array
paths, step folders of the right step), so following it can never reach outside the job prefix.
Format-2 COMMITs name the writer-unique folder of their step (``folder``) and of every array
entry; format-1 COMMITs name none and their data lives in ``steps/<step:010d>/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from ._digest import WRITE_ALGORITHM, algorithm_of
from ._io import ReadItem
from ._layout import Paths, checked_folder, chunk_shape, entry_folder, step_name
from ._model import FORMAT, FORMAT_V1
from ._tree import Leaf

READ_FORMATS = (FORMAT, FORMAT_V1)


def _safe_name(name: Any) -> bool:
    return isinstance(name, str) and bool(name) and "/" not in name and name not in (".", "..")


def parse_commit(raw: bytes, step: int) -> dict[str, Any]:
    """Parse and check the COMMIT of ``step``; ValueError (or KeyError, TypeError) if invalid."""
    commit = json.loads(raw)
    fmt = commit.get("format")
    if fmt not in READ_FORMATS or commit.get("step") != step:
        raise ValueError("wrong format tag or step")
    if fmt == FORMAT and "folder" not in commit:
        raise ValueError(f"a {FORMAT} COMMIT must name its folder")
    if "folder" in commit:
        checked_folder(commit["folder"], step)
    for name, entry in commit["arrays"].items():
        if not (_safe_name(name) and _safe_name(entry["path"])):
            raise ValueError(f"unsafe array name {name!r}")
        entry_step = int(entry["step"])
        step_name(entry_step)
        if "folder" in entry:
            checked_folder(entry["folder"], entry_step)
    return dict(commit)


def new_entry(leaf: Leaf, step: int, folder: str, digest: str) -> dict[str, Any]:
    """The COMMIT entry of an array written in this save, into ``steps/<folder>/``."""
    data = leaf.data
    return {
        "path": leaf.name,
        "step": step,
        "folder": folder,
        "dtype": leaf.dtype,
        "storage_dtype": data.dtype.name,
        "shape": list(data.shape),
        "chunks": chunk_shape(data.shape, data.itemsize),
        "nbytes": int(data.nbytes),
        "digest": digest,
    }


def reused_entry(previous: Mapping[str, Any]) -> dict[str, Any]:
    """The entry of an unchanged array, copied from the previous COMMIT with its folder made
    explicit (a format-1 entry's folder is ``<step:010d>``)."""
    return {**previous, "folder": entry_folder(previous)}


def entry_algorithm(entry: Mapping[str, Any]) -> str:
    """Hash a possibly unchanged array the way the previous COMMIT did, so digests compare."""
    try:
        return algorithm_of(str(entry.get("digest", "")))
    except ValueError:
        return WRITE_ALGORITHM  # unreadable old digest: the array is simply rewritten


def read_items(paths: Paths, commit: Mapping[str, Any]) -> list[ReadItem]:
    """What to read for every array of a (parsed) COMMIT, each in the folder its entry names."""
    return [
        ReadItem(
            name=name,
            path=paths.array(entry_folder(e), e["path"]),
            shape=tuple(int(n) for n in e["shape"]),
            storage_dtype=str(e["storage_dtype"]),
            chunks=tuple(int(n) for n in e["chunks"]),
            digest=str(e["digest"]),
        )
        for name, e in commit["arrays"].items()
    ]


def torch_leaves(tree: Mapping[str, Any]) -> Iterator[str]:
    """Array names of the ``torch`` leaves of a COMMIT's tree (restored without a dtype view)."""
    kind = tree.get("t")
    if kind == "torch":
        yield str(tree["a"])
    elif kind in ("dict", "odict"):
        for _, _, node in tree["items"]:
            yield from torch_leaves(node)
    elif kind in ("list", "tuple"):
        for node in tree["v"]:
            yield from torch_leaves(node)
