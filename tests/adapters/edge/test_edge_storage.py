"""Storage is checked from where jobs run: ``config check`` runs the storage probe on every
edge node (the runtime's interpreter, started as an attempt's runtime is, with the variables
the site passes on) and names each node that cannot reach the checkpoint root, with the URL.

The fleet's nodes are network namespaces that reach only their own /24 and the services net:
the dev S3 gateway on 127.0.0.1 is out of their reach, the same gateway shared on 10.213.0.1
(``deploy/dev/s3-share-start.sh``) is in it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.edgefleet import Fleet, s3_shared  # noqa: F401 - the shared gateway

pytestmark = [pytest.mark.ssh, pytest.mark.s3]


def _config(tmp_path: Path, fleet: Fleet, bucket: str) -> Path:
    names = ["FSSPEC_S3_ENDPOINT_URL", "FSSPEC_S3_KEY", "FSSPEC_S3_SECRET"]
    nodes = [{"name": n.name, "host": n.address, "port": n.port, "cpus": 2} for n in fleet.nodes]
    path = tmp_path / "gridbridge.yaml"
    path.write_text(yaml.safe_dump({
        "state_url": f"sqlite:///{tmp_path / 'state.db'}", "workdir": str(tmp_path / "run"),
        "checkpoint_root": f"s3://{bucket}/check-{uuid.uuid4().hex[:8]}",
        "sites": [{"name": "edge", "adapter": "edge", "tier": "edge", "capacity": {"cpus": 6},
                   "runtime": {"python": sys.executable, "env_names": names},
                   "options": {"nodes": nodes, "key_file": fleet.client_key,
                               "known_hosts": fleet.known_hosts,
                               "remote_dir": str(tmp_path / "remote")}}]}))
    return path


def _config_check(config: Path, options: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="400")
    env.update({f"FSSPEC_S3_{k.upper()}": v for k, v in options.items()})
    return subprocess.run([sys.executable, "-m", "gridbridge.cli", "--config", str(config),
                           "config", "check"], env=env, capture_output=True, text=True,
                          timeout=180, check=False)


def _rows(table: str) -> dict[str, tuple[str, str]]:
    """``config check``'s table: check -> (ok, detail)."""
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 3:
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def test_nodes_that_cannot_reach_the_store_fail_config_check_by_name(
    fleet: Fleet, s3_server: dict[str, Any], tmp_path: Path
) -> None:
    config = _config(tmp_path, fleet, s3_server["bucket"])
    done = _config_check(config, s3_server["storage_options"])  # http://127.0.0.1:8333
    assert done.returncode == 1, done.stdout + done.stderr
    root = yaml.safe_load(config.read_text())["checkpoint_root"]
    rows = _rows(done.stdout)
    assert rows["checkpoint_root"][0] == "yes", rows  # this host reaches it
    for node in fleet.nodes:
        ok, detail = rows[f"site edge node {node.name}"]
        assert ok == "NO" and detail.startswith(f"cannot reach {root}: not writable: "), detail
        assert "EndpointConnectionError" in detail and "http://127.0.0.1:8333" in detail, detail
    assert "reaches s3://" not in done.stdout


def test_the_shared_gateway_is_reached_from_every_node(
    fleet: Fleet, s3_shared: dict[str, Any], tmp_path: Path  # noqa: F811 - the fixture
) -> None:
    config = _config(tmp_path, fleet, s3_shared["bucket"])
    done = _config_check(config, s3_shared["storage_options"])  # http://10.213.0.1:8433
    assert done.returncode == 0, done.stdout + done.stderr
    rows = _rows(done.stdout)
    root = yaml.safe_load(config.read_text())["checkpoint_root"]
    for node in fleet.nodes:
        assert rows[f"site edge node {node.name}"] == ("yes", f"its runtime reaches {root}")


def _sites_check(config: Path, options: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="400")
    env.update({f"FSSPEC_S3_{k.upper()}": v for k, v in options.items()})
    return subprocess.run([sys.executable, "-m", "gridbridge.cli", "--config", str(config),
                           "sites", "check", "edge", "--format", "json"], env=env,
                          capture_output=True, text=True, timeout=180, check=False)


def test_sites_check_names_each_node_that_cannot_reach_the_store(
    fleet: Fleet, s3_server: dict[str, Any], tmp_path: Path
) -> None:
    import json

    config = _config(tmp_path, fleet, s3_server["bucket"])
    root = yaml.safe_load(config.read_text())["checkpoint_root"]
    out_of_reach = _sites_check(config, s3_server["storage_options"])  # 127.0.0.1 only
    assert out_of_reach.returncode == 1, out_of_reach.stdout + out_of_reach.stderr
    rows = {r["node"]: r for r in json.loads(out_of_reach.stdout)}
    assert set(rows) == {n.name for n in fleet.nodes}
    for row in rows.values():
        assert row["reachable"] == "yes" and row["storage"] == "NO", row
        assert f"cannot reach {root}" in row["error"], row


def test_sites_check_passes_where_every_node_reaches_the_store(
    fleet: Fleet, s3_shared: dict[str, Any], tmp_path: Path  # noqa: F811 - the fixture
) -> None:
    import json

    config = _config(tmp_path, fleet, s3_shared["bucket"])
    done = _sites_check(config, s3_shared["storage_options"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert {r["storage"] for r in json.loads(done.stdout)} == {"yes"}


def _job_config(tmp_path: Path, fleet: Fleet, s3: dict[str, Any], bucket: str) -> Path:
    """Two nodes: the first the cheap one (placement tries it first), the second dearer."""
    path = _config(tmp_path, fleet, bucket)
    data = yaml.safe_load(path.read_text())
    first, second = fleet.nodes[:2]
    data["sites"][0]["options"]["nodes"] = [
        {"name": first.name, "host": first.address, "port": first.port, "cpus": 2,
         "cost_per_hour": 0.01},
        {"name": second.name, "host": second.address, "port": second.port, "cpus": 2,
         "cost_per_hour": 0.05}]
    data["sites"][0]["capacity"] = {"cpus": 4}
    data["limits"] = {"tick_interval_s": 0.2, "reject_backoff_s": 300}
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_job_whose_first_node_cannot_reach_storage_ends_on_another_node(
    fleet: Fleet, s3_shared: dict[str, Any], tmp_path: Path,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fsspec

    from gridbridge.client import Client
    from gridbridge.states import AttemptState, JobState

    for key, value in s3_shared["storage_options"].items():  # for the runtimes on the nodes
        monkeypatch.setenv(f"FSSPEC_S3_{key.upper()}", str(value))
    monkeypatch.setitem(fsspec.config.conf, "s3", dict(s3_shared["storage_options"]))
    config = _job_config(tmp_path, fleet, s3_shared, s3_shared["bucket"])
    cut = fleet.nodes[0]
    # The node keeps its own /24 (SSH works) but loses its route to the services net, where
    # the store is: its runtime cannot read the launch record.
    route = subprocess.run(["ip", "-n", cut.netns, "route", "show", "10.213.0.0/24"],
                           capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(["ip", "-n", cut.netns, "route", "del", "10.213.0.0/24"], check=True)
    try:
        with Client(config) as client:
            future = client.submit_command(["true"], name="reach", max_attempts=3)
            state = future.wait(timeout=120)
            attempts = client.store.attempts(future.job_id)
            story = [(a.number, a.offer_key, a.state, a.reason) for a in attempts]
    finally:
        subprocess.run(["ip", "-n", cut.netns, "route", "replace", *route], check=True)
    assert state is JobState.SUCCEEDED, story
    first, *rest = attempts
    assert first.offer_key == cut.name and first.state is AttemptState.LOST, story
    assert "its last words: gridbridge-run: cannot read the launch record s3://" in (
        first.reason), story
    assert [a.offer_key for a in rest] == [fleet.nodes[1].name], story
