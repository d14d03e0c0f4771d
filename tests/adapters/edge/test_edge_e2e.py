"""The whole loop on a real edge fleet (three OpenSSH nodes in network namespaces of this
machine, ``deploy/dev/edge-start.sh``): a job pinned by a node label and a latency bound, a
partitioned node whose attempt turns LOST and whose job resumes on the other node of the
same plant bit-identical (the zombie fenced off its checkpoints and killed after the heal), a
crashed node, and ``gridbridge sites check`` on the fleet.

The nodes share this machine's files (``file://`` checkpoints under ``tmp_path``, this venv's
python) but not its network: node1 is at plant-1, node2 and node3 at plant-2, and node1 is the
cheapest, node2 cheaper than node3."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import gridbridge
from gridbridge import Client, checkpoint
from gridbridge.config import GridConfig, parse_config
from gridbridge.demo import train
from gridbridge.states import AttemptState, JobState
from tests.support.edgefleet import Fleet
from tests.support.jobs import BLAS_SETTINGS
from tests.support.serving import wait_until

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

_LOCATIONS = ("plant-1", "plant-2", "plant-2")
_PRICES = (0.01, 0.02, 0.03)  # per hour: node1 cheapest, node2 cheaper than node3


# processes ------------------------------------------------------------------------------


def _procs(match: bytes) -> list[int]:
    """Live processes whose initial environment holds exactly the entry ``match``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] in {"Z", "X"}:
                continue
            if match in (d / "environ").read_bytes().split(b"\0"):
                found.append(int(d.name))
        except (OSError, IndexError):
            continue
    return found


def _attempt_procs(attempt_id: str) -> list[int]:
    return _procs(f"GRIDBRIDGE_ATTEMPT_ID={attempt_id}".encode())


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"


@pytest.fixture(autouse=True)
def _no_leftover_jobs(tmp_path: Path) -> Iterator[None]:
    """After each test: SIGKILL what is left of its attempts (a runtime whose command line
    names this test's folder), so no job outlives the test even when it fails."""
    yield
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            environ = (d / "environ").read_bytes()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if b"GRIDBRIDGE_ATTEMPT_ID=" in environ and str(tmp_path).encode() in cmd:
            print(f"killing a leftover job process {d.name}: {_cmdline(int(d.name))}")
            with contextlib.suppress(OSError):
                os.kill(int(d.name), signal.SIGKILL)


# the federation ---------------------------------------------------------------------------


_SWEEP_S = 2.0
"""Sweeps run often, as they would with a restarted control plane: the nodes of this fleet share
one filesystem and one PID namespace, and a sweep must still leave each node's attempts to it
(each node has a run folder of its own)."""


def _grid_data(tmp_path: Path, fleet: Fleet,
               sweep_interval_s: float = _SWEEP_S) -> dict[str, Any]:
    nodes = [{"name": n.name, "host": n.address, "port": n.port,
              "labels": {"location": location}, "cost_per_hour": price}
             for n, location, price in zip(fleet.nodes, _LOCATIONS, _PRICES, strict=True)]
    site = {"name": "edge", "adapter": "edge", "tier": "edge", "capacity": {"cpus": 12},
            "runtime": {"python": sys.executable, "shared_filesystem": True, "heartbeat_s": 1,
                        "env_names": list(BLAS_SETTINGS)},
            "options": {"nodes": nodes, "key_file": str(fleet.state / "client_key"),
                        "known_hosts": str(fleet.state / "known_hosts"),
                        "remote_dir": str(tmp_path / "remote"),
                        "lost_after_s": 3, "grace_s": 2}}
    return {"state_url": f"sqlite:///{tmp_path}/state.db",
            "checkpoint_root": str(tmp_path / "checkpoints"), "workdir": str(tmp_path / "run"),
            "limits": {"tick_interval_s": 0.2, "sweep_interval_s": sweep_interval_s},
            "sites": [site]}


def _grid(tmp_path: Path, fleet: Fleet, sweep_interval_s: float = _SWEEP_S) -> GridConfig:
    return parse_config(_grid_data(tmp_path, fleet, sweep_interval_s))


def _story(client: Client, job_id: str) -> str:
    """The job's events, attempts and placement decisions, for assertion messages."""
    lines = [f"job {job_id}: {client.store.job(job_id).state}"]
    lines += [f"  event {e.kind}: {e.old} -> {e.new}: {e.reason}"
              for e in client.store.events(job_id)]
    lines += [f"  attempt {a.number} {a.id} on {a.offer_key} token {a.token}: {a.state} "
              f"last_step {a.last_step}: {a.reason}" for a in client.store.attempts(job_id)]
    lines += [f"  decision #{d.attempt} {d.offer_key} chosen={d.chosen} "
              f"feasible={d.feasible}: {d.reason}" for d in client.store.decisions(job_id)]
    return "\n".join(lines)


def _identical(result: dict[str, Any], reference: dict[str, Any]) -> bool:
    return set(result) == set(reference) and all(
        result[k].dtype == v.dtype and result[k].tobytes() == v.tobytes()
        for k, v in reference.items())


def _wait_lost(client: Client, attempt_id: str, job_id: str, limit_s: float) -> float:
    """Seconds until the store has the attempt LOST (fails after ``limit_s``)."""
    started = time.monotonic()
    while True:
        attempt = client.store.attempt(attempt_id)
        if attempt.state is AttemptState.LOST:
            return time.monotonic() - started
        assert not attempt.state.terminal, (
            f"attempt ended {attempt.state}, not LOST\n{_story(client, job_id)}")
        assert time.monotonic() - started < limit_s, (
            f"attempt still {attempt.state} {limit_s:g} s after the cut\n"
            f"{_story(client, job_id)}")
        time.sleep(0.05)


_SAVED = "gridbridge: checkpoint.saved "


def _saved(log: str) -> list[dict[str, Any]]:
    """The ``checkpoint.saved`` events a job's log tells (step, token, ...)."""
    out = []
    for line in log.splitlines():
        at = line.find(_SAVED)
        if at >= 0:
            out.append(json.loads(line[at + len(_SAVED):]))
    return out


def _run_to_loss(tmp_path: Path, fleet: Fleet, action: str, heal: str) -> None:
    """A ~20 s training job pinned to plant-2 lands on node2; ``action`` hits node2 once it has
    committed a few checkpoints; the attempt must be LOST within 10 s, the job resumed on
    node3 and bit-identical to an uninterrupted run; ``heal`` mends node2; then no process of
    the first attempt may be left and no commit of its token may follow the resume."""
    node2, node3 = fleet.nodes[1], fleet.nodes[2]
    steps, every, pace_s = 2000, 100, 0.01
    reference = train(steps=steps, every=every, resumable=False)
    with Client(_grid(tmp_path, fleet)) as client:
        f = client.submit(train, kwargs={"steps": steps, "every": every, "pace_s": pace_s},
                          cpus=1, name=f"train-{action}",
                          constraints={"labels": {"location": "plant-2"}},
                          checkpoint={"resumable": True, "interval_s": 5, "keep_last": 1000})
        store = checkpoint.open(client.store.job(f.job_id).checkpoint_url)
        try:
            wait_until(lambda: f.status() is JobState.RUNNING
                       and (store.latest() or 0) >= 3 * every,
                       90, f"the job to run and commit step {3 * every}")
            [first] = client.store.attempts(f.job_id)
            assert first.offer_key == node2.name, _story(client, f.job_id)
            assert _attempt_procs(first.id), "the first attempt's runtime runs on this machine"
            committed_at_cut = store.latest()
            cut = time.monotonic()
            fleet.ctl(action, node2)
            if action == "crash":  # everything in the node's namespace died with it
                assert not _attempt_procs(first.id), [
                    _cmdline(p) for p in _attempt_procs(first.id)]
            lost_s = _wait_lost(client, first.id, f.job_id, 30)
            print(f"{action}: attempt LOST {lost_s:.2f} s after the cut "
                  f"(committed step {committed_at_cut} at the cut)")
            assert lost_s < 10, (f"LOST only {lost_s:.1f} s after the {action}\n"
                                 f"{_story(client, f.job_id)}")
            result = f.result(timeout=180)
            done_s = time.monotonic() - cut
            print(f"{action}: job done {done_s:.1f} s after the cut")
        finally:
            fleet.ctl(heal, node2)
        heal_at = time.monotonic()
        story = _story(client, f.job_id)
        attempts = client.store.attempts(f.job_id)
        assert [a.offer_key for a in attempts] == [node2.name, node3.name], story
        assert [a.state for a in attempts] == [AttemptState.LOST, AttemptState.SUCCEEDED], story
        first, second = attempts
        assert "unreachable" in first.reason, story
        assert _identical(result, reference), (
            "the resumed run must end bit-identical to an uninterrupted one\n" + story)
        logs = f.logs()
        resumed = [int(s) for s in re.findall(r"resumed from step (\d+)", logs)]
        assert len(resumed) == 1 and resumed[0] >= 3 * every, f"{resumed}\n{story}\n{logs}"
        resumed_from = resumed[0]

        # The zombie is gone once the node is back (it was fenced, then swept and cancelled).
        while _attempt_procs(first.id):
            assert time.monotonic() - heal_at < 15, (
                f"the zombie of {first.id} outlived the heal by 15 s: "
                f"{[_cmdline(p) for p in _attempt_procs(first.id)]}\n{story}")
            time.sleep(0.2)
        print(f"{action}: no process of the first attempt "
              f"{time.monotonic() - heal_at:.1f} s after the {heal}")

        # No commit of the first attempt's token after the resume point: in the store...
        tokens = {s: int(store.commit_record(s).get("token", 0)) for s in store.steps()}
        old = sorted(s for s, t in tokens.items() if t == first.token)
        assert old and max(old) <= resumed_from, (
            f"steps committed by token {first.token}: {old}, resumed from {resumed_from}\n"
            f"{tokens}\n{story}")
        assert all(t == second.token for s, t in tokens.items() if s > resumed_from), tokens
        assert steps in tokens and tokens[steps] == second.token, tokens
        # ... and in the zombie's own log on the node (its folder is on the shared disk).
        zombie_log = tmp_path / "remote" / first.id / "output.log"
        zombie_saved = _saved(zombie_log.read_text()) if zombie_log.exists() else []
        late = [e for e in zombie_saved
                if e["token"] == first.token and e["step"] > resumed_from]
        assert not late, f"the zombie committed after the fence: {late}\n{story}"
        fenced = [line for line in logs.splitlines() if "checkpoint.fenced" in line]
        print(f"{action}: resumed from {resumed_from}; token-{first.token} commits {old}; "
              f"zombie saves logged {[e['step'] for e in zombie_saved]}; fenced lines "
              f"{len(fenced)}")


# the tests --------------------------------------------------------------------------------


def test_a_job_pinned_by_label_and_latency_lands_on_the_right_node(
    tmp_path: Path, fleet: Fleet
) -> None:
    node1, node2, node3 = fleet.nodes
    reference = train(steps=50, every=10, resumable=False)
    with Client(_grid(tmp_path, fleet)) as client:
        f = client.submit(train, kwargs={"steps": 50, "every": 10}, cpus=1, name="pinned",
                          constraints={"labels": {"location": "plant-2"},
                                       "max_latency_ms": 500},
                          checkpoint={"resumable": True})
        result = f.result(timeout=120)
        story = _story(client, f.job_id)
        [attempt] = client.store.attempts(f.job_id)
        assert attempt.offer_key == node2.name, story
        assert attempt.state is AttemptState.SUCCEEDED, story
        assert _identical(result, reference), story
        decisions = {d.offer_key: d for d in client.store.decisions(f.job_id)}
        assert decisions[node2.name].chosen and decisions[node2.name].feasible, story
        refused = decisions[node1.name]
        assert not refused.feasible and not refused.chosen, story
        assert "lacks label location=plant-2 (has location=plant-1)" in refused.reason, story
        assert decisions[node3.name].feasible and not decisions[node3.name].chosen, story
        assert "dearer" in decisions[node3.name].reason, story

        # Every node is slower than a microsecond: the job waits and says why.
        g = client.submit(train, kwargs={"steps": 50, "every": 10}, cpus=1, name="too-far",
                          constraints={"labels": {"location": "plant-2"},
                                       "max_latency_ms": 0.001})
        try:
            wait_until(lambda: any(e.kind == "waiting" for e in g.story()), 30,
                       "a waiting event")
            time.sleep(1)  # a few more ticks: still not placed
            story = _story(client, g.job_id)
            assert g.status() is JobState.PENDING, story
            assert client.store.attempts(g.job_id) == [], story
            waiting = [e.reason for e in g.story() if e.kind == "waiting"]
            assert waiting and "latency" in waiting[0], story
            assert re.search(r"latency [0-9.]+ ms > max 0\.001 ms", waiting[0]), story
            rows = client.store.decisions(g.job_id)
            assert rows and not any(d.feasible for d in rows), story
            assert all("latency" in d.reason for d in rows), story
        finally:
            g.cancel()
        assert g.wait(30) is JobState.CANCELLED


def test_a_partitioned_node_is_lost_within_10_s_and_the_job_resumes_bit_identical(
    tmp_path: Path, fleet: Fleet
) -> None:
    _run_to_loss(tmp_path, fleet, "partition", "heal")


def test_a_crashed_node_is_handled_the_same(tmp_path: Path, fleet: Fleet) -> None:
    _run_to_loss(tmp_path, fleet, "crash", "restart")


def test_sites_check_prints_a_table_for_the_fleet(tmp_path: Path, fleet: Fleet) -> None:
    config = tmp_path / "gridbridge.yaml"
    config.write_text(yaml.safe_dump(_grid_data(tmp_path, fleet)))

    def check() -> tuple[int, dict[str, dict[str, Any]], str]:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "gridbridge.cli", "--config", str(config),
                               "sites", "check", "edge", "--format", "json"],
                              capture_output=True, text=True, timeout=120, check=False,
                              cwd=tmp_path)
        print(f"sites check: rc {proc.returncode} in {time.monotonic() - started:.1f} s")
        said = f"rc {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        try:
            rows = json.loads(proc.stdout)
        except ValueError:
            pytest.fail(f"not JSON: {said}")
        return proc.returncode, {r["node"]: r for r in rows}, said

    code, rows, said = check()
    assert code == 0, said
    assert list(rows) == [n.name for n in fleet.nodes], said
    for row in rows.values():
        assert row["reachable"] == "yes" and row["host_key_ok"] == "yes", said
        assert row["python"] == sys.version.split()[0], said
        assert row["gridbridge"] == gridbridge.__version__, said
        assert isinstance(row["rtt_ms"], int | float) and row["rtt_ms"] >= 0, said
        assert row["cpus"] and row["memory_gb"], said
        assert row["error"] == "", said

    cut = fleet.nodes[1]
    fleet.ctl("partition", cut)
    try:
        code, rows, said = check()
    finally:
        fleet.ctl("heal", cut)
    assert code == 1, said
    assert rows[cut.name]["reachable"] == "no", said
    assert rows[cut.name]["host_key_ok"] == "", said  # not reached: its key was not seen
    assert rows[cut.name]["rtt_ms"] is None and rows[cut.name]["error"], said
    for other in (fleet.nodes[0], fleet.nodes[2]):
        assert rows[other.name]["reachable"] == "yes", said
        assert rows[other.name]["host_key_ok"] == "yes", said


def test_a_sweep_leaves_a_job_on_another_node_alone(tmp_path: Path, fleet: Fleet) -> None:
    node2 = fleet.nodes[1]
    with Client(_grid(tmp_path, fleet, sweep_interval_s=2)) as client:
        f = client.submit(train, kwargs={"steps": 600, "every": 100, "pace_s": 0.01}, cpus=1,
                          name="swept", constraints={"labels": {"location": "plant-2"}},
                          checkpoint={"resumable": True})
        state = f.wait(120)
        story = _story(client, f.job_id)
        attempts = client.store.attempts(f.job_id)
    assert state is JobState.SUCCEEDED, story
    assert [(a.offer_key, a.state) for a in attempts] == [
        (node2.name, AttemptState.SUCCEEDED)], story
