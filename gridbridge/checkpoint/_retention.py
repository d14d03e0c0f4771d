"""Which steps ``gc()`` deletes and which step folders ``sweep()`` removes.

Invariant: a folder that any readable COMMIT names (as the step's own folder or as the folder of
one of its array entries) is never chosen, and neither is any folder of a step whose COMMIT
exists but cannot be read (what it references is unknown). Everything here is pure: the store
lists and loads, these functions decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._layout import commit_folder, entry_folder, parse_folder_name, step_name

Commits = Mapping[int, Mapping[str, Any] | None]
"""Loaded COMMITs by step; None for a COMMIT that could not be read (or vanished)."""


def referenced_folders(commits: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every folder under ``steps/`` that one of ``commits`` needs."""
    folders: set[str] = set()
    for commit in commits:
        folders.add(commit_folder(commit))
        folders |= {entry_folder(e) for e in commit["arrays"].values()}
    return folders


def steps_to_delete(
    steps: Sequence[int],
    commits: Commits,
    keep_last: int | None,
    keep_every: int | None,
    protect: Iterable[int] = (),
) -> list[int]:
    """Committed steps that retention drops, ascending.

    Kept: the newest step, the newest ``keep_last``, every multiple of ``keep_every``, the steps
    in ``protect``, and every step whose folder holds an array of a kept COMMIT.
    """
    steps = sorted(steps)
    keep = set(steps[-1:]) | (set(protect) & set(steps))
    if keep_last:
        keep |= set(steps[-keep_last:])
    if keep_every:
        keep |= {s for s in steps if s % keep_every == 0}
    for step in list(keep):
        commit = commits.get(step)
        if commit is not None:
            keep |= {int(e["step"]) for e in commit["arrays"].values()}
    return [s for s in steps if s not in keep]


def folders_of(step: int, commit: Mapping[str, Any] | None) -> set[str]:
    """The folders that belong to a committed step (its format-1 folder if it is unreadable)."""
    if commit is None:
        return {step_name(step)}
    own = {entry_folder(e) for e in commit["arrays"].values() if int(e["step"]) == step}
    return {commit_folder(commit)} | own


def sweep_candidates(names: Iterable[str], commits: Commits) -> list[str]:
    """Folder names under ``steps/`` that no COMMIT in ``commits`` (all of them) needs."""
    needed = referenced_folders(c for c in commits.values() if c is not None)
    unknown = {s for s, c in commits.items() if c is None}
    chosen = []
    for name in names:
        parsed = parse_folder_name(name)
        if parsed is None or name in needed or parsed[0] in unknown:
            continue
        chosen.append(name)
    return sorted(chosen)
