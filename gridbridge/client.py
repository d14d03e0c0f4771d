"""The researcher's entry point: ``Client`` and the futures it returns.

``Client()`` with no arguments is the embedded default: state, checkpoints and two local sites
under a per-user data folder, and a reconciler in a background thread, so nothing else needs
to run. ``Client(config="gridbridge.yaml")`` drives a real federation the same way.

Pickles are code, and jobs can write storage, so the client unpickles nothing it cannot vouch
for. The payload is pinned in the job's spec (``callable_ref`` = ``payload.pkl#blake3:<hex>``),
and the runtime runs no other bytes. ``result()`` unpickles ``return.pkl`` only if its bytes
have the digest the attempt's runtime reported (:func:`_return_digest`), else it raises
:class:`DigestMismatch`: another job that replaced the value runs none of its code in this
process. A job can still return a value that lies (the value is its own), and the result record
is read from storage, so a writer that replaces it too, with a matching digest, is not caught.
For the same reason a function's exception is never unpickled: :class:`JobFailed` is chained
to a :class:`RemoteError` rebuilt from the traceback text its attempt recorded.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from pydantic import ValidationError

from gridbridge._outcomes import (
    JobCancelled,
    JobFailed,
    RemoteError,
    StoryEvent,
    remote_error,
)
from gridbridge.adapter import Capability, PreemptAdapter
from gridbridge.config import (
    ConfigError,
    GridConfig,
    default_config,
    explain_errors,
    load_config,
)
from gridbridge.registry import Registry
from gridbridge.spec import JobSpec
from gridbridge.states import JobState
from gridbridge.units import redact_url
from gridbridge.wire import DigestMismatch

if TYPE_CHECKING:
    from gridbridge.adapter import Adapter
    from gridbridge.scheduler.reconciler import Reconciler
    from gridbridge.scheduler.store import Attempt, StateStore

__all__ = ["Client", "DigestMismatch", "JobCancelled", "JobFailed", "JobFuture", "RemoteError",
           "StoryEvent", "default_home"]


PAYLOAD = "payload.pkl"
"""A function job's pickled call, in its checkpoint folder (pinned in its ``callable_ref``)."""

_SHORTCUTS = ("cpus", "memory_gb", "gpus", "walltime_s")
_JOB_OPTIONS = (set(JobSpec.model_fields) - {"command", "callable_ref"}) | set(_SHORTCUTS)
"""What ``submit``/``submit_command``/``map`` take as keyword options."""


def _current_user() -> str:
    """Who submits, for the cost ledger, unless the job names an owner."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, no USER variable
        return "unknown"


def _default_name(hint: str) -> str:
    """A valid job name made from a function's or program's name (``_step`` -> ``step``)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", hint).lstrip("_.-")[:63]
    return name or "job"


def default_home() -> Path:
    """Where the embedded default keeps its state: ``$GRIDBRIDGE_HOME`` or the user data dir."""
    env = os.environ.get("GRIDBRIDGE_HOME")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("gridbridge"))


def _open_store(url: str) -> StateStore:
    """The state store at ``url``; a URL that can never work raises :class:`ConfigError`
    naming ``state_url`` (a busy or unreachable store still raises ``StoreUnavailable``)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from gridbridge.scheduler._db import StoreUnavailable
    from gridbridge.scheduler.store import StateStore

    try:
        shown = make_url(url).render_as_string(hide_password=True)
        return StateStore(url)
    except ModuleNotFoundError as exc:
        hint = " (pip install 'gridbridge[postgres]')" if url.startswith("postgres") else ""
        raise ConfigError(f"state_url: {shown}: its database driver {exc.name!r} is not "
                          f"installed{hint}") from None
    except ArgumentError:
        raise ConfigError(f"state_url: {redact_url(url)!r} is not a database URL, e.g. "
                          "sqlite:///state.db or postgresql://host/db") from None
    except StoreUnavailable:
        problem = _sqlite_folder_problem(url)
        if problem is None:
            raise
        raise ConfigError(f"state_url: {shown}: {problem}") from None


def _sqlite_folder_problem(url: str) -> str | None:
    """Why a SQLite file URL's folder cannot hold the database, or None."""
    if not url.startswith("sqlite:///"):
        return None
    folder = Path(url.removeprefix("sqlite:///").split("?", 1)[0]).parent
    for above in (folder, *folder.parents):
        if above.exists():
            if not above.is_dir():
                return f"{above} is a file, not a folder"
            if above != folder:
                return f"the folder {folder} does not exist"
            return None if os.access(folder, os.W_OK) else f"cannot write in {folder}"
    return None


def _return_digest(attempt: Attempt) -> str | None:
    """The digest ``return.pkl`` of a succeeded attempt must have: the one its result record
    gave when the control plane concluded the attempt, kept in the store (None: none was
    reported, and nothing is unpickled)."""
    return attempt.return_digest


class JobFuture:
    """A handle on one submitted job. ``job_id`` is its id (``j`` and 11 hex digits), the one
    ``gridbridge status``, ``logs`` and ``cancel`` take; ``client.job(job_id)`` gives the
    same handle again, in another process too."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client = client
        self.job_id = job_id

    def __repr__(self) -> str:
        return f"<JobFuture {self.job_id} {self.status()}>"

    def status(self) -> JobState:
        return self.client.store.job(self.job_id).state

    def done(self) -> bool:
        return self.status().terminal

    def wait(self, timeout: float | None = None) -> JobState:
        """Block until the job ends (or ``timeout`` passes) and return its state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.05
        while True:
            state = self.status()
            if state.terminal:
                return state
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.job_id} still {state} after {timeout}s")
            self.client._await_change(delay)
            delay = min(delay * 1.5, 0.1)  # a read of one row: cheap, and a result is awaited

    def result(self, timeout: float | None = None) -> Any:
        """The function's return value, or a command's exit status: 0, as Parsl's bash apps
        return it (a command that exits otherwise fails the job). Raises :class:`JobFailed`
        (chained to the function's :class:`RemoteError`) or :class:`JobCancelled` if the job
        did not succeed, and :class:`DigestMismatch` (unpickling nothing) if ``return.pkl``
        is not the value its attempt reported."""
        failure = self.exception(timeout)
        if failure is not None:
            raise failure
        if self.client.store.job(self.job_id).spec.callable_ref is None:
            return 0  # SUCCEEDED means the command exited 0
        import cloudpickle

        from gridbridge.wire import check_digest

        data, digest = self.client.return_value(self.job_id)
        check_digest(data, digest, f"the return value of job {self.job_id}")
        return cloudpickle.loads(data)

    def cancel(self, reason: str | None = None) -> bool:
        """Ask for cancellation; False if the job had already ended otherwise. ``reason``:
        what its story says (default "cancelled by user")."""
        job = self.client.store.request_cancel(self.job_id, reason=reason)
        return job.state is JobState.CANCELLED or not job.state.terminal

    def detail(self) -> str:
        """Why the job is where it is: for a waiting job, the best site's reason it cannot
        run yet; otherwise the reason of its last state change."""
        return self.client.store.detail(self.job_id)

    @overload
    def logs(self, follow: Literal[False] = False) -> str: ...

    @overload
    def logs(self, follow: Literal[True]) -> Iterator[str]: ...

    def logs(self, follow: bool = False) -> str | Iterator[str]:
        """Every attempt's output so far, each under a header line; ``follow=True``: an
        iterator of pieces of it that goes on with what the job writes next, as it is
        uploaded (with each heartbeat), and stops when the job ends::

            for piece in future.logs(follow=True):
                print(piece, end="")
        """
        if follow:
            return self.client.iter_logs(self.job_id, follow=True)
        return self.client.logs(self.job_id)

    def exception(self, timeout: float | None = None) -> JobFailed | JobCancelled | None:
        """Block until the job ends, then None if it succeeded, else what :meth:`result`
        raises: :class:`JobCancelled`, or :class:`JobFailed` with the function's
        :class:`RemoteError` as its ``__cause__``."""
        state = self.wait(timeout)
        if state is JobState.CANCELLED:
            return JobCancelled(f"job {self.job_id} was cancelled")
        if state not in {JobState.FAILED, JobState.TIMEOUT}:
            return None
        what = "failed" if state is JobState.FAILED else "timed out"
        error = self.client.store.job(self.job_id).error or "no error recorded"
        attempts = self.client.store.attempts(self.job_id)
        remote = remote_error(attempts[-1] if attempts else None)
        if remote is not None:  # its last line here; the whole traceback prints as the cause
            error = error.replace(remote.traceback, remote.summary)
        failed = JobFailed(f"job {self.job_id} {what}: {error}", self.job_id)
        failed.__cause__ = remote
        return failed

    def story(self) -> list[StoryEvent]:
        """Every state change of the job and its attempts, oldest first, each with its time
        as a UTC datetime, who made it and why."""
        return [StoryEvent.of(e) for e in self.client.store.events(self.job_id)]


class Client:
    """Submit jobs, watch them, get results back.

    ``Client(url=..., token=...)`` (or, given no config, ``$GRIDBRIDGE_URL`` and
    ``$GRIDBRIDGE_TOKEN``) is a client of a gridbridge service instead: a
    :class:`gridbridge.service.RemoteClient`, with the same futures and errors, that talks to
    the service's API only (never the database, never a reconciler)."""

    def __new__(
        cls, config: str | os.PathLike[str] | GridConfig | None = None, *,
        start: bool = True, registry: Registry | None = None, url: str | None = None,
        token: str | None = None,
    ) -> Client:
        if url is None and config is None:  # url="": this host's federation, whatever the env
            url = os.environ.get("GRIDBRIDGE_URL")
        if cls is Client and url:
            from gridbridge.service import RemoteClient

            return object.__new__(RemoteClient)
        return object.__new__(cls)

    def __init__(
        self,
        config: str | os.PathLike[str] | GridConfig | None = None,
        *,
        start: bool = True,
        registry: Registry | None = None,
        url: str | None = None,
        token: str | None = None,
    ) -> None:
        from gridbridge.scheduler.reconciler import Reconciler
        from gridbridge.sites import build_adapters

        if config is None:
            config = default_config(default_home())
        elif not isinstance(config, GridConfig):
            config = load_config(config, registry)
        self.config = config
        Path(config.workdir).mkdir(parents=True, exist_ok=True)
        self.store: StateStore = _open_store(config.state_url)
        self.adapters: dict[str, Adapter] = build_adapters(config, registry)
        self.reconciler: Reconciler = Reconciler(config, self.store, self.adapters)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    def start(self) -> None:
        """Run the reconciler in a background thread (it ticks only while it holds the lease)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.reconciler.run, args=(self._stop,), name="gridbridge-reconciler",
                daemon=True,
            )
            self._thread.start()

    def _await_change(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less: until this process's reconciler ends a tick (the
        moment a job's new state is written), when it runs here."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self.reconciler.wait_tick(delay)
        else:
            time.sleep(delay)

    def close(self) -> None:
        """Stop the background reconciler; running jobs go on and are adopted later."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.reconciler.close()
        self.store.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # submission ---------------------------------------------------------------------------

    def submit(
        self, fn: Callable[..., Any], *args: Any, kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> JobFuture:
        """Run ``fn(*args, **kwargs)`` as a job. ``options`` are :class:`JobSpec` fields
        (``name``, ``resources``, ``checkpoint``, ``constraints``, ``max_cost``, ...) or the
        shortcuts ``cpus``, ``memory_gb``, ``gpus``, ``walltime_s``."""
        return self.submit_spec(*self._fn_spec(fn, args, kwargs, options))

    def _fn_spec(self, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any] | None, options: dict[str, Any]) -> tuple[JobSpec, bytes]:
        """The spec of a function job (its ``callable_ref`` a placeholder until the payload
        is written) and the payload, the pickled call."""
        import cloudpickle

        options.setdefault("name", _default_name(getattr(fn, "__name__", "")))
        spec = self._spec(options, callable_ref=PAYLOAD)
        return spec, cloudpickle.dumps((fn, args, kwargs or {}))

    def submit_spec(self, spec: JobSpec, payload: bytes | None = None, *,
                    admit: bool = True) -> JobFuture:
        """Submit a job from a spec already made (the service's way in, with the owner set
        from the caller's identity). ``payload``: a function job's pickled call, written
        under the checkpoint root and pinned in the spec; a spec that names a payload must
        come with it. ``admit``: refuse a job no configured site could ever run."""
        return self.submit_specs([(spec, payload)], admit=admit)[0]

    def submit_specs(self, items: Sequence[tuple[JobSpec, bytes | None]], *,
                     admit: bool = True) -> list[JobFuture]:
        """Submit many jobs as :meth:`submit_spec` does, all recorded in one transaction
        (``admit``: check the first; what ``map()`` sends is all alike)."""
        made = [self._prepared(spec, payload, admit=admit and i == 0)
                for i, (spec, payload) in enumerate(items)]
        self.store.create_jobs([(spec, spec.checkpoint.url or
                                 f"{self.config.checkpoint_root}/{job_id}", job_id)
                                for spec, job_id in made])
        self.reconciler.wake()  # place them now, not at the end of the tick interval
        return [JobFuture(self, job_id) for _, job_id in made]

    def _prepared(self, spec: JobSpec, payload: bytes | None, *,
                  admit: bool) -> tuple[JobSpec, str]:
        """The spec as it is stored (its payload written and pinned) and the job's new id."""
        from gridbridge.scheduler.store import new_job_id
        from gridbridge.wire import pin, put_bytes

        if (payload is None) != (spec.callable_ref is None):
            raise ValueError("a function job's payload comes with its spec, and only then")
        if spec.checkpoint.url is not None:  # before anything is written for the job
            refusal = self.config.checkpoint.refusal(
                spec.checkpoint.url, team=spec.owner.team, root=self.config.checkpoint_root)
            if refusal:
                raise ValueError(f"invalid job option: {refusal}")
        if admit:
            self._admit(spec)
        job_id = new_job_id()
        if payload is not None:
            url = f"{self.config.checkpoint_root}/{job_id}/{PAYLOAD}"
            # the spec, in the store, pins the payload's digest: the runtime runs no other bytes
            spec = spec.model_copy(update={"callable_ref": pin(url, payload)})
            put_bytes(url, payload)
        return spec, job_id

    def submit_command(self, argv: Sequence[str], **options: Any) -> JobFuture:
        """Run a command (an argv list, never a shell string) as a job. It runs in the folder
        it was submitted from on sites that share this host's files (local sites,
        ``runtime.shared_filesystem: true``), elsewhere in its attempt's scratch folder;
        ``chdir="/path"`` names the folder for every site."""
        if isinstance(argv, str):
            raise TypeError("argv must be a list of strings, e.g. ['python', 'train.py']")
        options.setdefault("name", _default_name(Path(argv[0]).name if argv else ""))
        options.setdefault("submit_dir", os.getcwd())  # where it runs on sites that share it
        return self.submit_spec(self._spec(options, command=tuple(argv)))

    def map(self, fn: Callable[..., Any], items: Iterable[Any], **options: Any) -> list[JobFuture]:
        """Submit ``fn(item)`` for each item (all with the same options, so whether any site
        could ever run them is checked once)."""
        return self.submit_specs([self._fn_spec(fn, (item,), None, dict(options))
                                  for item in items])

    def job(self, job_id: str) -> JobFuture:
        self.store.job(job_id)
        return JobFuture(self, job_id)

    def _spec(self, options: dict[str, Any], **target: Any) -> JobSpec:
        data = dict(options)
        unknown = sorted(set(data) - _JOB_OPTIONS)
        if unknown:
            raise ValueError(f"unknown job option {', '.join(map(repr, unknown))}; valid "
                             f"options: {', '.join(sorted(_JOB_OPTIONS))}")
        owner = data.get("owner", {})
        if isinstance(owner, dict):  # an Owner given whole is taken as it is
            data["owner"] = {**self._default_owner(), **owner}
        shortcuts = {k: data.pop(k) for k in _SHORTCUTS if k in data}
        if shortcuts:
            resources = data.pop("resources", {})
            if not isinstance(resources, dict):
                resources = resources.model_dump()
            data["resources"] = {**resources, **shortcuts}
        try:
            return JobSpec.model_validate({**data, **target})
        except ValidationError as exc:
            raise ValueError(explain_errors(exc, "invalid job option", JobSpec)) from None

    def _default_owner(self) -> dict[str, str]:
        """Who a job is charged to unless it names its owner: here, the local user."""
        return {"user": _current_user()}

    def _admit(self, spec: JobSpec) -> None:
        """Refuse a job that no configured site could ever run (the reason per site)."""
        from gridbridge.scheduler.admission import check_admissible

        check_admissible(spec, self.config)

    # operations ---------------------------------------------------------------------------

    def return_value(self, job_id: str) -> tuple[bytes, str | None]:
        """The bytes of a succeeded function job's ``return.pkl`` and the digest they must
        have (:func:`_return_digest`); the caller checks them before it unpickles."""
        from gridbridge.wire import Record, get_bytes

        last = self.store.attempts(job_id)[-1]
        return get_bytes(f"{last.attempt_url}/{Record.RETURN}"), _return_digest(last)

    def logs(self, job_id: str) -> str:
        """Every attempt's output, in order, each under a header line."""
        return "".join(self.iter_logs(job_id))

    def iter_logs(self, job_id: str, *, follow: bool = False) -> Iterator[str]:
        """:meth:`logs` as a stream of pieces (one piece of a log in memory at a time);
        ``follow``: then what the job writes next, as each heartbeat uploads it, until the
        job ends (:func:`gridbridge.logview.follow_logs`)."""
        from gridbridge.logview import follow_logs, iter_logs

        if follow:
            return follow_logs(self.store, job_id)
        return iter_logs(self.store, self.adapters, job_id)

    def preempt(self, job_id: str, *, wait: bool = False) -> str:
        """Deliver a real preemption to the job's running attempt (sites that support it)."""
        active = [a for a in self.store.attempts(job_id) if a.state.active and a.native_id]
        if not active:
            raise RuntimeError(f"job {job_id} has no running attempt to preempt")
        attempt = active[-1]
        assert attempt.native_id is not None
        self.preempt_attempt(attempt.site, attempt.native_id, wait=wait)
        return attempt.id

    def preempt_running(self, attempt_id: str) -> Attempt:
        """Preempt an attempt that is running now, as its site sees it, and wait until it is
        delivered; a RuntimeError says why one that is not running cannot be."""
        a = self.store.attempt(attempt_id)
        if not a.state.active:
            raise RuntimeError(f"attempt {attempt_id} is {a.state.value}, not running: "
                               "only a running attempt can be preempted")
        if a.native_id is None:
            raise RuntimeError(f"attempt {attempt_id} has no native job yet")
        seen = self.adapters[a.site].poll([a.native_id]).get(a.native_id)
        if seen is not None and seen.state.terminal:  # ended since the reconciler last looked
            raise RuntimeError(f"attempt {attempt_id} has ended on {a.site} "
                               f"({seen.state.value}): only a running attempt can be preempted")
        self.preempt_attempt(a.site, a.native_id, wait=True)
        return a

    def preempt_attempt(self, site: str, native_id: str, *, wait: bool = False) -> None:
        """Deliver a real preemption to one native job (sites with ``DEBUG_PREEMPT``)."""
        adapter = self.adapters[site]
        if not isinstance(adapter, PreemptAdapter) or (
            Capability.DEBUG_PREEMPT not in adapter.capabilities()
        ):
            raise RuntimeError(f"site {site} cannot deliver a preemption on request")
        adapter.preempt(native_id, wait=wait)
