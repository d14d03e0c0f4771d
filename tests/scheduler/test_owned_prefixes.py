"""Owned checkpoint prefixes: the control plane raises a job's fence only on a prefix the
config lets that job use, only for that job, and off the site workers under a short timeout.

Each test reproduces one way a job could reach beyond its own prefix on the old code: naming
another job's prefix, an http address the control plane would call (SSRF), a relative URL,
a prefix whose ``fence.json`` names another job, and storage that accepts a connection and
never answers (which held the shared site)."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gridbridge.client import Client
from gridbridge.config import ConfigError, load_config
from gridbridge.spec import JobSpec
from gridbridge.states import JobState

PASS = [sys.executable, "-c", "pass"]


def make_client(tmp_path: Path, **checkpoint_settings: Any) -> Client:
    data: dict[str, Any] = {
        "state_url": "sqlite:///state.db", "checkpoint_root": "ckpt", "workdir": "run",
        "limits": {"tick_interval_s": 0.1, "lease_s": 30, "site_deadline_s": 1.0},
        "sites": [{"name": "good", "adapter": "local", "tier": "cloud",
                   "capacity": {"cpus": 4}, "price": {"per_core_hour": 0.02},
                   "options": {"grace_s": 1}}],
    }
    if checkpoint_settings:
        data["checkpoint"] = checkpoint_settings
    path = tmp_path / "gridbridge.yaml"
    path.write_text(yaml.safe_dump(data))
    return Client(load_config(path), start=False)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    c = make_client(tmp_path)
    yield c
    c.close()


class Listener:
    """A local TCP socket that accepts connections, counts them and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)  # held open, never answered

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
        self.sock.close()
        self._thread.join(timeout=5)
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


def run_until_done(client: Client, job: str, ticks: int = 200) -> JobState:
    for _ in range(ticks):
        client.reconciler.tick()
        state = client.store.job(job).state
        if state.terminal:
            return state
        time.sleep(0.05)
    raise AssertionError(f"{job} not done after {ticks} ticks")


# at submission ---------------------------------------------------------------------------------

def test_another_jobs_prefix_is_refused_at_submission(client: Client) -> None:
    victim = client.submit_command(PASS).job_id
    root = client.config.checkpoint_root
    for url in (f"{root}/{victim}", f"{root}/{victim}/", f"{root}/elsewhere"):
        with pytest.raises(ValueError, match=r"checkpoint\.url must not lie under checkpoint_root"):
            client.submit_command(PASS, checkpoint={"url": url})
    assert [j.id for j in client.store.jobs()] == [victim]


@pytest.mark.parametrize("scheme", ["http", "https", "HTTP"])
def test_a_web_address_is_refused_at_submission_and_never_called(
    client: Client, listener: Listener, scheme: str,
) -> None:
    url = f"{scheme}://127.0.0.1:{listener.port}/ckpt"
    with pytest.raises(ValueError, match=r"checkpoint.url: the scheme '.*' is not allowed; "
                                         r"allowed schemes: .*file.*s3"):
        client.submit_command(PASS, checkpoint={"url": url})
    client.reconciler.tick()
    time.sleep(0.2)
    assert listener.accepted == []
    assert client.store.jobs() == []


@pytest.mark.parametrize("url", ["ckpt/mine", "./mine", "mine", "file:mine",
                                 "file:///data/team-a/../team-b", "simplecache::s3://b/x"])
def test_a_relative_or_escaping_url_is_refused_at_submission(client: Client, url: str) -> None:
    with pytest.raises(ValueError, match=r"checkpoint\.url"):
        client.submit_command(PASS, checkpoint={"url": url})
    assert client.store.jobs() == []


def test_only_the_teams_allowed_prefixes_are_accepted(tmp_path: Path) -> None:
    vision, shared = (tmp_path / "vision").as_uri(), (tmp_path / "shared").as_uri()
    c = make_client(tmp_path, allowed_prefixes={"vision": [vision], "*": [shared]})
    try:
        c.submit_command(PASS, checkpoint={"url": f"{vision}/run-1"}, owner={"team": "vision"})
        c.submit_command(PASS, checkpoint={"url": f"{shared}/x"}, owner={"team": "audio"})
        c.submit_command(PASS, owner={"team": "audio"})  # the derived prefix is always its own
        with pytest.raises(ValueError) as refused:
            c.submit_command(PASS, checkpoint={"url": f"{vision}/run-2"},
                             owner={"team": "audio"})
        assert str(refused.value) == (
            "invalid job option: checkpoint.url must lie under a prefix allowed for team "
            f"'audio' (checkpoint.allowed_prefixes: {shared})")
        with pytest.raises(ValueError, match="team 'vision'"):
            c.submit_command(PASS, checkpoint={"url": f"{vision}-other/x"},
                             owner={"team": "vision"})
    finally:
        c.close()


def test_an_allowed_prefix_must_itself_be_a_checkpoint_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"checkpoint.allowed_prefixes: .*a prefix: the "
                                          r"scheme 'http' is not allowed"):
        make_client(tmp_path, allowed_prefixes={"lab": ["http://10.0.0.1/x"]})


# in the reconciler, before a fence is raised ----------------------------------------------------

def test_a_web_address_written_into_the_store_is_refused_before_any_io(
    client: Client, listener: Listener,
) -> None:
    """The store may be written by others: the reconciler checks again before fencing."""
    spec = JobSpec(name="x", command=tuple(PASS))
    job = client.store.create_job(spec, f"http://127.0.0.1:{listener.port}/ckpt").id
    assert run_until_done(client, job) is JobState.FAILED
    assert "checkpoint.url: the scheme 'http' is not allowed" in (client.store.job(job).error
                                                                  or "")
    time.sleep(0.2)
    assert listener.accepted == []


def test_a_fence_naming_another_job_is_not_raised(client: Client, tmp_path: Path) -> None:
    url = (tmp_path / "victims-own").as_uri()
    (tmp_path / "victims-own").mkdir()  # the fence the victim's attempts raised
    (tmp_path / "victims-own" / "fence.json").write_text(json.dumps(
        {"format": "gridbridge-fence/1", "token": 5, "time": "2025-01-01T00:00:00.000Z",
         "job": "j-victim"}))
    job = client.submit_command(PASS, checkpoint={"url": url}).job_id
    assert run_until_done(client, job) is JobState.FAILED
    error = client.store.job(job).error or ""
    assert "checkpoint prefix refused" in error and "j-victim" in error, error
    fence = json.loads((tmp_path / "victims-own" / "fence.json").read_text())
    assert (fence["token"], fence["job"]) == (5, "j-victim")


def test_the_control_plane_names_the_job_in_its_fence(client: Client) -> None:
    job = client.submit_command(PASS).job_id
    assert run_until_done(client, job) is JobState.SUCCEEDED
    url = client.store.job(job).checkpoint_url
    fence = json.loads(Path(url.removeprefix("file://"), "fence.json").read_text())
    assert (fence["job"], fence["token"]) == (job, 1)


# storage that never answers --------------------------------------------------------------------

def test_a_never_answering_prefix_delays_no_other_job(
    tmp_path: Path, listener: Listener, monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("s3fs")
    import fsspec.config

    monkeypatch.setitem(fsspec.config.conf, "s3", {
        "key": "k", "secret": "s", "skip_instance_cache": True,
        "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{listener.port}",
                          "region_name": "us-east-1"}})
    c = make_client(tmp_path, allowed_prefixes={"*": ["s3://hangs"]}, fence_timeout_s=1.0)
    try:
        slow = c.submit_command(PASS, checkpoint={"url": "s3://hangs/a"}).job_id
        c.reconciler.tick()  # placed; its fence is left waiting on the socket
        innocent = c.submit_command(PASS).job_id
        report = c.reconciler.tick()
        assert report.placed.get(innocent) == "good"
        assert f"{innocent}.1" in report.submitted, "the innocent job waited for the slow fence"
        assert run_until_done(c, innocent) is JobState.SUCCEEDED
        assert run_until_done(c, slow) is JobState.FAILED
        assert "did not answer within 1s" in (c.store.job(slow).error or "")
        assert listener.accepted, "the slow prefix's storage was never reached"
        health = c.store.site_health().get("good")
        assert health is None or health.healthy, health
        assert not [e for e in c.store.site_events("good") if "degraded" in e.kind + e.reason]
    finally:
        c.close()
