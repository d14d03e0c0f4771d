"""The EC2 emulation (``gridbridge.testing.ec2``) as a process of the dev federation: moto's EC2
API with instances that boot, each with its own IMDS, real spot prices placed in time.

Usage: python ec2-emulator.py STATE_DIR   (started by federation-up.sh, stopped by SIGTERM)

Invariant: everything it starts ends with it: on SIGTERM every emulated instance is killed
before it exits, so no instance outlives ``federation-down.sh``. It writes STATE_DIR/endpoint
and STATE_DIR/image-id once it answers; a spot interruption notice is delivered through the
instance's IMDS when a file named after the instance appears in STATE_DIR/interrupt/ (its text,
if any: the notice in seconds), the way AWS gives one::

    touch STATE_DIR/interrupt/i-0123456789abcdef0   ──>  the notice, then the instance ends
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

_DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "ec2"
TYPES = ("c5.large", "c5.xlarge", "m5.large")
ZONES = ("us-east-1a", "us-east-1b")


def main(state: Path) -> None:
    import time

    from gridbridge.testing.ec2 import Ec2Emulator, load_spot_prices

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    inbox = state / "interrupt"
    inbox.mkdir(parents=True, exist_ok=True)
    series = load_spot_prices(_DATA / "spot-prices-us-east-1-2021-03.csv", TYPES, ZONES)
    shift = time.time() - 60 - max(at for rows in series.values() for at, _ in rows)
    with Ec2Emulator(state / "instances", notice_s=5.0) as emu:
        emu.set_prices({k: [(at + shift, p) for at, p in rows] for k, rows in series.items()})
        (state / "image-id").write_text(emu.image_id() + "\n")
        (state / "endpoint").write_text(emu.endpoint + "\n")
        print(f"ec2 emulation at {emu.endpoint}", flush=True)
        while not stop.wait(0.2):
            for asked in inbox.iterdir():
                text = asked.read_text().strip()
                asked.unlink()
                try:
                    emu.interrupt(asked.name, float(text) if text else None)
                except Exception as exc:  # an unknown instance: say so, keep serving
                    print(f"cannot interrupt {asked.name}: {exc}", flush=True)
    for name in ("endpoint", "image-id"):
        (state / name).unlink(missing_ok=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: ec2-emulator.py STATE_DIR")
    main(Path(sys.argv[1]))
