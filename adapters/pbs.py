"""A PBS Professional / OpenPBS cluster as a site: ``qsub``, ``qstat``, ``qdel`` and ``pbsnodes``
run as argv lists on the login host (here, or over SSH), never through a shell string.

    submit ── mkdir -p <remote_dir>; realpath <remote_dir>     (once: the absolute path)
           ├─ mkdir -p <remote_dir>/<attempt id>
           └─ qsub -N .. -r n -j oe -k doe -o <remote_dir>/<attempt id>/output.log
                   -l select=1:ncpus=N:mem=Mmb[:ngpus=G] -l walltime=HH:MM:SS
                   -v GRIDBRIDGE_ATTEMPT_ID=<attempt id>,GRIDBRIDGE_FEDERATION=<tag>[,NAME...]
                   < job script on stdin
    poll   ── qstat -f -F json -x <ids>     (one call; -x includes finished jobs)
    cancel ── qdel <ids>                    (after a local marker: a cancel we issued)
    owned  ── qstat -f -F json -u <user>    (the user's live jobs carrying our federation tag)
    offers ── pbsnodes -a -F json

``qsub`` is not idempotent, so the adapter does not declare ADOPT: a restarted control plane
finds its jobs through ``owned()``, which reads the attempt id back from the job's
``Variable_List``, keeping only jobs with this federation's tag (two control planes sharing a
PBS user never sweep each other's jobs). A ``qsub`` that could not reach the server may or may
not have queued the job: that is a :class:`RunnerError`, not a rejection, so the control plane
looks the attempt up with ``owned()`` before trying again. Jobs are submitted not rerunnable
(``-r n``): a requeued job would run its launch record twice, and the runtime refuses that
(exit 76), so PBS must not requeue it.

A finished job is judged from ``Exit_status`` (:data:`EXIT_STATUSES`, the ``JOB_EXEC_*`` codes
of OpenPBS's ``src/include/job.h``); a job this adapter cancelled reports CANCELLED whatever
its exit status says, unless it had already succeeded, because a runtime that gets ``qdel``'s
SIGTERM checkpoints and exits 75 just as it does when preempted.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import math
import os
import posixpath
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gridbridge.adapter import (
    AttemptStatus,
    Capability,
    Offer,
    OwnedJob,
    SubmitRejected,
    SubmitRequest,
    write_launch,
)
from gridbridge.adapters._batch import (
    ALREADY_RAN_EXIT_CODE,
    ATTEMPT_ID,
    PREEMPTED_EXIT_CODE,
    check_attempt_id,
    job_script,
    runtime_argv,
    safe_job_name,
)
from gridbridge.adapters._run import (
    Completed,
    LocalRunner,
    Runner,
    RunnerError,
    SSHRunner,
    SSHTarget,
)
from gridbridge.config import SiteConfig
from gridbridge.states import AttemptState

__all__ = [
    "EXIT_STATUSES",
    "JOB_STATES",
    "PBSAdapter",
    "PBSOptions",
    "parse_nodes",
    "parse_qstat",
    "status_of",
]

TAG = "GRIDBRIDGE_ATTEMPT_ID"
"""The job variable (``qsub -v``) that carries the attempt id; ``qstat -f`` shows it."""
FEDERATION = "GRIDBRIDGE_FEDERATION"
"""The job variable that carries the federation tag of the control plane that submitted it."""

_NATIVE_ID = re.compile(r"^[0-9]+(\[[0-9]*\])?(\.[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
"""What ``qsub`` prints: ``<sequence number>[.<server>]`` (array jobs: ``12[].server``)."""
_QUEUE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,14}(@[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
"""A PBS queue name: up to 15 characters, alphabetic first, then alphanumerics, ``_`` and
``-``; optionally ``@server``."""
_ACCOUNT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PATH_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f,:'\"\\]")
"""``-o`` takes ``[host:]path`` and ``-v`` splits on commas: neither may appear in a path."""
_UNKNOWN_JOB = re.compile(r"Unknown Job Id (\S+)")
_FINISHED_JOB = re.compile(r"has finished")
_UNREACHABLE = re.compile(
    r"connection refused|cannot connect to server|pbs_connect|communication failure|"
    r"timed out|timeout|no route to host", re.IGNORECASE)
"""What qsub says when it could not reach (or lost) the server: the job may be queued or not."""
_MARKER_TTL_S = 86400.0
"""Cancel markers older than this are removed whatever became of their job."""
_REPORTED_TTL_S = 3600.0
"""... and those of jobs already reported ended after this (a repeated poll still agrees)."""
_SIZE = re.compile(r"^([0-9]+)(b|kb|mb|gb|tb|pb|w|kw|mw|gw|tw|pw)?$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40, "pb": 1 << 50}
_BUSY_NODE_STATES = frozenset({
    "down", "offline", "state-unknown", "stale", "unresolvable", "sleep", "maintenance",
    "provisioning", "wait-provisioning", "resv-exclusive", "job-exclusive", "job-busy",
    "busy", "initializing",
})
"""Node states (``pbsnodes``; a node may show several, comma-separated) that rule out new work."""

JOB_STATES: Mapping[str, AttemptState | None] = {
    "Q": AttemptState.SUBMITTED,  # queued, eligible to run or be routed
    "H": AttemptState.SUBMITTED,  # held
    "W": AttemptState.SUBMITTED,  # waiting for its execution time or a failed stage-in
    "T": AttemptState.SUBMITTED,  # in transit to a new location
    "R": AttemptState.RUNNING,    # running
    "E": AttemptState.RUNNING,    # exiting after having run: Exit_status not final until F
    "B": AttemptState.RUNNING,    # job arrays only: begun
    "S": AttemptState.RUNNING,    # suspended by PBS for a higher-priority job; holds its node
    "U": AttemptState.RUNNING,    # suspended because the workstation became busy
    "M": AttemptState.LOST,       # moved to another server: its id here no longer follows it
    "F": None,                    # finished: judged by Exit_status
    "X": None,                    # subjobs only: finished (expired), judged by Exit_status
}
"""PBS ``job_state`` letters (PBS Professional Reference Guide, "Job States") to ours; None
means "finished: see :data:`EXIT_STATUSES`"."""

EXIT_STATUSES: Mapping[int, tuple[AttemptState, str]] = {
    -1: (AttemptState.LOST, "JOB_EXEC_FAIL1: job exec failed before files, no retry"),
    -2: (AttemptState.LOST, "JOB_EXEC_FAIL2: job exec failed after files, no retry"),
    -3: (AttemptState.LOST, "JOB_EXEC_RETRY: job execution failed, retry"),
    -4: (AttemptState.LOST, "JOB_EXEC_INITABT: job aborted on MOM initialization"),
    -5: (AttemptState.LOST, "JOB_EXEC_INITRST: job aborted on MOM init, checkpoint, no migrate"),
    -6: (AttemptState.LOST, "JOB_EXEC_INITRMG: job aborted on MOM init, checkpoint, migrate"),
    -7: (AttemptState.LOST, "JOB_EXEC_BADRESRT: job restart failed"),
    -10: (AttemptState.LOST, "JOB_EXEC_FAILUID: invalid uid/gid for the job"),
    -11: (AttemptState.PREEMPTED, "JOB_EXEC_RERUN: job rerun"),
    -12: (AttemptState.PREEMPTED, "JOB_EXEC_CHKP: job checkpointed and killed"),
    -13: (AttemptState.LOST, "JOB_EXEC_FAIL_PASSWORD: bad password"),
    -14: (AttemptState.LOST, "JOB_EXEC_RERUN_SIS_FAIL: a sister node failed"),
    -15: (AttemptState.PREEMPTED, "JOB_EXEC_QUERST: requeued for restart from checkpoint"),
    -16: (AttemptState.LOST, "JOB_EXEC_FAILHOOK_RERUN: a hook rejected the start (rerun)"),
    -17: (AttemptState.FAILED, "JOB_EXEC_FAILHOOK_DELETE: a hook rejected the job"),
    -18: (AttemptState.PREEMPTED, "JOB_EXEC_HOOK_RERUN: a hook requeued the job"),
    -19: (AttemptState.FAILED, "JOB_EXEC_HOOK_DELETE: a hook deleted the job"),
    -20: (AttemptState.LOST, "JOB_EXEC_RERUN_MS_FAIL: mother superior connection failed"),
    -21: (AttemptState.LOST, "JOB_EXEC_FAIL_SECURITY: security breach in the PBS directory"),
    -22: (AttemptState.LOST, "JOB_EXEC_HOOKERROR: a hook failed or timed out"),
    -23: (AttemptState.LOST, "JOB_EXEC_FAIL_KRB5: no kerberos credentials"),
    -24: (AttemptState.FAILED, "JOB_EXEC_KILL_NCPUS_BURST: exceeded its ncpus (burst)"),
    -25: (AttemptState.FAILED, "JOB_EXEC_KILL_NCPUS_SUM: exceeded its ncpus (sum)"),
    -26: (AttemptState.FAILED, "JOB_EXEC_KILL_VMEM: exceeded its vmem"),
    -27: (AttemptState.FAILED, "JOB_EXEC_KILL_MEM: exceeded its mem"),
    -28: (AttemptState.FAILED, "JOB_EXEC_KILL_CPUT: exceeded its cput"),
    -29: (AttemptState.PREEMPTED, "JOB_EXEC_KILL_WALLTIME: walltime reached"),
    -30: (AttemptState.LOST, "JOB_EXEC_JOINJOB: a sister failed to join the job"),
}
"""PBS's negative ``Exit_status`` values (``JOB_EXEC_*`` in OpenPBS ``src/include/job.h``; -8
and -9 are unused). The site could not run the job (LOST: it resumes elsewhere), took it back
(PREEMPTED), or stopped it for exceeding what it asked for (FAILED: a rerun would too)."""
KILL_WALLTIME = -29
_SIGNAL_BASE = 256
"""PBS reports a job killed by signal N as ``Exit_status`` 256 + N."""


class PBSOptions(BaseModel):
    """``options:`` of a ``pbs`` site."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queue: str | None = None
    """The queue (``qsub -q``), e.g. ``workq`` or ``workq@server``; None: the server's default."""
    account: str | None = None
    """The account to charge (``qsub -A``)."""
    bin_dir: str | None = None
    """The folder holding qsub, qstat, qdel and pbsnodes on the login host; None: its PATH."""
    login: SSHTarget | None = None
    """The login host; None runs the commands on this host."""
    remote_dir: str | None = None
    """A folder the login host and the compute nodes share, for each attempt's output and
    scratch; default ``<workdir>/pbs/<site name>`` when local, ``.gridbridge/pbs/<site name>``
    (in the login user's home) over SSH."""
    command_timeout_s: float = Field(default=30.0, gt=0)
    federation_tag: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")] | None = None
    """Marks this federation's jobs (a ``-v`` variable) so that two control planes sharing a
    PBS user never sweep each other's jobs; default: derived from the workdir."""

    @field_validator("queue")
    @classmethod
    def _queue(cls, value: str | None) -> str | None:
        if value is not None and not _QUEUE.fullmatch(value):
            raise ValueError(
                f"not a PBS queue name: {value!r} (up to 15 characters: a letter, then "
                "letters, digits, '_' or '-'; optionally '@server')"
            )
        return value

    @field_validator("account")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value is not None and not _ACCOUNT.fullmatch(value):
            raise ValueError(f"not a PBS account name: {value!r} (letters, digits, '_.-')")
        return value

    @field_validator("bin_dir", "remote_dir")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or _PATH_FORBIDDEN.search(value)):
            raise ValueError(
                f"must be an absolute path without quotes, backslashes, commas, colons or "
                f"control characters: {value!r}"
            )
        return value


class PBSAdapter:
    """A PBS Professional / OpenPBS site driven through its commands."""

    CAPABILITIES: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.LOGS, Capability.PREEMPTIBLE}
    )
    Options: ClassVar[type[BaseModel] | None] = PBSOptions

    def __init__(self, site: SiteConfig, workdir: str | os.PathLike[str],
                 runner: Runner | None = None) -> None:
        self.site = site
        self.options = PBSOptions.model_validate(site.options)
        local = Path(workdir).resolve() / "pbs" / site.name
        if self.options.remote_dir:
            self.remote_dir = self.options.remote_dir
        elif self.options.login:
            self.remote_dir = f".gridbridge/pbs/{site.name}"
        else:
            self.remote_dir = str(local)
        self._dir_made = False
        self.federation_tag = self.options.federation_tag or hashlib.sha256(
            str(Path(workdir).resolve()).encode()).hexdigest()[:10]
        self.user = self.options.login.user if self.options.login else getpass.getuser()
        """Whose jobs ``owned()`` lists (``qstat -u``): the login user, or this process's."""
        self._cancelled = local / ".cancelled"
        """Markers of the cancels this adapter issued, on this host, one file per native id."""
        self._cancelled.mkdir(parents=True, exist_ok=True)
        if runner is not None:
            self.runner = runner
        elif self.options.login is not None:
            self.runner = SSHRunner(self.options.login)
        else:
            self.runner = LocalRunner()

    def capabilities(self) -> frozenset[Capability]:
        caps = {Capability.LOGS}
        if self.site.preemptible:
            caps.add(Capability.PREEMPTIBLE)
        return frozenset(caps)

    # commands ------------------------------------------------------------------------------

    def _cmd(self, name: str) -> str:
        return f"{self.options.bin_dir.rstrip('/')}/{name}" if self.options.bin_dir else name

    def _run(self, argv: Sequence[str], stdin: str | None = None) -> Completed:
        return self.runner.run(argv, input=stdin, timeout=self.options.command_timeout_s)

    def _ensure_dir(self) -> None:
        """Create the run folder once and make its path absolute on the login host (a relative
        path over SSH is the login home's; ``logs()`` compares job paths against it)."""
        if not self._dir_made:
            self._run(["mkdir", "-p", "--", self.remote_dir]).check("mkdir of the run folder")
            real = self._run(["realpath", "--", self.remote_dir]).check("realpath").strip()
            if not real.startswith("/") or _PATH_FORBIDDEN.search(real):
                raise SubmitRejected(
                    f"unusable run folder {real!r}: it must be an absolute path without "
                    "newlines, quotes, backslashes, commas or colons (qsub -o and -v)")
            self.remote_dir = real
            self._dir_made = True

    # submit --------------------------------------------------------------------------------

    def submit(self, request: SubmitRequest) -> str:
        """``qsub`` the attempt; its PBS job id is the native id. Raises :class:`SubmitRejected`
        when qsub refuses (unknown queue, limits exceeded): then PBS started nothing."""
        check_attempt_id(request.attempt_id)
        try:
            launch_url = write_launch(request, heartbeat_s=self.site.runtime.heartbeat_s)
        except OSError as exc:
            raise SubmitRejected(f"cannot write the launch record: {exc}") from None
        self._ensure_dir()
        folder = f"{self.remote_dir}/{request.attempt_id}"
        self._run(["mkdir", "-p", "--", folder]).check("mkdir of the attempt folder")
        script = job_script(self.site, runtime_argv(self.site, launch_url, folder),
                            comment=f"gridbridge attempt {request.attempt_id}")
        done = self._run([self._cmd("qsub"), *self.qsub_options(request, folder)], stdin=script)
        words = (done.stderr or done.stdout).strip()
        if done.returncode != 0 and _UNREACHABLE.search(done.stderr + done.stdout):
            raise RunnerError(f"qsub could not reach the PBS server (exit {done.returncode}; "
                              f"the job may have been queued): {words[:500]}")
        if done.returncode != 0:
            raise SubmitRejected(f"qsub refused the job (exit {done.returncode}): {words[:500]}")
        native_id = done.stdout.strip().splitlines()[-1].strip() if done.stdout.strip() else ""
        if not _NATIVE_ID.fullmatch(native_id):
            raise RunnerError(f"qsub printed no job id: {done.stdout.strip()[:200]!r}")
        return native_id

    def qsub_options(self, request: SubmitRequest, folder: str) -> list[str]:
        """qsub's argv after the command name: every value validated or built from numbers."""
        resources = request.spec.resources
        walltime = resources.walltime_s
        if self.site.max_walltime_s is not None:
            walltime = min(walltime, self.site.max_walltime_s)
        select = f"1:ncpus={resources.cpus}:mem={math.ceil(resources.memory_gb * 1024)}mb"
        if resources.gpus:
            select += f":ngpus={resources.gpus}"
        variables = [f"{TAG}={request.attempt_id}", f"{FEDERATION}={self.federation_tag}",
                     *self.site.runtime.env_names]
        argv = ["-N", safe_job_name(request.spec.name, request.attempt_id, limit=200),
                "-r", "n", "-j", "oe", "-k", "doe", "-o", f"{folder}/output.log",
                "-l", f"select={select}", "-l", f"walltime={format_walltime(walltime)}",
                "-v", ",".join(variables)]
        if self.options.queue:
            argv += ["-q", self.options.queue]
        if self.options.account:
            argv += ["-A", self.options.account]
        return argv

    # poll ----------------------------------------------------------------------------------

    def poll(self, native_ids: Sequence[str]) -> Mapping[str, AttemptStatus]:
        """One ``qstat -f -F json -x`` for every id; ids PBS does not know come back LOST."""
        answer: dict[str, AttemptStatus] = {}
        pbs_ids = [n for n in dict.fromkeys(native_ids) if _NATIVE_ID.fullmatch(n)]
        for nid in native_ids:
            if nid not in pbs_ids:
                answer[nid] = AttemptStatus(state=AttemptState.LOST, native_state="unknown",
                                            reason="not a PBS job id")
        if not pbs_ids:
            return answer
        jobs, unknown = self._qstat(pbs_ids, history=True)
        self._sweep_markers()
        for nid in pbs_ids:
            job = _find(jobs, nid)
            if job is None:
                why = "PBS does not know this job" + (" (Unknown Job Id)" if nid in unknown else "")
                answer[nid] = AttemptStatus(state=AttemptState.LOST, native_state="unknown",
                                            reason=why)
            else:
                answer[nid] = status_of(job, cancelled=self._was_cancelled(nid))
            if answer[nid].state.terminal:
                self._reported(nid)
        return answer

    def _qstat(self, ids: Sequence[str], *, history: bool,
               user: str | None = None) -> tuple[dict[str, Any], set[str]]:
        """``qstat -f -F json [-x] [-u user] [ids]``: the jobs it printed and the ids it called
        unknown. qstat exits non-zero when any id is unknown (153) or finished without -x (35),
        yet prints the others; a non-zero exit with any other complaint (the server not
        reached), or without JSON, is an error: never "no such jobs"."""
        argv = [self._cmd("qstat"), "-f", "-F", "json", *(["-x"] if history else []),
                *(["-u", user] if user else []), *ids]
        done = self._run(argv)
        unknown = set(_UNKNOWN_JOB.findall(done.stderr))
        text = done.stdout.strip()
        refusals = [line for line in done.stderr.splitlines() if line.strip()]
        benign = all(_UNKNOWN_JOB.search(r) or _FINISHED_JOB.search(r) for r in refusals)
        if done.returncode != 0 and not (benign and (text or refusals)):
            done.check("qstat")
        if text:
            try:
                return parse_qstat(text), unknown
            except ValueError as exc:
                raise RunnerError(f"qstat printed something that is not its JSON: {exc}") from None
        return {}, unknown

    def _was_cancelled(self, native_id: str) -> bool:
        return (self._cancelled / native_id).exists()

    def _reported(self, native_id: str) -> None:
        """A job was reported ended: its marker goes at the next sweep after
        :data:`_REPORTED_TTL_S` (backdated, so the one-day rule removes it then)."""
        marker = self._cancelled / native_id
        backdated = time.time() - _MARKER_TTL_S + _REPORTED_TTL_S
        try:
            if marker.stat().st_mtime > backdated:
                os.utime(marker, (backdated, backdated))
        except FileNotFoundError:
            pass

    def _sweep_markers(self) -> None:
        """Remove cancel markers older than a day, or reported ended an hour ago."""
        cutoff = time.time() - _MARKER_TTL_S
        for marker in self._cancelled.iterdir():
            try:
                if marker.stat().st_mtime < cutoff:
                    marker.unlink()
            except FileNotFoundError:
                pass

    # cancel --------------------------------------------------------------------------------

    def cancel(self, native_ids: Sequence[str]) -> None:
        """``qdel`` (PBS sends SIGTERM, then SIGKILL after the queue's kill_delay). A marker
        is written first, so the job reports CANCELLED however it exits; it is taken back for
        a job qdel calls unknown or finished (it ends as it ended), and for every job of a
        qdel that failed otherwise (then nothing was cancelled). Ids PBS no longer knows, or
        that already finished, are no error."""
        ids = [n for n in dict.fromkeys(native_ids) if _NATIVE_ID.fullmatch(n)]
        if not ids:
            return
        fresh = [n for n in ids if not self._was_cancelled(n)]
        for nid in fresh:
            (self._cancelled / nid).write_text(f"{time.time()}\n")
        try:
            done = self._run([self._cmd("qdel"), *ids])
        except RunnerError:
            self._unmark(fresh)  # whether qdel ran is unknown: the caller cancels again
            raise
        if done.returncode == 0:
            return
        complaints = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        gone = [c for c in complaints if _UNKNOWN_JOB.search(c) or _FINISHED_JOB.search(c)]
        for complaint in gone:
            self._unmark([n for n in fresh if _names(complaint, n, single=len(ids) == 1)])
        if complaints and len(gone) == len(complaints):
            return
        self._unmark(fresh)
        done.check("qdel")

    def _unmark(self, native_ids: Sequence[str]) -> None:
        for nid in native_ids:
            (self._cancelled / nid).unlink(missing_ok=True)

    # owned ---------------------------------------------------------------------------------

    def owned(self) -> Sequence[OwnedJob]:
        """The user's live PBS jobs (``qstat -f -F json -u <user>``, no history) carrying an
        attempt id and this federation's tag."""
        jobs, _ = self._qstat([], history=False, user=self.user)
        found = []
        for native_id, job in jobs.items():
            found_vars = variables(job)
            attempt_id = found_vars.get(TAG, "")
            if (ATTEMPT_ID.fullmatch(attempt_id) and found_vars.get(FEDERATION) ==
                    self.federation_tag and job.get("job_state") not in ("F", "X")):
                found.append(OwnedJob(native_id=native_id, attempt_id=attempt_id,
                                      native_state=str(job.get("job_state", ""))))
        return found

    # offers --------------------------------------------------------------------------------

    def offers(self) -> Sequence[Offer]:
        """One offer, keyed by the queue: what ``pbsnodes -a -F json`` shows free on nodes
        that can take work, capped at the site's configured capacity."""
        done = self._run([self._cmd("pbsnodes"), "-a", "-F", "json"])
        try:
            cpus, memory_gb, gpus = parse_nodes(done.check("pbsnodes"))
        except ValueError as exc:
            raise RunnerError(f"pbsnodes printed something that is not its JSON: {exc}") from None
        cap = self.site.capacity
        queue = self.options.queue or "default"
        return [
            Offer(
                site=self.site.name, key=queue, shape={"queue": queue}, tier=self.site.tier,
                cpus=min(cpus, cap.cpus), memory_gb=min(memory_gb, cap.memory_gb),
                gpus=min(gpus, cap.gpus), price=self.site.price,
                on_demand=self.site.on_demand_price, preemptible=self.site.preemptible,
                preemption_rate_per_hour=self.site.preemption_rate_per_hour,
                restart_overhead_s=self.site.restart_overhead_s,
                max_walltime_s=self.site.max_walltime_s,
            )
        ]

    # logs ----------------------------------------------------------------------------------

    def logs(self, native_id: str) -> str:
        """The job's output so far: the file its ``Output_Path`` names (written directly,
        ``-k doe``), read on the login host (the last MiB)."""
        if not _NATIVE_ID.fullmatch(native_id):
            return ""
        jobs, _ = self._qstat([native_id], history=True)
        job = _find(jobs, native_id)
        if job is None:
            return ""
        path = str(job.get("Output_Path", "")).partition(":")[2] or str(job.get("Output_Path"))
        try:
            self._ensure_dir()
        except SubmitRejected:
            return ""
        path = posixpath.normpath(path)
        if not path.startswith(self.remote_dir.rstrip("/") + "/"):
            return ""  # not one of ours: never read a path a job record merely names
        done = self._run(["tail", "-c", "1048576", "--", path])
        return done.stdout if done.returncode == 0 else ""


# parsing (pure functions, tested against recorded OpenPBS output) -----------------------------

_LEADING_ZERO_NUMBER = re.compile(r'(:\s*)(-?0[0-9]+(?:\.[0-9]+)?)(?=\s*[,}\n])')


def parse_qstat(text: str) -> dict[str, Any]:
    """The ``Jobs`` mapping of ``qstat -f -F json`` output ({} when it has none).

    OpenPBS prints values that look numeric without quotes, in ``Variable_List`` too, so a
    variable like ``0042`` comes out as an invalid JSON number and ``1.10`` as a float: numbers
    are kept as their text, and ones with leading zeros quoted first. Control characters in
    strings (exported bash functions) are let through."""
    fixed = _LEADING_ZERO_NUMBER.sub(lambda m: f'{m.group(1)}"{m.group(2)}"', text)
    try:
        data = json.loads(fixed, parse_int=str, parse_float=str, strict=False)
    except json.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    jobs = data.get("Jobs") or {}
    if not isinstance(jobs, dict):
        raise ValueError("'Jobs' is not an object")
    return {str(k): v for k, v in jobs.items() if isinstance(v, dict)}


def variables(job: Mapping[str, Any]) -> dict[str, str]:
    """A job's ``Variable_List``: an object in recent qstat JSON, a ``k=v,k=v`` string
    (commas inside values escaped with a backslash) in older output."""
    raw = job.get("Variable_List")
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    if not isinstance(raw, str):
        return {}
    found = {}
    for item in re.split(r"(?<!\\),", raw):
        name, sep, value = item.partition("=")
        if sep:
            found[name.strip()] = value.replace("\\,", ",")
    return found


def status_of(job: Mapping[str, Any], *, cancelled: bool = False) -> AttemptStatus:
    """One job of ``qstat -f -F json -x`` as an :class:`AttemptStatus` (``cancelled``: this
    adapter issued a qdel for it)."""
    letter = str(job.get("job_state", "?"))
    substate = str(job.get("substate", ""))
    native = f"{letter}/{substate}" if substate else letter
    comment = str(job.get("comment", ""))
    if letter not in JOB_STATES:
        return AttemptStatus(state=AttemptState.LOST, native_state=native,
                             reason=f"unknown PBS job state {letter!r}")
    ours = JOB_STATES[letter]
    if ours is not None:
        reason = "moved to another server" if letter == "M" else ""
        if ours is AttemptState.SUBMITTED and cancelled:
            reason = "qdel issued"
        return AttemptStatus(state=ours, native_state=native, reason=reason)
    code = _int(job.get("Exit_status"))
    if code is None:  # deleted before it ran, or history without an exit status
        state = AttemptState.CANCELLED if cancelled else AttemptState.LOST
        return AttemptStatus(state=state, native_state=native,
                             reason=comment or "finished without an exit status")
    state, reason, walltime = _judge_exit(code, job)
    if cancelled and state is not AttemptState.SUCCEEDED:
        state, reason, walltime = AttemptState.CANCELLED, f"cancelled ({reason})", False
    return AttemptStatus(state=state, native_state=native, exit_code=code,
                         reason=(reason or comment)[:500], walltime=walltime)


def _judge_exit(code: int, job: Mapping[str, Any]) -> tuple[AttemptState, str, bool]:
    """Our verdict on a finished job's ``Exit_status``: state, reason, walltime."""
    if code == KILL_WALLTIME or _walltime_reached(code, job):
        return AttemptState.PREEMPTED, "walltime reached", True
    if code in EXIT_STATUSES:
        state, reason = EXIT_STATUSES[code]
        return state, reason, False
    if code < 0:
        return AttemptState.LOST, f"PBS could not run the job (Exit_status {code})", False
    if code == 0:
        return AttemptState.SUCCEEDED, "", False
    if code == PREEMPTED_EXIT_CODE:
        return AttemptState.PREEMPTED, "stopped after a checkpoint on request", False
    if code == ALREADY_RAN_EXIT_CODE:
        return AttemptState.LOST, "the attempt had already run (PBS started it again)", False
    if code > _SIGNAL_BASE:
        return AttemptState.LOST, f"killed by signal {code - _SIGNAL_BASE}", False
    return AttemptState.FAILED, f"exited {code}", False


def _walltime_reached(code: int, job: Mapping[str, Any]) -> bool:
    """Before ``JOB_EXEC_KILL_WALLTIME`` existed PBS recorded how the job died (271 for its
    SIGTERM, or the runtime's own 75): then the comment, or the used walltime reaching the
    limit, tells a walltime kill from any other."""
    if code not in (PREEMPTED_EXIT_CODE, _SIGNAL_BASE + 15, _SIGNAL_BASE + 9):
        return False
    comment = str(job.get("comment", "")).lower()
    if "walltime" in comment and "exceed" in comment:
        return True
    used = _seconds(_sub(job, "resources_used", "walltime"))
    limit = _seconds(_sub(job, "Resource_List", "walltime"))
    return used is not None and limit is not None and used >= limit


def parse_nodes(text: str) -> tuple[int, float, int]:
    """Free ``(cpus, memory GB, gpus)`` over the nodes of ``pbsnodes -a -F json`` that can
    take work: ``resources_available`` less ``resources_assigned``."""
    try:
        data = json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, dict):
        raise ValueError("no 'nodes' object")
    cpus, mem, gpus = 0, 0, 0
    for node in nodes.values():
        if not isinstance(node, dict) or _node_busy(str(node.get("state", ""))):
            continue
        avail = node.get("resources_available") or {}
        used = node.get("resources_assigned") or {}
        cpus += max(0, (_int(avail.get("ncpus")) or 0) - (_int(used.get("ncpus")) or 0))
        gpus += max(0, (_int(avail.get("ngpus")) or 0) - (_int(used.get("ngpus")) or 0))
        mem += max(0, (_bytes(avail.get("mem")) or 0) - (_bytes(used.get("mem")) or 0))
    return cpus, mem / (1 << 30), gpus


def _node_busy(state: str) -> bool:
    return any(word.strip() in _BUSY_NODE_STATES for word in state.split(","))


def format_walltime(seconds: float) -> str:
    """``HH:MM:SS`` (whole seconds, rounded up, at least one)."""
    total = max(1, math.ceil(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _names(line: str, native_id: str, *, single: bool) -> bool:
    """Whether a qdel complaint names ``native_id`` (or the same sequence number); one that
    names no job id is about the only id qdel was given, when ``single``."""
    words = [w.strip(".,;:()") for w in line.split()]
    ids = [w for w in words if _NATIVE_ID.fullmatch(w)]
    if not ids:
        return single
    head = native_id.partition(".")[0]
    return any(w == native_id or w.partition(".")[0] == head for w in ids)


def _find(jobs: Mapping[str, Any], native_id: str) -> dict[str, Any] | None:
    """A job by the id qsub printed; qstat may print it with a longer server name."""
    if native_id in jobs:
        return dict(jobs[native_id])
    head = native_id.partition(".")[0]
    matches = [j for k, j in jobs.items() if k.partition(".")[0] == head]
    return dict(matches[0]) if len(matches) == 1 else None


def _sub(job: Mapping[str, Any], group: str, name: str) -> Any:
    value = job.get(group)
    return value.get(name) if isinstance(value, dict) else job.get(f"{group}.{name}")


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _seconds(value: Any) -> int | None:
    """PBS durations: ``[[HH:]MM:]SS`` or plain seconds."""
    if value is None:
        return None
    try:
        parts = [int(p) for p in str(value).split(":")]
    except ValueError:
        return None
    total = 0
    for part in parts:
        total = total * 60 + part
    return total


def _bytes(value: Any) -> int | None:
    """PBS sizes: an integer with an optional unit (``b``, ``kb`` ... ``pb``; ``w`` words of
    8 bytes); no unit means bytes."""
    if value is None:
        return None
    match = _SIZE.fullmatch(str(value).strip())
    if not match:
        return None
    unit = (match.group(2) or "b").lower()
    factor = _SIZE_UNITS.get(unit.replace("w", "b"), 1) * (8 if unit.endswith("w") else 1)
    return int(match.group(1)) * factor
