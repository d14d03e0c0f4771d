"""The public surface is deliberate: ``__all__`` is honest and ``import gridbridge`` stays light."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gridbridge

HEAVY = ["boto3", "paramiko", "distributed", "s3fs", "sqlalchemy", "zarr"]


def _run(code: str, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, cwd=cwd, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_all_names_exist_and_are_unique() -> None:
    assert len(gridbridge.__all__) == len(set(gridbridge.__all__))
    for name in gridbridge.__all__:
        assert hasattr(gridbridge, name), name


def test_all_lists_exactly_the_public_names() -> None:
    # Every public name gridbridge/__init__.py takes from its modules or defines is exported,
    # and nothing else is; the names it imports lazily are the ones type checkers are shown.
    tree = ast.parse(Path(gridbridge.__file__).read_text())
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gridbridge."):
            bound.update(a.asname or a.name for a in node.names)
    for node in tree.body:
        if isinstance(node, ast.Assign):
            bound.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            bound.add(node.name)
    public = {n for n in bound if not n.startswith("_")} | {"__version__"}
    assert set(gridbridge.__all__) == public
    lazy = gridbridge._LAZY  # type: ignore[attr-defined]
    assert set(lazy) == public - {"__version__"}
    for name, module in lazy.items():
        assert getattr(importlib.import_module(module), name) is getattr(gridbridge, name)


def test_the_package_imports_its_names_when_first_used() -> None:
    """``import gridbridge`` (and so a job's runtime) does not load the client or pydantic."""
    code = ("import sys, gridbridge, gridbridge.runtime; "
            "print(sorted(m for m in ('pydantic', 'gridbridge.client', 'gridbridge.config', "
            "'sqlalchemy') if m in sys.modules)); from gridbridge import Client; "
            "print(Client.__module__, 'Client' in dir(gridbridge))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[:2] == ["[]", "gridbridge.client True"]
    with pytest.raises(AttributeError, match="no attribute 'Clinet'"):
        gridbridge.Clinet  # type: ignore[attr-defined]


def test_exported_objects_come_from_gridbridge() -> None:
    for name in gridbridge.__all__:
        obj = getattr(gridbridge, name)
        module = getattr(obj, "__module__", None)
        if module is not None and not isinstance(obj, str):
            assert module.startswith("gridbridge."), (name, module)


def test_version_matches_metadata() -> None:
    from importlib.metadata import version

    assert gridbridge.__version__ == version("gridbridge")


def test_star_import_gives_all(tmp_path: Path) -> None:
    out = _run(
        """
        import json
        ns = {}
        exec("from gridbridge import *", ns)
        print(json.dumps(sorted(k for k in ns if k != "__builtins__")))
        """,
        tmp_path,
    )
    assert json.loads(out) == sorted(gridbridge.__all__)


def test_import_gridbridge_pulls_in_no_heavy_dependency(tmp_path: Path) -> None:
    out = _run(
        f"""
        import json, sys
        import gridbridge
        heavy = {HEAVY!r}
        print(json.dumps([m for m in heavy
                          if any(k == m or k.startswith(m + ".") for k in sys.modules)]))
        """,
        tmp_path,
    )
    assert json.loads(out) == []


def test_import_gridbridge_does_not_import_adapters_or_scheduler(tmp_path: Path) -> None:
    out = _run(
        """
        import json, sys
        import gridbridge
        print(json.dumps(sorted(k for k in sys.modules
                                if k.startswith(("gridbridge.adapters", "gridbridge.scheduler")))))
        """,
        tmp_path,
    )
    assert json.loads(out) == []


def test_adapters_and_scheduler_are_not_top_level_modules(tmp_path: Path) -> None:
    repo = Path(gridbridge.__file__).resolve().parent.parent
    out = _run(
        """
        import json, importlib.util
        found = {}
        for name in ("adapters", "scheduler"):
            spec = importlib.util.find_spec(name)
            found[name] = None if spec is None else spec.origin
        import gridbridge.adapters, gridbridge.scheduler
        print(json.dumps(found))
        """,
        tmp_path,
    )
    for name, origin in json.loads(out).items():
        assert origin is None or not Path(origin).resolve().is_relative_to(repo), (name, origin)


def test_namespaced_subpackages_resolve() -> None:
    import gridbridge.adapters.local as local
    import gridbridge.scheduler.store as store

    assert local.LocalAdapter.__module__ == "gridbridge.adapters.local"
    assert store.StateStore.__module__ == "gridbridge.scheduler.store"


def test_py_typed_is_shipped() -> None:
    assert (Path(gridbridge.__file__).parent / "py.typed").exists()
