"""How a storage probe's answer reads in ``config check`` (:mod:`gridbridge.checks`): the
probe's own output judged once for every site kind, and a probe that could not be made (a
busy queue, no way to submit) said assumed rather than failed."""

from __future__ import annotations

import os
from pathlib import Path

from gridbridge.checks import NOT_PROBED, Finding, check_identities, probe_answer, probe_findings
from gridbridge.config import GridConfig

URL = "s3://bucket/root"


def test_a_probe_that_found_the_root_writable_answers_nothing() -> None:
    assert probe_answer(URL, f"starting\n{URL}: writable\n", 0) == ""
    assert probe_answer(URL, f"{URL}: writable\n", None) == ""  # Slurm keeps no exit status


def test_a_probe_that_failed_says_its_last_line_without_the_url_or_a_password() -> None:
    said = (f"{URL}: not writable: EndpointConnectionError: Could not connect to "
            "http://user:s3cr3t@10.0.0.1:9/x\n")
    why = probe_answer(URL, said, 1)
    assert why.startswith("not writable: EndpointConnectionError") and "s3cr3t" not in why
    assert probe_answer(URL, "", 137) == "the probe exited 137"
    assert probe_answer(URL, f"{URL}: writable\n", 1) == "the probe exited 1 after writing"


def test_findings_fail_a_failed_probe_and_pass_one_that_was_not_made() -> None:
    found = {"normal": "", "gpu": "not writable: denied",
             "scavenger": f"{NOT_PROBED}the probe job waited more than 60 s"}
    assert probe_findings("site c", URL, found, "partition") == [
        Finding("site c partition gpu", False, f"cannot reach {URL}: not writable: denied"),
        Finding("site c partition normal", True, f"its runtime reaches {URL}"),
        Finding("site c partition scavenger", True,
                f"assumed to reach {URL} (not probed: the probe job waited more than 60 s)"),
    ]


def _federation(tmp_path: Path, root: str, **site: object) -> GridConfig:
    return GridConfig.model_validate({
        "state_url": f"sqlite:///{tmp_path}/state.db", "checkpoint_root": root,
        "workdir": str(tmp_path / "run"),
        "sites": [{"name": "a", "adapter": "local", "capacity": {"cpus": 1}, **site}]})


def test_a_site_where_users_share_the_service_account_is_a_warning(tmp_path: Path) -> None:
    [found] = check_identities(_federation(tmp_path, f"file://{tmp_path}/ckpt"))
    assert found.ok and found.warning and found.what == "site a run_as"
    assert "service's own account" in found.detail and "run_as: user" in found.detail


def test_run_as_user_names_each_login_this_host_lacks(tmp_path: Path) -> None:
    config = _federation(tmp_path, f"file://{tmp_path}/ckpt", run_as="user",
                         users={"alice": "gb-no-such-login"})
    found = check_identities(config)
    assert not any(f.ok for f in found)
    assert any(f.detail == "users.alice: no Unix user 'gb-no-such-login' on this host"
               for f in found), found
    if os.geteuid() != 0:
        assert any("must run as root" in f.detail for f in found), found


def test_run_as_user_over_object_storage_says_what_stays_shared(tmp_path: Path) -> None:
    found = check_identities(_federation(tmp_path, "s3://bucket/ckpt", run_as="user"))
    if os.geteuid() != 0:
        assert [f.ok for f in found] == [False]
        return
    [one] = found
    assert one.ok and one.warning and "storage credentials" in one.detail
