"""GridCluster over TLS: a real distributed scheduler that speaks only mutual TLS with its own
per-cluster CA, real worker jobs that take their credentials from their job's prefix, and
real intruders (a plain-tcp client, plain-tcp and foreign-CA workers) that are turned away."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

pytest.importorskip("distributed", reason="the dask extra: pip install 'gridbridge[dask]'")

from distributed import Client as DaskClient
from distributed.security import Security

from gridbridge.config import GridConfig
from gridbridge.dask import GridCluster
from gridbridge.dask._tls import BUNDLE, ClusterTLS, wants_tls
from gridbridge.dask.cluster import _scheduler_options
from gridbridge.wire import Record

pytestmark = [
    pytest.mark.dask,
    # as in test_dask.py: distributed closes comms from its loop thread after the test moved on
    pytest.mark.filterwarnings("ignore:unclosed:ResourceWarning"),
]


@pytest.fixture
def tls_cluster(dask_grid: GridConfig, tmp_path: Path) -> Iterator[GridCluster]:
    worker_tmp = tmp_path / "worker-tmp"  # where the worker's bootstrap keeps its copies
    worker_tmp.mkdir()
    with GridCluster(dask_grid, cores=1, memory="512 MiB", security=True,
                     worker_options={"env": {"TMPDIR": str(worker_tmp)}}) as c:
        yield c


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _local(url: str) -> Path:
    return Path(urlparse(url).path)


def _key_body(pem: str) -> str:
    """A line from the middle of a PEM key: what a leak of the key would contain."""
    lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return lines[len(lines) // 2]


def test_a_tls_cluster_computes_end_to_end_and_keeps_its_keys_private(
    tls_cluster: GridCluster, tmp_path: Path,
) -> None:
    c = tls_cluster
    assert c.scheduler_address.startswith("tls://")
    c.scale(1)
    with DaskClient(c) as dc:
        dc.wait_for_workers(1, timeout=90)
        assert dc.submit(sum, [1, 2, 3]).result(timeout=30) == 6
        assert all(a.startswith("tls://") for a in dc.scheduler_info()["workers"])

        # every key file is 0600, every folder holding one 0700
        folder = Path(c.security.tls_scheduler_key).parent
        assert _mode(folder) == 0o700
        assert {p.name: _mode(p) for p in folder.iterdir()} == {
            "ca.pem": 0o600, "scheduler.pem": 0o600, "scheduler-key.pem": 0o600}
        [job] = c.jobs
        bundle = _local(c.grid.store.job(job.job_id).checkpoint_url) / BUNDLE
        assert _mode(bundle) == 0o600
        [copies] = (tmp_path / "worker-tmp").glob("gridbridge-dask-worker-*")
        assert _mode(copies) == 0o700
        assert {p.name: _mode(p) for p in copies.iterdir()} == {
            "ca.pem": 0o600, "cert.pem": 0o600, "key.pem": 0o600}

        # no private key text in the job's spec, argv, events or records, nor in the store
        worker_key = json.loads(bundle.read_text())["key"]
        scheduler_key = Path(c.security.tls_scheduler_key).read_text()
        spec = c.grid.store.job(job.job_id).spec
        seen = [spec.model_dump_json(), json.dumps(list(spec.command or ())),
                repr(c.grid.store.events(job.job_id))]
        for attempt in c.grid.store.attempts(job.job_id):
            seen.append(_local(f"{attempt.attempt_url}/{Record.LAUNCH}").read_text())
        db = Path(c.grid.config.state_url.removeprefix("sqlite:///"))
        seen += [p.read_bytes().decode("latin-1") for p in db.parent.glob(db.name + "*")]
        for text in seen:
            assert "PRIVATE KEY" not in text
            assert _key_body(worker_key) not in text
            assert _key_body(scheduler_key) not in text
    c.close()
    assert not folder.exists() and not bundle.exists() and not copies.exists()


def _worker(scheduler: str, name: str, prefix: Path | None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBRIDGE_")}
    if prefix is not None:
        env["GRIDBRIDGE_CHECKPOINT"] = prefix.as_uri()
    return subprocess.Popen([sys.executable, "-m", "gridbridge.dask.worker", scheduler,
                             "--name", name, "--death-timeout", "6"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _names(c: GridCluster) -> set[str]:
    return {str(ws.name) for ws in c.scheduler.workers.values()}


def test_only_holders_of_the_cluster_s_certificate_get_in(
    tls_cluster: GridCluster, tmp_path: Path,
) -> None:
    c = tls_cluster
    address = c.scheduler_address
    plain = "tcp://" + address.removeprefix("tls://")

    # a plain-tcp client, or a TLS client holding another cluster's certificate, is refused
    with pytest.raises(OSError):
        DaskClient(plain, timeout="3s")
    other = ClusterTLS.create("other-cluster")
    try:
        with pytest.raises(OSError):
            DaskClient(address, timeout="3s", security=other.security())
        other.publish((tmp_path / "foreign").as_uri())
    finally:
        other.close()

    # workers through the real bootstrap: one on plain tcp, one holding a certificate of
    # another cluster's CA, and, as the control, one holding this cluster's
    assert c.launcher.tls is not None
    c.launcher.tls.publish((tmp_path / "ours").as_uri())
    intruders = [_worker(plain, "plain", None), _worker(address, "foreign", tmp_path / "foreign")]
    guest = _worker(address, "guest", tmp_path / "ours")
    try:
        for proc in intruders:
            out, _ = proc.communicate(timeout=90)
            assert proc.returncode != 0, out
        deadline = time.monotonic() + 60
        while "guest" not in _names(c):
            assert guest.poll() is None and time.monotonic() < deadline, guest.stdout
            time.sleep(0.1)
        assert _names(c) == {"guest"}  # neither intruder ever joined
    finally:
        guest.terminate()
        guest.communicate(timeout=60)


def _with_remote_site(grid: GridConfig) -> GridConfig:
    hpc = grid.sites[0].model_copy(update={"name": "hpc", "adapter": "slurm"})
    return grid.model_copy(update={"sites": (*grid.sites, hpc)})


def test_tls_is_chosen_exactly_when_a_worker_may_run_on_another_host(grid: GridConfig) -> None:
    config = _with_remote_site(grid)
    local = ["spot-local", "ondemand-local"]
    assert wants_tls(config, local, None) is False  # the fast path: plain tcp on loopback
    assert wants_tls(config, local, True) is True
    assert wants_tls(config, [*local, "hpc"], None) is True
    assert wants_tls(config, ["hpc"], True) is True
    with pytest.raises(ValueError, match=r"security=False: site\(s\) 'hpc' .* need TLS"):
        wants_tls(config, [*local, "hpc"], False)
    assert wants_tls(config, local, False) is False

    tls = Security(require_encryption=True)
    options: dict[str, Any] = _scheduler_options(config, ["hpc"], {"protocol": "tcp://"}, tls)
    assert options["protocol"] == "tls://" and options["security"] is tls
    assert "host" not in options  # listens where the other hosts can reach it
    assert _scheduler_options(config, local, None)["host"] == "127.0.0.1"
