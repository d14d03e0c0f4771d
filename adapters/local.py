"""Local processes as a site: each attempt is ``python -m gridbridge.runtime --launch URL
--scratch DIR`` in its own process group, with its launch record and outputs under the attempt's
storage prefix and its run files (scratch) under ``<workdir>/local/<site>/<attempt id>/``.

The attempt id is the native id and the folder name, so ``submit`` is idempotent: a restarted
reconciler that re-submits an attempt finds the folder and adopts the running process. What a
poll reports comes from files the runtime writes (``pid``, ``result.json``) and from markers this
adapter writes before it signals (``preempted``, ``cancelled``), so a poll needs no memory of
earlier polls and works from any process. The files and their readers are the run-folder
protocol of :mod:`gridbridge.adapters._rundir`, which the edge adapter's node scripts share.

The runtime leads its own process group, and everything the job starts stays in it. When the
runtime dies without a result (LOST), ``cancel`` kills that whole group at once, so no child
of a lost attempt goes on working beside its successor.

The runtime is handed none of this process's secrets: only what a process needs to run
(:func:`gridbridge.units.process_env`: ``PATH``, ``HOME``, the locale...), the site's
``runtime.env_names`` (how it reaches storage other than local files) and the attempt's tag.
An attempt's folder is its owner's alone (0700), since its log holds whatever the job printed.

With ``run_as: user`` (the control plane runs as root) each job runs as its owner's Unix
account, and the attempt has two folders: the adapter's own (``spawned``, the markers, the
resources, root's alone) and the runtime's scratch, ``<workdir>/local-jobs/<site>/<attempt
id>/`` (the job's account's, 0700), with its ``pid``, ``result.json``, log and ``work/``. The
job's storage prefix becomes its account's too (:func:`gridbridge.fsowner.give`). What the job
wrote is read as its account (:mod:`gridbridge.fsowner`), and the process group that is
signalled is the one the adapter spawned, never a pid the job wrote.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field

from gridbridge.adapter import (
    AttemptStatus,
    Capability,
    Offer,
    OwnedJob,
    SubmitRejected,
    SubmitRequest,
    write_launch,
)
from gridbridge.adapters._batch import ATTEMPT_ID
from gridbridge.adapters._cgroup import (
    RUNTIME_ALLOWANCE,
    MemoryCgroups,
    attempt_oom_killed,
    drop_attempt_group,
    find_parent,
)
from gridbridge.adapters._localrun import (
    account_for,
    hand_over,
    into_group,
    kill_after,
    kill_group,
    one_log,
    prepare_run_as_user,
    read_float,
    readable,
    spawned_pgid,
)
from gridbridge.adapters._rundir import (
    TAG,
    RunFile,
    age,
    alive,
    group_alive,
    last_words,
    pid_of,
    read_text,
    result_of,
    runtime_alive,
    starting,
    vanished,
)
from gridbridge.config import SiteConfig, prologue_script
from gridbridge.frozen import Frozen
from gridbridge.fsowner import as_owner
from gridbridge.logparts import host_segments
from gridbridge.spec import Resources
from gridbridge.states import AttemptState
from gridbridge.units import process_env
from gridbridge.wire import OUT_OF_MEMORY, out_of_memory_message

__all__ = ["LocalAdapter", "LocalOptions"]

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 60.0
_EXIT_WAIT_S = 30.0
"""How long a runtime that wrote its result may take to exit before its group is killed."""


class LocalOptions(Frozen):
    """``options:`` of a ``local`` site."""

    grace_s: float = Field(default=10.0, ge=0)
    """Time between SIGTERM and SIGKILL on cancel and preemption."""
    reclaim_after_preemption_s: float = Field(default=0.0, ge=0)
    """After a preemption the site offers no capacity for this long, as spot capacity does."""
    python: str | None = None
    """Interpreter that runs the runtime; defaults to the one running gridbridge."""
    enforce_memory: bool = True
    """Hold each job to its ``memory_gb``; a job that needs more ends FAILED, its reason out of
    memory. Jobs that ask for GPUs are not limited (the GPU driver's own mappings would
    count). Each process of the job is held by ``RLIMIT_DATA`` (private writable memory, over
    what the runtime itself uses), and the attempt as a whole by a cgroup where one can be
    made (``memory_cgroup``)."""
    memory_cgroup: str = "auto"
    """Where attempts' memory cgroups are made: ``auto`` (a group this process may delegate
    the memory controller from, on cgroup v2 or v1; none if there is none), a cgroup
    directory, or ``off``. See :mod:`gridbridge.adapters._cgroup`."""


class LocalAdapter:
    """A site made of local processes."""

    CAPABILITIES: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.ADOPT, Capability.LOGS, Capability.DEBUG_PREEMPT, Capability.PREEMPTIBLE,
         Capability.LOCAL_FILES}
    )
    Options: ClassVar[type[BaseModel] | None] = LocalOptions

    def __init__(self, site: SiteConfig, workdir: str | os.PathLike[str]) -> None:
        self.site = site
        self.options = LocalOptions.model_validate(site.options)
        self.root = Path(workdir) / "local" / site.name
        self.root.mkdir(parents=True, exist_ok=True)
        self._as_user = site.run_as == "user"
        self.jobs_root = Path(workdir) / "local-jobs" / site.name
        """``run_as: user``: where the attempts' scratch folders are, each its job's account's."""
        if self._as_user:
            prepare_run_as_user(site.name, self.root, self.jobs_root)
        self._finished: set[str] = set()
        self._gone: set[str] = set()
        self._reaping: set[str] = set()
        self._wakeup: Callable[[], None] | None = None
        self._cgroups: MemoryCgroups | None = None
        if self.options.enforce_memory:
            try:
                self._cgroups = find_parent(self.options.memory_cgroup)
            except ValueError as exc:
                raise ValueError(f"site {site.name!r}: options.memory_cgroup: {exc}") from None

    def _scratch(self, d: Path) -> Path:
        """Where the runtime writes its files: the run folder itself, or with ``run_as:
        user`` the job's account's folder beside it."""
        return self.jobs_root / d.name if self._as_user else d

    def _pgid(self, d: Path) -> int | None:
        """The attempt's process group: the runtime leads it. Under ``run_as: user`` only the
        pid the adapter spawned counts (the job could write any number in its ``pid``)."""
        return spawned_pgid(d) if self._as_user else pid_of(d)

    def capabilities(self) -> frozenset[Capability]:
        caps = {Capability.ADOPT, Capability.LOGS, Capability.DEBUG_PREEMPT,
                Capability.LOCAL_FILES}
        if self.site.preemptible:
            caps.add(Capability.PREEMPTIBLE)
        return frozenset(caps)

    def _dir(self, native_id: str) -> Path:
        if not ATTEMPT_ID.fullmatch(native_id) or ".." in native_id:
            raise ValueError(f"not a valid attempt id: {native_id!r}")
        return self.root / native_id

    def submit(self, request: SubmitRequest) -> str:
        """Start the attempt, or adopt it if a process was already started for it. Raises
        :class:`SubmitRejected` when nothing could be started (a bad id, no interpreter)."""
        try:
            d = self._dir(request.attempt_id)
        except ValueError as exc:
            raise SubmitRejected(str(exc)) from None
        if (d / RunFile.SPAWNED).exists():
            return request.attempt_id
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        scratch = self._scratch(d)
        who = account_for(self.site, request) if self._as_user else None
        if who is not None:
            hand_over(request, who, scratch)
        runtime = self.site.runtime
        try:
            url = write_launch(request, heartbeat_s=runtime.heartbeat_s,
                               shared_filesystem=self.site.shares_files(True))
        except OSError as exc:  # the storage is unusable: nothing was started
            raise SubmitRejected(f"cannot write the launch record: {exc}") from None
        resources = request.spec.resources
        limit = self.site.max_walltime_s
        if limit is not None and resources.walltime_s > limit:  # the site's limit wins
            resources = resources.model_copy(update={"walltime_s": limit})
        (d / RunFile.RESOURCES_JSON).write_text(resources.model_dump_json())
        work = scratch / RunFile.WORK  # the job's own folder: its files never pass for ours
        with as_owner(work):
            work.mkdir(mode=0o700, exist_ok=True)
        argv = self._runtime_argv(d, url, resources)
        env = {**process_env(os.environ, runtime.env_names), TAG: request.attempt_id}
        as_account: dict[str, object] = {}
        if who is not None:
            env.update(HOME=who.home, USER=who.login, LOGNAME=who.login)
            as_account = {"user": who.uid, "group": who.gid, "extra_groups": [],
                          "umask": 0o077}
        with one_log(scratch) as log:
            try:
                child = subprocess.Popen(
                    argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=work,
                    start_new_session=True,
                    **as_account,  # type: ignore[call-overload]
                )
            except OSError as exc:  # no such interpreter: nothing was started
                raise SubmitRejected(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
        if who is not None:
            into_group(self.site.name, d, child.pid, who)
        # Reap the child the moment it exits, so a poll never sees a zombie as alive, and
        # tell the reconciler, so it polls now rather than at the end of its tick interval.
        threading.Thread(target=self._reap, args=(child,), name=f"reap-{child.pid}",
                         daemon=True).start()
        (d / RunFile.SPAWNED).write_text(f"{child.pid} {time.time()}\n")
        return request.attempt_id

    def _runtime_argv(self, d: Path, url: str, resources: Resources) -> list[str]:
        """The runtime's command line, held to the job's memory where this site does that."""
        runtime = self.site.runtime
        python = runtime.python or self.options.python or sys.executable
        argv = [python, "-m", "gridbridge.runtime", "--launch", url,
                "--scratch", str(self._scratch(d))]
        if self.options.enforce_memory and resources.gpus == 0:
            argv += ["--memory-gb", f"{resources.memory_gb:g}"]
            group = self._memory_group(d.name, resources.memory_gb)
            if group is not None:
                (d / RunFile.CGROUP).write_text(str(group))
                argv += ["--memory-cgroup", str(group)]
        if runtime.prologue:  # the operator's trusted lines; the argv stays out of the script
            argv = ["bash", "-c", prologue_script(runtime.prologue), "gridbridge-run", *argv]
        return argv

    def set_wakeup(self, wake: Callable[[], None]) -> None:
        """Called by the reconciler: ``wake`` is called each time a started runtime exits."""
        self._wakeup = wake

    def _reap(self, child: subprocess.Popen[bytes]) -> None:
        child.wait()
        if self._wakeup is not None:
            self._wakeup()

    def _memory_group(self, attempt_id: str, memory_gb: float) -> Path | None:
        """The attempt's cgroup, limited to its memory and the runtime's allowance; None if
        this site makes none or the kernel refused one (RLIMIT_DATA then holds it alone)."""
        if self._cgroups is None:
            return None
        try:
            return self._cgroups.create(attempt_id, int(memory_gb * 2**30) + RUNTIME_ALLOWANCE)
        except OSError as exc:
            log.warning("site %s: no memory cgroup for %s (%s); RLIMIT_DATA alone holds it",
                        self.site.name, attempt_id, exc)
            return None

    def poll(self, native_ids: Sequence[str]) -> Mapping[str, AttemptStatus]:
        return {nid: self._status(nid) for nid in native_ids}

    def _status(self, native_id: str) -> AttemptStatus:
        d = self._dir(native_id)
        if not d.exists():
            return AttemptStatus(state=AttemptState.LOST, native_state="unknown",
                                 reason="no such attempt on this site")
        # Look at the processes before the result: a runtime writes its result and then
        # exits, so a process seen dead here with no result after it truly left none.
        scratch = self._scratch(d)
        running = alive(scratch / RunFile.PID)
        spawning = starting(d)
        result = scratch / RunFile.RESULT
        if result.exists():
            try:
                code, state, data = result_of(read_text(result))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                return AttemptStatus(state=AttemptState.FAILED, native_state="bad-result",
                                     reason=f"unreadable result record: {exc!r}"[:500])
            state = self._site_verdict(d, state)
            self._clear_leftovers(d, running)
            native = "out-of-memory" if data["reason"] == OUT_OF_MEMORY else f"exited:{code}"
            return AttemptStatus(state=state, native_state=native, exit_code=code,
                                 reason=self._why(d, state) or str(data.get("error") or ""),
                                 walltime=(d / RunFile.WALLTIME).exists())
        if running:
            self._enforce_walltime(native_id, d)
            return AttemptStatus(state=AttemptState.RUNNING, native_state="running")
        if spawning:
            return AttemptStatus(state=AttemptState.SUBMITTED, native_state="starting")
        ended = self._site_verdict(d, AttemptState.LOST)
        if ended is AttemptState.LOST and attempt_oom_killed(d):  # the kernel killed the runtime
            drop_attempt_group(d)
            gb = json.loads((d / RunFile.RESOURCES_JSON).read_text()).get("memory_gb")
            return AttemptStatus(state=AttemptState.FAILED, native_state="out-of-memory",
                                 reason=out_of_memory_message(gb),
                                 walltime=(d / RunFile.WALLTIME).exists())
        why = {
            AttemptState.PREEMPTED: "killed after the preemption grace period",
            AttemptState.CANCELLED: "killed on cancel",
        }.get(ended) or vanished(last_words(scratch / RunFile.ATTEMPT_LOG))
        why = self._why(d, ended) or why
        return AttemptStatus(state=ended, native_state="gone", reason=why,
                             walltime=(d / RunFile.WALLTIME).exists())

    def _clear_leftovers(self, d: Path, running: bool) -> None:
        """An attempt that ended leaves nothing running: what it left in its group is killed
        once its runtime has exited (at once, or in the background while it finishes)."""
        if not running:
            kill_group(d, self._pgid(d))
        elif d.name not in self._reaping:
            self._reaping.add(d.name)
            threading.Thread(target=kill_after, daemon=True, args=(
                d, self._scratch(d), self._pgid(d), _EXIT_WAIT_S)).start()

    def _enforce_walltime(self, native_id: str, d: Path) -> None:
        """At the end of its walltime an attempt is stopped as a preemption (Slurm does the
        same): it gets SIGTERM, may checkpoint, and resumes in a new attempt."""
        if (d / RunFile.PREEMPTED).exists():
            return
        walltime = json.loads((d / RunFile.RESOURCES_JSON).read_text()).get("walltime_s")
        # the runtime's claim marks the start; under run_as: user the job could touch it,
        # so the adapter's own record of the spawn does
        began = d / RunFile.SPAWNED if self._as_user else d / RunFile.STARTED
        if walltime is not None and age(began) > float(walltime):
            (d / RunFile.WALLTIME).write_text(f"{time.time()}\n")
            self._signal(native_id, RunFile.PREEMPTED, wait=False)

    @staticmethod
    def _site_verdict(d: Path, state: AttemptState) -> AttemptState:
        """What the site itself did overrides how the process ended, unless it succeeded."""
        if state is AttemptState.SUCCEEDED:
            return state
        if (d / RunFile.CANCELLED).exists():
            return AttemptState.CANCELLED
        if (d / RunFile.PREEMPTED).exists():
            return AttemptState.PREEMPTED
        return state

    @staticmethod
    def _why(d: Path, state: AttemptState) -> str:
        if state is AttemptState.PREEMPTED and (d / RunFile.WALLTIME).exists():
            return "walltime reached"
        return ""

    def cancel(self, native_ids: Sequence[str]) -> None:
        """SIGTERM, then SIGKILL after the grace period; an attempt whose runtime is already
        gone without a result has its whole process group killed at once."""
        for nid in native_ids:
            d = self._dir(nid)
            if (d.exists() and (d / RunFile.SPAWNED).exists()
                    and not runtime_alive(d, self._scratch(d))):
                kill_group(d, self._pgid(d))  # lost, or ended leaving processes behind
            else:
                self._signal(nid, RunFile.CANCELLED, wait=False)

    def owned(self) -> Sequence[OwnedJob]:
        """Every attempt folder whose process group still has a live member."""
        found = []
        for d in sorted(self.root.iterdir()):
            if not d.is_dir() or not ATTEMPT_ID.fullmatch(d.name):
                continue
            if d.name in self._gone:
                continue
            pgid = self._pgid(d)
            scratch = self._scratch(d)
            if pgid is not None and group_alive(pgid, d.name) and (d / RunFile.SPAWNED).exists():
                state = "running" if runtime_alive(d, scratch) else "orphaned-children"
                found.append(OwnedJob(native_id=d.name, attempt_id=d.name, native_state=state))
            elif ((scratch / RunFile.RESULT).exists()
                  or age(d / RunFile.SPAWNED) > _START_TIMEOUT_S):
                drop_attempt_group(d)  # nothing running is left in it
                self._gone.add(d.name)  # ended and left nothing running: never look again
        return found

    def preempt(self, native_id: str, *, wait: bool = False) -> None:
        """Deliver a real preemption: SIGTERM to the process group, SIGKILL after the grace
        period; the site's capacity is then reclaimed for ``reclaim_after_preemption_s``. An
        attempt that has already ended is left alone, and reclaims nothing."""
        if not self._stoppable(self._dir(native_id), RunFile.PREEMPTED):
            return
        # Reclaimed before the signal: the job may exit, and be placed again, at once.
        until = time.time() + self.options.reclaim_after_preemption_s
        (self.root / "reclaimed-until").write_text(f"{until}\n")
        self._signal(native_id, RunFile.PREEMPTED, wait=wait)

    def _stoppable(self, d: Path, marker: RunFile) -> bool:
        """Not gone, finished, already signalled (the reconciler repeats cancels), or left by
        a runtime that has exited."""
        scratch = self._scratch(d)
        if not d.exists() or (scratch / RunFile.RESULT).exists() or (d / marker).exists():
            return False
        return (not (d / RunFile.SPAWNED).exists() or runtime_alive(d, scratch)
                or starting(d))

    def _signal(self, native_id: str, marker: RunFile, *, wait: bool) -> None:
        """SIGTERM the attempt's group, SIGKILL after the grace period."""
        d = self._dir(native_id)
        if not self._stoppable(d, marker):
            return
        (d / marker).write_text(f"{time.time()}\n")
        scratch = self._scratch(d)
        if marker is RunFile.CANCELLED and scratch != d:  # the runtime reads its own copy
            with as_owner(scratch), contextlib.suppress(OSError):
                (scratch / marker).write_text(f"{time.time()}\n")
        pid = self._pgid(d)
        if pid is None:
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        killer = threading.Thread(
            target=kill_after, args=(d, scratch, pid, self.options.grace_s), daemon=True
        )
        killer.start()
        if wait:
            killer.join()

    def offers(self) -> Sequence[Offer]:
        used_cpus, used_mem, used_gpus = 0, 0.0, 0
        for d in self._live_dirs():
            res = json.loads((d / RunFile.RESOURCES_JSON).read_text())
            used_cpus += int(res.get("cpus", 1))
            used_mem += float(res.get("memory_gb", 0))
            used_gpus += int(res.get("gpus", 0))
        cap = self.site.capacity
        cpus = max(0, cap.cpus - used_cpus)
        mem = max(0.0, cap.memory_gb - used_mem)
        gpus = max(0, cap.gpus - used_gpus)
        note = ""
        reclaimed = read_float(self.root / "reclaimed-until")
        if reclaimed is not None and reclaimed > time.time():
            cpus, mem, gpus = 0, 0.0, 0
            note = f"capacity reclaimed after an interruption for {reclaimed - time.time():.0f}s"
        return [
            Offer(
                site=self.site.name,
                tier=self.site.tier,
                cpus=cpus,
                memory_gb=mem,
                gpus=gpus,
                price=self.site.price,
                on_demand=self.site.on_demand_price,
                preemptible=self.site.preemptible,
                preemption_rate_per_hour=self.site.preemption_rate_per_hour,
                restart_overhead_s=self.site.restart_overhead_s,
                max_walltime_s=self.site.max_walltime_s,
                note=note,
            )
        ]

    def _live_dirs(self) -> list[Path]:
        live = []
        for d in self.root.iterdir():
            if not d.is_dir() or d.name in self._finished:
                continue
            scratch = self._scratch(d)
            if (scratch / RunFile.RESULT).exists() or not (d / RunFile.RESOURCES_JSON).exists():
                self._finished.add(d.name)
                continue
            pid = scratch / RunFile.PID
            if alive(pid) or (not pid.exists() and starting(d)):
                live.append(d)
            elif pid.exists() or age(d / RunFile.SPAWNED) > _START_TIMEOUT_S:
                self._finished.add(d.name)
        return live

    def logs(self, native_id: str) -> str:
        """The attempt's output so far, as far as this host still keeps it: its current
        segment, and the one before while it is not yet in storage (:mod:`gridbridge.logparts`;
        storage has the rest)."""
        segments = host_segments(self._scratch(self._dir(native_id)) / RunFile.ATTEMPT_LOG)
        return "".join(readable(p) for p in segments)
