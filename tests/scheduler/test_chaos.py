"""A bounded, reproducible ``kill -9`` chaos loop against ``gridbridge serve``.

24 short jobs on two local sites (5 cpus in all, so they queue). For a few rounds a ``serve``
(every third round two at once, so the second one stands by on the lease) runs for a random
0.3-2.5 s after it is up and is then killed with SIGKILL; between rounds nothing reconciles,
while the attempts already started go on (or finish) on their own. A last ``serve`` then
drives everything to the end. Afterwards no job may be lost, stuck or run to completion twice,
no two attempts of one job may have run at the same time, and every charged attempt has
exactly one ledger row.

The schedule is drawn from ``random.Random(seed)``; the seed is ``$GRIDBRIDGE_CHAOS_SEED`` or
:data:`DEFAULT_SEED`, and every assertion message names it, so a failure can be replayed with
``GRIDBRIDGE_CHAOS_SEED=<seed> pytest tests/scheduler/test_chaos.py``. (Process timing is not
seeded, so a replay draws the same jobs and kill times, not necessarily the same interleaving.)

The loop runs twice: on a SQLite file and on a real PostgreSQL database (``state_url``).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from gridbridge.client import Client, JobFuture
from gridbridge.procinfo import proc_start_time
from gridbridge.states import AttemptState, JobState
from tests.support.serving import kill_attempt_groups, start_serve, two_site_config

pytestmark = pytest.mark.slow

DEFAULT_SEED = 20240611
JOBS = 24
ROUNDS = 6
FINAL_TIMEOUT_S = 180.0
STARTUP_TIMEOUT_S = 60.0
BANNER = b"gridbridge serve:"
SITES = {"a": 3, "b": 2}
UNCHARGED = {"rejected", "gave-up", "never-submitted", "site-gone"}
"""``native_state`` of an attempt concluded without a ledger row (it never started)."""

JOB = (
    "import sys, time\n"
    "time.sleep(float(sys.argv[2]))\n"
    "with open(sys.argv[1], 'a') as f:\n"
    "    f.write(sys.argv[3] + '\\n')\n"
)


def _seed() -> int:
    return int(os.environ.get("GRIDBRIDGE_CHAOS_SEED") or DEFAULT_SEED)






def _wait_up(proc: subprocess.Popen[bytes], log: Path, tag: str) -> None:
    """Until the serve printed its banner (its store is open; its first tick comes next).

    Its interpreter takes about a second to start on a loaded machine, so a kill timed from
    the spawn alone would mostly hit a serve that never reached the store."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while BANNER not in log.read_bytes():
        assert proc.poll() is None, f"{tag} serve exited {proc.returncode}: {log.read_text()}"
        assert time.monotonic() < deadline, f"{tag} serve not up in {STARTUP_TIMEOUT_S}s"
        time.sleep(0.02)


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _holder_pid(client: Client) -> int | None:
    """The pid in the reconciler lease's holder id, while somebody holds it."""
    from gridbridge.scheduler.reconciler import LEASE

    held = client.store.lease_holder(LEASE)
    return int(held[0].split(":")[1]) if held else None


def _states(futures: list[JobFuture]) -> Counter[JobState]:
    return Counter(f.status() for f in futures)


def _proc_cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _ours(needle: str) -> list[int]:
    """Live (not zombie) processes whose command line mentions ``needle``, this one aside."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        pid = int(name)
        if needle.encode() in _proc_cmdline(pid) and proc_start_time(pid) is not None:
            out.append(pid)
    return out


def _kill_leftovers(workdir: Path, tmp_path: Path) -> None:
    """Kill the runtimes' process groups under ``workdir`` (only while each pid is still
    theirs), then any other live process that this test started (its command line names a
    path under ``tmp_path``: the serves, the runtimes, the jobs)."""
    for site in SITES:
        kill_attempt_groups(workdir / "local" / site)
    for pid in _ours(str(tmp_path)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _diagnose(client: Client, futures: list[JobFuture], names: dict[str, str],
              logs: Path, only: set[str] | None = None) -> str:
    """The story of the (given) jobs and the tail of the serve log, for a failure message."""
    lines = []
    for f in futures:
        if only is not None and f.job_id not in only:
            continue
        lines.append(f"== {names[f.job_id]} ({f.job_id}) {f.status()}")
        for a in client.store.attempts(f.job_id):
            lines.append(f"   attempt {a.id} {a.site} {a.state} native={a.native_state!r} "
                         f"start={a.started_at} end={a.ended_at} reason={a.reason!r}")
        for e in client.store.events(f.job_id):
            lines.append(f"   {e.at:.3f} {e.kind} {e.attempt_id or ''} {e.old}->{e.new} "
                         f"{e.reason} [{e.actor}]")
    for log in sorted(logs.iterdir()):
        tail = log.read_text(errors="replace").splitlines()[-20:]
        lines.append(f"== {log.name} (last {len(tail)} lines)")
        lines.extend(f"   {line}" for line in tail)
    return "\n".join(lines)


def _on_store(config: Path, state_url: str) -> Path:
    """The config file, its store replaced by ``state_url`` (mode 0600: it may hold a password)."""
    raw = yaml.safe_load(config.read_text())
    raw["state_url"] = state_url
    config.write_text(yaml.safe_dump(raw))
    config.chmod(0o600)
    return config


def test_kill_minus_nine_chaos_loop_loses_and_duplicates_no_job(
        tmp_path: Path, state_url: str) -> None:
    seed = _seed()
    rng = random.Random(seed)
    tag = f"[GRIDBRIDGE_CHAOS_SEED={seed}]"
    config = _on_store(two_site_config(tmp_path, cpus=(SITES["a"], SITES["b"])), state_url)
    done_file = tmp_path / "done.txt"
    logs = tmp_path / "logs"
    logs.mkdir()
    client = Client(config, start=False)
    workdir = Path(client.config.workdir)
    started: list[subprocess.Popen[bytes]] = []
    rounds: list[str] = []
    try:
        futures = [
            client.submit_command(
                [sys.executable, "-c", JOB, str(done_file), f"{rng.uniform(0.2, 1.0):.2f}",
                 f"job{i}"],
                name=f"job{i}",
            )
            for i in range(JOBS)
        ]
        names = {f.job_id: f"job{i}" for i, f in enumerate(futures)}

        # the chaos: serve(s) for a random while, kill -9, a random gap with nobody serving
        mid_run = 0
        for r in range(ROUNDS):
            count = 2 if r % 3 == 2 else 1
            live_for = rng.uniform(0.3, 2.5)
            gap = rng.uniform(0.0, 0.5)
            serves = []
            for _ in range(count):
                log = logs / f"serve-{len(started):02d}.log"
                serves.append(start_serve(config, log))
                started.append(serves[-1])
            for proc in serves:
                _wait_up(proc, logs / f"serve-{started.index(proc):02d}.log", tag)
            time.sleep(live_for)
            for proc in serves:
                _kill9(proc)
            # Nobody reconciles now, so the store shows exactly what the kill interrupted.
            states = _states(futures)
            active = dict(Counter(str(a.state) for a in client.store.active_attempts()))
            in_flight = states[JobState.SCHEDULED] + states[JobState.RUNNING]
            if in_flight and states[JobState.SUCCEEDED] < JOBS:
                mid_run += 1
            jobs = dict(Counter(str(k) for k in states.elements()))
            rounds.append(f"round {r}: {count} serve(s) for {live_for:.2f}s, killed with jobs "
                          f"{jobs}, active attempts {active}; gap {gap:.2f}s")
            time.sleep(gap)
        story = "\n".join(rounds)
        print(f"{tag}\n{story}")  # shown with -rP, and with any failure
        assert mid_run >= 1, f"{tag} no kill landed in the middle of the run:\n{story}"

        # the recovery: one last serve drives every job to its end
        final_log = logs / f"serve-{len(started):02d}.log"
        final = start_serve(config, final_log)
        started.append(final)
        _wait_up(final, final_log, tag)
        # Once it holds the lease it is in its reconciler loop, so its SIGTERM handler is
        # installed (the banner comes before that: on PostgreSQL, by a visible margin).
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while _holder_pid(client) != final.pid:
            assert final.poll() is None, f"{tag} final serve exited: {final_log.read_text()}"
            assert time.monotonic() < deadline, f"{tag} final serve never took the lease"
            time.sleep(0.05)
        deadline = time.monotonic() + FINAL_TIMEOUT_S
        while not all(f.done() for f in futures):
            if time.monotonic() > deadline or final.poll() is not None:
                stuck = {f.job_id for f in futures if not f.done()}
                pytest.fail(
                    f"{tag} {len(stuck)} job(s) not terminal after {FINAL_TIMEOUT_S:.0f}s "
                    f"(final serve exit code {final.poll()}):\n{story}\n"
                    f"{_diagnose(client, futures, names, logs, stuck)}"
                )
            time.sleep(0.2)
        final.send_signal(signal.SIGTERM)
        code = final.wait(timeout=30)
        assert code == 0, f"{tag} serve exited {code} on SIGTERM:\n{final_log.read_text()}"

        # Let any attempt process still alive (there should be none doing work) finish before
        # the completion file is read, so a late duplicate cannot slip past the count.
        quiet = time.monotonic() + 30
        while _ours(str(done_file)) and time.monotonic() < quiet:
            time.sleep(0.1)
        assert not _ours(str(done_file)), f"{tag} job processes still alive after the end"

        diag = _diagnose(client, futures, names, logs)
        context = f"{tag}\n{story}\n{diag}"
        lines = done_file.read_text().split() if done_file.exists() else []
        completions = Counter(lines)
        missing = sorted(n for n in names.values() if completions[n] == 0)
        twice = sorted(n for n, c in completions.items() if c > 1)
        assert not missing and not twice, (
            f"{tag} completions: missing {missing}, more than once {twice}\n{context}"
        )
        assert sorted(completions) == sorted(names.values()), f"{tag} stray lines {lines}"

        for f in futures:
            name = names[f.job_id]
            state = f.status()
            attempts = client.store.attempts(f.job_id)
            where = f"{tag} {name} ({f.job_id})"
            assert state is JobState.SUCCEEDED, f"{where} ended {state}\n{context}"
            succeeded = [a for a in attempts if a.state is AttemptState.SUCCEEDED]
            assert len(succeeded) == 1, f"{where}: {len(succeeded)} attempts succeeded\n{context}"
            still = [a.id for a in attempts if a.state.active]
            assert not still, f"{where}: attempts still active {still}\n{context}"

            # no two attempts of one job ran at the same time
            windows = [(a.id, a.started_at, a.ended_at) for a in attempts
                       if a.started_at is not None]
            for i, (id1, s1, e1) in enumerate(windows):
                for id2, s2, e2 in windows[i + 1:]:
                    assert e1 is not None and e2 is not None, f"{where}: no end\n{context}"
                    assert e1 <= s2 or e2 <= s1, (
                        f"{where}: attempts {id1} [{s1}, {e1}] and {id2} [{s2}, {e2}] "
                        f"overlap\n{context}"
                    )

            # exactly one ledger row per charged attempt, with the attempt's outcome. Here no
            # job is cancelled, no site removed and the local site rejects nothing, so the only
            # attempt that may end uncharged is a submission given up on after
            # max_submit_tries (each killed serve that re-submits it counts a try): then, and
            # only then, the job has more attempts than ledger rows.
            ledger = client.store.ledger(f.job_id)
            rows = Counter(row.attempt_id for row in ledger)
            charged = sorted(a.id for a in attempts if a.native_state not in UNCHARGED)
            assert sorted(rows.elements()) == charged, (
                f"{where}: ledger rows {dict(rows)} for charged attempts {charged}\n{context}"
            )
            uncharged = [(a.id, a.native_state) for a in attempts if a.id not in rows]
            assert all(native == "gave-up" for _, native in uncharged), (
                f"{where}: attempts ended uncharged {uncharged}\n{context}"
            )
            assert len(ledger) == len(attempts) - len(uncharged)
            outcomes = {a.id: a.state.value for a in attempts}
            wrong = [(row.attempt_id, row.outcome) for row in ledger
                     if row.outcome != outcomes[row.attempt_id]]
            assert not wrong, f"{where}: ledger outcomes {wrong} differ\n{context}"
        every = [a for f in futures for a in client.store.attempts(f.job_id)]
        kinds = Counter(e.kind for f in futures for e in client.store.events(f.job_id))
        print(f"{tag} {len(every)} attempts: {dict(Counter(str(a.state) for a in every))}; "
              f"adopted {kinds['adopted']}, orphans {kinds['orphan']}")
        every_log = "".join(p.read_text(errors="replace") for p in sorted(logs.iterdir()))
        assert "taking over the lease" in every_log, (
            f"{tag} no serve took over a dead holder's lease\n{story}"
        )
    finally:
        for proc in started:
            _kill9(proc)
        _kill_leftovers(workdir, tmp_path)
        client.close()
