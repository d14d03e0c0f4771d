"""Pytree flattening: a nested state becomes a JSON skeleton plus a flat table of arrays.

Invariant: ``unflatten(*flatten(x))`` rebuilds ``x`` with the same container types (dict,
OrderedDict, list, tuple), the same python scalars, and arrays of the same dtype and shape.
Array leaves get unique names that are valid Zarr node names, derived from their path.
"""

from __future__ import annotations

import base64
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_MAX_NAME = 100
_PLAIN_KINDS = {"b", "i", "u", "f", "c"}


@dataclass(frozen=True)
class Leaf:
    """One array of the pytree, already in its storage form (little-endian, C-contiguous)."""

    name: str
    data: np.ndarray[Any, Any]
    dtype: str  # the logical dtype name, e.g. "float32" or "bfloat16"


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch")


def storage_form(arr: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], str]:
    """Return the array as stored (little-endian, C order) and its logical dtype name.

    Dtypes from ml_dtypes (bfloat16, float8 variants) are stored as an unsigned integer view of
    the same width; the logical name is kept in the COMMIT and the array's Zarr attributes.
    """
    dt = arr.dtype
    if type(dt.type).__module__.startswith("ml_dtypes") or dt.type.__module__.startswith(
        "ml_dtypes"
    ):
        view = arr.astype(dt, order="C", copy=False).view(np.dtype(f"<u{dt.itemsize}"))
        return view, dt.name
    if dt.kind not in _PLAIN_KINDS:
        raise TypeError(f"unsupported array dtype {dt!s}; use bool, int, uint, float or complex")
    little = dt.newbyteorder("<") if dt.itemsize > 1 else dt
    # astype keeps 0-d arrays 0-d (np.ascontiguousarray would make them 1-d)
    return arr.astype(little, order="C", copy=False), dt.name


def logical_array(stored: np.ndarray[Any, Any], dtype: str) -> np.ndarray[Any, Any]:
    """Undo ``storage_form``: reinterpret a stored array as its logical dtype."""
    if dtype == stored.dtype.name:
        return stored
    try:
        target = np.dtype(dtype)
    except TypeError:
        import ml_dtypes

        target = np.dtype(getattr(ml_dtypes, dtype))
    return stored.view(target)


class _Flattener:
    def __init__(self, copy: bool, staging: Mapping[str, np.ndarray[Any, Any]]) -> None:
        self.copy = copy
        self.staging = staging
        self.leaves: list[Leaf] = []
        self._names: set[str] = set()

    def name_for(self, path: tuple[str, ...]) -> str:
        base = _UNSAFE.sub("_", ".".join(path))[:_MAX_NAME] or "root"
        if base.startswith((".", "__")):
            base = "v" + base
        name, n = base, 1
        while name in self._names:
            n += 1
            name = f"{base}-{n}"
        self._names.add(name)
        return name

    def array(self, arr: np.ndarray[Any, Any], path: tuple[str, ...], kind: str) -> dict[str, Any]:
        data, dtype = storage_form(arr)
        name = self.name_for(path)
        if self.copy and np.may_share_memory(data, arr):
            buf = self.staging.get(name)
            if buf is not None and buf.shape == data.shape and buf.dtype == data.dtype:
                np.copyto(buf, data)  # reuse a host buffer: no page faults on the hot path
                data = buf
            else:
                data = data.copy()
        self.leaves.append(Leaf(name, data, dtype))
        return {"t": kind, "a": name}

    def torch(self, tensor: Any, path: tuple[str, ...]) -> dict[str, Any]:
        import torch

        t = tensor.detach().cpu()
        if t.dtype == torch.bfloat16:
            arr = t.view(torch.int16).numpy().view(np.uint16)
            node = self.array(arr, path, "torch")
            self.leaves[-1] = Leaf(self.leaves[-1].name, self.leaves[-1].data, "bfloat16")
        else:
            node = self.array(t.numpy(), path, "torch")
        node["torch_dtype"] = str(t.dtype).removeprefix("torch.")
        return node

    def node(self, value: Any, path: tuple[str, ...]) -> dict[str, Any]:
        if isinstance(value, np.ndarray):
            return self.array(value, path, "ndarray")
        if isinstance(value, np.generic):
            return self.array(np.asarray(value), path, "npscalar")
        if _is_torch(value) and hasattr(value, "detach"):
            return self.torch(value, path)
        if isinstance(value, Mapping):
            return self.mapping(value, path)
        if isinstance(value, list | tuple):
            kind = "list" if isinstance(value, list) else "tuple"
            items = [self.node(v, (*path, str(i))) for i, v in enumerate(value)]
            return {"t": kind, "v": items}
        return scalar_node(value)

    def mapping(self, value: Mapping[Any, Any], path: tuple[str, ...]) -> dict[str, Any]:
        items: list[list[Any]] = []
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, str | int):
                raise TypeError(f"mapping keys must be str or int, got {type(key).__name__}")
            tag = "s" if isinstance(key, str) else "i"
            items.append([tag, key, self.node(item, (*path, str(key)))])
        kind = "odict" if isinstance(value, OrderedDict) else "dict"
        return {"t": kind, "items": items}


def scalar_node(value: Any) -> dict[str, Any]:
    """Encode a python scalar so that it survives JSON exactly (NaN and inf included)."""
    if value is None or isinstance(value, bool | str):
        return {"t": "py", "v": value}
    if isinstance(value, int):
        return {"t": "int", "v": str(value)}
    if isinstance(value, float):
        return {"t": "float", "v": repr(value)}
    if isinstance(value, complex):
        return {"t": "complex", "v": [repr(value.real), repr(value.imag)]}
    if isinstance(value, bytes):
        return {"t": "bytes", "v": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"cannot checkpoint a value of type {type(value).__name__}")


def flatten(
    state: Any,
    *,
    copy: bool = False,
    staging: Mapping[str, np.ndarray[Any, Any]] | None = None,
) -> tuple[dict[str, Any], list[Leaf]]:
    """Split ``state`` into a JSON-able skeleton and its array leaves.

    With ``copy`` the leaves are copies, written into the matching ``staging`` buffers (same
    name, shape and dtype) when given; the caller must know those buffers are no longer in use.
    """
    flattener = _Flattener(copy, staging or {})
    tree = flattener.node(state, ())
    return tree, flattener.leaves


def unflatten(tree: Mapping[str, Any], arrays: Mapping[str, np.ndarray[Any, Any]]) -> Any:
    """Rebuild the state from its skeleton and the arrays read back (logical dtypes)."""
    kind = tree["t"]
    if kind in ("dict", "odict"):
        pairs = [
            (key if tag == "s" else int(key), unflatten(node, arrays))
            for tag, key, node in tree["items"]
        ]
        return OrderedDict(pairs) if kind == "odict" else dict(pairs)
    if kind in ("list", "tuple"):
        items = [unflatten(node, arrays) for node in tree["v"]]
        return items if kind == "list" else tuple(items)
    if kind == "ndarray":
        return arrays[tree["a"]]
    if kind == "npscalar":
        return arrays[tree["a"]][()]
    if kind == "torch":
        return _to_torch(arrays[tree["a"]], tree.get("torch_dtype", ""))
    return _scalar(tree)


def _scalar(tree: Mapping[str, Any]) -> Any:
    kind, value = tree["t"], tree["v"]
    if kind == "py":
        return value
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "complex":
        return complex(float(value[0]), float(value[1]))
    if kind == "bytes":
        return base64.b64decode(value)
    raise ValueError(f"unknown pytree node kind {kind!r}")


def _to_torch(arr: np.ndarray[Any, Any], torch_dtype: str) -> Any:
    import torch

    if torch_dtype == "bfloat16":
        raw = arr.astype(arr.dtype, order="C", copy=False).view(np.int16)
        return torch.from_numpy(raw.copy()).view(torch.bfloat16)
    return torch.from_numpy(np.array(arr, copy=True))
