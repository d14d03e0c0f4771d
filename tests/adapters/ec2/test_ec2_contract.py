"""The EC2 spot adapter against the adapter contract, and what only spot capacity does: real
prices and shapes in its offers, launch errors, interruption notices through the instance
metadata service, billing from the price history. EC2 is moto's API over HTTP with instances
that boot as local processes (``gridbridge.testing.ec2``): an emulation, as no cloud can be
reached from here."""

from __future__ import annotations

import json
import math
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gridbridge.adapter import SubmitRejected
from gridbridge.adapters.ec2spot import (
    Ec2SpotAdapter,
    Ec2SpotOptions,
    advisor_rate,
    billed_intervals,
    user_data,
)
from gridbridge.runtime import SpotWatch
from gridbridge.states import AttemptState
from gridbridge.testing import AdapterContract
from gridbridge.testing.contract import HOSTILE_ARGS
from tests.support.ec2site import (
    ADVISOR,
    ON_DEMAND,
    compressed,
    drain,
    price_at,
    real_prices,
    spot_site,
)

pytestmark = pytest.mark.ec2

TRAP = """
import signal, sys, time
out = sys.argv[1]
def stop(*_):
    open(out, "a").write(f"stop {time.time()}\\n")
    sys.exit(75)
signal.signal(signal.SIGTERM, stop)
open(out, "a").write(f"up {time.time()}\\n")
while True:
    time.sleep(0.05)
"""
"""A job that records when it starts and when it is asked to stop (and then stops, as a job
that checkpointed would: exit 75)."""


class TestEc2Contract(AdapterContract):
    @pytest.fixture
    def adapter(self, tmp_path: Path, ec2: Any) -> Iterator[Ec2SpotAdapter]:
        adapter = Ec2SpotAdapter(spot_site(ec2), tmp_path / "work")
        yield adapter
        drain(adapter, ec2)

    # offers -------------------------------------------------------------------------------

    def test_offers_carry_real_prices_shapes_and_risk(self, adapter: Ec2SpotAdapter,
                                                      ec2: Any) -> None:
        offers = {o.key: o for o in adapter.offers()}
        assert set(offers) == {f"{t}/{z}" for t in ("c5.large", "c5.xlarge", "m5.large",
                                                     "g4dn.xlarge")
                               for z in ("us-east-1a", "us-east-1b")}
        now = time.time()
        for key, offer in offers.items():
            itype, zone = key.split("/")
            assert offer.shape == {"instance_type": itype, "zone": zone, "region": "us-east-1"}
            assert offer.price.per_hour == pytest.approx(price_at(ec2.prices[(itype, zone)], now))
            assert offer.preemptible and offer.tier.value == "cloud"
        # shapes as EC2 describes them
        c5 = offers["c5.xlarge/us-east-1a"]
        assert (c5.cpus, c5.memory_gb, c5.gpus) == (4, 8.0, 0)
        g4 = offers["g4dn.xlarge/us-east-1b"]
        assert (g4.cpus, g4.memory_gb, g4.gpus) == (4, 16.0, 1)
        # on-demand from the price table; for a type newer than it, from the advisor's saving
        assert c5.on_demand.per_hour == 0.17
        assert g4.on_demand.per_hour == pytest.approx(g4.price.per_hour / (1 - 0.70))
        assert "Spot Advisor" in g4.note
        # risk from the advisor's buckets: c5.xlarge "<5%", g4dn.xlarge "5-10%"
        assert c5.preemption_rate_per_hour == pytest.approx(advisor_rate(0))
        assert g4.preemption_rate_per_hour == pytest.approx(advisor_rate(1))
        assert advisor_rate(0) == pytest.approx(-math.log(1 - 0.025) / 730)

    def test_without_data_files_the_gaps_are_said(self, tmp_path: Path, ec2: Any) -> None:
        adapter = Ec2SpotAdapter(spot_site(ec2, on_demand_prices=None, spot_advisor=None,
                                           instance_types=["c5.large"]), tmp_path / "w")
        [offer, *_] = adapter.offers()
        assert offer.on_demand.per_hour == offer.price.per_hour
        assert "no saving is claimed" in offer.note and "10% a month assumed" in offer.note

    def test_the_chosen_offer_decides_type_and_zone(self, adapter: Ec2SpotAdapter,
                                                    workspace: Path, ec2: Any) -> None:
        offer = next(o for o in adapter.offers() if o.key == "c5.xlarge/us-east-1b")
        req = self.request(workspace, sys.executable, "import time; time.sleep(30)")
        nid = adapter.submit(req.model_copy(update={"offer": offer}))
        inst = ec2.client().describe_instances(InstanceIds=[nid])["Reservations"][0][
            "Instances"][0]
        assert inst["InstanceType"] == "c5.xlarge"
        assert inst["Placement"]["AvailabilityZone"] == "us-east-1b"
        assert inst["InstanceLifecycle"] == "spot"
        tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
        assert tags["gridbridge:attempt"] == req.attempt_id
        assert tags["gridbridge:federation"] == adapter.tag

    # launch errors ------------------------------------------------------------------------

    def test_a_capacity_error_rejects_and_takes_only_that_offer_away(
        self, adapter: Ec2SpotAdapter, workspace: Path, ec2: Any
    ) -> None:
        offer = next(o for o in adapter.offers() if o.key == "m5.large/us-east-1a")
        ec2.launch_faults.append(("InsufficientInstanceCapacity",
                                  "We currently do not have sufficient m5.large capacity in "
                                  "the Availability Zone you requested (us-east-1a)."))
        req = self.request(workspace, sys.executable, "pass").model_copy(update={"offer": offer})
        with pytest.raises(SubmitRejected, match="InsufficientInstanceCapacity"):
            adapter.submit(req)
        assert ec2.live_instances() == [] and adapter.owned() == []
        offers = {o.key: o for o in adapter.offers()}
        assert offers["m5.large/us-east-1a"].cpus == 0
        assert "InsufficientInstanceCapacity" in offers["m5.large/us-east-1a"].note
        assert offers["m5.large/us-east-1b"].cpus == 2, "the other zone is still offered"
        with pytest.raises(SubmitRejected, match="unavailable"):
            adapter.submit(req)  # not retried there while it is marked unavailable
        assert ec2.live_instances() == []

    def test_a_missing_ami_rejects_and_takes_the_site_away(self, tmp_path: Path,
                                                           workspace: Path, ec2: Any) -> None:
        adapter = Ec2SpotAdapter(spot_site(ec2, image_id="ami-0123456789abcdef0"),
                                 tmp_path / "work")
        with pytest.raises(SubmitRejected, match=r"InvalidAMIID\.NotFound"):
            adapter.submit(self.request(workspace, sys.executable, "pass"))
        offers = adapter.offers()
        assert offers and all(o.cpus == 0 for o in offers)
        assert all("InvalidAMIID.NotFound" in o.note for o in offers)
        assert ec2.live_instances() == []

    def test_throttling_is_retried_with_backoff(self, adapter: Ec2SpotAdapter, workspace: Path,
                                                ec2: Any) -> None:
        adapter.offers()  # the catalogue calls are not the ones throttled below
        for _ in range(2):
            ec2.launch_faults.append(("RequestLimitExceeded", "Request limit exceeded."))
        calls = ec2.launch_calls
        nid = adapter.submit(self.request(workspace, sys.executable, "pass"))
        assert ec2.launch_calls - calls == 3, "two throttled tries, then the launch"
        status = self.wait_for(adapter, nid, lambda s: s.state.terminal)
        assert status.state is AttemptState.SUCCEEDED

    def test_throttling_that_outlasts_the_retries_rejects(self, tmp_path: Path,
                                                          workspace: Path, ec2: Any) -> None:
        adapter = Ec2SpotAdapter(spot_site(ec2, api_attempts=2), tmp_path / "work")
        adapter.offers()
        ec2.launch_faults.extend([("RequestLimitExceeded", "Request limit exceeded.")] * 2)
        with pytest.raises(SubmitRejected, match="throttling"):
            adapter.submit(self.request(workspace, sys.executable, "pass"))
        assert ec2.live_instances() == []
        assert all(o.cpus > 0 for o in adapter.offers()), "throttling takes no offer away"

    # interruptions --------------------------------------------------------------------------

    def test_an_interruption_notice_stops_the_job_before_the_deadline(
        self, adapter: Ec2SpotAdapter, workspace: Path, ec2: Any
    ) -> None:
        marks = workspace / "marks.txt"
        nid = adapter.submit(self.request(workspace, sys.executable, TRAP, str(marks)))
        self.wait_until(lambda: marks.exists() and "up" in marks.read_text(), "the job")
        noticed = time.time()
        ec2.interrupt(nid, notice_s=6)
        status = self.wait_for(adapter, nid, lambda s: s.state.terminal)
        assert status.state is AttemptState.PREEMPTED, status
        # it stopped in time, so its user-data shut it down before EC2 took it
        assert "Client.InstanceInitiatedShutdown" in status.native_state, status
        assert status.reason.startswith("spot interruption notice: terminate at"), status
        stops = [float(line.split()[1]) for line in marks.read_text().splitlines()
                 if line.startswith("stop")]
        assert len(stops) == 1 and stops[0] - noticed < 6, "asked to stop within the notice"
        assert stops[0] - noticed <= 0.5 + 2.5, "found within a poll interval or so"
        assert "spot interruption notice" in adapter.logs(nid)
        offers = {o.key: o for o in adapter.offers()}
        taken = ec2.client().describe_instances(InstanceIds=[nid])["Reservations"][0][
            "Instances"][0]
        key = f"{taken['InstanceType']}/{taken['Placement']['AvailabilityZone']}"
        assert offers[key].cpus == 0 and "capacity reclaimed" in offers[key].note

    def test_an_instance_taken_without_notice_is_preempted(self, adapter: Ec2SpotAdapter,
                                                           workspace: Path, ec2: Any) -> None:
        marks = workspace / "marks.txt"
        nid = adapter.submit(self.request(workspace, sys.executable, TRAP, str(marks)))
        self.wait_until(lambda: marks.exists(), "the job")
        ec2.kill(nid)
        status = self.wait_for(adapter, nid, lambda s: s.state.terminal)
        assert status.state is AttemptState.PREEMPTED, status
        assert "stop" not in marks.read_text(), "no notice, no time to stop"
        assert nid not in ec2.running()

    def test_an_instance_terminated_by_someone_else_is_lost(self, adapter: Ec2SpotAdapter,
                                                            workspace: Path, ec2: Any) -> None:
        nid = adapter.submit(self.request(workspace, sys.executable,
                                          "import time; time.sleep(60)"))
        self.wait_until(lambda: nid in ec2.running(), "the instance to boot")
        ec2.client().terminate_instances(InstanceIds=[nid])
        status = self.wait_for(adapter, nid, lambda s: s.state.terminal)
        assert status.state in {AttemptState.LOST, AttemptState.PREEMPTED}, status
        assert status.state is not AttemptState.CANCELLED, "gridbridge did not cancel it"

    # billing ----------------------------------------------------------------------------------

    def test_an_attempt_is_billed_from_the_prices_of_the_seconds_it_ran(
        self, adapter: Ec2SpotAdapter, workspace: Path, ec2: Any
    ) -> None:
        # The real March 2021 history, one real hour lasting one second: the prices change
        # while the attempt runs.
        prices = compressed(real_prices(("c5.xlarge",)), time.time() - 30, 1.0)
        ec2.set_prices(prices)
        offer = next(o for o in adapter.offers() if o.key == "c5.xlarge/us-east-1a")
        req = self.request(workspace, sys.executable, "import time; time.sleep(70)")
        nid = adapter.submit(req.model_copy(update={"offer": offer}))
        self.wait_until(lambda: nid in ec2.running(), "the instance to boot")
        time.sleep(4)
        adapter.cancel([nid])
        status = self.wait_for(adapter, nid, lambda s: s.state.terminal)
        assert status.state is AttemptState.CANCELLED
        rows = prices[("c5.xlarge", "us-east-1a")]
        [(start, end)] = status.runs
        assert end - start >= 60, "one minute billed at least"
        changes = [at for at, _ in rows if start < at < end]
        assert len(changes) >= 5, "the price changed while it ran"
        # what it cost, second by second from the price history, against the adapter's bill
        expected = sum(price_at(rows, t + 0.5) for t in range(int(start), int(end))) / 3600
        billed = sum((b.end - b.start) * b.per_hour for b in status.billing) / 3600
        assert billed == pytest.approx(expected, rel=0.02)
        assert {b.per_hour for b in status.billing} <= {p for _, p in rows}

    def test_billed_intervals_split_at_each_price_change(self) -> None:
        rows = [(100.0, 0.5), (200.0, 0.25), (400.0, 1.0)]
        bill = billed_intervals(rows, 150.0, 450.0)
        assert [(b.start, b.end, b.per_hour) for b in bill] == [
            (150.0, 200.0, 0.5), (200.0, 400.0, 0.25), (400.0, 450.0, 1.0)]
        short = billed_intervals(rows, 390.0, 395.0)
        assert [(b.start, b.end, b.per_hour) for b in short] == [
            (390.0, 400.0, 0.25), (400.0, 450.0, 1.0)], "one minute at least"

    # what the instance is given ------------------------------------------------------------------

    def test_the_user_data_holds_no_job_value(self, adapter: Ec2SpotAdapter, workspace: Path,
                                              ec2: Any) -> None:
        secret = f"hunter2-{uuid.uuid4().hex[:6]}"
        req = self.request(workspace, sys.executable, "print('x')", *HOSTILE_ARGS,
                           env={"API_TOKEN": secret})
        nid = adapter.submit(req)
        raw = ec2.client().describe_instance_attribute(InstanceId=nid, Attribute="userData")
        import base64

        script = base64.b64decode(raw["UserData"]["Value"]).decode()
        assert secret not in script and "$(touch pwned)" not in script
        assert "--launch" in script and "--imds" in script and "shutdown -h now" in script
        self.wait_for(adapter, nid, lambda s: s.state.terminal)

    def test_exported_values_reach_the_runtime_literally(self, tmp_path: Path, workspace: Path,
                                                         ec2: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
        hostile = "it's $(touch pwned) `id`;\nnext"
        # the instances boot with this environment: without the variable
        monkeypatch.setattr(ec2, "instance_env", dict(os.environ))
        monkeypatch.setenv("GB_STORE_HINT", hostile)
        site = spot_site(ec2)
        site = site.model_copy(update={"runtime": site.runtime.model_copy(
            update={"env_names": ("GB_STORE_HINT",)})})
        adapter = Ec2SpotAdapter(site, tmp_path / "work")
        try:
            out = workspace / "env.json"
            nid = adapter.submit(self.request(workspace, sys.executable, """
                import json, os, sys
                json.dump(os.environ.get("GB_STORE_HINT"), open(sys.argv[1], "w"))
                """, str(out)))
            status = self.wait_for(adapter, nid, lambda s: s.state.terminal)
            assert status.state is AttemptState.SUCCEEDED, ec2.console(nid)
            assert json.loads(out.read_text()) == hostile
            assert not (workspace / "pwned").exists()
            assert not any(Path(ec2.root).rglob("pwned"))
        finally:
            drain(adapter, ec2)

    def test_user_data_quotes_what_it_carries(self, ec2: Any) -> None:
        site = spot_site(ec2)
        options = Ec2SpotOptions.model_validate(site.options)
        script = user_data(site, options, "s3://b/it's; rm -rf /", {"A": "x'y"})
        assert "'s3://b/it'\"'\"'s; rm -rf /'" in script
        assert "export A='x'\"'\"'y'" in script
        with pytest.raises(ValueError, match="environment variable name"):
            user_data(site, options, "s3://b/x", {"A;B": "1"})


@pytest.mark.ec2
def test_spot_watch_speaks_imdsv2(ec2: Any, tmp_path: Path) -> None:
    """The runtime's watcher against the emulated metadata service: a token first (a GET
    without one is refused), 404 while nothing is planned, then the notice."""
    import urllib.error
    import urllib.request

    adapter = Ec2SpotAdapter(spot_site(ec2), tmp_path / "work")
    try:
        req = AdapterContract().request(tmp_path, sys.executable, "import time; time.sleep(60)")
        nid = adapter.submit(req)
        deadline = time.monotonic() + 20
        while nid not in ec2.running():
            assert time.monotonic() < deadline, "the instance to boot"
            time.sleep(0.1)
        base = ec2.imds_endpoint(nid)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/latest/meta-data/instance-id", timeout=5)
        assert refused.value.code == 401
        seen: list[tuple[str, str]] = []
        watch = SpotWatch(base, lambda action, when: seen.append((action, when)), 0.1)
        assert watch.check() is None
        ec2.interrupt(nid, notice_s=30)
        notice = watch.check()
        assert notice is not None and notice["action"] == "terminate"
        assert notice["time"].endswith("Z")
        watch.start()
        deadline = time.monotonic() + 5
        while not seen:
            assert time.monotonic() < deadline, "the watcher reports the notice"
            time.sleep(0.05)
        assert seen == [("terminate", notice["time"])]
    finally:
        drain(adapter, ec2)


def test_advisor_and_price_files_parse(tmp_path: Path) -> None:
    from gridbridge.adapters.ec2spot import _load_advisor, _load_on_demand

    assert _load_on_demand(ON_DEMAND, "us-east-1")["m5.large"] == 0.096
    assert _load_advisor(ADVISOR, "us-east-1")["g4dn.xlarge"] == (1, 70)
    assert _load_advisor(ADVISOR, "eu-west-1") == {}
