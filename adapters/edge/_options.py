"""``options:`` of an ``edge`` site: the nodes and how to reach and use them.

A node's labels are checked with :data:`gridbridge.units.LABEL_PATTERN`, the pattern job
constraints use, so every label a job may ask for (``zone/a``, ``gpu:a100``) is one a node
can carry.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from gridbridge.adapters._host import FederationTag
from gridbridge.frozen import Frozen
from gridbridge.units import LABEL_PATTERN

__all__ = ["EdgeNode", "EdgeOptions"]

_NODE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A node's name: the offer key and the first part of native ids (``<node>/<attempt id>``)."""

_Label = Annotated[str, Field(pattern=LABEL_PATTERN)]


class EdgeNode(Frozen):
    """One node of the fleet (``options.nodes[]``)."""

    name: Annotated[str, Field(pattern=_NODE_NAME)]
    """The offer key and the first part of native ids."""
    host: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str = "root"
    key_file: str | None = None
    """Default: the fleet's ``key_file`` (then the SSH agent and ``~/.ssh/id_*``)."""
    known_hosts: str | None = None
    """Default: the fleet's ``known_hosts``."""
    labels: dict[_Label, str] = Field(default_factory=dict)
    """Shown in the offer's shape and matched by job constraints, e.g. ``location``,
    ``zone/a``, ``accelerator``. Keys follow the constraints' label pattern; values are any
    text (only one the pattern allows can be asked for by a job)."""
    cpus: Annotated[int, Field(ge=1)] | None = None
    """What gridbridge may use there; default: the node's ``nproc``."""
    memory_gb: Annotated[float, Field(gt=0)] | None = None
    """Default: the node's available memory."""
    gpus: int = Field(default=0, ge=0)
    cost_per_hour: float = Field(default=0.0, ge=0)


class EdgeOptions(Frozen):
    """``options:`` of an ``edge`` site."""

    nodes: Annotated[list[EdgeNode], Field(min_length=1)]
    known_hosts: str = "~/.ssh/known_hosts"
    key_file: str | None = None
    connect_timeout_s: float = Field(default=10.0, gt=0)
    command_timeout_s: float = Field(default=20.0, gt=0)
    max_sessions_per_node: int = Field(default=4, ge=1)
    remote_dir: str | None = None
    """The run folder on each node; default ``.gridbridge/edge/<site>`` in the SSH user's
    home. Made absolute on each node (``realpath``) the first time it is used there."""
    lost_after_s: float = Field(default=10.0, ge=0)
    """How long a node may be unreachable before its attempts are LOST."""
    grace_s: float = Field(default=10.0, ge=0)
    """Time between SIGTERM and SIGKILL on cancel (and at the walltime)."""
    federation_tag: FederationTag | None = None
    """Marks this federation's attempts on the nodes; default: derived from the workdir."""
    python: str | None = None
    """The runtime's interpreter on the nodes when ``runtime.python`` is unset (else
    ``python3``)."""
