"""The adapter contract: tests every adapter's test module subclasses, as fsspec's abstract
filesystem tests are. A subclass provides an ``adapter`` fixture and inherits every test::

    class TestLocalContract(AdapterContract):
        @pytest.fixture
        def adapter(self, tmp_path):            # a fresh site, cleaned up afterwards
            yield LocalAdapter(site_config, tmp_path / "work")

``workspace`` (a folder this process and the site's jobs can both read and write; by default
``tmp_path / "shared"``), ``python`` (the interpreter the site's jobs run) and ``DEADLINE_S``
(how long a state may take to show) may be overridden too. The hostile-id test compares the
workspace's parent folder before and after, so keep the adapter's own files under it too
(``tmp_path`` holds both, above).
The jobs are small Python commands; what they write lands in the workspace, so the tests can
check what ran, and how often.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gridbridge.adapter import (
    Adapter,
    AttemptStatus,
    Capability,
    LogsAdapter,
    OwnedJob,
    SubmitRejected,
    SubmitRequest,
    missing_verbs,
)
from gridbridge.spec import JobSpec
from gridbridge.states import AttemptState

__all__ = ["HOSTILE_ARGS", "HOSTILE_ATTEMPT_IDS", "AdapterContract", "poll_until"]

HOSTILE_ARGS = ["it's", 'say "hi"', "a;b", "$(touch pwned)", "`id`", "line\nbreak", "-n",
                "*", "~root", "back\\slash", "tab\there", "ünï", ""]
"""Arguments a job must receive exactly as given (no shell ever sees them)."""
HOSTILE_ATTEMPT_IDS = ["..", "../escape.1", "a/b.1", "a;b.1", "a\nb.1", "abc.1\n", "-x.1",
                       "a b.1", "$(id).1"]
"""Attempt ids an adapter must refuse before it creates anything."""

_TERMINAL = frozenset(s for s in AttemptState if s.terminal)


def poll_until(adapter: Adapter, native_id: str, done: Callable[[AttemptStatus], bool],
               timeout: float, every: float = 0.1) -> AttemptStatus:
    """Poll ``native_id`` every ``every`` seconds until ``done`` holds; fail after
    ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        status = adapter.poll([native_id])[native_id]
        if done(status):
            return status
        assert time.monotonic() < deadline, f"{native_id} still {status} after {timeout:g}s"
        time.sleep(every)


class AdapterContract:
    """What every adapter promises. Subclass it with an ``adapter`` fixture (and ``workspace``
    where the site's jobs cannot see this process's temporary folder)."""

    DEADLINE_S: float = 30.0

    @pytest.fixture
    def workspace(self, tmp_path: Path) -> Path:
        """A folder this process and the site's jobs can both read and write: by default a
        fresh one beside the adapter's own files, under ``tmp_path``."""
        path = tmp_path / "shared"
        path.mkdir()
        return path

    @pytest.fixture
    def python(self) -> str:
        """The interpreter on the site's hosts."""
        return sys.executable

    # helpers ------------------------------------------------------------------------------

    def request(self, workspace: Path, python: str, code: str, *args: str,
                attempt_id: str | None = None, env: dict[str, str] | None = None,
                ) -> SubmitRequest:
        """A command job running ``code`` with ``args``; the attempt id is fresh unless given."""
        aid = attempt_id or f"ct{uuid.uuid4().hex[:10]}.1"
        job_id, _, n = aid.rpartition(".")
        spec = JobSpec(name="contract.job-1_x", env=env or {},
                       command=(python, "-c", textwrap.dedent(code), *args))
        return SubmitRequest(
            attempt_id=aid, job_id=job_id, attempt=int(n), token=int(n), spec=spec,
            checkpoint_url=(workspace / "ckpt" / job_id).as_uri(),
            attempt_url=(workspace / "attempts" / aid).as_uri(),
        )

    def wait_for(self, adapter: Adapter, native_id: str,
                 done: Callable[[AttemptStatus], bool]) -> AttemptStatus:
        """Poll until ``done`` holds (or fail after ``DEADLINE_S``)."""
        return poll_until(adapter, native_id, done, self.DEADLINE_S)

    def wait_for_all(self, adapter: Adapter, native_ids: list[str],
                     done: Callable[[AttemptStatus], bool]) -> dict[str, AttemptStatus]:
        """Poll all of ``native_ids`` together (one call each round, as the control plane
        does) until ``done`` holds for every one of them (or fail after ``DEADLINE_S``)."""
        deadline = time.monotonic() + self.DEADLINE_S
        finished: dict[str, AttemptStatus] = {}
        while True:
            waiting = [nid for nid in native_ids if nid not in finished]
            answer = adapter.poll(waiting)
            finished.update({nid: answer[nid] for nid in waiting if done(answer[nid])})
            if len(finished) == len(native_ids):
                return finished
            assert time.monotonic() < deadline, (
                f"still not done after the deadline: "
                f"{ {nid: answer[nid] for nid in waiting if nid not in finished} }")
            time.sleep(0.1)

    def wait_until(self, predicate: Callable[[], Any], what: str) -> Any:
        deadline = time.monotonic() + self.DEADLINE_S
        while not (value := predicate()):
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)
        return value

    # the protocol -------------------------------------------------------------------------

    def test_implements_the_protocol(self, adapter: Adapter) -> None:
        assert isinstance(adapter, Adapter)
        caps = adapter.capabilities()
        assert caps <= type(adapter).CAPABILITIES, "capabilities() must be within CAPABILITIES"
        assert missing_verbs(type(adapter), caps) == []

    def test_a_command_runs_and_succeeds(self, adapter: Adapter, workspace: Path,
                                         python: str) -> None:
        out = workspace / "ran.txt"
        req = self.request(workspace, python, """
            import sys, time
            time.sleep(0.3)
            open(sys.argv[1], "a").write("ran\\n")
            """, str(out))
        nid = adapter.submit(req)
        status = self.wait_for(adapter, nid, lambda s: s.state.terminal)
        assert status.state is AttemptState.SUCCEEDED, status
        assert status.exit_code == 0
        assert out.read_text() == "ran\n"

    def test_a_failing_command_fails_with_its_exit_code(self, adapter: Adapter, workspace: Path,
                                                        python: str) -> None:
        nid = adapter.submit(self.request(workspace, python, "import sys; sys.exit(3)"))
        status = self.wait_for(adapter, nid, lambda s: s.state.terminal)
        assert status.state is AttemptState.FAILED, status
        assert status.exit_code == 3

    def test_submit_is_idempotent_or_found_by_attempt_id(self, adapter: Adapter, workspace: Path,
                                                python: str) -> None:
        out = workspace / "count.txt"
        if Capability.ADOPT not in adapter.capabilities():
            # Without ADOPT the control plane finds a doubtful submission through owned():
            # the attempt must show there by its id from the moment submit returns. It waits
            # for the go file, so that it cannot end (and leave the queue) before the look.
            go = workspace / "go"
            req = self.request(workspace, python, """
                import os, sys, time
                open(sys.argv[1], "a").write("x\\n")
                deadline = time.monotonic() + 120
                while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
                    time.sleep(0.05)
                """, str(out), str(go))
            nid = adapter.submit(req)
            owned = {(o.native_id, o.attempt_id) for o in adapter.owned()}
            go.touch()
            assert (nid, req.attempt_id) in owned
            status = self.wait_for(adapter, nid, lambda s: s.state.terminal)
            assert status.state is AttemptState.SUCCEEDED, status
            assert out.read_text() == "x\n", "the attempt ran exactly once"
            return
        req = self.request(workspace, python, """
            import sys, time
            open(sys.argv[1], "a").write("x\\n")
            time.sleep(0.5)
            """, str(out))
        first = adapter.submit(req)
        again = [adapter.submit(req) for _ in range(3)]
        assert again == [first] * 3
        status = self.wait_for(adapter, first, lambda s: s.state.terminal)
        assert status.state is AttemptState.SUCCEEDED, status
        assert adapter.submit(req) == first, "a finished attempt is adopted, not rerun"
        self.wait_until(lambda: req.attempt_id not in {o.attempt_id for o in adapter.owned()},
                        "nothing of the attempt to run any more")
        assert adapter.poll([first])[first].state is AttemptState.SUCCEEDED
        assert out.read_text() == "x\n", "the attempt ran exactly once"

    def test_poll_answers_every_id_in_one_call(self, adapter: Adapter, workspace: Path,
                                               python: str) -> None:
        reqs = [self.request(workspace, python, "import time; time.sleep(0.2)")
                for _ in range(3)]
        nids = [adapter.submit(r) for r in reqs]
        unknown = f"ct{uuid.uuid4().hex[:10]}.9"
        answer = adapter.poll([*nids, unknown])
        assert set(answer) == {*nids, unknown}
        assert answer[unknown].state is AttemptState.LOST
        ended = self.wait_for_all(adapter, nids, lambda s: s.state.terminal)
        for nid in nids:
            assert ended[nid].state is AttemptState.SUCCEEDED, ended[nid]

    def test_unknown_ids_are_lost(self, adapter: Adapter) -> None:
        nid = f"ct{uuid.uuid4().hex[:10]}.1"
        assert adapter.poll([nid])[nid].state is AttemptState.LOST
        assert adapter.poll([]) == {}

    def test_cancel_stops_a_running_attempt(self, adapter: Adapter, workspace: Path,
                                            python: str) -> None:
        beat = workspace / "beat.txt"
        req = self.request(workspace, python, """
            import sys, time
            while True:
                open(sys.argv[1], "w").write(str(time.time()))
                time.sleep(0.05)
            """, str(beat))
        nid = adapter.submit(req)
        self.wait_until(beat.exists, "the job to start")
        adapter.cancel([nid])
        status = self.wait_for(adapter, nid, lambda s: s.state.terminal)
        assert status.state is AttemptState.CANCELLED, status
        last = beat.read_text()
        time.sleep(0.5)
        assert beat.read_text() == last, "the job still runs after it was cancelled"
        adapter.cancel([nid])  # cancelling again (or after the end) is harmless
        assert adapter.poll([nid])[nid].state is AttemptState.CANCELLED

    def test_owned_lists_live_attempts_by_attempt_id(self, adapter: Adapter, workspace: Path,
                                                     python: str) -> None:
        beat = workspace / "owned.txt"
        req = self.request(workspace, python, """
            import sys, time
            open(sys.argv[1], "w").write("up")
            time.sleep(60)
            """, str(beat))
        nid = adapter.submit(req)
        self.wait_until(beat.exists, "the job to start")
        owned = adapter.owned()
        assert all(isinstance(o, OwnedJob) for o in owned)
        assert (nid, req.attempt_id) in {(o.native_id, o.attempt_id) for o in owned}
        adapter.cancel([nid])
        self.wait_for(adapter, nid, lambda s: s.state.terminal)
        self.wait_until(lambda: req.attempt_id not in {o.attempt_id for o in adapter.owned()},
                        "the cancelled attempt to leave owned()")

    def test_logs_show_the_output(self, adapter: Adapter, workspace: Path, python: str) -> None:
        if Capability.LOGS not in adapter.capabilities():
            pytest.skip("the adapter does not declare LOGS")
        assert isinstance(adapter, LogsAdapter)
        nid = adapter.submit(self.request(workspace, python, "print('hello from contract')"))
        self.wait_for(adapter, nid, lambda s: s.state.terminal)
        self.wait_until(lambda: "hello from contract" in adapter.logs(nid), "the log line")

    def test_hostile_arguments_and_environment_pass_literally(
        self, adapter: Adapter, workspace: Path, python: str
    ) -> None:
        out = workspace / "argv.json"
        env = {f"GB_HOSTILE_{i}": v for i, v in enumerate(HOSTILE_ARGS)}
        req = self.request(workspace, python, """
            import json, os, sys
            env = {k: v for k, v in os.environ.items() if k.startswith("GB_HOSTILE_")}
            json.dump([sys.argv[2:], env], open(sys.argv[1], "w"))
            """, str(out), *HOSTILE_ARGS, env=env)
        nid = adapter.submit(req)
        status = self.wait_for(adapter, nid, lambda s: s.state.terminal)
        assert status.state is AttemptState.SUCCEEDED, status
        assert json.loads(out.read_text()) == [HOSTILE_ARGS, env]
        assert not (workspace / "pwned").exists()

    def test_hostile_attempt_ids_are_refused(self, adapter: Adapter, workspace: Path,
                                             python: str) -> None:
        """Each of :data:`HOSTILE_ATTEMPT_IDS` in turn, on one adapter: submit refuses it,
        nothing is created or removed (inside the test's folder or outside) and it never shows
        in ``owned()``. Every id is tried even when one fails; the failure names them all."""
        root = workspace.parent  # the test's own folder: the workspace and the adapter's files
        failures: list[str] = []
        for attempt_id in HOSTILE_ATTEMPT_IDS:
            req = self.request(workspace, python, "pass").model_copy(update={
                "attempt_id": attempt_id,
                "attempt_url": f"{(workspace / 'attempts').as_uri()}/{attempt_id}",
            })
            before = {p for p in root.rglob("*")}
            try:
                adapter.submit(req)
            except (SubmitRejected, ValueError):
                pass
            else:
                failures.append(f"{attempt_id!r}: submit did not refuse it")
            after = {p for p in root.rglob("*")}
            if after != before:
                failures.append(f"{attempt_id!r}: nothing may be created, inside or outside: "
                                f"created {sorted(map(str, after - before))}, "
                                f"removed {sorted(map(str, before - after))}")
            if attempt_id in {o.attempt_id for o in adapter.owned()}:
                failures.append(f"{attempt_id!r}: listed by owned()")
        assert not failures, "\n".join(failures)
