"""The tree keeps its shape: modules stay small (shared/STYLE.md: about 500 lines), and the few
that may not are listed here, each with its reason and the size it may not grow past."""

from __future__ import annotations

from tests.support.paths import REPO

LIMIT = 500
"""Lines a module of the product may have."""

ALLOWED: dict[str, tuple[int, str]] = {}
"""Modules over :data:`LIMIT`: path -> (the most lines it may have, why it is one module)."""

PACKAGES = ("gridbridge", "adapters", "scheduler")


def _sizes() -> dict[str, int]:
    sizes = {}
    for top in PACKAGES:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            with path.open("rb") as f:
                sizes[rel] = sum(1 for _ in f)
    return sizes


def test_no_module_is_over_the_limit_unless_listed() -> None:
    over = {p: n for p, n in _sizes().items() if n > LIMIT and p not in ALLOWED}
    assert not over, (f"modules over {LIMIT} lines: {over}; split them along their seams "
                      "(see gridbridge/checkpoint/), or list one in ALLOWED with its reason")


def test_a_listed_module_does_not_grow() -> None:
    sizes = _sizes()
    grown = {p: (sizes[p], most) for p, (most, _) in ALLOWED.items()
             if p in sizes and sizes[p] > most}
    assert not grown, f"listed modules grew past their recorded size (now, allowed): {grown}"


def test_the_allow_list_is_short_and_current() -> None:
    sizes = _sizes()
    assert len(ALLOWED) <= 3, "at most three modules may be over the limit"
    stale = [p for p in ALLOWED if sizes.get(p, 0) <= LIMIT]
    assert not stale, f"listed but no longer over {LIMIT} lines (or gone): remove {stale}"
    assert all(reason.strip() for _, reason in ALLOWED.values())


def test_every_package_folder_is_in_the_wheel() -> None:
    """A package folder missing from pyproject's explicit ``packages`` list is left out of the
    wheel (an editable install, or a stale build/ folder, hides it: only a clean install
    fails), so each folder with an ``__init__.py`` must be listed under its installed name."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    installed_as = {"gridbridge": "gridbridge", "adapters": "gridbridge.adapters",
                    "scheduler": "gridbridge.scheduler"}
    found = set()
    for top in PACKAGES:
        for init in (REPO / top).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / top).parts
            found.add(".".join((installed_as[top], *rel)))
    assert not found - listed, f"package folders missing from pyproject's packages: " \
                               f"{sorted(found - listed)}"
