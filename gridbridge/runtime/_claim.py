"""The claim: an attempt runs at most once per launch, however often a site starts it.

Invariant: before it runs anything, the runtime creates ``SCRATCH/started`` on this host and
then ``<attempt_url>/claim.json`` in storage, each exclusively (``O_EXCL`` locally, a
conditional create on object storage); if either already exists the attempt was started before
and this launch is a duplicate. A site's own rerun of the attempt (a Slurm requeue, which the
site starts only after it ended the earlier run) claims ``claim-rerun-N.json`` instead::

    SCRATCH/started (O_EXCL) ──exists──> duplicate: exit ALREADY_RAN_EXIT_CODE
        │ created
        ├─> SCRATCH/pid  "<pid> <kernel start time>"  (tells a reused pid apart)
        └─> <attempt_url>/claim.json | claim-rerun-N.json (exclusive) ──exists──> duplicate

Every file it creates is its owner's alone (0600, less under a stricter umask).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from gridbridge.procinfo import proc_start_time
from gridbridge.wire import Launch, Record, ScratchFile

from ._files import local_dir, write_atomic

__all__ = ["claim"]


def claim(scratch: Path, launch: Launch, rerun: int = 0) -> bool:
    """Claim the attempt on this host and in storage; False if it was already started.

    ``rerun`` > 0 is the site's own rerun of the same attempt: it claims
    ``claim-rerun-N.json`` instead of ``claim.json``."""
    try:
        fd = os.open(scratch / ScratchFile.STARTED, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    write_atomic(scratch / ScratchFile.PID, f"{os.getpid()} {proc_start_time(os.getpid())}\n")
    record = {"host": socket.gethostname(), "pid": os.getpid(), "at": time.time(),
              "rerun": rerun}
    name = f"claim-rerun-{rerun}.json" if rerun else Record.CLAIM.value
    return _create(launch.attempt_url, name, json.dumps(record).encode())


def _create(attempt_url: str, name: str, data: bytes) -> bool:
    """Create ``<attempt_url>/<name>`` holding ``data`` unless it exists; False if it did."""
    local = local_dir(attempt_url)
    if local is not None:  # no storage library to import for a local prefix
        local.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(local / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    from gridbridge.checkpoint._backend import open_backend

    backend = open_backend(attempt_url, None)
    return backend.create(f"{backend.root}/{name}", data)
