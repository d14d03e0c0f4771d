"""Slurm driven over SSH, as from a laptop to a cluster's login node: the adapter contract
through a real OpenSSH server (paramiko, strict host keys), and what happens when the host key
is unknown or has changed: a clear refusal, and nothing run."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gridbridge.adapters._run import HostKeyRefused, SSHRunner, SSHTarget
from gridbridge.adapters.slurm import SlurmAdapter
from gridbridge.config import Capacity, RuntimeSettings, SiteConfig
from gridbridge.testing import AdapterContract

pytestmark = [pytest.mark.slurm, pytest.mark.ssh]


def login_site(ssh_login: dict[str, Any], **login: Any) -> SiteConfig:
    target = {k: ssh_login[k] for k in ("host", "port", "user", "key_file", "known_hosts")}
    return SiteConfig(name="remote", adapter="slurm", capacity=Capacity(cpus=64),
                      uncertain_submit="replace",
                      runtime=RuntimeSettings(python=sys.executable, shared_filesystem=True),
                      options={"partitions": {"normal": {}}, "login": {**target, **login}})


class TestSlurmOverSSHContract(AdapterContract):
    @pytest.fixture
    def adapter(self, tmp_path: Path, slurm_cluster: dict[str, str],
                ssh_login: dict[str, Any]) -> Iterator[SlurmAdapter]:
        site = login_site(ssh_login)
        site = site.model_copy(update={"options": {
            **site.options, "remote_dir": str(tmp_path / "work" / "remote")}})
        adapter = SlurmAdapter(site, tmp_path / "work")
        assert isinstance(adapter.host.runner, SSHRunner)
        yield adapter
        adapter.cancel([o.native_id for o in adapter.owned()])


def test_an_unknown_host_key_is_refused_and_nothing_runs(
    tmp_path: Path, ssh_login: dict[str, Any]
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    marker = tmp_path / "ran"
    target = SSHTarget(host=ssh_login["host"], port=ssh_login["port"], user=ssh_login["user"],
                       key_file=ssh_login["key_file"], known_hosts=str(empty))
    with pytest.raises(HostKeyRefused, match="unknown") as info:
        SSHRunner(target).run(["touch", str(marker)])
    assert "ssh-keyscan" in str(info.value), "the message says how to add the key"
    assert not marker.exists()


def test_a_changed_host_key_is_refused_and_nothing_runs(
    tmp_path: Path, ssh_login: dict[str, Any]
) -> None:
    # known_hosts names the server with another key: what a man in the middle looks like.
    import paramiko

    other = paramiko.Ed25519Key.from_private_key_file(ssh_login["key_file"])
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[{ssh_login['host']}]:{ssh_login['port']} {other.get_name()} "
                     f"{other.get_base64()}\n")
    marker = tmp_path / "ran"
    target = SSHTarget(host=ssh_login["host"], port=ssh_login["port"], user=ssh_login["user"],
                       key_file=ssh_login["key_file"], known_hosts=str(wrong))
    with pytest.raises(HostKeyRefused, match="CHANGED"):
        SSHRunner(target).run(["touch", str(marker)])
    assert not marker.exists()


def test_a_slurm_site_behind_an_unknown_key_refuses_before_any_command(
    tmp_path: Path, slurm_cluster: dict[str, str], ssh_login: dict[str, Any]
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    adapter = SlurmAdapter(login_site(ssh_login, known_hosts=str(empty)), tmp_path / "work")
    with pytest.raises(HostKeyRefused):
        adapter.offers()


def test_runtime_env_names_travel_to_the_job_over_ssh(
    tmp_path: Path, slurm_cluster: dict[str, str], ssh_login: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # The login node's environment is not ours: the values of runtime.env_names must reach the
    # job anyway, literally (quotes, $(...), newlines), and nothing else of ours must.
    value = "it's $(touch pwned) \"a;b\"\nline2"
    monkeypatch.setenv("GB_STORAGE_HINT", value)
    monkeypatch.setenv("GB_NOT_LISTED", "private")
    site = login_site(ssh_login)
    site = site.model_copy(update={
        "runtime": site.runtime.model_copy(update={"env_names": ("GB_STORAGE_HINT",)}),
        "options": {**site.options, "remote_dir": str(tmp_path / "remote")}})
    adapter = SlurmAdapter(site, tmp_path / "work")
    out = tmp_path / "env.json"
    req = AdapterContract().request(tmp_path, sys.executable, """
        import json, os, sys
        json.dump({k: os.environ.get(k) for k in ("GB_STORAGE_HINT", "GB_NOT_LISTED")},
                  open(sys.argv[1], "w"))
        """, str(out))
    nid = adapter.submit(req)
    deadline = time.monotonic() + 60
    while not adapter.poll([nid])[nid].state.terminal:
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.2)
    assert json.loads(out.read_text()) == {"GB_STORAGE_HINT": value, "GB_NOT_LISTED": None}
    assert not (tmp_path / "remote" / "pwned").exists()
