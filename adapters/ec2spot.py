"""EC2 spot instances as a site: one instance per attempt, through boto3.

Each attempt is one spot instance whose user-data only starts the runtime and shuts the
instance down when it ends::

    run_instances(InstanceType, Placement.AvailabilityZone,   <- the offer placement chose
                  InstanceMarketOptions=spot one-time/terminate,
                  InstanceInitiatedShutdownBehavior=terminate,
                  TagSpecifications=[gridbridge:federation, gridbridge:attempt, gridbridge:job,
                                     gridbridge:attempt-url], ClientToken=<from the attempt id>)
    user-data:  #!/bin/bash   (the operator's prologue, then)
                python -m gridbridge.runtime --launch <storage URL> --imds <IMDS URL>
                shutdown -h now

The job's command and environment are in the launch record on object storage, never in the
user-data (which anyone allowed ``DescribeInstanceAttribute`` can read). The runtime polls the
instance metadata service (IMDSv2) every few seconds; a spot interruption notice asks the job to
checkpoint within the notice's two minutes and exit as preempted.

* **Offers**: one per allowed (instance type, availability zone): the spot price in force now
  (``DescribeSpotPriceHistory``), the shape (``DescribeInstanceTypes``), the on-demand price and
  the interruption rate from the site's config or the files it names (an on-demand price table,
  the AWS Spot Advisor feed). After a capacity error an offer shows no capacity for
  ``unavailable_s``; after a configuration error (a missing AMI, subnet, key, permission) the
  whole site does, with the reason.
* **Poll** is one ``DescribeInstances`` by the federation tag for all attempts. An instance that
  ended is judged by why: ``Server.SpotInstanceTermination`` and capacity reasons are
  PREEMPTED (never FAILED), our own terminate is CANCELLED, a shutdown the user-data made is the
  runtime's result record (exit code and all). A record storage cannot give back (a 503, a
  timeout) is no verdict: the attempt is LOST for now, which lets the control plane read the
  record itself, with backoff, for a bounded time (a record there wins over "lost").
* **Cost**: an attempt is billed from the spot price history of its type and zone over the
  seconds its instance ran (``LaunchTime`` to its end, one minute at least, as EC2 bills Linux
  instances), interval by interval as the price changed.
* **No leaks**: every instance is tagged; ``owned()`` lists the live ones, so the sweep
  terminates any whose attempt the store does not know; ``cancel`` terminates.

boto3 is imported only here (the ``[aws]`` extra).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from gridbridge.adapter import (
    AttemptStatus,
    BilledInterval,
    Capability,
    Offer,
    OwnedJob,
    Pricing,
    SubmitRejected,
    SubmitRequest,
    write_launch,
)
from gridbridge.adapters._batch import ALREADY_RAN_EXIT_CODE, PREEMPTED_EXIT_CODE, check_attempt_id
from gridbridge.adapters._ec2_options import (
    CAPACITY_ERRORS,
    CONFIG_ERRORS,
    TAG_ATTEMPT,
    TAG_CANCELLED,
    TAG_FEDERATION,
    TAG_JOB,
    TAG_URL,
    THROTTLING,
    Ec2SpotOptions,
    user_data,
)
from gridbridge.adapters._ec2_prices import (
    MIN_BILLED_S,
    _load_advisor,
    _load_on_demand,
    billed_intervals,
    interruption_rate,
    on_demand_price,
    transition_time,
)
from gridbridge.adapters._host import federation_tag
from gridbridge.config import SiteConfig
from gridbridge.costs import advisor_rate
from gridbridge.spec import Tier
from gridbridge.states import AttemptState
from gridbridge.wire import SPOT_NOTICE, load_log, read_result

__all__ = ["CAPACITY_ERRORS", "CONFIG_ERRORS", "Ec2SpotAdapter", "Ec2SpotOptions",
           "advisor_rate", "billed_intervals", "user_data"]

_PREEMPTING_REASONS = ("Server.SpotInstanceTermination", "Server.SpotInstanceShutdown",
                       "Server.InsufficientInstanceCapacity", "Server.InternalError",
                       "Server.ScheduledStop")
_LIVE = ("pending", "running", "stopping", "stopped")
_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
_Series = list[tuple[float, float]]
"""Price changes of one (type, zone): (time, $ per hour), sorted."""


class Ec2SpotAdapter:
    """EC2 spot capacity of one region, one instance per attempt."""

    CAPABILITIES: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.ADOPT, Capability.PREEMPTIBLE, Capability.GPUS, Capability.LOGS})
    Options: ClassVar[type[BaseModel] | None] = Ec2SpotOptions

    def __init__(self, site: SiteConfig, workdir: str | Path, client: Any = None) -> None:
        self.site = site
        self.options = o = Ec2SpotOptions.model_validate(site.options)
        self.tag = federation_tag(workdir, o.federation_tag)
        self._ec2 = client or self._client()
        self._lock = threading.Lock()
        self._shapes: dict[str, tuple[int, float, int]] = {}
        self._zones: dict[str, tuple[str, ...]] = {}
        self._prices: dict[tuple[str, str], _Series] = {}
        self._prices_at = 0.0
        self._unavailable: dict[str, tuple[float, str]] = {}
        """offer key ("" for the whole site) -> (until, why)."""
        self._on_demand = dict(o.on_demand)
        if o.on_demand_prices:
            self._on_demand = {**_load_on_demand(o.on_demand_prices, o.region), **o.on_demand}
        self._advisor = _load_advisor(o.spot_advisor, o.region) if o.spot_advisor else {}
        self._ended_at: dict[str, float] = {}

    def _client(self) -> Any:
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(profile_name=self.options.profile)
        config = Config(retries={"mode": "standard",
                                 "total_max_attempts": self.options.api_attempts},
                        connect_timeout=10, read_timeout=30)
        return session.client("ec2", region_name=self.options.region,
                              endpoint_url=self.options.endpoint_url, config=config)

    def capabilities(self) -> frozenset[Capability]:
        caps = {Capability.ADOPT, Capability.PREEMPTIBLE, Capability.LOGS}
        if self.site.capacity.gpus:
            caps.add(Capability.GPUS)
        return frozenset(caps)

    # the catalogue: shapes, zones, prices -------------------------------------------------

    def _catalogue(self) -> None:
        """Shapes and zones of the allowed types (they do not change: asked once)."""
        if self._shapes:
            return
        types = list(self.options.instance_types)
        shapes: dict[str, tuple[int, float, int]] = {}
        for page in self._ec2.get_paginator("describe_instance_types").paginate(
                InstanceTypes=types):
            for t in page["InstanceTypes"]:
                gpus = sum(g.get("Count", 0) for g in t.get("GpuInfo", {}).get("Gpus", []))
                shapes[t["InstanceType"]] = (int(t["VCpuInfo"]["DefaultVCpus"]),
                                             t["MemoryInfo"]["SizeInMiB"] / 1024, int(gpus))
        zones: dict[str, list[str]] = {t: [] for t in types}
        for page in self._ec2.get_paginator("describe_instance_type_offerings").paginate(
                LocationType="availability-zone",
                Filters=[{"Name": "instance-type", "Values": types}]):
            for off in page["InstanceTypeOfferings"]:
                zone = off["Location"]
                if not self.options.zones or zone in self.options.zones:
                    zones.setdefault(off["InstanceType"], []).append(zone)
        self._zones = {t: tuple(sorted(z)) for t, z in zones.items()}
        self._shapes = shapes

    def _price_rows(self, start: datetime, end: datetime | None = None,
                    types: Iterable[str] | None = None) -> dict[tuple[str, str], _Series]:
        """Spot price changes per (type, zone) from ``start`` (with the price then in force)."""
        kwargs: dict[str, Any] = {"InstanceTypes": list(types or self.options.instance_types),
                                  "ProductDescriptions": ["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
                                  "StartTime": start}
        if end is not None:
            kwargs["EndTime"] = end
        rows: dict[tuple[str, str], set[tuple[float, float]]] = {}
        for page in self._ec2.get_paginator("describe_spot_price_history").paginate(**kwargs):
            for r in page["SpotPriceHistory"]:
                key = (r["InstanceType"], r["AvailabilityZone"])
                rows.setdefault(key, set()).add((r["Timestamp"].timestamp(), float(r["SpotPrice"])))
        return {k: sorted(v) for k, v in rows.items()}

    def _current_prices(self) -> dict[tuple[str, str], float]:
        now = time.time()
        if now - self._prices_at > 60:
            self._prices = self._price_rows(datetime.fromtimestamp(now, UTC))
            self._prices_at = now
        out = {}
        for key, rows in self._prices.items():
            current = [p for at, p in rows if at <= now] or [rows[0][1]]
            out[key] = current[-1]
        return out

    def _on_demand_price(self, instance_type: str, spot: float) -> tuple[float, str]:
        return on_demand_price(self._on_demand, self._advisor, instance_type, spot)

    def _interruption_rate(self, instance_type: str) -> tuple[float, str]:
        o = self.options
        return interruption_rate(o.interruption_rate_per_hour, self._advisor, instance_type,
                                 o.default_interruption_per_month)

    # offers -------------------------------------------------------------------------------

    def offers(self) -> Sequence[Offer]:
        self._catalogue()
        prices = self._current_prices()
        now = time.time()
        live = sum(1 for _ in self._instances(states=("pending", "running")))
        site_down = self._blocked("", now)
        out = []
        for itype in self.options.instance_types:
            if itype not in self._shapes:
                continue
            cpus, memory_gb, gpus = self._shapes[itype]
            for zone in self._zones.get(itype, ()):
                if (itype, zone) not in prices:
                    continue
                key = f"{itype}/{zone}"
                spot = prices[(itype, zone)]
                od, od_note = self._on_demand_price(itype, spot)
                rate, rate_note = self._interruption_rate(itype)
                notes = [n for n in (od_note, rate_note) if n]
                why = site_down or self._blocked(key, now)
                if why is None and live >= self.options.max_instances:
                    why = f"max_instances ({self.options.max_instances}) running"
                if why is None and self.options.max_price and spot > self.options.max_price:
                    why = f"spot price {spot:g} above max_price {self.options.max_price:g}"
                if why:
                    notes.insert(0, why)
                out.append(Offer(
                    site=self.site.name, key=key,
                    shape={"instance_type": itype, "zone": zone, "region": self.options.region},
                    tier=Tier.CLOUD, cpus=0 if why else cpus, memory_gb=0 if why else memory_gb,
                    gpus=0 if why else gpus, price=Pricing(per_hour=spot),
                    on_demand=Pricing(per_hour=od), preemptible=True,
                    preemption_rate_per_hour=rate,
                    restart_overhead_s=self.site.restart_overhead_s,
                    max_walltime_s=self.site.max_walltime_s,
                    labels={**self.options.labels, "instance_type": itype, "zone": zone},
                    note="; ".join(notes)))
        return out

    def _blocked(self, key: str, now: float) -> str | None:
        with self._lock:
            until, why = self._unavailable.get(key, (0.0, ""))
        if until > now:
            return f"unavailable for {until - now:.0f}s more: {why}"
        return None

    def _mark_unavailable(self, key: str, why: str) -> None:
        with self._lock:
            self._unavailable[key] = (time.time() + self.options.unavailable_s, why)

    # submit -------------------------------------------------------------------------------

    def submit(self, request: SubmitRequest) -> str:
        check_attempt_id(request.attempt_id)
        if len(request.attempt_url) > 256:
            raise SubmitRejected("the attempt's storage URL is longer than an EC2 tag value "
                                 f"(256 characters): {request.attempt_url[:80]}...")
        found = self._find(request.attempt_id)
        if found is not None:
            return found
        itype, zone = self._choose(request)
        why = self._blocked("", time.time()) or self._blocked(f"{itype}/{zone}", time.time())
        if why:
            raise SubmitRejected(why)
        launch_url = write_launch(request, heartbeat_s=self.site.runtime.heartbeat_s,
                                  shared_filesystem=self.site.shares_files(False))
        # runtime.env_names: names of this host's variables the instance needs (where the
        # object store is); their values travel in the user-data, so never name a secret.
        env = {n: os.environ[n] for n in self.site.runtime.env_names if n in os.environ}
        tags = {**self.options.extra_tags, TAG_FEDERATION: self.tag,
                TAG_ATTEMPT: request.attempt_id, TAG_JOB: request.job_id,
                TAG_URL: request.attempt_url, "Name": f"gridbridge {request.attempt_id}"}
        spot: dict[str, Any] = {"SpotInstanceType": "one-time",
                                "InstanceInterruptionBehavior": "terminate"}
        if self.options.max_price:
            spot["MaxPrice"] = f"{self.options.max_price:g}"
        kwargs: dict[str, Any] = {
            "ImageId": self.options.image_id, "InstanceType": itype, "MinCount": 1,
            "MaxCount": 1, "Placement": {"AvailabilityZone": zone},
            "UserData": user_data(self.site, self.options, launch_url, env),
            "InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": spot},
            "InstanceInitiatedShutdownBehavior": "terminate",
            "ClientToken": hashlib.sha256(f"{self.tag}:{request.attempt_id}".encode())
            .hexdigest()[:64],
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [
                {"Key": k, "Value": v} for k, v in tags.items()]}],
        }
        if zone in self.options.subnet_ids:
            kwargs["SubnetId"] = self.options.subnet_ids[zone]
        if self.options.security_group_ids:
            kwargs["SecurityGroupIds"] = list(self.options.security_group_ids)
        if self.options.instance_profile:
            arn = self.options.instance_profile.startswith("arn:")
            kwargs["IamInstanceProfile"] = {"Arn" if arn else "Name":
                                            self.options.instance_profile}
        if self.options.key_name:
            kwargs["KeyName"] = self.options.key_name
        from botocore.exceptions import ClientError

        try:
            answer = self._ec2.run_instances(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", "")
            text = f"{code}: {message}".strip(": ")
            if code in CAPACITY_ERRORS:
                self._mark_unavailable(f"{itype}/{zone}", text)
                raise SubmitRejected(f"{itype} in {zone}: {text}") from exc
            if code in CONFIG_ERRORS:
                self._mark_unavailable("", text)
                raise SubmitRejected(f"the site's settings were refused: {text}") from exc
            if code in THROTTLING:  # botocore retried with backoff already; nothing started
                raise SubmitRejected(f"EC2 is throttling requests: {text}") from exc
            raise  # anything else may or may not have launched: the attempt id finds it
        return str(answer["Instances"][0]["InstanceId"])

    def _choose(self, request: SubmitRequest) -> tuple[str, str]:
        """The (instance type, zone) of the offer placement chose, or the cheapest that fits."""
        offer = request.offer
        if offer is not None and offer.site == self.site.name and "instance_type" in offer.shape:
            itype, zone = offer.shape["instance_type"], offer.shape.get("zone", "")
            if itype not in self.options.instance_types:
                raise SubmitRejected(f"instance type {itype!r} is not allowed on this site")
            return itype, zone
        res = request.spec.resources
        fitting = [o for o in self.offers() if o.cpus >= res.cpus and o.gpus >= res.gpus
                   and o.memory_gb >= res.memory_gb]
        if not fitting:
            raise SubmitRejected("no allowed instance type and zone fits the job now")
        best = min(fitting, key=lambda o: (o.price.per_hour, o.key))
        return best.shape["instance_type"], best.shape["zone"]

    def _find(self, attempt_id: str) -> str | None:
        """The instance of an attempt already launched (any state), if any."""
        for inst in self._instances(attempt_id=attempt_id):
            return str(inst["InstanceId"])
        return None

    # poll, cancel, owned ------------------------------------------------------------------

    def _instances(self, *, attempt_id: str | None = None,
                   states: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        filters = [{"Name": f"tag:{TAG_FEDERATION}", "Values": [self.tag]}]
        if attempt_id is not None:
            filters.append({"Name": f"tag:{TAG_ATTEMPT}", "Values": [attempt_id]})
        if states:
            filters.append({"Name": "instance-state-name", "Values": list(states)})
        for page in self._ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page["Reservations"]:
                yield from reservation["Instances"]

    def poll(self, native_ids: Sequence[str]) -> Mapping[str, AttemptStatus]:
        if not native_ids:
            return {}
        wanted = set(native_ids)
        seen = {i["InstanceId"]: i for i in self._instances() if i["InstanceId"] in wanted}
        out = {}
        for nid in native_ids:
            inst = seen.get(nid)
            if inst is None:
                out[nid] = AttemptStatus(state=AttemptState.LOST, native_state="unknown",
                                         reason="no such instance of this site")
            else:
                out[nid] = self._status(inst)
        return out

    def _status(self, inst: dict[str, Any]) -> AttemptStatus:
        state = inst["State"]["Name"]
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        code = inst.get("StateReason", {}).get("Code", "")
        native = f"{state} ({code})" if code else state
        if state == "pending":
            return AttemptStatus(state=AttemptState.SUBMITTED, native_state=native, queued=True)
        if state in ("running", "shutting-down"):  # shutting down: its processes still end
            return AttemptStatus(state=AttemptState.RUNNING, native_state=native)
        if state in ("stopping", "stopped"):  # one-time spot instances never stop on their own
            return AttemptStatus(state=AttemptState.LOST, native_state=native,
                                 reason=f"instance {state} outside gridbridge ({code})")
        billing, runs = self._billing(inst)
        common: dict[str, Any] = {"native_state": native, "billing": billing, "runs": runs}
        itype = inst["InstanceType"]
        zone = inst.get("Placement", {}).get("AvailabilityZone", "")
        if code.startswith(_PREEMPTING_REASONS):
            self._mark_unavailable(f"{itype}/{zone}", f"capacity reclaimed ({code})")
            what = "spot interruption" if "Spot" in code else "capacity reclaimed by EC2"
            return AttemptStatus(state=AttemptState.PREEMPTED,
                                 reason=f"preempted: {what} ({code})", **common)
        if TAG_CANCELLED in tags:
            return AttemptStatus(state=AttemptState.CANCELLED, reason="terminated on request",
                                 **common)
        result = None
        if tags.get(TAG_URL):
            try:
                result = read_result(tags[TAG_URL])
            except (ValueError, TypeError):  # there, but malformed: the job's own doing
                result = None
            except Exception as exc:  # storage did not answer: the record decides, later
                return AttemptStatus(state=AttemptState.LOST, reason=(
                    f"instance ended ({code or state}); its result record could not be read "
                    f"yet ({type(exc).__name__}: {exc})"[:500]), **common)
        if result is None:
            if code == "Client.UserInitiatedShutdown":
                return AttemptStatus(state=AttemptState.LOST, reason=(
                    "terminated outside gridbridge before the runtime left a result"), **common)
            return AttemptStatus(state=AttemptState.FAILED, reason=(
                f"instance ended ({code or state}) without a result record: the runtime "
                "did not start or died; see the instance's console output"), **common)
        exit_code = result.exit_code
        if exit_code == 0:
            ended = AttemptState.SUCCEEDED
        elif exit_code == PREEMPTED_EXIT_CODE:
            ended = AttemptState.PREEMPTED
            if result.error and result.error.startswith(SPOT_NOTICE):
                # it checkpointed and shut down before EC2 took it: the capacity is reclaimed
                self._mark_unavailable(f"{itype}/{zone}",
                                       f"capacity reclaimed ({result.error})")
        elif exit_code == ALREADY_RAN_EXIT_CODE:
            ended = AttemptState.LOST
        else:
            ended = AttemptState.FAILED
        return AttemptStatus(state=ended, exit_code=exit_code,
                             reason=result.error.splitlines()[-1][:300] if result.error else "",
                             **common)

    def _billing(self, inst: dict[str, Any]) -> tuple[tuple[BilledInterval, ...],
                                                      tuple[tuple[float, float], ...]]:
        """What the instance cost: its spot prices over the seconds it ran."""
        start = inst["LaunchTime"].timestamp()
        nid = inst["InstanceId"]
        end = transition_time(inst.get("StateTransitionReason", ""))
        if end is None:
            end = self._ended_at.setdefault(nid, time.time())
        end = max(start, end)
        key = (inst["InstanceType"], inst.get("Placement", {}).get("AvailabilityZone", ""))
        try:
            rows = self._price_rows(datetime.fromtimestamp(start, UTC),
                                    datetime.fromtimestamp(end, UTC) + timedelta(seconds=1),
                                    types=[key[0]]).get(key, [])
        except Exception:  # no price history: the placement's card is charged
            rows = []
        if not rows:
            return (), ((start, end),)
        return billed_intervals(rows, start, end), ((start, max(end, start + MIN_BILLED_S)),)

    def cancel(self, native_ids: Sequence[str]) -> None:
        ids = [n for n in native_ids if _INSTANCE_ID.fullmatch(n)]
        if not ids:
            return
        live = [i["InstanceId"] for i in self._instances(states=_LIVE)
                if i["InstanceId"] in set(ids)]
        if not live:
            return
        self._ec2.create_tags(Resources=live, Tags=[{"Key": TAG_CANCELLED, "Value": "1"}])
        self._ec2.terminate_instances(InstanceIds=live)

    def owned(self) -> Sequence[OwnedJob]:
        out = []
        for inst in self._instances(states=_LIVE):
            tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
            if TAG_ATTEMPT in tags:
                out.append(OwnedJob(native_id=inst["InstanceId"], attempt_id=tags[TAG_ATTEMPT],
                                    native_state=inst["State"]["Name"]))
        return out

    def logs(self, native_id: str) -> str:
        """The attempt's output as the runtime uploaded it to storage."""
        if not _INSTANCE_ID.fullmatch(native_id):
            return ""
        for inst in self._instances():
            if inst["InstanceId"] == native_id:
                tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                if tags.get(TAG_URL):
                    return load_log(tags[TAG_URL]) or ""
        return ""
