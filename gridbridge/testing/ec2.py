"""An emulation of EC2 for tests: moto's EC2 API over real HTTP, and instances that boot.

No real cloud can be reached from a test machine, so this stands in for what cannot exist here,
imitating AWS's documented behaviour rather than our wishes::

    boto3 ──HTTP──> moto server (in this process)       every EC2 API call the adapter makes
                     + real spot prices   DescribeSpotPriceHistory answers the rows a test
                                          loads (moto's own are a constant placeholder)
                     + launch errors      RunInstances refuses an unknown AMI as EC2 does
                                          (InvalidAMIID.NotFound; moto accepts any), and the
                                          errors a test queues (capacity, throttling)
    instance running ──> a local process running its real user-data (bash), in its own
                         folder and session; ``shutdown`` there is a stand-in that has the
                         instance terminate (InstanceInitiatedShutdownBehavior=terminate)
                     ──> its own instance metadata service (IMDSv2: token, then
                         meta-data/spot/instance-action), reached through
                         $AWS_EC2_METADATA_SERVICE_ENDPOINT
    interrupt(id)    ──> the two-minute notice (shortened for tests), then the instance
                         terminates with Server.SpotInstanceTermination
    terminate (API)  ──> SIGTERM to the instance's processes, SIGKILL after a grace period

moto's private models are touched (instance state and reason, the spot price handler), so the
moto version is pinned in the ``dev`` extra.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import gzip
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["Ec2Emulator", "load_spot_prices"]

REGION = "us-east-1"
_SHUTDOWN_SHIM = """#!/bin/sh
# The emulated instance's shutdown: it asks the EC2 emulation to end this instance.
# (It stands first on the instance's PATH; the host's own shutdown is never run.)
echo "$*" > {flag}
"""


def load_spot_prices(path: Path, types: Iterable[str], zones: Iterable[str] | None = None,
                     ) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Real spot price changes from a CSV (``timestamp, region, availability_zone,
    instance_type, product_description, spot_price_usd_per_hour``; ``.gz`` allowed), per
    (type, zone): ``[(unix time, $/h), ...]`` sorted."""
    wanted, where = set(types), set(zones) if zones is not None else None
    out: dict[tuple[str, str], list[tuple[float, float]]] = {}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        for row in csv.DictReader(f):
            zone = row.get("availability_zone", "")
            if row["instance_type"] not in wanted or (where is not None and zone not in where):
                continue
            at = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")).timestamp()
            out.setdefault((row["instance_type"], zone), []).append(
                (at, float(row["spot_price_usd_per_hour"])))
    return {k: sorted(v) for k, v in out.items()}


@dataclass
class _Instance:
    id: str
    folder: Path
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    proc: subprocess.Popen[bytes] | None = None
    notice: dict[str, str] | None = None
    notice_deadline: float | None = None
    kill_at: float | None = None
    instance_type: str = ""
    zone: str = ""
    user_data: str = ""


class Ec2Emulator:
    """moto's EC2 API on a free local port, with booting instances; a context manager.

    ``instance_env``: the environment the instances' processes get (what an instance profile
    and the AMI would give them: how to reach the object store). ``notice_s``: how long an
    interruption notice runs before the instance is taken (AWS: two minutes).
    ``terminate_grace_s``: between SIGTERM and SIGKILL when an instance is terminated."""

    def __init__(self, root: Path, *, instance_env: Mapping[str, str] | None = None,
                 notice_s: float = 120.0, terminate_grace_s: float = 3.0) -> None:
        self.root = Path(root)
        self.instance_env = dict(instance_env) if instance_env is not None else None
        """None: this process's environment at each boot."""
        self.notice_s = notice_s
        self.terminate_grace_s = terminate_grace_s
        self.endpoint = ""
        self.prices: dict[tuple[str, str], list[tuple[float, float]]] = {}
        self.launch_faults: list[tuple[str, str]] = []
        """Errors the next RunInstances calls answer, first first: (code, message)."""
        self.launch_calls = 0
        self._instances: dict[str, _Instance] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._server: Any = None
        self._imds: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._patches: list[tuple[Any, str, Any]] = []

    # lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Ec2Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Ec2Emulator:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.root.mkdir(parents=True, exist_ok=True)
        self._backends().reset()
        self._patch()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self._imds = ThreadingHTTPServer(("127.0.0.1", 0), _imds_handler(self))
        self._imds.daemon_threads = True
        for target in (self._imds.serve_forever, self._watch):
            t = threading.Thread(target=target, daemon=True, name="ec2-emulator")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for inst in self._instances.values():
                self._kill(inst, signal.SIGKILL)
        if self._imds is not None:
            self._imds.shutdown()
            self._imds.server_close()
        if self._server is not None:
            self._server.stop()
        for owner, name, original in reversed(self._patches):
            setattr(owner, name, original)
        self._patches.clear()
        with contextlib.suppress(Exception):
            self._backends().reset()

    def client(self) -> Any:
        """A boto3 EC2 client of this endpoint (any credentials do)."""
        import boto3

        return boto3.client("ec2", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id="testing",
                            aws_secret_access_key="testing")  # noqa: S106 - moto takes any

    def image_id(self) -> str:
        """An AMI moto knows."""
        return str(next(iter(self._backend().amis)))

    # what tests do ------------------------------------------------------------------------

    def interrupt(self, instance_id: str, notice_s: float | None = None) -> None:
        """A spot interruption: the notice in the instance's metadata now, and the instance
        terminated (Server.SpotInstanceTermination) ``notice_s`` later."""
        wait = self.notice_s if notice_s is None else notice_s
        deadline = time.time() + wait
        stamp = datetime.fromtimestamp(deadline, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock:
            inst = self._instances[instance_id]
            inst.notice = {"action": "terminate", "time": stamp}
            inst.notice_deadline = deadline

    def kill(self, instance_id: str) -> None:
        """The instance is taken at once, without notice (its processes get SIGKILL)."""
        with self._lock:
            inst = self._instances[instance_id]
            self._kill(inst, signal.SIGKILL)
        self._end(instance_id, "Server.SpotInstanceTermination",
                  "Server.SpotInstanceTermination: Spot instance termination")

    def booted(self) -> list[str]:
        """Instances whose user-data was started, oldest first."""
        with self._lock:
            return list(self._instances)

    def running(self) -> list[str]:
        """Instances whose user-data process is still alive."""
        with self._lock:
            return [i.id for i in self._instances.values()
                    if i.proc is not None and i.proc.poll() is None]

    def live_instances(self) -> list[str]:
        """Instances EC2 shows pending or running: none may be left after a test."""
        return [i.id for i in self._all() if i._state.name in ("pending", "running")]

    def imds_endpoint(self, instance_id: str) -> str:
        """The instance's own metadata service, as its processes find it."""
        return f"http://127.0.0.1:{self._imds.server_port if self._imds else 0}/{instance_id}"

    def console(self, instance_id: str) -> str:
        """What the instance's user-data printed."""
        path = self.root / instance_id / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def set_prices(self, prices: Mapping[tuple[str, str], list[tuple[float, float]]]) -> None:
        """The spot price history DescribeSpotPriceHistory answers from now on."""
        self.prices = {k: sorted(v) for k, v in prices.items()}

    # moto -----------------------------------------------------------------------------------

    @staticmethod
    def _backends() -> Any:
        from moto.backends import get_backend

        return get_backend("ec2")

    def _backend(self) -> Any:
        from moto.core.models import DEFAULT_ACCOUNT_ID

        return self._backends()[DEFAULT_ACCOUNT_ID][REGION]

    def _all(self) -> list[Any]:
        for _ in range(5):
            try:
                return list(self._backend().all_instances())
            except RuntimeError:  # the server thread changed the dict meanwhile
                time.sleep(0.01)
        return []

    def _patch(self) -> None:
        from moto.ec2.exceptions import EC2ClientError
        from moto.ec2.models.instances import Instance
        from moto.ec2.responses.instances import InstanceResponse
        from moto.ec2.responses.spot_instances import SpotInstances

        emulator = self
        run_instances = InstanceResponse.run_instances
        price_history = SpotInstances.describe_spot_price_history
        terminate = Instance.terminate

        def patched_terminate(self: Any) -> Any:
            """As on EC2: shutting-down while the instance's processes stop, then terminated."""
            previous = terminate(self)
            if self.id in emulator.running():
                self._state.name, self._state.code = "shutting-down", 32
            return previous

        def patched_run_instances(self: Any) -> Any:
            emulator.launch_calls += 1
            with emulator._lock:
                fault = emulator.launch_faults.pop(0) if emulator.launch_faults else None
            if fault is not None:
                raise EC2ClientError(*fault)
            image_id = self._get_param("ImageId")
            self.ec2_backend.describe_images(ami_ids=[image_id])  # InvalidAMIID.NotFound
            return run_instances(self)

        def patched_price_history(self: Any) -> Any:
            from moto.core.responses import ActionResult

            types = set(self._get_param("InstanceTypes", []))
            filters = self._filters_from_querystring()
            zones = set(filters.get("availability-zone", []))
            start = _when(self._get_param("StartTime"), time.time())
            end = _when(self._get_param("EndTime"), time.time())
            rows = []
            for (itype, zone), series in emulator.prices.items():
                if (types and itype not in types) or (zones and zone not in zones):
                    continue
                # the price in force at the start, then every change up to the end
                before = [r for r in series if r[0] <= start]
                picked = before[-1:] + [r for r in series if start < r[0] <= end]
                rows += [{"InstanceType": itype, "ProductDescription": "Linux/UNIX",
                          "SpotPrice": f"{price:.6f}", "AvailabilityZone": zone,
                          "Timestamp": datetime.fromtimestamp(at, UTC).isoformat()}
                         for at, price in picked]
            rows.sort(key=lambda r: r["Timestamp"], reverse=True)  # newest first, as AWS
            return ActionResult({"SpotPriceHistory": rows})

        for owner, name, new, old in (
            (InstanceResponse, "run_instances", patched_run_instances, run_instances),
            (Instance, "terminate", patched_terminate, terminate),
            (SpotInstances, "describe_spot_price_history", patched_price_history,
             price_history),
        ):
            setattr(owner, name, new)
            self._patches.append((owner, name, old))

    def _end(self, instance_id: str, code: str, message: str, transition: str = "") -> None:
        """Move the instance to terminated with EC2's reason for it."""
        from moto.ec2.models.instances import StateReason

        with contextlib.suppress(Exception):
            inst = self._backend().get_instance(instance_id)
            if inst._state.name in ("shutting-down", "terminated"):
                return
            inst.terminate()
            inst.state_reason = StateReason(message, code)
            inst._reason = transition or message

    # the instances ----------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self._tick()
            except Exception as exc:  # keep the emulation running; say what broke
                print(f"ec2 emulator: {type(exc).__name__}: {exc}", flush=True)

    def _tick(self) -> None:
        now = time.time()
        for model in self._all():
            iid, state = model.id, model._state.name
            with self._lock:
                inst = self._instances.get(iid)
            if inst is None and state == "running":
                self._boot(model)
                continue
            if inst is None:
                continue
            if state in ("shutting-down", "terminated", "stopping", "stopped"):
                alive = inst.proc is not None and inst.proc.poll() is None
                if alive and inst.kill_at is None:
                    self._kill(inst, signal.SIGTERM)
                    inst.kill_at = now + self.terminate_grace_s
                if alive and inst.kill_at is not None and now >= inst.kill_at:
                    self._kill(inst, signal.SIGKILL)
                    alive = False
                if not alive and state == "shutting-down":
                    model._state.name, model._state.code = "terminated", 48
                continue
            if (inst.folder / "shutdown-requested").exists():
                stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S GMT")
                self._end(iid, "Client.InstanceInitiatedShutdown",
                          "Client.InstanceInitiatedShutdown: Instance initiated shutdown",
                          f"User initiated ({stamp})")
            elif inst.notice_deadline is not None and now >= inst.notice_deadline:
                self._end(iid, "Server.SpotInstanceTermination",
                          "Server.SpotInstanceTermination: Spot instance termination")

    def _boot(self, model: Any) -> None:
        folder = self.root / model.id
        (folder / "bin").mkdir(parents=True, exist_ok=True)
        raw = model.user_data[0] if isinstance(model.user_data, list) else model.user_data
        script = base64.b64decode(str(raw)).decode() if raw else "#!/bin/bash\n"
        (folder / "user-data").write_text(script)
        shim = folder / "bin" / "shutdown"
        shim.write_text(_SHUTDOWN_SHIM.format(flag=folder / "shutdown-requested"))
        shim.chmod(0o755)
        inst = _Instance(id=model.id, folder=folder, instance_type=model.instance_type,
                         zone=model.placement, user_data=script)
        base = self.instance_env if self.instance_env is not None else dict(os.environ)
        env = {**base, "PATH": f"{folder / 'bin'}:{os.environ.get('PATH', '')}",
               "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.imds_endpoint(model.id),
               "HOME": str(folder), "TMPDIR": str(folder / "tmp")}
        (folder / "tmp").mkdir(exist_ok=True)
        if shutil.which("shutdown", path=env["PATH"]) != str(shim):
            raise RuntimeError("the instance's shutdown stand-in is not first on its PATH")
        with open(folder / "console.log", "ab") as console:
            inst.proc = subprocess.Popen(["bash", str(folder / "user-data")], cwd=folder,
                                         env=env, stdout=console, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        with self._lock:
            self._instances[model.id] = inst

    def _kill(self, inst: _Instance, sig: int) -> None:
        if inst.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(inst.proc.pid, sig)
        if sig == signal.SIGKILL:
            with contextlib.suppress(subprocess.TimeoutExpired):
                inst.proc.wait(timeout=5)

    def _metadata(self, instance_id: str) -> _Instance | None:
        with self._lock:
            return self._instances.get(instance_id)


def _when(raw: Any, default: float) -> float:
    if not raw:
        return default
    if isinstance(raw, datetime):
        return raw.timestamp()
    return datetime.fromisoformat(str(raw).replace("Z", "+00:00")).timestamp()


def _imds_handler(emulator: Ec2Emulator) -> type[BaseHTTPRequestHandler]:
    """IMDSv2 for each instance under ``/<instance id>/``: a PUT for a token, then GETs that
    carry it (401 without), as on EC2."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _route(self) -> tuple[_Instance | None, str]:
            _, iid, rest = [*self.path.split("/", 2), "", ""][:3]
            return emulator._metadata(iid), "/" + rest

        def _answer(self, code: int, body: str = "", kind: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:  # http.server's name
            inst, path = self._route()
            if inst is None or path != "/latest/api/token":
                return self._answer(404)
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return self._answer(400)
            return self._answer(200, inst.token)

        def do_GET(self) -> None:  # http.server's name
            inst, path = self._route()
            if inst is None:
                return self._answer(404)
            if self.headers.get("X-aws-ec2-metadata-token") != inst.token:
                return self._answer(401)
            values = dict(_metadata_values(inst))
            if path not in values or values[path] is None:
                return self._answer(404)
            value = values[path]
            if isinstance(value, dict):
                return self._answer(200, json.dumps(value), "application/json")
            return self._answer(200, str(value))

    return Handler


def _metadata_values(inst: _Instance) -> Iterator[tuple[str, Any]]:
    yield "/latest/meta-data/instance-id", inst.id
    yield "/latest/meta-data/instance-type", inst.instance_type
    yield "/latest/meta-data/instance-life-cycle", "spot"
    yield "/latest/meta-data/placement/availability-zone", inst.zone
    yield "/latest/user-data", inst.user_data
    yield "/latest/meta-data/spot/instance-action", inst.notice
    yield "/latest/meta-data/spot/termination-time", (
        inst.notice["time"] if inst.notice else None)
