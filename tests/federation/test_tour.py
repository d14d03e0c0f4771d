"""The tour: one training job crosses every tier of the dev federation, preempted on each the
way that tier preempts, resumed on the next from its checkpoint on S3, and ends bit-identical
to an uninterrupted run.

    L laptop (local: a stop)        C cluster (Slurm: a higher-priority job preempts scavenger)
    S spot (EC2: the interruption   E edge (a node crash: power cut, every process on it dies)
      notice through IMDS)

Placement chooses every next site by itself: before each hop the control plane restarts on the
same state with the configuration of that moment, which names the site the attempt runs on and
the wanted one, the wanted one the cheap one (spot capped by ``max_price`` where it is not),
the way an operator changes prices and sites. ``ROUTE`` visits the 16 ordered pairs of the
four tiers once each (an Euler circuit of the complete digraph with loops; ``GB_TOUR_ROUTE``
gives a shorter one by hand). Each hop is recorded (pair, the step the next attempt resumed
from) and printed, for the closing note.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import fsspec
import pytest
import yaml

from gridbridge import Client, checkpoint
from gridbridge.config import GridConfig, parse_config
from gridbridge.demo import train
from gridbridge.states import AttemptState
from tests.federation.conftest import SCRIPTS, Federation

pytestmark = [pytest.mark.federation, pytest.mark.slow]

SITES = {"L": "laptop", "C": "cluster", "S": "spot", "E": "edge"}
ROUTE = os.environ.get("GB_TOUR_ROUTE", "LLCCSSEELSLESCECL")
"""Each letter a segment; each neighbouring pair a hop: LL LC CC CS SS SE EE EL LS SL LE ES SC
CE EC CL, the 16 ordered pairs."""
STEPS, EVERY, PACE_S = 3000, 25, 0.01
DEAR, CHEAP = 9.0, 0.0001
EDGE_STATE = SCRIPTS.parents[1] / ".peers" / "edge"


def _grid(federation: Federation, tmp_path: Path, here: str, there: str) -> GridConfig:
    """The federation's configuration for a hop from site ``here`` to site ``there``: those
    two sites only (the one an attempt runs on stays, so its end is seen), ``there`` the
    cheap one. Slurm offers its preemptible partition only."""
    data: dict[str, Any] = yaml.safe_load(federation.config.read_text())
    data["state_url"] = f"sqlite:///{tmp_path}/state.db"
    data["workdir"] = str(tmp_path / "run")
    data["checkpoint_root"] = f"{data['checkpoint_root']}/tour-{tmp_path.name[-12:]}"
    data["limits"] = {"tick_interval_s": 0.3, "lease_s": 4, "sweep_interval_s": 3}
    data["sites"] = [site for site in data["sites"] if site["name"] in (here, there)]
    for site in data["sites"]:
        price = CHEAP if site["name"] == there else DEAR
        options = site.setdefault("options", {})
        if site["adapter"] == "local":
            site["price"] = {"per_core_hour": price}
            options.update(reclaim_after_preemption_s=0, grace_s=3)
        elif site["adapter"] == "slurm":
            options["partitions"] = {"scavenger": {**options["partitions"]["scavenger"],
                                                   "price": {"per_core_hour": price}}}
        elif site["adapter"] == "ec2spot":
            options["max_price"] = 10.0 if site["name"] == there else 0.002
        elif site["adapter"] == "edge":
            for node in options["nodes"]:
                node["cost_per_hour"] = price
    return parse_config(data)


def _running_on(client: Client, job_id: str, site: str, after: int) -> Any:
    """The job's attempt once it runs on ``site`` and has committed a checkpoint past
    ``after`` (so the preemption interrupts real progress)."""
    store = checkpoint.open(client.store.job(job_id).checkpoint_url)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            attempts = client.store.attempts(job_id)
            last = attempts[-1] if attempts else None
            if (last is not None and last.site == site and last.state is AttemptState.RUNNING
                    and (store.latest() or 0) > after):
                return last
            assert not client.store.job(job_id).state.terminal, _story(client, job_id)
            time.sleep(0.1)
    finally:
        store.close()
    pytest.fail(f"not running on {site} past step {after} in 120 s\n{_story(client, job_id)}")


def _preempt(client: Client, federation: Federation, attempt: Any) -> str | None:
    """Preempt ``attempt`` the way its site does; the Slurm job that preempted it, if any
    (to be cancelled once the preemption is seen, so that its node is free again)."""
    if attempt.site == "laptop":
        client.preempt(attempt.job_id)  # the local site's stop: SIGTERM, then SIGKILL
    elif attempt.site == "cluster":
        held = subprocess.run(  # node3's CPUs in the priority partition: Slurm preempts
            ["sbatch", "--parsable", "--output=/dev/null", "-p", "priority", "-c", "4",
             "--job-name=tour-preemptor", "--wrap", "sleep 60"],
            capture_output=True, text=True, timeout=30, check=True)
        return held.stdout.strip().split(";")[0]
    elif attempt.site == "spot":  # the two-minute notice through IMDS, shortened
        (federation.ec2 / "interrupt" / attempt.native_id).write_text("2")
    else:  # edge: a power cut on the node, then it comes back for later hops
        node = attempt.native_id.split("/")[0]
        _edge_ctl("crash", node)
        _wait_state(client, attempt, {AttemptState.LOST}, 60)
        _edge_ctl("restart", node)
    return None


def _latest(client: Client, job_id: str) -> int:
    with checkpoint.open(client.store.job(job_id).checkpoint_url) as store:
        return store.latest() or 0


def _edge_ctl(action: str, node: str) -> None:
    subprocess.run(["bash", str(SCRIPTS / "edge-ctl.sh"), str(EDGE_STATE), action, node],
                   capture_output=True, text=True, timeout=60, check=True)


def _wait_state(client: Client, attempt: Any, states: set[AttemptState], limit: float) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        now = next(a for a in client.store.attempts(attempt.job_id) if a.id == attempt.id)
        if now.state in states:
            return now
        time.sleep(0.2)
    pytest.fail(f"{attempt.id} not {states} in {limit} s\n{_story(client, attempt.job_id)}")


def _story(client: Client, job_id: str) -> str:
    lines = [f"job {job_id}: {client.store.job(job_id).state}"]
    lines += [f"  attempt {a.number} on {a.site} ({a.native_id}): {a.state} "
              f"last_step {a.last_step}: {a.reason}" for a in client.store.attempts(job_id)]
    lines += [f"  event {e.kind}: {e.old} -> {e.new}: {e.reason}"
              for e in client.store.events(job_id)][-30:]
    return "\n".join(lines)


def _identical(result: dict[str, Any], reference: dict[str, Any]) -> bool:
    return set(result) == set(reference) and all(
        result[k].dtype == v.dtype and result[k].tobytes() == v.tobytes()
        for k, v in reference.items())


def test_one_job_crosses_every_ordered_pair_of_tiers_bit_identical(
    federation: Federation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in federation.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setitem(fsspec.config.conf, "s3", {
        "endpoint_url": federation.env["FSSPEC_S3_ENDPOINT_URL"],
        "key": federation.env["FSSPEC_S3_KEY"], "secret": federation.env["FSSPEC_S3_SECRET"]})
    reference = train(steps=STEPS, every=EVERY, resumable=False)
    started = time.monotonic()
    hops: list[tuple[str, str, int, int]] = []
    first, last = SITES[ROUTE[0]], SITES[ROUTE[-1]]
    with Client(_grid(federation, tmp_path, first, first)) as client:
        f = client.submit(train, kwargs={"steps": STEPS, "every": EVERY, "pace_s": PACE_S},
                          cpus=1, name="tour", checkpoint={"resumable": True})
        job_id = f.job_id
    after = 0
    for here, there in itertools.pairwise(ROUTE):
        with Client(_grid(federation, tmp_path, SITES[here], SITES[there])) as client:
            attempt = _running_on(client, job_id, SITES[here], after)
            preemptor = _preempt(client, federation, attempt)
            ended = _wait_state(client, attempt, {AttemptState.PREEMPTED, AttemptState.LOST},
                                90)
            if preemptor:
                subprocess.run(["scancel", preemptor], capture_output=True, timeout=30,
                               check=True)
            after = _latest(client, job_id)  # what the next attempt resumes from
            nxt = _running_on(client, job_id, SITES[there], after)
            hops.append((here, there, nxt.number, after))
            print(f"hop {here}->{there}: {ended.state} on {attempt.site}, resumed as attempt "
                  f"{nxt.number} at {time.monotonic() - started:.0f} s")
    with Client(_grid(federation, tmp_path, last, last)) as client:
        f = client.job(job_id)
        result = f.result(timeout=180)
        story = _story(client, job_id)
        logs = f.logs()
        ledger = client.store.ledger(job_id)
    print(story)
    for row in ledger:  # where each attempt ran and what it cost
        print(f"  {row.attempt_id} {row.site:8} {row.offer_key or '':22} {row.outcome:10} "
              f"{row.end - row.start:5.1f} s  ${row.cost:.6f}")
    for here, there, number, step in hops:
        print(f"pair {SITES[here]} -> {SITES[there]}: attempt {number} resumed from {step}")
    assert _identical(result, reference), story
    print("bit-identical to an uninterrupted run: yes")
    steps = [step for *_, step in hops]
    assert steps == sorted(steps) and steps[0] > 0, (steps, story)
    # what the attempts said (a crashed node's last words may never reach storage)
    said = [int(s) for s in re.findall(r"resumed from step (\d+)", logs)]
    assert said and set(said) <= set(steps), (said, steps, story)
    assert {(h, t) for h, t, *_ in hops} == set(itertools.pairwise(ROUTE))
