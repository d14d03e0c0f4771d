"""The control plane as root touches a job's folder as the job's account
(:mod:`gridbridge.fsowner`): a link the job planted in its own folder leads nowhere its
account could not go, for every local storage path (records, checkpoints, logs), and what
root creates there is the account's. Root only: the test makes a Unix account."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridbridge import checkpoint
from gridbridge.checkpoint._backend import LocalBackend
from gridbridge.config import SiteConfig
from gridbridge.fsowner import account, as_owner, give, owner_along, reachable_problem
from gridbridge.logparts import open_log
from gridbridge.wire import exists, get_bytes, put_bytes
from tests.support.accounts import unix_users

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: it makes a Unix account")


@pytest.fixture
def setting() -> Iterator[tuple[Path, Path, str]]:
    """A folder of the job's account (``job``) and one only root may touch (``vault``)."""
    base = Path(tempfile.mkdtemp(prefix="gbfsowner-"))
    base.chmod(0o755)
    with unix_users(1) as [login]:
        job, vault = base / "job", base / "vault"
        job.mkdir(mode=0o700)
        shutil.chown(job, login, login)
        vault.mkdir(mode=0o700)
        (vault / "secret.json").write_text('{"token": 99, "secret": "ROOT-ONLY"}')
        try:
            yield job, vault, login
        finally:
            shutil.rmtree(base, ignore_errors=True)


def _plant(link: Path, target: Path, login: str) -> None:
    """A link as the job would make it: in its folder, owned by its account."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    entry = pwd.getpwnam(login)
    os.lchown(link, entry.pw_uid, entry.pw_gid)
    for folder in [link.parent, *link.parent.parents]:
        if folder.stat().st_uid == 0:
            break
        os.lchown(folder, entry.pw_uid, entry.pw_gid)


def test_records_written_through_a_planted_link_land_nowhere(setting: tuple[Path, Path, str]
                                                            ) -> None:
    job, vault, login = setting
    _plant(job / "attempts" / "2", vault, login)
    with pytest.raises(PermissionError):
        put_bytes(f"file://{job}/attempts/2/launch.json", b"{}")
    assert sorted(os.listdir(vault)) == ["secret.json"]


def test_a_planted_link_reads_back_nothing(setting: tuple[Path, Path, str]) -> None:
    job, vault, login = setting
    _plant(job / "result.json", vault / "secret.json", login)
    with pytest.raises(PermissionError):
        get_bytes(f"file://{job}/result.json")
    _plant(job / "logs" / "output.log.000000", vault / "secret.json", login)
    assert open_log(f"file://{job}/logs") is None  # as if there were none
    assert not exists(f"file://{job}/result.json")  # the account cannot see it either


def test_a_checkpoint_fence_is_not_raised_through_a_link(setting: tuple[Path, Path, str]
                                                        ) -> None:
    job, vault, login = setting
    _plant(job / "ckpt", vault, login)
    with pytest.raises(PermissionError):
        checkpoint.raise_fence(f"file://{job}/ckpt", 5, job="j1")
    assert json.loads((vault / "secret.json").read_text())["token"] == 99
    assert sorted(os.listdir(vault)) == ["secret.json"]
    backend = LocalBackend(None, str(job / "ckpt"))
    with pytest.raises(PermissionError):
        backend.put(f"{job}/ckpt/c/0", memoryview(b"x"))
    with pytest.raises(PermissionError):
        backend.listdir(str(job / "ckpt"))  # nor is the vault listed


def test_what_root_writes_in_a_job_folder_is_the_jobs_and_root_is_itself_after(
        setting: tuple[Path, Path, str]) -> None:
    job, vault, login = setting
    uid = pwd.getpwnam(login).pw_uid
    put_bytes(f"file://{job}/attempts/1/launch.json", b'{"a": 1}')
    with checkpoint.open(f"file://{job}/ckpt") as store:
        store.save(1, {"w": [1.0, 2.0]})
    for path in [job / "attempts", job / "attempts" / "1" / "launch.json", job / "ckpt",
                 job / "ckpt" / "commits"]:
        assert path.stat().st_uid == uid, path
    assert get_bytes(f"file://{job}/attempts/1/launch.json") == b'{"a": 1}'
    with pytest.raises(PermissionError), as_owner(job / "x"):
        (vault / "secret.json").read_text()
    (vault / "after").write_text("root again")  # the thread's identity was given back
    assert (vault / "after").stat().st_uid == 0


def test_the_owner_is_found_top_down(setting: tuple[Path, Path, str]) -> None:
    job, vault, login = setting
    uid = pwd.getpwnam(login).pw_uid
    assert owner_along(vault / "secret.json") is None
    assert owner_along(job / "a" / "b")[0] == uid  # type: ignore[index]
    _plant(job / "etc", Path("/etc"), login)
    assert owner_along(job / "etc" / "passwd")[0] == uid  # type: ignore[index]  # not /etc's


def test_give_hands_over_roots_tree_and_refuses_anothers(setting: tuple[Path, Path, str]
                                                       ) -> None:
    job, vault, login = setting
    who = account(login)
    prefix = vault.parent / "prefix"
    (prefix / "inner").mkdir(parents=True)
    (prefix / "inner" / "payload.pkl").write_bytes(b"p")
    give(prefix, who)
    for path in (prefix, prefix / "inner", prefix / "inner" / "payload.pkl"):
        assert path.stat().st_uid == who.uid, path
    assert prefix.stat().st_mode & 0o777 == 0o700
    give(prefix, who)  # again: nothing to do
    with pytest.raises(PermissionError, match="belongs to uid"):
        give(job / "sub", who)  # under the account's own folder: root does not go there
    os.chown(prefix, 12345, 12345)
    with pytest.raises(PermissionError, match="uid 12345"):
        give(prefix, who)
    (vault.parent / "link").symlink_to(vault)
    with pytest.raises(PermissionError, match="not a folder"):
        give(vault.parent / "link", who)
    with pytest.raises(ValueError, match="root"):
        account("root")
    with pytest.raises(KeyError, match="no Unix user"):
        account("gb-nobody-here")


def test_reachable_names_the_folder_the_account_cannot_enter(setting: tuple[Path, Path, str]
                                                            ) -> None:
    job, vault, login = setting
    who = account(login)
    assert reachable_problem(job / "x", who) is None
    problem = reachable_problem(vault / "x", who)
    assert problem is not None and str(vault) in problem and "chmod o+x" in problem


def test_run_as_user_is_for_local_sites_and_names_the_valid_choice() -> None:
    site = {"name": "c", "capacity": {"cpus": 1}, "run_as": "user"}
    SiteConfig.model_validate({**site, "adapter": "local", "users": {"alice": "al"}})
    with pytest.raises(ValueError, match=r"local sites only.*'slurm'.*valid for it: service"):
        SiteConfig.model_validate({**site, "adapter": "slurm"})
    with pytest.raises(ValueError, match="run_as"):
        SiteConfig.model_validate({**site, "adapter": "local", "run_as": "nobody"})
    with pytest.raises(ValueError, match="run_as: user only"):
        SiteConfig.model_validate({**site, "adapter": "local", "run_as": "service",
                                   "users": {"alice": "al"}})
