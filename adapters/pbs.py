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

``qsub`` is never given ``-V``: the job gets only the variables ``-v`` names (the attempt's
tag and the names of the site's ``runtime.env_names``, whose values qsub takes from its own
environment) and PBS's own ``PBS_O_*``, never the control plane's whole environment.

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
import math
import os
import posixpath
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, field_validator

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
    ATTEMPT_ID,
    check_attempt_id,
    job_script,
    runtime_argv,
    safe_job_name,
)
from gridbridge.adapters._host import HostOptions, SiteHost, default_remote_dir, private_mkdir
from gridbridge.adapters._pbs_parse import (
    EXIT_STATUSES,
    JOB_STATES,
    find_job,
    format_walltime,
    parse_nodes,
    parse_qstat,
    status_of,
    variables,
)
from gridbridge.adapters._run import Completed, Runner, RunnerError
from gridbridge.config import SiteConfig
from gridbridge.states import AttemptState

__all__ = [
    "EXIT_STATUSES",
    "JOB_STATES",
    "PBSAdapter",
    "PBSOptions",
    "format_walltime",
    "parse_nodes",
    "parse_qstat",
    "status_of",
    "variables",
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


class PBSOptions(HostOptions):
    """``options:`` of a ``pbs`` site; ``login``, ``bin_dir``, ``remote_dir``,
    ``command_timeout_s`` and ``federation_tag`` as every login-host site has them
    (:class:`~gridbridge.adapters._host.HostOptions`; ``remote_dir`` defaults to
    ``<workdir>/pbs/<site>``, or ``.gridbridge/pbs/<site>`` over SSH). ``bin_dir`` and
    ``remote_dir`` must be absolute paths that ``qsub -o`` and ``-v`` can carry."""

    queue: str | None = None
    """The queue (``qsub -q``), e.g. ``workq`` or ``workq@server``; None: the server's default."""
    account: str | None = None
    """The account to charge (``qsub -A``)."""

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
        self.host = SiteHost.for_site(self.options, workdir, kind="pbs", site=site.name,
                                      runner=runner)
        self.user = self.options.login.user if self.options.login else getpass.getuser()
        """Whose jobs ``owned()`` lists (``qstat -u``): the login user, or this process's."""
        local = default_remote_dir(workdir, kind="pbs", site=site.name, over_ssh=False)
        self._cancelled = Path(local) / ".cancelled"
        """Markers of the cancels this adapter issued, on this host, one file per native id."""
        self._cancelled.mkdir(parents=True, exist_ok=True)

    def capabilities(self) -> frozenset[Capability]:
        caps = {Capability.LOGS}
        if self.site.preemptible:
            caps.add(Capability.PREEMPTIBLE)
        return frozenset(caps)

    # commands ------------------------------------------------------------------------------

    def _cmd(self, name: str) -> str:
        return self.host.cmd(name)

    def _run(self, argv: Sequence[str], stdin: str | None = None) -> Completed:
        return self.host.run(argv, input=stdin)

    def _ensure_dir(self) -> None:
        """Create the run folder once and make its path absolute on the login host (a relative
        path over SSH is the login home's; ``logs()`` compares job paths against it)."""
        self.host.ensure_dir(lambda real: not _PATH_FORBIDDEN.search(real),
                             "it must be an absolute path without newlines, quotes, "
                             "backslashes, commas or colons (qsub -o and -v)")

    # submit --------------------------------------------------------------------------------

    def submit(self, request: SubmitRequest) -> str:
        """``qsub`` the attempt; its PBS job id is the native id. Raises :class:`SubmitRejected`
        when qsub refuses (unknown queue, limits exceeded): then PBS started nothing."""
        check_attempt_id(request.attempt_id)
        try:
            launch_url = write_launch(request, heartbeat_s=self.site.runtime.heartbeat_s,
                                      shared_filesystem=self.site.shares_files(False))
        except OSError as exc:
            raise SubmitRejected(f"cannot write the launch record: {exc}") from None
        self._ensure_dir()
        folder = f"{self.host.remote_dir}/{request.attempt_id}"
        self._run(private_mkdir(folder)).check("mkdir of the attempt folder")
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
        passed = [f"{TAG}={request.attempt_id}", f"{FEDERATION}={self.host.tag}",
                  *self.site.runtime.env_names]
        argv = ["-N", safe_job_name(request.spec.name, request.attempt_id, limit=200),
                "-r", "n", "-j", "oe", "-k", "doe", "-o", f"{folder}/output.log",
                "-l", f"select={select}", "-l", f"walltime={format_walltime(walltime)}",
                "-v", ",".join(passed)]
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
            job = find_job(jobs, nid)
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
                    self.host.tag and job.get("job_state") not in ("F", "X")):
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
        job = find_job(jobs, native_id)
        if job is None:
            return ""
        path = str(job.get("Output_Path", "")).partition(":")[2] or str(job.get("Output_Path"))
        try:
            self._ensure_dir()
        except SubmitRejected:
            return ""
        path = posixpath.normpath(path)
        if not path.startswith(self.host.remote_dir.rstrip("/") + "/"):
            return ""  # not one of ours: never read a path a job record merely names
        done = self._run(["tail", "-c", "1048576", "--", path])
        return done.stdout if done.returncode == 0 else ""


def _names(line: str, native_id: str, *, single: bool) -> bool:
    """Whether a qdel complaint names ``native_id`` (or the same sequence number); one that
    names no job id is about the only id qdel was given, when ``single``."""
    words = [w.strip(".,;:()") for w in line.split()]
    ids = [w for w in words if _NATIVE_ID.fullmatch(w)]
    if not ids:
        return single
    head = native_id.partition(".")[0]
    return any(w == native_id or w.partition(".")[0] == head for w in ids)
