"""A Slurm cluster as a site: ``sbatch``, ``squeue``, ``sacct``, ``scancel`` and ``sinfo``,
run on this host (gridbridge on a login node) or on a login node over SSH.

Each attempt is one batch job whose script only ``exec``s the runtime::

    sbatch --parsable --comment=gridbridge:<federation tag>:<attempt id> --partition=P
           --cpus-per-task=N --mem=M --time=T --signal=B:TERM@S --no-requeue ...
           --export=PATH,HOME,...,<runtime.env_names> --wrap=<script>
    script:  [over SSH: export NAME='value' (runtime.env_names)]
             exec python -m gridbridge.runtime --launch <storage URL> --scratch <run dir>

The job's command, arguments and environment are in the launch record, never in the script,
and every option is one argv item (over SSH, :func:`shlex.join` quotes each), so no job value
meets a shell. ``--export`` names only what a process needs of this one's environment (``PATH``,
``HOME``, the locale, the numeric libraries' settings: :func:`gridbridge.units.process_env`)
and the site's ``runtime.env_names``, so the control plane's other variables (its secrets)
never reach the job, and sbatch takes the values from its own environment, so none is on a
command line. Over SSH sbatch runs in the login session's own environment (``--export=ALL``),
and the script ``export``s the values of ``runtime.env_names``, each quoted.
``--signal=B:TERM@S`` gives the runtime a SIGTERM ``S`` seconds before the time limit, and at
preemption too when slurmctld runs with ``preempt_send_user_signal``; the job then checkpoints
and exits 75, and gridbridge continues the remainder in a new attempt.

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

import math
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, ClassVar

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
from gridbridge.adapters._batch import check_attempt_id, job_command, runtime_argv, safe_job_name
from gridbridge.adapters._host import HostOptions, SiteHost
from gridbridge.adapters._run import Completed, Runner, RunnerError
from gridbridge.adapters._slurm_offers import (
    SINFO_FORMAT,
    PartitionOptions,
    _Partition,
    _Pending,
    core_hours_used,
    partition_offer,
    read_pending,
    read_sinfo,
)
from gridbridge.adapters._slurm_status import (
    SACCT_FIELDS,
    SLURM_STATES,
    SQUEUE_FIELDS,
    _Row,
    judge,
    parse_duration,
    sacct_rows,
    squeue_rows,
    timestamp,
    warning_s,
)
from gridbridge.checks import NOT_PROBED, PROBE_SCRIPT, probe_answer
from gridbridge.config import SiteConfig
from gridbridge.states import AttemptState
from gridbridge.units import ENV_NAME_PATTERN, process_env

__all__ = ["SLURM_STATES", "PartitionOptions", "SlurmAdapter", "SlurmOptions", "parse_duration"]

_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
"""A partition, account or QOS name (Slurm's words: a leading ``_`` or a 64th character is
allowed, unlike :data:`gridbridge.units.NAME_PATTERN`)."""
_PREFIX = "gridbridge:"
_ENV_NAME = re.compile(ENV_NAME_PATTERN)
_UNCERTAIN = ("socket timed out", "unable to contact slurm controller", "connection refused",
              "communication connection failure", "slurm_receive_msg", "zero bytes were")
"""sbatch errors after which the job may have been queued all the same."""
_PROBE_WAIT_S = 60.0
"""How long the storage probe job may take to run, queue wait included."""


class SlurmOptions(HostOptions):
    """``options:`` of a ``slurm`` site; ``login``, ``bin_dir``, ``remote_dir``,
    ``command_timeout_s`` and ``federation_tag`` as every login-host site has them
    (:class:`~gridbridge.adapters._host.HostOptions`; ``remote_dir`` defaults to
    ``<workdir>/slurm/<site>``, or ``.gridbridge/slurm/<site>`` over SSH)."""

    partitions: dict[Annotated[str, Field(pattern=_NAME)], PartitionOptions] = Field(
        default_factory=dict)
    """The partitions gridbridge may use, each an offer; empty: every partition that is up."""
    account: Annotated[str, Field(pattern=_NAME)] | None = None
    qos: Annotated[str, Field(pattern=_NAME)] | None = None
    requeue: bool = False
    """Submit with ``--requeue``: a job still running when its preemption grace time ends is
    requeued by Slurm and continues from its checkpoint under the same job id (gridbridge
    decides with the cost model whether to leave it there or move it). False (the default):
    ``--no-requeue``, and a preempted attempt ends there; placement chooses where it goes on.
    A job that checkpoints and exits on the warning signal is never requeued by Slurm."""
    signal_before_s: Annotated[int, Field(ge=0, le=65535)] = 60
    """The runtime gets SIGTERM this long before the time limit, to checkpoint."""


class SlurmAdapter:
    """A Slurm cluster, reached here or over SSH."""

    CAPABILITIES: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.LOGS, Capability.PREEMPTIBLE, Capability.GPUS})
    Options: ClassVar[type[BaseModel] | None] = SlurmOptions
    probe_unit: ClassVar[str] = "partition"
    """The storage probe runs one job per partition (:meth:`probe_storage`)."""

    def __init__(self, site: SiteConfig, workdir: str | Path,
                 runner: Runner | None = None) -> None:
        self.site = site
        self.options = SlurmOptions.model_validate(site.options)
        self.host = SiteHost.for_site(self.options, workdir, kind="slurm", site=site.name,
                                      runner=runner)
        self.comment_prefix = f"{_PREFIX}{self.host.tag}:"
        self._limits: dict[str, float | None] = {}
        self._used: dict[str, tuple[float, float]] = {}

    # plumbing -----------------------------------------------------------------------------

    def _run(self, argv: list[str], *, input: str | None = None) -> Completed:
        # times in UTC, whatever the cluster's zone
        return self.host.run([self.host.cmd(argv[0]), *argv[1:]], input=input,
                             env={"TZ": "UTC"})

    def _ensure_dir(self) -> None:
        """Create the run folder once and make its path absolute (Slurm would read a relative
        ``--output`` against ``--chdir``, and a relative path over SSH is the login home's)."""
        self.host.ensure_dir(lambda real: "%" not in real and "\n" not in real,
                             "it must be an absolute path without '%' (Slurm expands '%' in "
                             "--output)")

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
            url = write_launch(request, heartbeat_s=self.site.runtime.heartbeat_s,
                               shared_filesystem=self.site.shares_files(False))
        except OSError as exc:
            raise SubmitRejected(f"cannot write the launch record: {exc}") from None
        self._ensure_dir()
        default_python = sys.executable if self.options.login is None else "python3"
        argv = runtime_argv(self.site, url, f"{self.host.remote_dir}/{request.attempt_id}",
                            default_python)
        if self.options.requeue:
            argv += ["--rerun-env", "SLURM_RESTART_COUNT"]
        # Over SSH the values of runtime.env_names travel in the script, each quoted (the
        # login session has not got them); here sbatch exports them by name (sbatch_argv),
        # so no value is ever on a command line
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
            f"--output={self.host.remote_dir}/slurm-%j.out",
            f"--chdir={self.host.remote_dir}",
            f"--export={self._exported()}",  # see the module's docstring
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

    def _exported(self) -> str:
        """What ``--export`` names. Here: the variables a process needs of this one's
        environment (:func:`gridbridge.units.process_env`) and ``runtime.env_names``, by name
        only (sbatch takes their values from its own environment), never the rest of the
        control plane's environment; ``NONE`` when there is none. Over SSH: ``ALL``, the login
        session's own environment (none of this process's)."""
        if self.options.login is not None:
            return "ALL"
        names = sorted(n for n in process_env(os.environ, self.site.runtime.env_names)
                       if _ENV_NAME.fullmatch(n))
        return ",".join(names) or "NONE"

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
                t0, t1 = (timestamp(f[1]), timestamp(f[2])) if len(f) == 3 else (None, None)
                if t0 is not None and t1 is not None and t1 >= t0:
                    runs.setdefault(f[0], []).append((t0, t1))
            if runs:
                return {k: tuple(sorted(v)) for k, v in runs.items()}
        return {}

    def _squeue(self, *, all_states: bool, only: set[str] | None = None) -> list[_Row]:
        fmt = ",".join(f"{f}:|" for f in SQUEUE_FIELDS[:-1]) + f",{SQUEUE_FIELDS[-1]}:"
        argv = ["squeue", "--me", "-h", "-O", fmt]
        if all_states:
            argv[1:1] = ["-t", "all"]
        return squeue_rows(self._run(argv).check("squeue"), time.time(), only)

    def _sacct(self, ids: Sequence[str]) -> dict[str, _Row]:
        rows: dict[str, _Row] = {}
        answered, errors = False, []
        for argv in (["sacct", "-X", "--parsable2", "-n", "-o", SACCT_FIELDS, "-j", ",".join(ids)],
                     ["sacct", "-c", "--parsable2", "-n", "-o", SACCT_FIELDS, "-j", ",".join(ids)]):
            done = self._run(argv)
            if done.returncode != 0:
                errors.append((done.stderr or done.stdout).strip())
                continue  # no accounting database: the completion log (-c) is next
            answered = True
            rows.update(sacct_rows(done.stdout))
            if len(rows) == len(set(ids)):
                break
        if not answered:  # never "unknown, so LOST" because the history could not be read
            raise RunnerError(f"sacct cannot tell what became of jobs {', '.join(ids)}: "
                              f"{' / '.join(errors)[-1000:]}")
        return rows

    def _status(self, row: _Row) -> AttemptStatus:
        return judge(row, self.options.signal_before_s)

    def _warning_s(self, limit_s: float) -> int:
        return warning_s(limit_s, self.options.signal_before_s)

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

    def _partitions(self) -> dict[str, _Partition]:
        """``sinfo`` per node: each partition that is up (its time limit remembered for
        ``sbatch --time``)."""
        parts = read_sinfo(self._run(["sinfo", "-h", "-N", "-O", SINFO_FORMAT]).check("sinfo"))
        self._limits.update({name: p.limit_s for name, p in parts.items()})
        return parts

    def _pending(self) -> list[_Pending]:
        """Pending jobs of every user that wait to run: [] when squeue cannot say."""
        done = self._run(["squeue", "-h", "-t", "PD", "--start", "-o", "%P|%C|%S|%r"])
        return read_pending(done.stdout) if done.returncode == 0 else []

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
            if done.returncode == 0:
                return core_hours_used(done.stdout, partition)
        return 0.0

    def offers(self) -> Sequence[Offer]:
        """One offer per partition gridbridge may use, keyed by the partition's name. Its
        CPUs are the idle ones less what jobs already waiting for the same nodes will take,
        so a partition whose idle CPUs a higher-priority job is about to claim (a preemptor
        in its grace time) offers nothing."""
        parts = self._partitions()
        pending = self._pending()
        chosen = self.options.partitions or {name: PartitionOptions() for name in parts}
        now = time.time()
        return [partition_offer(self.site, name, popt, parts, pending, now,
                                self._allocation_used(name)
                                if popt.allocation_core_hours is not None else None)
                for name, popt in chosen.items() if name in parts]

    # storage probe ------------------------------------------------------------------------

    def probe_storage(self, url: str) -> dict[str, str]:
        """Per partition this site offers (``default`` where it names none): '' when a job
        there can write, read back and delete a probe object under ``url``, else why not. The
        probe is a small job submitted as attempts are (the same export, prologue and
        interpreter), so what it finds is what an attempt would; one that does not start
        within ``_PROBE_WAIT_S`` is cancelled and said not probed."""
        self._ensure_dir()
        python = self.site.runtime.python or (
            sys.executable if self.options.login is None else "python3")
        env = ({n: os.environ[n] for n in self.site.runtime.env_names if n in os.environ}
               if self.options.login else None)
        body = job_command(self.site, [python, "-c", PROBE_SCRIPT, url], env=env)
        names: list[str | None] = [*self.options.partitions] or [None]
        return {name or "default": self._probe(name, body, url) for name in names}

    def _probe(self, partition: str | None, body: str, url: str) -> str:
        o = self.options
        argv = ["sbatch", "--parsable", "--job-name=gridbridge-probe",
                f"--comment={self.comment_prefix}probe", "--nodes=1", "--ntasks=1",
                "--cpus-per-task=1", "--mem=256M", "--time=2", "--no-requeue",
                f"--output={self.host.remote_dir}/probe-%j.out",
                f"--chdir={self.host.remote_dir}", f"--export={self._exported()}",
                *([f"--partition={partition}"] if partition else []),
                *([f"--account={o.account}"] if o.account else []),
                *([f"--qos={o.qos}"] if o.qos else []), f"--wrap={body}"]
        try:
            done = self._run(argv)
        except (RunnerError, OSError) as exc:  # no sbatch here, no login node: no verdict
            return f"{NOT_PROBED}sbatch could not be run: {exc}"[:400]
        job = done.stdout.strip().split(";")[0]
        if done.returncode != 0 or not job.isdigit():
            words = (done.stderr or done.stdout).strip()[-300:]
            return f"{NOT_PROBED}sbatch did not take the probe job: {words}"
        deadline = time.monotonic() + _PROBE_WAIT_S
        while self._run(["squeue", "-h", "-j", job, "-o", "%T"]).stdout.strip():
            if time.monotonic() > deadline:  # a busy queue is no verdict on the storage
                self._run(["scancel", job])
                return f"{NOT_PROBED}the probe job waited more than {_PROBE_WAIT_S:.0f} s"
            time.sleep(0.5)
        out = f"{self.host.remote_dir}/probe-{job}.out"
        said = self._run(["cat", "--", out])
        self._run(["rm", "-f", "--", out])
        if said.returncode != 0:
            return f"the probe job {job} left no output ({said.stderr.strip()[-200:]})"
        return probe_answer(url, said.stdout, None)

    # logs ---------------------------------------------------------------------------------

    def logs(self, native_id: str) -> str:
        """The job's output file so far ('' before it starts)."""
        if not native_id.isdigit():
            raise ValueError(f"not a Slurm job id: {native_id!r}")
        done = self.host.run(["cat", "--", f"{self.host.remote_dir}/slurm-{native_id}.out"])
        return done.stdout if done.returncode == 0 else ""
