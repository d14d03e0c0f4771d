"""Value objects and errors of the checkpoint store.

Everything here is immutable: a ``CommitInfo`` or ``Checkpoint`` describes one committed step and
never changes after it is returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FORMAT = "gridbridge-checkpoint/2"
"""Format tag of the COMMITs this version writes (writer-unique step folders)."""
FORMAT_V1 = "gridbridge-checkpoint/1"
"""Format tag of older COMMITs (one shared folder per step); still read, never written."""
FENCE_FORMAT = "gridbridge-fence/1"


class CheckpointError(Exception):
    """Base class of every error the checkpoint store raises."""


class FencedError(CheckpointError):
    """A newer attempt owns this job prefix: this writer's token is older than the fence."""


class PrefixOwned(CheckpointError):
    """The prefix's ``fence.json`` names another job: its fence is never raised for this one."""


class CommitConflict(CheckpointError):
    """Another writer committed this step first; this writer's save did not take effect."""


class CorruptCheckpoint(CheckpointError):
    """A committed step cannot be read back intact (missing, short or altered objects)."""


class NoCheckpoint(CheckpointError, LookupError):
    """No committed (and intact) step exists under the prefix."""


class CorruptCheckpointWarning(UserWarning):
    """``restore()`` skipped a corrupt committed step and fell back to an older one."""


@dataclass(frozen=True)
class CommitInfo:
    """What one successful ``save`` wrote."""

    step: int
    token: int
    bytes_written: int
    arrays_written: int
    arrays_reused: int


@dataclass(frozen=True)
class Checkpoint:
    """A restored step: the pytree as it was saved and the user metadata."""

    step: int
    state: Any
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of verifying one committed step; ``problems`` is empty when ``ok``."""

    step: int
    ok: bool
    problems: tuple[str, ...] = ()
    arrays: int = 0
    nbytes: int = 0
