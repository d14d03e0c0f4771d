"""A real PyTorch training job on a GPU, preempted and resumed by gridbridge: are the final
weights bit-identical to an uninterrupted run on the same GPU?

    python benchmarks/gpu_resume.py [--steps N] [--out FILE.json]

The job trains a small MLP with AdamW under deterministic CUDA settings. Its model, optimizer
and RNG states go through the checkpoint store (``state_dict``s as tensors). gridbridge places
it on the cheaper spot-like local site, the script preempts it (SIGTERM, the job checkpoints,
the site reclaims its capacity), and it resumes on the on-demand site from the last commit.
Without a GPU it runs on the CPU and says so; the figure that matters is the GPU one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def train(steps: int, every: int = 100, resumable: bool = True) -> dict[str, Any]:
    """Train deterministically; inside a gridbridge job, checkpoint and honour stop requests."""
    import torch

    import gridbridge

    torch.use_deterministic_algorithms(True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(8192, 256, generator=gen).to(device)
    y = (x @ torch.randn(256, 1, generator=gen).to(device) > 0).float()
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.GELU(),
                                torch.nn.Linear(512, 1)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = torch.Generator(device="cpu").manual_seed(2)
    start = 0
    ctx = gridbridge.context() if resumable else None
    if ctx is not None and ctx.checkpoint.latest() is not None:
        ck = ctx.checkpoint.restore()
        model.load_state_dict({k: torch.as_tensor(v).to(device)
                               for k, v in ck.state["model"].items()})
        opt.load_state_dict(torch.load(_bytes_io(ck.state["opt"]), weights_only=False))
        batches.set_state(torch.as_tensor(ck.state["rng"]))
        start = ck.step
        print(f"resumed from step {start} on {device}", flush=True)
    for step in range(start, steps):
        idx = torch.randint(0, len(x), (512,), generator=batches).to(device)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        done = step + 1
        if ctx is None:
            continue
        if done % every == 0 or ctx.should_stop():
            ctx.checkpoint.save(done, {"model": model.state_dict(), "opt": _opt_bytes(opt),
                                       "rng": batches.get_state()})
        if ctx.should_stop() and done < steps:
            ctx.exit_preempted()
    return {k: v.detach().cpu() for k, v in model.state_dict().items()} | {"device": device}


def _opt_bytes(opt: Any) -> Any:
    import io

    import numpy as np
    import torch

    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8).copy()


def _bytes_io(array: Any) -> Any:
    import io

    import numpy as np

    return io.BytesIO(np.asarray(array, dtype=np.uint8).tobytes())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from gridbridge import Client, checkpoint
    from gridbridge.config import default_config

    t0 = time.perf_counter()
    reference = train(args.steps, resumable=False)
    reference_s = time.perf_counter() - t0
    home = Path(tempfile.mkdtemp(prefix="gridbridge-gpu-"))
    config = default_config(home)
    sites = tuple(s.model_copy(update={"capacity": s.capacity.model_copy(update={"gpus": 1})})
                  for s in config.sites)
    with Client(config.model_copy(update={"sites": sites})) as client:
        future = client.submit(train, args.steps, gpus=1, walltime_s=3600, name="gpu-mlp")
        store = checkpoint.open(client.store.job(future.job_id).checkpoint_url)
        preempted_at = None
        while not future.done():
            latest = store.latest() or 0
            attempts = client.store.attempts(future.job_id)
            if preempted_at is None and attempts and attempts[-1].state == "RUNNING" \
                    and latest >= args.steps // 3:
                client.preempt(future.job_id)
                preempted_at = latest
            time.sleep(0.05)
        result = future.result(timeout=60)
        attempts = client.store.attempts(future.job_id)
        story = [f"{a.number} {a.site} {a.state} step {a.last_step}" for a in attempts]
    identical = all(torch.equal(result[k], reference[k]) and result[k].dtype == reference[k].dtype
                    for k in reference if k != "device")
    report = {
        "device": reference["device"],
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "steps": args.steps,
        "preempted_at_step": preempted_at,
        "attempts": story,
        "state": str(future.status()),
        "bit_identical": identical,
        "reference_run_s": round(reference_s, 2),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0 if identical and len(attempts) >= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
