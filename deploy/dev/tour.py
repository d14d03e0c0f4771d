"""The tour of the dev federation: one training job preempted on each tier the way that tier
preempts, resumed on the next from its checkpoint on S3, checked bit-identical at the end to an
uninterrupted run. ``make demo-federation`` runs it as a demo (four hops, every tier visited);
the ``federation`` test runs it over all 16 ordered pairs (``tests/federation/test_tour.py``).

    L laptop (local: a stop)        C cluster (Slurm: a higher-priority job preempts scavenger)
    S spot (EC2: the interruption   E edge (a node crash: power cut, every process on it dies)
      notice through IMDS)

Placement chooses every next site by itself: before each hop the control plane restarts on the
same state with the configuration of that moment, which names the site the attempt runs on and
the wanted one, the wanted one the cheap one (spot capped by ``max_price`` where it is not),
the way an operator changes prices and sites. What preempts each tier (a Slurm job in a
higher-priority partition, the emulation's interruption inbox, ``edge-ctl.sh crash``) is the
dev stack's, which is why this lives here and not in the package.

Usage (after ``deploy/dev/federation-up.sh``):
``python deploy/dev/tour.py [--route LCSEL] [--job numpy|torch]``; exit 0 only when the result
is bit-identical to an uninterrupted run. ``--job torch`` trains a PyTorch model (CPU, one
thread) instead of the NumPy one.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import fsspec
import yaml

from gridbridge import Client, checkpoint
from gridbridge.config import GridConfig, parse_config
from gridbridge.demo import train
from gridbridge.states import AttemptState

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STATE = REPO / ".peers" / "federation"
EDGE_STATE = REPO / ".peers" / "edge"
SITES = {"L": "laptop", "C": "cluster", "S": "spot", "E": "edge"}
DEMO_ROUTE = "LCSEL"
"""The demo's hops: laptop -> cluster -> spot -> edge -> laptop (each tier preempted once)."""
STEPS, EVERY, PACE_S = 3000, 25, 0.01
DEAR, CHEAP = 9.0, 0.0001
WAIT_S = 120.0


class TourError(RuntimeError):
    """The tour did not go as it should; the message carries the job's story."""


@dataclass(frozen=True)
class Federation:
    config: Path
    """The gridbridge.yaml federation-up.sh wrote."""
    env: dict[str, str]
    """What the control plane needs in its environment (STATE/env)."""
    ec2: Path
    """The EC2 emulation's folder: its interrupt/ inbox."""

    @classmethod
    def at(cls, state: Path = STATE) -> Federation:
        env = {}
        for line in (state / "env").read_text().splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value
        return cls(state / "gridbridge.yaml", env, state / "ec2")

    def use(self) -> None:
        """Point this process (the control plane) at the federation's store and APIs."""
        os.environ.update(self.env)
        fsspec.config.conf["s3"] = {"endpoint_url": self.env["FSSPEC_S3_ENDPOINT_URL"],
                                    "key": self.env["FSSPEC_S3_KEY"],
                                    "secret": self.env["FSSPEC_S3_SECRET"]}


@dataclass
class Tour:
    """What a tour did: each hop (from, to, the attempt that resumed, the step it resumed
    from), the result and the uninterrupted run's, the story and the ledger."""

    hops: list[tuple[str, str, int, int]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    story: str = ""
    ledger: list[Any] = field(default_factory=list)
    logs: str = ""

    @property
    def identical(self) -> bool:
        return set(self.result) == set(self.reference) and all(
            self.result[k].dtype == v.dtype and self.result[k].tobytes() == v.tobytes()
            for k, v in self.reference.items())

    @property
    def said(self) -> list[int]:
        """The steps the attempts said they resumed from (a crashed node's last words may
        never reach storage)."""
        return [int(s) for s in re.findall(r"resumed from step (\d+)", self.logs)]


def torch_train(steps: int, every: int, pace_s: float = 0.0,
                resumable: bool = True) -> dict[str, Any]:
    """The PyTorch variant of the tour's job: a small MLP trained with AdamW on the CPU, one
    thread (so every tier computes the same floats, whatever cores it gives), its model,
    optimizer and generator states checkpointed as arrays. Returns the weights as arrays."""
    import io

    import numpy as np
    import torch

    import gridbridge

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 64, generator=gen)
    y = (x @ torch.randn(64, 1, generator=gen) > 0).float()
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(),
                                torch.nn.Linear(128, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = torch.Generator().manual_seed(2)
    start = 0
    ctx = gridbridge.context() if resumable else None
    if ctx is not None and ctx.checkpoint.latest() is not None:
        ck = ctx.checkpoint.restore()
        model.load_state_dict({k: torch.as_tensor(v) for k, v in ck.state["model"].items()})
        raw = np.asarray(ck.state["opt"], dtype=np.uint8).tobytes()
        opt.load_state_dict(torch.load(io.BytesIO(raw), weights_only=False))
        batches.set_state(torch.as_tensor(ck.state["rng"]))
        start = ck.step
        print(f"resumed from step {start}", flush=True)
    for step in range(start, steps):
        idx = torch.randint(0, len(x), (256,), generator=batches)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        done = step + 1
        if ctx is None:
            continue
        time.sleep(pace_s)
        if done % every == 0 or ctx.should_stop():
            buf = io.BytesIO()
            torch.save(opt.state_dict(), buf)
            ctx.checkpoint.save(done, {
                "model": {k: v.detach().numpy() for k, v in model.state_dict().items()},
                "opt": np.frombuffer(buf.getvalue(), dtype=np.uint8).copy(),
                "rng": batches.get_state().numpy()})
        if ctx.should_stop() and done < steps:
            ctx.exit_preempted()
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


JOBS: dict[str, Callable[..., dict[str, Any]]] = {"numpy": train, "torch": torch_train}
"""The tour's job: gridbridge.demo's NumPy model, or the PyTorch one."""


def grid(federation: Federation, workdir: Path, here: str, there: str) -> GridConfig:
    """The federation's configuration for a hop from site ``here`` to site ``there``: those
    two sites only (the one an attempt runs on stays, so its end is seen), ``there`` the
    cheap one. Slurm offers its preemptible partition only."""
    data: dict[str, Any] = yaml.safe_load(federation.config.read_text())
    data["state_url"] = f"sqlite:///{workdir}/state.db"
    data["workdir"] = str(workdir / "run")
    data["checkpoint_root"] = f"{data['checkpoint_root']}/tour-{workdir.name[-12:]}"
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


def story(client: Client, job_id: str) -> str:
    lines = [f"job {job_id}: {client.store.job(job_id).state}"]
    lines += [f"  attempt {a.number} on {a.site} ({a.native_id}): {a.state} "
              f"last_step {a.last_step}: {a.reason}" for a in client.store.attempts(job_id)]
    lines += [f"  event {e.kind}: {e.old} -> {e.new}: {e.reason}"
              for e in client.store.events(job_id)][-30:]
    return "\n".join(lines)


def running_on(client: Client, job_id: str, site: str, after: int) -> Any:
    """The job's attempt once it runs on ``site`` and has committed a checkpoint past
    ``after`` (so the preemption interrupts real progress)."""
    store = checkpoint.open(client.store.job(job_id).checkpoint_url)
    deadline = time.monotonic() + WAIT_S
    try:
        while time.monotonic() < deadline:
            attempts = client.store.attempts(job_id)
            last = attempts[-1] if attempts else None
            if (last is not None and last.site == site and last.state is AttemptState.RUNNING
                    and (store.latest() or 0) > after):
                return last
            if client.store.job(job_id).state.terminal:
                raise TourError(f"the job ended early\n{story(client, job_id)}")
            time.sleep(0.1)
    finally:
        store.close()
    raise TourError(f"not running on {site} past step {after} in {WAIT_S:.0f} s\n"
                    f"{story(client, job_id)}")


def wait_state(client: Client, attempt: Any, states: set[AttemptState], limit: float) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        now = next(a for a in client.store.attempts(attempt.job_id) if a.id == attempt.id)
        if now.state in states:
            return now
        time.sleep(0.2)
    raise TourError(f"{attempt.id} not {states} in {limit} s\n{story(client, attempt.job_id)}")


def _edge_ctl(action: str, node: str) -> None:
    subprocess.run(["bash", str(HERE / "edge-ctl.sh"), str(EDGE_STATE), action, node],
                   capture_output=True, text=True, timeout=60, check=True)


def preempt(client: Client, federation: Federation, attempt: Any) -> str | None:
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
        wait_state(client, attempt, {AttemptState.LOST}, 60)
        _edge_ctl("restart", node)
    return None


def _latest(client: Client, job_id: str) -> int:
    with checkpoint.open(client.store.job(job_id).checkpoint_url) as store:
        return store.latest() or 0


def run(federation: Federation, route: str, workdir: Path,
        say: Callable[[str], None] = print, job: str = "numpy") -> Tour:
    """Train one job (:data:`JOBS`) along ``route`` (a letter per segment, :data:`SITES`),
    preempting it at the end of each segment but the last, and return what happened."""
    if len(route) < 2 or set(route) - set(SITES):
        raise ValueError(f"a route is two or more of {''.join(SITES)}, got {route!r}")
    federation.use()
    fn = JOBS[job]
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # deploy/dev: not importable
    tour = Tour(reference=fn(steps=STEPS, every=EVERY, resumable=False))
    started = time.monotonic()
    first, last = SITES[route[0]], SITES[route[-1]]
    with Client(grid(federation, workdir, first, first)) as client:
        job_id = client.submit(fn, kwargs={"steps": STEPS, "every": EVERY, "pace_s": PACE_S},
                               cpus=1, name=f"tour-{job}",
                               checkpoint={"resumable": True}).job_id
        running_on(client, job_id, first, 0)  # placed while only the first site is offered
    say(f"job {job_id} submitted; route {' -> '.join(SITES[c] for c in route)}")
    after = 0
    for here, there in itertools.pairwise(route):
        with Client(grid(federation, workdir, SITES[here], SITES[there])) as client:
            attempt = running_on(client, job_id, SITES[here], after)
            preemptor = preempt(client, federation, attempt)
            ended = wait_state(client, attempt, {AttemptState.PREEMPTED, AttemptState.LOST},
                               90)
            if preemptor:
                subprocess.run(["scancel", preemptor], capture_output=True, timeout=30,
                               check=True)
            after = _latest(client, job_id)  # what the next attempt resumes from
            nxt = running_on(client, job_id, SITES[there], after)
            tour.hops.append((here, there, nxt.number, after))
            say(f"hop {SITES[here]} -> {SITES[there]}: {ended.state.value} on {attempt.site}, "
                f"resumed from step {after} as attempt {nxt.number} "
                f"at {time.monotonic() - started:.0f} s")
    with Client(grid(federation, workdir, last, last)) as client:
        future = client.job(job_id)
        tour.result = future.result(timeout=180)
        tour.story, tour.logs = story(client, job_id), future.logs()
        tour.ledger = client.store.ledger(job_id)
    return tour


def print_report(tour: Tour) -> None:
    """The story, where each attempt ran and what it cost, and the verdict."""
    print(tour.story)
    print("where each attempt ran and what it cost:")
    for row in tour.ledger:
        print(f"  {row.attempt_id:16} {row.site:8} {row.offer_key or '':22} {row.outcome:10} "
              f"{row.end - row.start:6.1f} s  ${row.cost:.6f}")
    for here, there, number, step in tour.hops:
        print(f"pair {SITES[here]} -> {SITES[there]}: attempt {number} resumed from {step}")
    print(f"bit-identical to an uninterrupted run: {'yes' if tour.identical else 'NO'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--route", default=DEMO_ROUTE,
                        help=f"a letter per segment, of {''.join(SITES)} (default {DEMO_ROUTE})")
    parser.add_argument("--state", type=Path, default=STATE,
                        help="federation-up.sh's folder (default .peers/federation)")
    parser.add_argument("--job", choices=sorted(JOBS), default="numpy",
                        help="the model trained: NumPy (default) or PyTorch on the CPU")
    args = parser.parse_args(argv)
    logging.getLogger("gridbridge").setLevel(logging.ERROR)  # the story says what happened
    if not (args.state / "env").exists():
        print(f"error: no federation at {args.state}: run deploy/dev/federation-up.sh first",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gridbridge-tour-") as workdir:
        try:
            tour = run(Federation.at(args.state), args.route, Path(workdir), job=args.job)
        except TourError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print_report(tour)
    return 0 if tour.identical else 1


if __name__ == "__main__":
    sys.exit(main())
