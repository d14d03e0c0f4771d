"""``gridbridge demo``: the whole loop on this machine, with no service to start.

::

    reference run (in this process, uninterrupted) ─────────────────────────────┐
    Client() on the embedded default ─> placed on spot-local (cheapest)          │
        ─> checkpoints every N steps ─> demo preempts it (SIGTERM, grace, kill)   │
        ─> spot capacity is reclaimed ─> re-placed, resumes from the last commit  │
        ─> completes ─> story, placement, costs ─> weights == reference? <───────┘

The model is a small numpy MLP trained with minibatch SGD; its RNG state is part of every
checkpoint, so a resumed run draws the same batches and ends bit-identical.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from gridbridge.client import Client, JobFuture

__all__ = ["run_demo", "train"]

Params = dict[str, NDArray[np.float64]]


def _data(seed: int, n: int = 4096, d: int = 32) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    w = rng.standard_normal(d)
    y = (x @ w + 0.5 * rng.standard_normal(n) > 0).astype(np.float64)
    return x, y


def _init(seed: int, d: int = 32, hidden: int = 64) -> Params:
    rng = np.random.default_rng(seed + 1)
    return {
        "w1": rng.standard_normal((d, hidden)) * 0.1,
        "b1": np.zeros(hidden),
        "w2": rng.standard_normal(hidden) * 0.1,
        "b2": np.zeros(1),
    }


def _sgd_step(p: Params, x: NDArray[np.float64], y: NDArray[np.float64], lr: float) -> float:
    h = np.tanh(x @ p["w1"] + p["b1"])
    logits = h @ p["w2"] + p["b2"][0]
    prob = 1.0 / (1.0 + np.exp(-logits))
    loss = float(-np.mean(y * np.log(prob + 1e-12) + (1 - y) * np.log(1 - prob + 1e-12)))
    g = (prob - y) / len(y)
    gh = np.outer(g, p["w2"]) * (1 - h**2)
    p["w2"] -= lr * (h.T @ g)
    p["b2"] -= lr * g.sum(keepdims=True)
    p["w1"] -= lr * (x.T @ gh)
    p["b1"] -= lr * gh.sum(axis=0)
    return loss


def train(
    steps: int = 3000, every: int = 200, seed: int = 0, pace_s: float = 0.0, resumable: bool = True
) -> Params:
    """Train the demo MLP; inside a gridbridge job it checkpoints and honours stop requests.

    ``pace_s`` sleeps after each step, standing in for a slower model so that a person can
    watch the preemption happen; it changes no number.
    """
    import gridbridge

    x, y = _data(seed)
    params, rng, start = _init(seed), np.random.default_rng(seed + 2), 0
    ctx = gridbridge.context() if resumable else None
    if ctx is not None and ctx.checkpoint.latest() is not None:
        ck = ctx.checkpoint.restore()
        params = {k: np.array(v) for k, v in ck.state["params"].items()}
        rng.bit_generator.state = json.loads(ck.metadata["rng"])
        start = ck.step
        print(f"resumed from step {start}", flush=True)
    for step in range(start, steps):
        idx = rng.integers(0, len(y), 128)
        loss = _sgd_step(params, x[idx], y[idx], lr=0.05)
        if pace_s:
            time.sleep(pace_s)
        done = step + 1
        if ctx is None:
            continue
        meta = {"rng": json.dumps(rng.bit_generator.state), "loss": loss}
        if done % every == 0 or ctx.should_stop():
            ctx.checkpoint.save(done, {"params": params}, metadata=meta)
        if ctx.should_stop() and done < steps:
            print(f"stop requested: checkpointed step {done}, exiting to be resumed", flush=True)
            ctx.exit_preempted()
    return params


def run_demo(console: Console, *, steps: int = 3000, keep: bool = False) -> int:
    """Run the demo; returns the process exit code (0 when the weights are bit-identical)."""
    from gridbridge.client import Client
    from gridbridge.config import default_config

    home = Path(tempfile.mkdtemp(prefix="gridbridge-demo-"))
    console.rule("[bold]gridbridge demo")
    console.print(f"embedded default in {home}: two local sites, SQLite state, file:// checkpoints")
    t0 = time.perf_counter()
    reference = train(steps=steps, resumable=False)
    console.print(f"reference run, uninterrupted, in-process: {time.perf_counter() - t0:.1f}s")
    try:
        with Client(default_config(home)) as client:
            code = _drive(console, client, steps, reference)
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    if keep:
        console.print(f"kept the demo's state in {home}: look at it with "
                      f"GRIDBRIDGE_HOME={home} gridbridge status", highlight=False,
                      markup=False, soft_wrap=True)
    return code


def _drive(console: Console, client: Client, steps: int, reference: Params) -> int:
    from gridbridge import checkpoint

    future = client.submit(train, kwargs={"steps": steps, "pace_s": 0.002}, name="demo-mlp",
                           cpus=1, walltime_s=600, checkpoint={"interval_s": 60})
    store = checkpoint.open(client.store.job(future.job_id).checkpoint_url)
    preempted_at: int | None = None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("training", total=steps)
        while not future.done():
            latest = store.latest() or 0
            attempts = client.store.attempts(future.job_id)
            now = attempts[-1] if attempts else None
            where = f"attempt {now.number} on {now.site}" if now else "queued"
            bar.update(task, completed=latest, description=f"training ({where})")
            if preempted_at is None and now and now.state == "RUNNING" and latest >= steps // 3:
                client.preempt(future.job_id)
                preempted_at = latest
                bar.console.print(
                    f"[yellow]preempting {now.id} on {now.site} (last committed step {latest}): "
                    "SIGTERM, then SIGKILL after the grace period"
                )
            time.sleep(0.1)
        bar.update(task, completed=store.latest() or 0)
    return _report(console, client, future, reference)


def _report(console: Console, client: Client, future: JobFuture, reference: Params) -> int:
    from gridbridge.reports import COST_COLUMNS, GroupBy, cost_summary, for_display
    from gridbridge.units import fmt_money, fmt_time
    from gridbridge.views import emit

    job_id = future.job_id
    events = client.store.events(job_id)
    emit(console, f"the story of job {job_id}", ["time", "attempt", "to", "why"],
         [{"time": fmt_time(e.at), "attempt": e.attempt_id or "", "to": e.new, "why": e.reason}
          for e in events if e.new])
    emit(console, "placement decisions", ["attempt", "site", "chosen", "expected_cost", "why"],
         [{"attempt": d.attempt, "site": d.site, "chosen": "yes" if d.chosen else "",
           "expected_cost": fmt_money(d.expected_cost), "why": d.reason}
          for d in client.store.decisions(job_id)])
    summary = for_display(cost_summary(client.store.ledger_records(job_id), GroupBy.SITE))
    columns = [c for c in COST_COLUMNS if c not in ("gpu_hours", "moved")]  # none here
    emit(console, "costs (on_demand_cost: the same work on on-demand capacity)",
         ["site", *columns], summary)
    result = future.result(timeout=60)
    identical = all(
        result[k].dtype == v.dtype and result[k].tobytes() == v.tobytes()
        for k, v in reference.items()
    )
    attempts = client.store.attempts(job_id)
    console.print(f"job {future.status()} after {len(attempts)} attempts on "
                  f"{' -> '.join(a.site for a in attempts)}")
    console.print(f"bit-identical to an uninterrupted run: [bold]{'yes' if identical else 'NO'}")
    return 0 if identical and future.status() == "SUCCEEDED" else 1
