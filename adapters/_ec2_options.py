"""What an ``ec2spot`` site is told and tells EC2: its options, the tags that mark its
instances, the API errors it tells apart, and the instance's boot script.

Invariant: the boot script (user-data, readable by anyone allowed
``DescribeInstanceAttribute``) holds only quoted values and the runtime's command line; the
job's command and environment stay in the launch record::

    #!/bin/bash
    export NAME='value'                 (each quoted)
    python3 -m gridbridge.runtime --launch <URL> --imds <IMDS URL> --imds-interval 5
    shutdown -h now
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import Field

from gridbridge.adapters._host import FederationTag
from gridbridge.config import SiteConfig, prologue_script
from gridbridge.frozen import Frozen
from gridbridge.units import ENV_NAME_PATTERN

__all__ = ["CAPACITY_ERRORS", "CONFIG_ERRORS", "TAG_ATTEMPT", "TAG_CANCELLED", "TAG_FEDERATION",
           "TAG_JOB", "TAG_URL", "THROTTLING", "Ec2SpotOptions", "user_data"]

TAG_FEDERATION = "gridbridge:federation"
TAG_ATTEMPT = "gridbridge:attempt"
TAG_JOB = "gridbridge:job"
TAG_URL = "gridbridge:attempt-url"
TAG_CANCELLED = "gridbridge:cancelled"

CAPACITY_ERRORS = frozenset({
    "InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity", "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded",
    "InstanceLimitExceeded", "VcpuLimitExceeded", "InsufficientFreeAddressesInSubnet",
    "UnfulfillableCapacity", "Unsupported",
})
"""``RunInstances`` errors that say this (instance type, zone) cannot be had now: the offer is
shown without capacity for a while and placement looks elsewhere."""
CONFIG_ERRORS = frozenset({
    "InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "InvalidAMIID.Unavailable",
    "InvalidSubnetID.NotFound", "InvalidGroup.NotFound", "InvalidGroupId.Malformed",
    "InvalidKeyPair.NotFound", "InvalidParameterValue", "InvalidParameterCombination",
    "UnauthorizedOperation", "AuthFailure", "InvalidClientTokenId", "OptInRequired",
    "InvalidInstanceType", "InvalidIamInstanceProfile.NotFound",
})
"""Errors that no other offer of the site would avoid (the operator's settings are wrong):
the whole site shows no capacity for a while, with the reason."""
THROTTLING = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})


class Ec2SpotOptions(Frozen):
    """``options:`` of an ``ec2spot`` site."""

    region: str = "us-east-1"
    endpoint_url: str | None = None
    """An EC2-compatible endpoint instead of AWS's own (tests: the moto server)."""
    profile: str | None = None
    """An AWS profile for the control plane's calls; default: boto3's credential chain."""
    instance_types: Annotated[tuple[str, ...], Field(min_length=1)]
    """The instance types this site may launch; each becomes an offer per zone."""
    zones: tuple[str, ...] = ()
    """The availability zones allowed (default: every zone where a type is offered)."""
    image_id: str
    """The AMI the instances boot; it must have Python and gridbridge (or a prologue that
    installs them)."""
    subnet_ids: dict[str, str] = Field(default_factory=dict)
    """A subnet per zone (default: the zone's default subnet)."""
    security_group_ids: tuple[str, ...] = ()
    instance_profile: str | None = None
    """The IAM instance profile (name or ARN) that lets instances reach the object store."""
    key_name: str | None = None
    imds_endpoint: str = "http://169.254.169.254"
    imds_poll_s: Annotated[float, Field(gt=0)] = 5.0
    """How often the runtime asks for an interruption notice (AWS suggests every 5 s)."""
    max_price: Annotated[float, Field(gt=0.001)] | None = None
    """A cap on the hourly spot price; default none (pay the spot price, interrupted less)."""
    on_demand: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    """On-demand price per hour by instance type; wins over ``on_demand_prices``."""
    on_demand_prices: Path | None = None
    """A CSV of on-demand prices (columns ``region``, ``instance_type``,
    ``linux_ondemand_usd_per_hour``; ``.gz`` allowed)."""
    spot_advisor: Path | None = None
    """The AWS Spot Advisor JSON feed (``spot-advisor-data.json``; ``.gz`` allowed): each
    type's interruption bucket, and its saving when no on-demand price is known."""
    interruption_rate_per_hour: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict)
    """Interruption rate by instance type; wins over the Spot Advisor."""
    default_interruption_per_month: Annotated[float, Field(ge=0, lt=1)] = 0.10
    """The chance of an interruption within a month for a type nothing else tells about."""
    unavailable_s: Annotated[float, Field(ge=0)] = 300.0
    """How long an offer (or the site, after a configuration error) shows no capacity after
    EC2 refused it."""
    max_instances: Annotated[int, Field(ge=1)] = 20
    federation_tag: FederationTag | None = None
    """Tells this control plane's instances from another's in the same account; default:
    derived from the workdir (:func:`~gridbridge.adapters._host.federation_tag`)."""
    api_attempts: Annotated[int, Field(ge=1)] = 6
    """Tries per API call when EC2 throttles (``RequestLimitExceeded``): botocore's standard
    retry mode, exponential backoff with jitter."""
    extra_tags: dict[str, str] = Field(default_factory=dict)
    """More tags on every instance (a cost centre)."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels of every offer (``constraints.labels`` match them), besides the instance type,
    zone and region each offer carries in its shape."""


def user_data(site: SiteConfig, options: Ec2SpotOptions, launch_url: str,
              env: Mapping[str, str] | None = None) -> str:
    """The instance's boot script: exports, the runtime (through the prologue), shutdown.

    Every value is quoted; the job's command never appears (it is in the launch record)."""
    python = site.runtime.python or "python3"
    argv = [python, "-m", "gridbridge.runtime", "--launch", launch_url,
            "--imds", options.imds_endpoint, "--imds-interval", f"{options.imds_poll_s:g}"]
    if site.runtime.prologue:
        argv = ["bash", "-c", prologue_script(site.runtime.prologue), "gridbridge-run", *argv]
    lines = ["#!/bin/bash",
             "# gridbridge: runs one attempt, then shuts the instance down (it terminates)"]
    for name, value in (env or {}).items():
        if not re.fullmatch(ENV_NAME_PATTERN, name):
            raise ValueError(f"not an environment variable name: {name!r}")
        lines.append(f"export {name}={shlex.quote(value)}")
    lines += [shlex.join(argv), "echo \"gridbridge: runtime exited $?; shutting down\"",
              "sync", "shutdown -h now", ""]
    return "\n".join(lines)
