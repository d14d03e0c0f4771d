"""gridbridge: submit a job once; it runs on the cheapest site that can meet its needs and
resumes from its last checkpoint when it is preempted.

>>> import gridbridge
>>> with gridbridge.Client() as client:                        # doctest: +SKIP
...     future = client.submit(sum, [1, 2, 3], cpus=1)
...     future.result()
6
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridbridge.adapter import (
        Adapter,
        AttemptStatus,
        Capability,
        Offer,
        OwnedJob,
        Pricing,
        SubmitRejected,
        SubmitRequest,
    )
    from gridbridge.client import Client, JobCancelled, JobFailed, JobFuture
    from gridbridge.config import ConfigError, GridConfig, SiteConfig, load_config
    from gridbridge.job_context import JobContext, Preempted, context
    from gridbridge.spec import CheckpointPolicy, Constraints, JobSpec, Owner, Resources, Tier
    from gridbridge.states import AttemptState, IllegalTransition, JobState

# Names are imported on first use, so that a job's runtime (``python -m gridbridge.runtime``)
# does not pay for the client, the config and the scheduler it never touches: a trivial job's
# start-up is mostly imports.
_LAZY: dict[str, str] = {
    "Adapter": "gridbridge.adapter",
    "AttemptStatus": "gridbridge.adapter",
    "Capability": "gridbridge.adapter",
    "Offer": "gridbridge.adapter",
    "OwnedJob": "gridbridge.adapter",
    "Pricing": "gridbridge.adapter",
    "SubmitRejected": "gridbridge.adapter",
    "SubmitRequest": "gridbridge.adapter",
    "Client": "gridbridge.client",
    "JobCancelled": "gridbridge.client",
    "JobFailed": "gridbridge.client",
    "JobFuture": "gridbridge.client",
    "ConfigError": "gridbridge.config",
    "GridConfig": "gridbridge.config",
    "SiteConfig": "gridbridge.config",
    "load_config": "gridbridge.config",
    "JobContext": "gridbridge.job_context",
    "Preempted": "gridbridge.job_context",
    "context": "gridbridge.job_context",
    "CheckpointPolicy": "gridbridge.spec",
    "Constraints": "gridbridge.spec",
    "JobSpec": "gridbridge.spec",
    "Owner": "gridbridge.spec",
    "Resources": "gridbridge.spec",
    "Tier": "gridbridge.spec",
    "AttemptState": "gridbridge.states",
    "IllegalTransition": "gridbridge.states",
    "JobState": "gridbridge.states",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gridbridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "Adapter",
    "AttemptState",
    "AttemptStatus",
    "Capability",
    "CheckpointPolicy",
    "Client",
    "ConfigError",
    "Constraints",
    "GridConfig",
    "IllegalTransition",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobFuture",
    "JobSpec",
    "JobState",
    "Offer",
    "OwnedJob",
    "Owner",
    "Preempted",
    "Pricing",
    "Resources",
    "SiteConfig",
    "SubmitRejected",
    "SubmitRequest",
    "Tier",
    "__version__",
    "context",
    "load_config",
]
