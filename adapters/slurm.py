"""A Slurm cluster as a site: ``sbatch``, ``squeue``, ``sacct``, ``scancel`` and ``sinfo``,
run on this host (gridbridge on a login node) or on a login node over SSH.

Each attempt is one batch job whose script only ``exec``s the runtime::

    sbatch --parsable --comment=gridbridge:<federation tag>:<attempt id> --partition=P
           --cpus-per-task=N --mem=M --time=T --signal=B:TERM@S --no-requeue ...  < script
    script:  exec python -m gridbridge.runtime --launch <storage URL> --scratch <run dir>

The job's command, arguments and environment are in the launch record, never in the script,
and every option is one argv item (over SSH, :func:`shlex.join` quotes each), so no job value
meets a shell. ``--signal=B:TERM@S`` gives the runtime a SIGTERM ``S`` seconds before the time
limit, and at preemption too when slurmctld runs with ``preempt_send_user_signal``; the job then
checkpoints and exits 75, and gridbridge continues the remainder in a new attempt.

What this Slurm really shows (22.05; ``deploy/dev/slurm-start.sh`` records how the test cluster
was measured):

* jobs are submitted ``--no-requeue`` unless the site sets ``requeue: true``: a preempted job
  then ends ``PREEMPTED`` and placement decides where its remainder runs (the same partition,
  another, or another site). With ``requeue: true`` a job still running at the end of its
  grace time is requeued by Slurm under the same id, its rerun continues from the checkpoint
  (``--rerun-env SLURM_RESTART_COUNT``), and the control plane decides with the cost model
  whether to leave it queued there or move it. Without it, an operator's ``scontrol requeue``
  relaunches an attempt the runtime refuses (exit 76): the attempt is LOST and the job goes on
  from its checkpoint;
* suspension (``PreemptMode=SUSPEND``/``GANG``) is not detected as a preemption: a suspended
  job is reported running;
* a job that exits by itself during its preemption grace time may be recorded ``TIMEOUT``, and
  one stopped by the warning signal ``FAILED`` with exit 75: whether an end was the time limit
  is judged from the run time against the limit, not from the word;
* ``squeue`` forgets a finished job after ``MinJobAge``; ``sacct`` (or ``sacct -c`` where only
  the job-completion log is kept) remembers it, so a job that merely finished is never LOST.

Poll is one ``squeue`` call for all of the user's jobs (a fixed ``-O`` format; ``--json`` costs
15x more and ignores filters), plus one ``sacct`` call for the ids that left the queue.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from gridbridge.adapter import (
    AttemptStatus,
    Capability,
    Offer,
    OwnedJob,
    Pricing,
    SubmitRejected,
    SubmitRequest,
    write_launch,
)
from gridbridge.adapters._batch import (
    ALREADY_RAN_EXIT_CODE,
    PREEMPTED_EXIT_CODE,
    check_attempt_id,
    job_command,
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
from gridbridge.spec import Tier
from gridbridge.states import AttemptState

__all__ = ["SLURM_STATES", "PartitionOptions", "SlurmAdapter", "SlurmOptions", "parse_duration"]

_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
_PREFIX = "gridbridge:"

SLURM_STATES: Mapping[str, AttemptState] = {
    "PENDING": AttemptState.SUBMITTED,
    "CONFIGURING": AttemptState.SUBMITTED,
    "REQUEUED": AttemptState.SUBMITTED,
    "REQUEUE_HOLD": AttemptState.SUBMITTED,
    "REQUEUE_FED": AttemptState.SUBMITTED,
    "RESV_DEL_HOLD": AttemptState.SUBMITTED,
    "RUNNING": AttemptState.RUNNING,
    "COMPLETING": AttemptState.RUNNING,
    "SUSPENDED": AttemptState.RUNNING,
    "STOPPED": AttemptState.RUNNING,
    "SIGNALING": AttemptState.RUNNING,
    "STAGE_OUT": AttemptState.RUNNING,
    "RESIZING": AttemptState.RUNNING,
    "COMPLETED": AttemptState.SUCCEEDED,
    "FAILED": AttemptState.FAILED,
    "OUT_OF_MEMORY": AttemptState.FAILED,
    "SPECIAL_EXIT": AttemptState.FAILED,
    "CANCELLED": AttemptState.CANCELLED,
    "DEADLINE": AttemptState.CANCELLED,
    "REVOKED": AttemptState.CANCELLED,
    "PREEMPTED": AttemptState.PREEMPTED,
    "TIMEOUT": AttemptState.PREEMPTED,
    "BOOT_FAIL": AttemptState.PREEMPTED,
    "NODE_FAIL": AttemptState.LOST,
}
"""Every Slurm job state and what it means for an attempt. TIMEOUT and BOOT_FAIL are the
site's doing, not the job's: the job continues from its checkpoint. NODE_FAIL is LOST: the
node went away with the job's processes in an unknown state, so the attempt is fenced off."""

_WHY: Mapping[str, str] = {
    "OUT_OF_MEMORY": "killed by Slurm: out of memory",
    "NODE_FAIL": "its node failed",
    "BOOT_FAIL": "its node failed to boot",
    "DEADLINE": "its deadline passed",
    "PREEMPTED": "preempted by a higher-priority job",
    "REVOKED": "revoked by a sibling cluster",
}
_DURATION = re.compile(r"(?:(\d+)-)?(\d+(?::\d+){0,2})")
_SIGNAL_SLACK_S = 65.0
_UNCERTAIN = ("socket timed out", "unable to contact slurm controller", "connection refused",
              "communication connection failure", "slurm_receive_msg", "zero bytes were")
"""sbatch errors after which the job may have been queued all the same."""
"""Slurm may deliver ``--signal`` up to 60 s before the requested time (its event resolution)."""
_SQUEUE_FIELDS = ("JobID", "State", "Reason", "Partition", "restartcnt", "exit_code",
                  "TimeLimit", "StartTime", "EndTime", "Comment")


class PartitionOptions(BaseModel):
    """How one partition is offered and billed (``options.partitions.<name>``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    price: Pricing | None = None
    """Its rate card; default: the site's ``price``."""
    on_demand: Pricing | None = None
    preemptible: bool | None = None
    """Default: the site's ``preemptible``."""
    preemption_rate_per_hour: Annotated[float, Field(ge=0)] | None = None
    allocation_core_hours: Annotated[float, Field(gt=0)] | None = None
    """Prepaid core-hours: work here costs nothing at the margin until they are used up (by
    gridbridge's jobs in this partition), then ``overage``."""
    overage: Pricing | None = None
    """The rate once the allocation is used up; default: ``price``."""
    tier: Tier | None = None


class SlurmOptions(BaseModel):
    """``options:`` of a ``slurm`` site."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    partitions: dict[Annotated[str, Field(pattern=_NAME)], PartitionOptions] = Field(
        default_factory=dict)
    """The partitions gridbridge may use, each an offer; empty: every partition that is up."""
    account: Annotated[str, Field(pattern=_NAME)] | None = None
    qos: Annotated[str, Field(pattern=_NAME)] | None = None
    login: SSHTarget | None = None
    """Run the Slurm commands on this login node over SSH; None: on this host."""
    bin_dir: str | None = None
    """Where ``sbatch`` and the rest are; None: the PATH."""
    remote_dir: str | None = None
    """A folder on the cluster's shared filesystem for job output and run files; default
    ``<workdir>/slurm/<site>`` when local, ``.gridbridge/slurm/<site>`` (in the login
    user's home) over SSH."""
    requeue: bool = False
    """Submit with ``--requeue``: a job still running when its preemption grace time ends is
    requeued by Slurm and continues from its checkpoint under the same job id (gridbridge
    decides with the cost model whether to leave it there or move it). False (the default):
    ``--no-requeue``, and a preempted attempt ends there; placement chooses where it goes on.
    A job that checkpoints and exits on the warning signal is never requeued by Slurm."""
    signal_before_s: Annotated[int, Field(ge=0, le=65535)] = 60
    """The runtime gets SIGTERM this long before the time limit, to checkpoint."""
    command_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    federation_tag: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")] | None = None
    """Marks this federation's jobs (in ``--comment``) so that two control planes sharing a
    cluster account never sweep each other's jobs; default: derived from the workdir."""


class _Row(BaseModel):
    """One job as ``squeue`` or ``sacct`` shows it."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    state: str
    reason: str = ""
    partition: str = ""
    restarts: int = 0
    exit_code: int | None = None
    signal: int = 0
    time_limit_s: float | None = None
    elapsed_s: float | None = None
    expected_wait_s: float | None = None
    """For a pending job: until the start Slurm expects (None: Slurm cannot say)."""
    comment: str = ""


class SlurmAdapter:
    """A Slurm cluster, reached here or over SSH."""

    CAPABILITIES: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.LOGS, Capability.PREEMPTIBLE, Capability.GPUS})
    Options: ClassVar[type[BaseModel] | None] = SlurmOptions

    def __init__(self, site: SiteConfig, workdir: str | Path,
                 runner: Runner | None = None) -> None:
        self.site = site
        self.options = SlurmOptions.model_validate(site.options)
        o = self.options
        self.runner: Runner = runner or (SSHRunner(o.login) if o.login else LocalRunner())
        if o.remote_dir:
            self.remote_dir = o.remote_dir
        elif o.login:
            self.remote_dir = f".gridbridge/slurm/{site.name}"
        else:
            self.remote_dir = str(Path(workdir).resolve() / "slurm" / site.name)
        tag = o.federation_tag or hashlib.sha256(
            str(Path(workdir).resolve()).encode()).hexdigest()[:10]
        self.comment_prefix = f"{_PREFIX}{tag}:"
        self._dir_made = False
        self._limits: dict[str, float | None] = {}
        self._nodes: dict[str, set[str]] = {}
        self._used: dict[str, tuple[float, float]] = {}

    # plumbing -----------------------------------------------------------------------------

    def _cmd(self, name: str) -> str:
        return f"{self.options.bin_dir}/{name}" if self.options.bin_dir else name

    def _run(self, argv: list[str], *, input: str | None = None) -> Completed:
        argv = [self._cmd(argv[0]), *argv[1:]]
        return self.runner.run(argv, input=input, timeout=self.options.command_timeout_s,
                               env={"TZ": "UTC"})  # times in UTC, whatever the cluster's zone

    def _ensure_dir(self) -> None:
        """Create the run folder once and make its path absolute (Slurm would read a relative
        ``--output`` against ``--chdir``, and a relative path over SSH is the login home's)."""
        if not self._dir_made:
            t = self.options.command_timeout_s
            self.runner.run(["mkdir", "-p", "--", self.remote_dir], timeout=t).check("mkdir")
            real = self.runner.run(["realpath", "--", self.remote_dir], timeout=t).check(
                "realpath").strip()
            if "%" in real or "\n" in real or not real.startswith("/"):
                raise SubmitRejected(f"unusable run folder {real!r}: it must be an absolute path "
                                     "without '%' (Slurm expands '%' in --output)")
            self.remote_dir = real
            self._dir_made = True

    def capabilities(self) -> frozenset[Capability]:
        caps = {Capability.LOGS}
        if self.site.preemptible or any(p.preemptible for p in self.options.partitions.values()):
            caps.add(Capability.PREEMPTIBLE)
        if self.site.capacity.gpus:
            caps.add(Capability.GPUS)
        return frozenset(caps)

    # submit -------------------------------------------------------------------------------

    def submit(self, request: SubmitRequest) -> str:
        """``sbatch`` the attempt. Raises :class:`SubmitRejected` when Slurm refused it (an
        invalid partition, a limit exceeded); a timeout or a lost login node propagates, so
        the control plane looks the attempt up with :meth:`owned` before trying again."""
        check_attempt_id(request.attempt_id)
        partition = self._partition_for(request)
        try:
            url = write_launch(request, heartbeat_s=self.site.runtime.heartbeat_s)
        except OSError as exc:
            raise SubmitRejected(f"cannot write the launch record: {exc}") from None
        self._ensure_dir()
        default_python = sys.executable if self.options.login is None else "python3"
        argv = runtime_argv(self.site, url, f"{self.remote_dir}/{request.attempt_id}",
                            default_python)
        if self.options.requeue:
            argv += ["--rerun-env", "SLURM_RESTART_COUNT"]
        # The values of runtime.env_names travel in the script when sbatch runs on a login
        # node (locally, --export=ALL hands the runtime this process's environment anyway).
        env = ({n: os.environ[n] for n in self.site.runtime.env_names if n in os.environ}
               if self.options.login else None)
        body = job_command(self.site, argv, env=env)  # --wrap: sbatch reads no stdin
        done = self._run([*self.sbatch_argv(request, partition), f"--wrap={body}"])
        if done.returncode != 0:
            words = (done.stderr or done.stdout).strip()
            if any(m in words.lower() for m in _UNCERTAIN):  # it may have been queued
                raise RunnerError(f"sbatch did not get an answer from Slurm: {words}")
            raise SubmitRejected(f"sbatch refused the job: {words}")
        native = done.stdout.strip().split(";")[0]
        if not native.isdigit():
            raise RunnerError(f"sbatch answered something that is not a job id: {done.stdout!r}")
        return native

    def sbatch_argv(self, request: SubmitRequest, partition: str | None) -> list[str]:
        """The ``sbatch`` command line for ``request``: one option per argv item."""
        res = request.spec.resources
        o = self.options
        walltime = res.walltime_s
        for limit in (self.site.max_walltime_s, self._limit(partition)):
            if limit is not None:
                walltime = min(walltime, limit)
        minutes = max(1, math.ceil(walltime / 60))
        warn = self._warning_s(walltime)
        argv = [
            "sbatch", "--parsable",
            f"--job-name={safe_job_name(request.spec.name, request.attempt_id)}",
            f"--comment={self.comment_prefix}{request.attempt_id}",
            "--nodes=1", "--ntasks=1", f"--cpus-per-task={res.cpus}",
            f"--mem={max(1, math.ceil(res.memory_gb * 1024))}M",
            f"--time={minutes}",
            f"--signal=B:TERM@{warn}",
            "--requeue" if o.requeue else "--no-requeue",
            f"--output={self.remote_dir}/slurm-%j.out",
            f"--chdir={self.remote_dir}",
            "--export=ALL",
        ]
        if partition:
            argv.append(f"--partition={partition}")
        if res.gpus:
            argv.append(f"--gres=gpu:{res.gpus}")
        if o.account:
            argv.append(f"--account={o.account}")
        if o.qos:
            argv.append(f"--qos={o.qos}")
        return argv

    def _partition_for(self, request: SubmitRequest) -> str | None:
        chosen = request.offer.key if request.offer is not None else None
        names = list(self.options.partitions)
        if chosen and chosen != "default":
            if names and chosen not in names:
                raise SubmitRejected(f"partition {chosen!r} is not one of this site's: "
                                     f"{', '.join(names)}")
            if not re.fullmatch(_NAME, chosen):
                raise SubmitRejected(f"not a valid partition name: {chosen!r}")
            return chosen
        return names[0] if names else None

    def _limit(self, partition: str | None) -> float | None:
        if partition is None:
            return None
        if partition not in self._limits:
            self._partitions()
        return self._limits.get(partition)

    # poll ---------------------------------------------------------------------------------

    def poll(self, native_ids: Sequence[str]) -> Mapping[str, AttemptStatus]:
        """One ``squeue`` call, and one ``sacct`` call for ids that left the queue."""
        answer: dict[str, AttemptStatus] = {}
        wanted = [n for n in native_ids if n.isdigit()]
        for n in native_ids:
            if not n.isdigit():
                answer[n] = AttemptStatus(state=AttemptState.LOST, native_state="unknown",
                                          reason="not a Slurm job id")
        if not wanted:
            return answer
        rows = {r.job_id: r for r in self._squeue(all_states=True, only=set(wanted))}
        gone = [n for n in wanted if n not in rows]
        if gone:
            rows.update(self._sacct(gone))
        for n in wanted:
            row = rows.get(n)
            answer[n] = (self._status(row) if row is not None else AttemptStatus(
                state=AttemptState.LOST, native_state="unknown",
                reason="Slurm has no record of this job (neither squeue nor sacct)"))
        rerun = [n for n in wanted if n in rows and rows[n].restarts and answer[n].state.terminal]
        if rerun:  # requeued jobs ran more than once: the ledger charges each run
            for n, runs in self._runs(rerun).items():
                answer[n] = answer[n].model_copy(update={"runs": runs})
        return answer

    def _runs(self, ids: Sequence[str]) -> dict[str, tuple[tuple[float, float], ...]]:
        """Each run (start, end) of jobs Slurm requeued, from its accounting; {} if it has
        none (the ledger then charges the attempt from first start to end)."""
        for argv in (["sacct", "-X", "-D", "--parsable2", "-n", "-o", "JobIDRaw,Start,End",
                      "-j", ",".join(ids)],
                     ["sacct", "-c", "--parsable2", "-n", "-o", "JobIDRaw,Start,End",
                      "-j", ",".join(ids)]):
            done = self._run(argv)
            if done.returncode != 0:
                continue
            runs: dict[str, list[tuple[float, float]]] = {}
            for line in done.stdout.splitlines():
                f = line.split("|")
                t0, t1 = (_timestamp(f[1]), _timestamp(f[2])) if len(f) == 3 else (None, None)
                if t0 is not None and t1 is not None and t1 >= t0:
                    runs.setdefault(f[0], []).append((t0, t1))
            if runs:
                return {k: tuple(sorted(v)) for k, v in runs.items()}
        return {}

    def _squeue(self, *, all_states: bool, only: set[str] | None = None) -> list[_Row]:
        fmt = ",".join(f"{f}:|" for f in _SQUEUE_FIELDS[:-1]) + f",{_SQUEUE_FIELDS[-1]}:"
        argv = ["squeue", "--me", "-h", "-O", fmt]
        if all_states:
            argv[1:1] = ["-t", "all"]
        out = self._run(argv).check("squeue")
        rows = []
        for line in out.splitlines():
            parts = line.split("|", len(_SQUEUE_FIELDS) - 1)
            if len(parts) < len(_SQUEUE_FIELDS) or not parts[0].strip().isdigit():
                continue
            jid, state, reason, part, restarts, raw, limit, start, end, comment = parts
            if only is not None and jid.strip() not in only:
                continue
            raw_code = _int(raw)
            limit_s = parse_duration(limit)
            t0, t1 = _timestamp(start), _timestamp(end)
            elapsed, wait = None, None
            pending = state.strip().startswith("PENDING")
            if t0 is not None and pending:
                wait = max(0.0, t0 - time.time())
            elif t0 is not None:
                elapsed = (t1 if t1 is not None and t1 >= t0 else time.time()) - t0
            rows.append(_Row(
                job_id=jid.strip(), state=state.strip().split()[0] if state.strip() else "",
                reason=reason.strip(), partition=part.strip(), restarts=_int(restarts) or 0,
                exit_code=None if raw_code is None else (raw_code >> 8) & 0xFF,
                signal=0 if raw_code is None else raw_code & 0x7F,
                time_limit_s=limit_s, elapsed_s=elapsed, expected_wait_s=wait,
                comment=comment.strip()))
        return rows

    def _sacct(self, ids: Sequence[str]) -> dict[str, _Row]:
        fields = "JobIDRaw,State,ExitCode,Partition,ElapsedRaw,TimelimitRaw"
        rows: dict[str, _Row] = {}
        answered, errors = False, []
        for argv in (["sacct", "-X", "--parsable2", "-n", "-o", fields, "-j", ",".join(ids)],
                     ["sacct", "-c", "--parsable2", "-n", "-o", fields, "-j", ",".join(ids)]):
            done = self._run(argv)
            if done.returncode != 0:
                errors.append((done.stderr or done.stdout).strip())
                continue  # no accounting database: the completion log (-c) is next
            answered = True
            for line in done.stdout.splitlines():
                parts = line.split("|")
                if len(parts) < 6 or not parts[0].isdigit():
                    continue
                code, _, sig = parts[2].partition(":")
                limit_min = _int(parts[5])
                rows[parts[0]] = _Row(  # the last row of a job is its last run
                    job_id=parts[0], state=parts[1].split()[0] if parts[1] else "",
                    partition=parts[3], exit_code=_int(code), signal=_int(sig) or 0,
                    elapsed_s=_int(parts[4]),
                    time_limit_s=None if limit_min is None else limit_min * 60.0)
            if len(rows) == len(set(ids)):
                break
        if not answered:  # never "unknown, so LOST" because the history could not be read
            raise RunnerError(f"sacct cannot tell what became of jobs {', '.join(ids)}: "
                              f"{' / '.join(errors)[-1000:]}")
        return rows

    def _status(self, row: _Row) -> AttemptStatus:
        word = row.state
        state = SLURM_STATES.get(word)
        native = f"{word} ({row.reason})" if row.reason and row.reason != "None" else word
        if state is None:
            return AttemptStatus(state=AttemptState.RUNNING, native_state=native,
                                 reason=f"unfamiliar Slurm state {word!r}; assumed running")
        code = row.exit_code
        reason = _WHY.get(word, "")
        walltime = False
        if state.terminal and code == PREEMPTED_EXIT_CODE and state is not AttemptState.CANCELLED:
            state = AttemptState.PREEMPTED  # stopped on Slurm's warning signal, checkpointed
        if state.terminal and code == ALREADY_RAN_EXIT_CODE:
            state, reason = AttemptState.LOST, "a second launch of the attempt (a requeue?)"
        if state is AttemptState.PREEMPTED and word not in {"BOOT_FAIL", "PREEMPTED"}:
            walltime = self._at_time_limit(row)
            if walltime:
                reason = "time limit reached"
            elif word != "PREEMPTED":
                reason = reason or ("preempted: stopped on Slurm's warning signal before "
                                     "its time limit")
        if not state.terminal and row.restarts:
            # Requeued by Slurm after a preemption: the attempt lives on under the same id. The
            # requeue counts once the job waits in the queue again (not while it completes or
            # sits out its BeginTime), when Slurm can estimate when it will run.
            settled = word != "COMPLETING" and row.reason != "BeginTime"
            waiting = state is AttemptState.SUBMITTED
            if waiting:
                native += f", requeued {row.restarts}x"
            return AttemptStatus(state=AttemptState.RUNNING, native_state=native,
                                 reason=f"requeued by Slurm after a preemption "
                                        f"({row.restarts}x)",
                                 requeues=row.restarts if settled else row.restarts - 1,
                                 queued=waiting and settled,
                                 queue_wait_s=row.expected_wait_s if waiting else None)
        if state is AttemptState.FAILED and row.signal and not reason:
            reason = f"killed by signal {row.signal}"
        if state is AttemptState.CANCELLED and not reason:
            reason = "cancelled in Slurm"
        pending = state is AttemptState.SUBMITTED
        return AttemptStatus(state=state, native_state=native,
                             exit_code=code if state.terminal else None,
                             reason=reason, walltime=walltime, requeues=row.restarts,
                             queued=pending,
                             queue_wait_s=row.expected_wait_s if pending else None)

    def _at_time_limit(self, row: _Row) -> bool:
        if row.time_limit_s is None or row.elapsed_s is None:
            return row.state == "TIMEOUT"
        margin = self._warning_s(row.time_limit_s) + _SIGNAL_SLACK_S
        return row.elapsed_s >= row.time_limit_s - margin

    def _warning_s(self, limit_s: float) -> int:
        """How long before a time limit of ``limit_s`` the runtime is signalled (at most half
        of it, at least 10 s)."""
        minutes = max(1, math.ceil(limit_s / 60))
        return min(self.options.signal_before_s, max(10, minutes * 60 // 2))

    # cancel, owned ------------------------------------------------------------------------

    def cancel(self, native_ids: Sequence[str]) -> None:
        """``scancel`` them in one call: SIGTERM to the job (it checkpoints), SIGKILL after
        the cluster's KillWait. Finished or unknown ids are ignored."""
        ids = [n for n in native_ids if n.isdigit() and 0 < int(n) < 2**32]
        if not ids:
            return
        done = self._run(["scancel", *ids])
        words = (done.stderr or "").lower()
        if done.returncode != 0 and "invalid job id" in words and len(ids) > 1:
            # scancel checks every id first: one it calls invalid (purged, never ours) stops
            # it from cancelling the others, so each goes on its own
            for n in ids:
                self._run(["scancel", n])
        elif done.returncode != 0 and "invalid job id" not in words and "already" not in words:
            done.check("scancel")

    def owned(self) -> Sequence[OwnedJob]:
        """The user's live jobs whose comment carries this federation's tag."""
        found = []
        for row in self._squeue(all_states=False):
            if row.comment.startswith(self.comment_prefix):
                found.append(OwnedJob(native_id=row.job_id,
                                      attempt_id=row.comment[len(self.comment_prefix):],
                                      native_state=row.state))
        return found

    # offers -------------------------------------------------------------------------------

    def _partitions(self) -> dict[str, dict[str, float]]:
        """``sinfo`` per node: for each partition that is up, its nodes, idle and total CPUs,
        memory (in proportion to idle CPUs), GPUs and time limit."""
        fmt = "NodeList:|,Partition:|,Available:|,Time:|,CPUsState:|,Memory:|,Gres:|,GresUsed:"
        out = self._run(["sinfo", "-h", "-N", "-O", fmt]).check("sinfo")
        parts: dict[str, dict[str, float]] = {}
        self._nodes = {}
        for line in out.splitlines():
            f = line.split("|")
            if len(f) < 8 or f[2].strip() != "up":
                continue
            node, name = f[0].strip(), f[1].strip().rstrip("*")
            _alloc, idle, _other, total = (
                _int(x) or 0 for x in (f[4].split("/") + ["0"] * 4)[:4])
            mem_mb = _int(f[5].rstrip("+")) or 0
            gpus = max(0, _gpus(f[6]) - _gpus(f[7]))  # configured less in use
            p = parts.setdefault(name, {"idle": 0, "total": 0, "mem_gb": 0.0, "gpus": 0})
            p["idle"] += idle
            p["total"] += total
            p["mem_gb"] += mem_mb / 1024 * (idle / total if total else 0)
            p["gpus"] += gpus
            self._nodes.setdefault(name, set()).add(node)
            self._limits[name] = parse_duration(f[3])
        return parts

    def _pending(self) -> list[tuple[list[str], int, float | None]]:
        """Pending jobs of every user that wait to run (held ones do not): their partitions,
        CPUs and expected start."""
        done = self._run(["squeue", "-h", "-t", "PD", "--start", "-o", "%P|%C|%S|%r"])
        if done.returncode != 0:
            return []
        jobs = []
        for line in done.stdout.splitlines():
            f = line.split("|")
            if len(f) == 4 and not f[3].startswith("JobHeld"):
                jobs.append((f[0].split(","), _int(f[1]) or 1, _timestamp(f[2])))
        return jobs

    def _allocation_used(self, partition: str) -> float:
        """Core-hours gridbridge's jobs of this user have used in ``partition`` (finished
        runs), read at most once a minute."""
        cached = self._used.get(partition)
        if cached is not None and time.monotonic() - cached[0] < 60:
            return cached[1]
        used = self._read_allocation_used(partition)
        self._used[partition] = (time.monotonic(), used)
        return used

    def _read_allocation_used(self, partition: str) -> float:
        for argv in (["sacct", "-X", "--parsable2", "-n", "-r", partition, "-o",
                      "JobName,NCPUS,ElapsedRaw", "-S", "2000-01-01"],
                     ["sacct", "-c", "--parsable2", "-n", "-o",
                      "JobName,Partition,NCPUS,ElapsedRaw"]):
            done = self._run(argv)
            if done.returncode != 0:
                continue
            used = 0.0
            for line in done.stdout.splitlines():
                f = line.split("|")
                if len(f) == 4 and f[1] != partition:
                    continue
                if f[0].startswith("gb-"):
                    used += (_int(f[-2]) or 0) * (_int(f[-1]) or 0) / 3600
            return used
        return 0.0

    def offers(self) -> Sequence[Offer]:
        """One offer per partition gridbridge may use, keyed by the partition's name. Its
        CPUs are the idle ones less what jobs already waiting for the same nodes will take,
        so a partition whose idle CPUs a higher-priority job is about to claim (a preemptor
        in its grace time) offers nothing."""
        parts = self._partitions()
        pending = self._pending()
        chosen = self.options.partitions or {name: PartitionOptions() for name in parts}
        site = self.site
        now = time.time()
        offers = []
        for name, popt in chosen.items():
            p = parts.get(name)
            if p is None:
                continue
            mine = self._nodes.get(name, set())
            demand, wait = 0, 0.0
            for job_parts, cpus, start in pending:
                if any(self._nodes.get(q, set()) & mine for q in job_parts):
                    demand += cpus
                    wait = max(wait, (start - now) if start is not None else 600.0)
            free = max(0, int(p["idle"]) - demand)
            price = popt.price or site.price
            note = f"{demand} CPUs wanted by pending jobs" if demand else ""
            if popt.allocation_core_hours is not None:
                used = self._allocation_used(name)
                left = popt.allocation_core_hours - used
                note = f"allocation: {used:.1f} of {popt.allocation_core_hours:g} core-hours used"
                price = Pricing() if left > 0 else (popt.overage or price)
            preemptible = popt.preemptible if popt.preemptible is not None else site.preemptible
            rate = (popt.preemption_rate_per_hour if popt.preemption_rate_per_hour is not None
                    else site.preemption_rate_per_hour)
            share = free / p["idle"] if p["idle"] else 0.0
            offers.append(Offer(
                site=site.name, key=name, shape={"partition": name},
                tier=popt.tier or site.tier,
                cpus=min(free, site.capacity.cpus),
                memory_gb=min(p["mem_gb"] * share, site.capacity.memory_gb),
                gpus=min(int(p["gpus"]), site.capacity.gpus),
                price=price, on_demand=popt.on_demand or site.on_demand_price,
                preemptible=preemptible,
                preemption_rate_per_hour=rate if preemptible else 0.0,
                restart_overhead_s=site.restart_overhead_s,
                queue_wait_s=0.0 if free > 0 else max(0.0, wait),
                max_walltime_s=_min_opt(self._limits.get(name), site.max_walltime_s),
                note=note,
            ))
        return offers

    # logs ---------------------------------------------------------------------------------

    def logs(self, native_id: str) -> str:
        """The job's output file so far ('' before it starts)."""
        if not native_id.isdigit():
            raise ValueError(f"not a Slurm job id: {native_id!r}")
        done = self.runner.run(["cat", "--", f"{self.remote_dir}/slurm-{native_id}.out"],
                               timeout=self.options.command_timeout_s)
        return done.stdout if done.returncode == 0 else ""


def parse_duration(text: str) -> float | None:
    """Slurm's time format in seconds: ``minutes``, ``minutes:seconds``,
    ``hours:minutes:seconds``, ``days-hours``, ``days-hours:minutes`` or
    ``days-hours:minutes:seconds``; None for ``infinite``/``UNLIMITED``, for 365 days or more
    (what Slurm prints for no limit) and for anything else."""
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        return None
    days, rest = m.group(1), [int(x) for x in m.group(2).split(":")]
    if days is not None:
        h, mi, sec = [*rest, 0, 0][:3]
        seconds = int(days) * 86400 + h * 3600 + mi * 60 + sec
    else:
        h, mi, sec = [0, 0, *rest][-3:] if len(rest) > 1 else (0, rest[0], 0)
        seconds = h * 3600 + mi * 60 + sec
    return None if seconds >= 365 * 86400 else float(seconds)


def _timestamp(text: str) -> float | None:
    text = text.strip()
    if not text or not text[0].isdigit():
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()  # run with TZ=UTC
    except ValueError:
        return None


def _gpus(gres: str) -> int:
    """GPUs in a GRES string such as ``gpu:a100:4(S:0-1),gpu:2`` (``(null)``: none)."""
    return sum(_int(m.group(1)) or 0 for m in re.finditer(r"gpu(?::[^:,(]+)?:(\d+)", gres))


def _int(text: str) -> int | None:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return None


def _min_opt(a: float | None, b: float | None) -> float | None:
    vals = [v for v in (a, b) if v is not None]
    return min(vals) if vals else None
