"""The adapter registry: lazy, read-only to the outside, never silently overridden."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gridbridge.adapter import Capability
from gridbridge.registry import (
    BUILTIN_ADAPTERS,
    AdapterInvalid,
    AdapterNotFound,
    Registry,
    default_registry,
)

VERBS = "".join(
    f"    def {verb}(self, *a, **k):\n        return None\n"
    for verb in ("submit", "poll", "cancel", "owned", "offers", "capabilities")
)


class Dummy:
    """The six verbs, as stubs: enough for the registry's check."""

    CAPABILITIES: frozenset[Capability] = frozenset()

    def submit(self, *a: object) -> None: ...
    def poll(self, *a: object) -> None: ...
    def cancel(self, *a: object) -> None: ...
    def owned(self) -> None: ...
    def offers(self) -> None: ...
    def capabilities(self) -> None: ...


class Other(Dummy):
    pass


class NoOwned:
    def submit(self) -> None: ...
    def poll(self) -> None: ...
    def cancel(self) -> None: ...
    def offers(self) -> None: ...
    def capabilities(self) -> None: ...


class PromisesLogs(Dummy):
    CAPABILITIES = frozenset({Capability.LOGS})


class KeepsLogs(PromisesLogs):
    def logs(self, native_id: str) -> str:
        return ""


def test_a_class_without_every_verb_is_refused_naming_it_and_the_verbs() -> None:
    r = Registry()
    with pytest.raises(AdapterInvalid, match=r"test_registry\.NoOwned lacks the verbs: owned"):
        r.register("x", NoOwned)
    r.register("y", f"{__name__}:NoOwned")
    with pytest.raises(AdapterInvalid, match="NoOwned"):
        r.load("y")
    assert "x" not in r.entries


def test_a_declared_capability_needs_its_verb() -> None:
    r = Registry()
    with pytest.raises(AdapterInvalid, match="PromisesLogs lacks the verbs: logs"):
        r.register("p", PromisesLogs)
    r.register("k", KeepsLogs)
    assert r.load("k") is KeepsLogs


def test_local_is_loaded_lazily() -> None:
    # A fresh interpreter: the registry knows 'local' but imports it only on load().
    code = textwrap.dedent(
        """
        import sys
        from gridbridge.registry import default_registry
        r = default_registry()
        before = 'gridbridge.adapters.local' in sys.modules
        cls = r.load('local')
        after = 'gridbridge.adapters.local' in sys.modules
        print(before, after, cls.__module__, cls.__name__)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["False", "True", "gridbridge.adapters.local", "LocalAdapter"]


def test_load_returns_the_same_class_each_time() -> None:
    from gridbridge.adapters.local import LocalAdapter

    r = Registry(BUILTIN_ADAPTERS)
    assert r.load("local") is LocalAdapter
    assert r.load("local") is r.load("local")


def test_unknown_name_lists_choices() -> None:
    r = Registry({"local": BUILTIN_ADAPTERS["local"], "zeta": "x:Y", "alpha": "x:Z"})
    with pytest.raises(AdapterNotFound) as info:
        r.load("slurmm")
    msg = str(info.value)
    assert "'slurmm'" in msg
    assert "alpha, local, zeta" in msg
    assert isinstance(info.value, LookupError)


def test_register_twice_raises_unless_clobber() -> None:
    r = Registry()
    r.register("dummy", Dummy)
    assert r.load("dummy") is Dummy
    with pytest.raises(ValueError, match="already registered"):
        r.register("dummy", Other)
    with pytest.raises(ValueError, match="already registered"):
        r.register("dummy", "some.module:Other")
    assert r.load("dummy") is Dummy
    r.register("dummy", Other, clobber=True)
    assert r.load("dummy") is Other
    assert r.entries["dummy"] == f"{Other.__module__}:{Other.__qualname__}"


def test_clobber_with_string_drops_the_cached_class() -> None:
    r = Registry()
    r.register("x", Dummy)
    r.register("x", "gridbridge.adapters.local:LocalAdapter", clobber=True)
    assert r.load("x").__name__ == "LocalAdapter"


def test_entries_view_is_read_only() -> None:
    r = Registry({"local": BUILTIN_ADAPTERS["local"]})
    view = r.entries
    with pytest.raises(TypeError):
        view["evil"] = "os:system"  # type: ignore[index]
    with pytest.raises(TypeError):
        del view["local"]  # type: ignore[attr-defined]
    assert r.names() == ["local"]
    r.register("new", Dummy)
    assert "new" in view  # a live view, not a copy
    with pytest.raises(TypeError):
        BUILTIN_ADAPTERS["x"] = "y"  # type: ignore[index]


def test_registry_does_not_share_state_with_its_input() -> None:
    entries = {"a": "m:A"}
    r = Registry(entries)
    r.register("b", "m:B")
    assert entries == {"a": "m:A"}


def test_missing_module_gives_install_hint() -> None:
    r = Registry({"ghost": "gridbridge_no_such_module_xyz:Adapter"})
    with pytest.raises(ImportError) as info:
        r.load("ghost")
    msg = str(info.value)
    assert "'ghost'" in msg
    assert "gridbridge_no_such_module_xyz" in msg
    assert "install" in msg
    assert isinstance(info.value.__cause__, ImportError)


@pytest.mark.parametrize(
    ("dep", "extra"),
    [("boto3", "gridbridge[aws]"), ("paramiko", "gridbridge[ssh]"),
     ("distributed", "gridbridge[dask]")],
)
def test_missing_optional_dependency_names_the_extra(
    dep: str, extra: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, dep, None)  # as if it were not installed: import fails
    mod = f"gb_test_adapter_needing_{dep}"
    (tmp_path / f"{mod}.py").write_text(f"import {dep}\n\nclass A:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    r = Registry({"needy": f"{mod}:A"})
    with pytest.raises(ImportError) as info:
        r.load("needy")
    msg = str(info.value)
    assert f"pip install '{extra}'" in msg
    assert dep in msg
    monkeypatch.delitem(sys.modules, mod, raising=False)


def test_default_registry_has_local_through_the_entry_point() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="gridbridge.adapters")}
    assert eps.get("local") == BUILTIN_ADAPTERS["local"]
    r = default_registry()
    assert "local" in r.names()
    assert r.entries["local"] == eps["local"]
    assert r.load("local").__name__ == "LocalAdapter"


def _fake_dist(root: Path, name: str, entry: str) -> None:
    info = root / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[gridbridge.adapters]\n{entry}\n")


def test_third_party_entry_point_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "gb_thirdparty_k8s.py").write_text(
        "class K8s:\n    CAPABILITIES = frozenset()\n" + VERBS
    )
    _fake_dist(tmp_path, "gb_thirdparty_k8s", "k8s = gb_thirdparty_k8s:K8s")
    monkeypatch.syspath_prepend(str(tmp_path))
    r = default_registry()
    assert r.entries["k8s"] == "gb_thirdparty_k8s:K8s"
    assert r.load("k8s").__name__ == "K8s"
    monkeypatch.delitem(sys.modules, "gb_thirdparty_k8s", raising=False)


def test_clashing_entry_point_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dist(tmp_path, "gb_evil", "local = gb_evil:NotLocal")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError) as info:
        default_registry()
    assert "gb_evil:NotLocal" in str(info.value)
    assert "local" in str(info.value)
