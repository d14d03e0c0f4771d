"""gridbridge: submit a job once; it runs on the cheapest site that can meet its needs and
resumes from its last checkpoint when it is preempted.

>>> import gridbridge
>>> with gridbridge.Client() as client:                        # doctest: +SKIP
...     future = client.submit(sum, [1, 2, 3], cpus=1)
...     future.result()
6
"""

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
