"""A fleet of SSH-reachable edge nodes as one site: the local adapter, on remote nodes.

Each node is an offer (key = node name). An attempt runs on one node as
``python -m gridbridge.runtime --launch URL --scratch <remote_dir>/<attempt id>``, detached
(``setsid nohup``) in a process group of its own whose members all carry
``GRIDBRIDGE_ATTEMPT_ID=<attempt id>``; its native id is ``<node>/<attempt id>``::

    submit ──> 1 round trip to the node: mkdir <dir> (atomic: a second submit adopts),
               owner (attempt id + federation tag), resources, spawn, spawned (pid start epoch)
    poll   ──> 1 round trip per node for all of its attempts: one line each
               (unknown | starting | running | gone | result + result.json), markers
    cancel ──> 1 round trip per node: marker, SIGTERM to the group, a detached reaper that
               SIGKILLs what is left after the grace period
    owned  ──> 1 round trip per node: live attempt folders carrying our federation tag
    offers ──> 1 round trip per node: nproc, MemAvailable, load, what our live attempts hold
    bootstrap ─> per node: probe, upload the missing wheels, make the venv, pip install offline

Every command is an argv list through :class:`~gridbridge.adapters._run.SSHRunner` (strict
host keys, one pooled connection per node). The shell scripts are constants run as
``sh -c SCRIPT NAME ARGS...``: every value (paths, ids, the runtime's argv) is a positional
argument, never part of a script's text.

A node that does not answer keeps its attempts in their last known state until it has been
unreachable for ``lost_after_s``; they are then LOST (and stay LOST in this adapter's memory:
the control plane has fenced them off, and a ``cancel`` after the node comes back kills the
zombie). The node's folder is the truth for everything else, so a restarted control plane
finds its attempts again through ``owned()`` and a re-submit of the same attempt id.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from gridbridge.adapter import (
    AttemptStatus,
    BootstrapReport,
    Capability,
    NodeBootstrap,
    NodeCheck,
    Offer,
    OwnedJob,
    Pricing,
    SubmitRejected,
    SubmitRequest,
    write_launch,
)
from gridbridge.adapters._batch import (
    ALREADY_RAN_EXIT_CODE,
    ATTEMPT_ID,
    check_attempt_id,
    runtime_argv,
)
from gridbridge.adapters._run import HostKeyRefused, Runner, RunnerError, SSHRunner, SSHTarget
from gridbridge.config import SiteConfig, prologue_script
from gridbridge.spec import Tier
from gridbridge.states import AttemptState

__all__ = ["BootstrapReport", "EdgeAdapter", "EdgeNode", "EdgeOptions", "NodeBootstrap",
           "NodeCheck"]

log = logging.getLogger(__name__)
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_T = TypeVar("_T")
_REASONS = {
    "succeeded": AttemptState.SUCCEEDED,
    "failed": AttemptState.FAILED,
    "preempted": AttemptState.PREEMPTED,
}
_EXIT_WAIT_TENTHS = 300
"""How long (0.1 s) a runtime that wrote its result may take to exit before its group dies."""

# The node side. POSIX sh (dash); functions shared by the scripts below. ``pg`` is set by
# group_of. A process belongs to an attempt when it is in the runtime's process group AND
# carries its tag, so a process group id reused by strangers is never signalled.
_LIB = r"""
alive() {
  { read -r _p _s _x < "$1"; } 2>/dev/null || return 1
  case $_p in ''|*[!0-9]*) return 1;; esac
  { read -r _st < "/proc/$_p/stat"; } 2>/dev/null || return 1
  set -- ${_st##*) }
  [ "$1" != Z ] && [ "$1" != X ] && [ -n "$_s" ] && [ "${20:-}" = "$_s" ]
}
runtime_alive() {
  if [ -e "$1/pid" ]; then alive "$1/pid"; else alive "$1/spawned"; fi
}
group_of() {
  for _f in "$1/pid" "$1/spawned"; do
    { read -r pg _r < "$_f"; } 2>/dev/null || continue
    case $pg in ''|*[!0-9]*|0|1) continue;; esac
    return 0
  done
  return 1
}
group_alive() {
  kill -0 "-$1" 2>/dev/null || return 1
  for _f in /proc/[0-9]*/stat; do
    { read -r _st < "$_f"; } 2>/dev/null || continue
    set -- "$1" "$2" ${_st##*) }
    case $3 in Z|X) continue;; esac
    [ "$5" = "$1" ] || continue
    tr '\0' '\n' 2>/dev/null < "${_f%/stat}/environ" \
      | grep -qxF "GRIDBRIDGE_ATTEMPT_ID=$2" && return 0
  done
  return 1
}
kill_group() {
  group_of "$1" || return 0
  _n=0
  while [ "$_n" -lt 50 ] && group_alive "$pg" "$2"; do
    kill -KILL "-$pg" 2>/dev/null
    sleep 0.1
    _n=$((_n + 1))
  done
}
reap() {
  setsid nohup sh -c "$reaper" gridbridge-reap "$1" "$2" "$3" </dev/null >/dev/null 2>&1 &
}
"""

_REAP = _LIB + r"""
n=0
while [ "$n" -lt "$3" ] && runtime_alive "$1"; do sleep 0.1; n=$((n + 1)); done
kill_group "$1" "$2"
"""
"""Detached: wait (``$3`` tenths of a second at most) for the runtime, then kill the rest."""

_SUBMIT = r"""
base=$1; id=$2; tag=$3; res=$4; py=$5; shift 5
d=$base/$id
fail() { rm -rf -- "$d"; echo "$1" >&2; exit "$2"; }
mkdir -p -- "$base" || { echo "cannot create $base" >&2; exit 4; }
if ! mkdir -- "$d" 2>/dev/null; then
  [ -d "$d" ] && { echo adopted; exit 0; }
  echo "cannot create $d" >&2; exit 4
fi
if [ -n "$py" ] && ! command -v "$py" >/dev/null 2>&1; then fail "no interpreter $py" 3; fi
mkdir -- "$d/work" && printf '%s %s\n' "$id" "$tag" > "$d/owner" \
  && printf '%s\n' "$res" > "$d/resources" && cd "$d/work" || fail "cannot prepare $d" 4
GRIDBRIDGE_ATTEMPT_ID=$id setsid nohup "$@" </dev/null >>"$d/output.log" 2>&1 &
pid=$!
st=
{ read -r st < "/proc/$pid/stat"; } 2>/dev/null
set -- ${st##*) }
printf '%s %s %s\n' "$pid" "${20:-}" "$(date +%s)" > "$d/spawned"
echo "started $pid"
"""
"""$1 run folder, $2 attempt id, $3 federation tag, $4 resources line, $5 interpreter to
check ('' = none), then the runtime's argv. Exit 3/4: nothing runs (the folder is removed)."""

_POLL = _LIB + r"""
base=$1; reaper=$2; grace=$3; exitwait=$4; shift 4
now=$(date +%s)
for id in "$@"; do
  d=$base/$id
  if [ ! -e "$d/spawned" ]; then printf '%s\tunknown\t\t\n' "$id"; continue; fi
  marks=
  for m in cancelled preempted walltime; do [ -e "$d/$m" ] && marks=$marks$m,; done
  run=0; runtime_alive "$d" && run=1
  { read -r _a _b t0 < "$d/spawned"; } 2>/dev/null
  case $t0 in ''|*[!0-9]*) t0=0;; esac
  if [ -e "$d/result.json" ]; then
    if [ "$run" = 1 ]; then
      [ -e "$d/reaping" ] || { : > "$d/reaping"; reap "$d" "$id" "$exitwait"; }
    elif [ ! -e "$d/reaped" ]; then
      kill_group "$d" "$id"; : > "$d/reaped"
    fi
    printf '%s\tresult\t%s\t' "$id" "$marks"; tr -d '\n' < "$d/result.json"; echo
  elif [ "$run" = 1 ] && [ -e "$d/pid" ]; then
    { read -r _c _m _g wt < "$d/resources"; } 2>/dev/null
    case $wt in ''|*[!0-9]*) wt=;; esac
    if [ -n "$wt" ] && [ ! -e "$d/preempted" ] && [ $((now - t0)) -gt "$wt" ]; then
      echo "$now" > "$d/walltime"; echo "$now" > "$d/preempted"
      group_of "$d" && kill -TERM "-$pg" 2>/dev/null
      reap "$d" "$id" "$grace"
      marks=${marks}preempted,walltime,
    fi
    printf '%s\trunning\t%s\t\n' "$id" "$marks"
  elif [ "$run" = 1 ] || [ $((now - t0)) -lt 3 ]; then
    printf '%s\tstarting\t%s\t\n' "$id" "$marks"
  else
    printf '%s\tgone\t%s\t\n' "$id" "$marks"
  fi
done
"""
"""$1 run folder, $2 the reaper script, $3 grace and $4 exit wait (0.1 s), then attempt ids:
one line each,
``id TAB word TAB markers TAB result.json on one line``."""

_CANCEL = _LIB + r"""
base=$1; reaper=$2; grace=$3; shift 3
now=$(date +%s)
for id in "$@"; do
  d=$base/$id
  [ -e "$d/spawned" ] || continue
  if ! runtime_alive "$d"; then kill_group "$d" "$id"; continue; fi
  [ -e "$d/result.json" ] && continue
  if [ -e "$d/cancelled" ]; then
    { read -r t < "$d/cancelled"; } 2>/dev/null
    case $t in ''|*[!0-9]*) t=0;; esac
    [ $(( (now - t) * 10 )) -gt "$grace" ] && kill_group "$d" "$id"
    continue
  fi
  echo "$now" > "$d/cancelled"
  group_of "$d" && kill -TERM "-$pg" 2>/dev/null
  reap "$d" "$id" "$grace"
done
"""
"""A repeated cancel past the grace period kills at once (the reaper may have died)."""

_OWNED = _LIB + r"""
base=$1; tag=$2
for d in "$base"/*; do
  [ -e "$d/owner" ] || continue
  { read -r id t < "$d/owner"; } 2>/dev/null || continue
  [ "$t" = "$tag" ] && [ "${d##*/}" = "$id" ] || continue
  if runtime_alive "$d"; then
    printf '%s\trunning\n' "$id"
  elif [ -e "$d/spawned" ] && group_of "$d" && group_alive "$pg" "$id"; then
    printf '%s\torphaned-children\n' "$id"
  fi
done
"""

_MEMINFO = r"""
echo "nproc $(nproc)"
while read -r k v _; do
  case $k in MemAvailable:) echo "memavail $v";; MemTotal:) echo "memtotal $v";; esac
done < /proc/meminfo
read -r l1 _ < /proc/loadavg; echo "load $l1"
"""

_OFFERS = _LIB + _MEMINFO + r"""
for d in "$1"/*; do
  [ -e "$d/resources" ] && [ ! -e "$d/result.json" ] && runtime_alive "$d" || continue
  { read -r r < "$d/resources"; } 2>/dev/null && echo "busy $r"
done
"""

_CHECK = _MEMINFO + r"""
code='import sys, gridbridge; print(sys.version.split()[0], gridbridge.__version__)'
if out=$("$1" -c "$code" 2>&1); then echo "versions $out"
else echo "python-error $(printf '%s\n' "$out" | tail -n 1)"; fi
"""


_PROBE = r"""
code='import gridbridge; print(gridbridge.__version__)'
if out=$("$1" -c "$code" 2>&1); then echo "have $(printf '%s\n' "$out" | tail -n 1)"
else echo "missing $(printf '%s\n' "$out" | tail -n 1)"; fi
tag='import sys, sysconfig
print(sys.implementation.name, "%d.%d" % sys.version_info[:2], sysconfig.get_platform())'
if out=$("$2" -c "$tag" 2>&1); then echo "base $out"
else echo "nobase $(printf '%s\n' "$out" | tail -n 1)"; fi
if [ -e "$3/pyvenv.cfg" ]; then echo "venv yes"
elif [ ! -e "$3" ] || { [ -d "$3" ] && [ -z "$(ls -A -- "$3" 2>/dev/null)" ]; }; then
  echo "venv absent"
else echo "venv other"; fi
"""
"""$1 the runtime's interpreter, $2 the base interpreter for the venv, $3 the venv:
``have VERSION`` or ``missing WHY``, ``base IMPL X.Y PLATFORM`` or ``nobase WHY``, then
``venv yes|absent|other`` (other: something that is not a venv is in the way)."""

_LIST = r"""
mkdir -p -- "$1" || exit 4
for f in "$1"/*.whl; do
  [ -f "$f" ] && printf '%s\t%s\n' "${f##*/}" "$(wc -c < "$f")"
done
exit 0
"""
"""$1 the node's wheelhouse: ``name TAB size`` per wheel there."""

_PUT = r"""
part=$1.part-$4
if [ "$2" = first ]; then base64 -d > "$part" || exit 4
else base64 -d >> "$part" || exit 4; fi
if [ "$3" = last ]; then mv -f -- "$part" "$1" || exit 4; fi
"""
"""Base64 on stdin -> $1 (through ``$1.part-$4``, $4 the node, so nodes that share a
filesystem never write one file together): $2 ``first``/``more``, $3 ``last``/``more``."""

_INSTALL = r"""
base=$1; venv=$2; wh=$3; pipwhl=$4; req=$5; py=$6; want=$7
not_venv() {
  [ -e "$venv" ] && [ ! -e "$venv/pyvenv.cfg" ] && [ -n "$(ls -A -- "$venv" 2>/dev/null)" ]
}
if not_venv; then echo "$venv exists and is not a virtual environment: refusing to touch it" >&2
  exit 3; fi
lock=$venv.gridbridge-bootstrap-lock
mkdir -p -- "${venv%/*}" || exit 4
n=0
until mkdir -- "$lock" 2>/dev/null; do
  n=$((n + 1))
  if [ "$n" -gt 600 ]; then
    echo "$lock held for 10 minutes (remove it if no bootstrap runs)" >&2; exit 4
  fi
  sleep 1
done
trap 'rmdir -- "$lock" 2>/dev/null' EXIT
code='import gridbridge; print(gridbridge.__version__)'
if [ "$("$py" -c "$code" 2>/dev/null)" = "$want" ]; then echo already; exit 0; fi
if not_venv; then echo "$venv exists and is not a virtual environment: refusing to touch it" >&2
  exit 3; fi
if [ ! -e "$venv/pyvenv.cfg" ] || [ ! -x "$venv/bin/python" ]; then
  "$base" -m venv --without-pip "$venv" || { echo "$base -m venv $venv failed" >&2; exit 4; }
fi
"$venv/bin/python" "$wh/$pipwhl/pip" install --no-index --find-links "$wh" --no-cache-dir \
  --disable-pip-version-check --no-warn-script-location --quiet "$req" pip || exit 5
echo installed
"""
"""$1 base interpreter, $2 the venv, $3 the node's wheelhouse, $4 the pip wheel in it (run
from the wheel itself, so the base needs neither pip nor ensurepip), $5 the requirement
(``gridbridge==X``), $6 the runtime's interpreter, $7 the version wanted. One bootstrap at a
time per venv (a lock folder beside it): a node that shares the filesystem with one that
just installed it finds it there. Exit 3: a folder that is not a venv is in the way."""

_CHUNK = 4 << 20
"""Bytes of a wheel per upload round trip (base64 on the command's stdin)."""
_VENV_PYTHON = re.compile(r"(/[^\n\t]*[^/\n\t])/bin/python[0-9.]*")


class EdgeNode(BaseModel):
    """One node of the fleet (``options.nodes[]``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=_NAME)]
    """The offer key and the first part of native ids."""
    host: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str = "root"
    key_file: str | None = None
    """Default: the fleet's ``key_file`` (then the SSH agent and ``~/.ssh/id_*``)."""
    known_hosts: str | None = None
    """Default: the fleet's ``known_hosts``."""
    labels: dict[Annotated[str, Field(pattern=_NAME)], str] = Field(default_factory=dict)
    """Shown in the offer's shape, e.g. ``location``, ``accelerator``."""
    cpus: Annotated[int, Field(ge=1)] | None = None
    """What gridbridge may use there; default: the node's ``nproc``."""
    memory_gb: Annotated[float, Field(gt=0)] | None = None
    """Default: the node's available memory."""
    gpus: int = Field(default=0, ge=0)
    cost_per_hour: float = Field(default=0.0, ge=0)


class EdgeOptions(BaseModel):
    """``options:`` of an ``edge`` site."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    nodes: Annotated[list[EdgeNode], Field(min_length=1)]
    known_hosts: str = "~/.ssh/known_hosts"
    key_file: str | None = None
    connect_timeout_s: float = Field(default=10.0, gt=0)
    command_timeout_s: float = Field(default=20.0, gt=0)
    max_sessions_per_node: int = Field(default=4, ge=1)
    remote_dir: str | None = None
    """The run folder on each node; default ``.gridbridge/edge/<site>`` in the SSH user's
    home. Made absolute on each node (``realpath``) the first time it is used there."""
    lost_after_s: float = Field(default=10.0, ge=0)
    """How long a node may be unreachable before its attempts are LOST."""
    grace_s: float = Field(default=10.0, ge=0)
    """Time between SIGTERM and SIGKILL on cancel (and at the walltime)."""
    federation_tag: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")] | None = None
    """Marks this federation's attempts on the nodes; default: derived from the workdir."""
    python: str | None = None
    """The runtime's interpreter on the nodes when ``runtime.python`` is unset (else
    ``python3``)."""


class _Wheelhouse:
    """The local wheelhouse, built from the checkout the first time a node needs it."""

    def __init__(self, checkout: Path | None, given: Path | None, cache_dir: Path,
                 version: str) -> None:
        self.checkout, self.given, self.cache_dir, self.version = (
            checkout, given, cache_dir, version)
        self._lock = threading.Lock()
        self._path: Path | None = given
        self._error: str | None = None
        self.built = False
        self.build_s = 0.0

    def get(self) -> Path:
        with self._lock:
            if self._path is None and self._error is None:
                try:
                    self._path = self._build()
                except RunnerError as exc:
                    self._error = str(exc)
            if self._path is None:
                raise RunnerError(self._error or "no wheelhouse")
            return self._path

    @property
    def path(self) -> Path | None:
        return self._path

    def _build(self) -> Path:
        assert self.checkout is not None
        pyproject = (self.checkout / "pyproject.toml").read_bytes()
        key = hashlib.sha256(pyproject + "\0".join(
            [self.version, *_local_tag()]).encode()).hexdigest()[:16]
        dest = self.cache_dir / f"wheelhouse-{self.version}-{key}"
        if (dest / ".complete").exists():
            return dest
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_dir / f".wheelhouse-{key}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        t0 = time.monotonic()
        # The base install only (no extras), plus pip itself: the nodes run pip from its wheel.
        argv = [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--quiet",
                "--wheel-dir", str(tmp), str(self.checkout), "pip"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=1800,
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise RunnerError("pip wheel did not finish within 1800s") from None
        if done.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RunnerError(f"building the wheelhouse failed (pip wheel, exit "
                              f"{done.returncode}): {(done.stderr or done.stdout)[-2000:]}")
        _wheel_of(tmp, "gridbridge")
        _wheel_of(tmp, "pip")
        (tmp / ".complete").write_text(f"{self.version}\n")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        self.built, self.build_s = True, round(time.monotonic() - t0, 1)
        return dest


def _local_tag() -> tuple[str, str, str]:
    """What a wheelhouse built here fits: implementation, X.Y, platform."""
    return (sys.implementation.name, "{}.{}".format(*sys.version_info[:2]),
            sysconfig.get_platform())


def _wheel_of(folder: Path, project: str) -> Path:
    """The one wheel of ``project`` in ``folder`` (RunnerError when there is none or several)."""
    found = sorted(folder.glob(f"{project}-*.whl"))
    if len(found) != 1:
        raise RunnerError(f"{folder} holds {len(found)} {project} wheels, not exactly one")
    return found[0]


def _checkout() -> Path | None:
    """The source checkout gridbridge runs from (the folder with its pyproject.toml above the
    package), else None (installed from a wheel)."""
    spec = importlib.util.find_spec("gridbridge")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).resolve().parent.parent
    try:
        meta = tomllib.loads((root / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return root if meta.get("project", {}).get("name") == "gridbridge" else None


class _BadRunDir(RunnerError):
    """The node's run folder does not resolve to a usable absolute path."""


class EdgeAdapter:
    """A fleet of edge nodes reached over SSH."""

    CAPABILITIES: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.ADOPT, Capability.LOGS, Capability.PREEMPTIBLE, Capability.GPUS,
         Capability.CHECK, Capability.BOOTSTRAP})
    Options: ClassVar[type[BaseModel] | None] = EdgeOptions

    def __init__(self, site: SiteConfig, workdir: str | os.PathLike[str]) -> None:
        self.site = site
        self.options = o = EdgeOptions.model_validate(site.options)
        self.nodes: dict[str, EdgeNode] = {}
        self.runners: dict[str, Runner] = {}
        """One pooled runner per node (tests may wrap them)."""
        for node in o.nodes:
            if node.name in self.nodes:
                raise ValueError(f"node name {node.name!r} appears twice")
            self.nodes[node.name] = node
            target = SSHTarget(host=node.host, port=node.port, user=node.user,
                               key_file=node.key_file or o.key_file,
                               known_hosts=node.known_hosts or o.known_hosts,
                               connect_timeout_s=o.connect_timeout_s)
            self.runners[node.name] = SSHRunner(target, max_sessions=o.max_sessions_per_node)
        self.workdir = Path(workdir)
        self.tag = o.federation_tag or hashlib.sha256(
            str(Path(workdir).resolve()).encode()).hexdigest()[:10]
        self._dir = o.remote_dir or f".gridbridge/edge/{site.name}"
        self._bases: dict[str, str] = {}
        self._placed: dict[str, tuple[str, int]] = {}
        """attempt id -> (node, cpus) of attempts this adapter submitted and saw live."""
        self._last: dict[str, AttemptStatus] = {}
        self._down: dict[str, float] = {}
        self._flaps: dict[str, list[float]] = {}
        """Per node, when it went from answering to not answering (the last hour's)."""
        """node -> when it was first found unreachable (this time round)."""
        self._lost: dict[str, AttemptStatus] = {}

    def capabilities(self) -> frozenset[Capability]:
        caps = {Capability.ADOPT, Capability.LOGS}
        if self.site.preemptible:
            caps.add(Capability.PREEMPTIBLE)
        if any(n.gpus for n in self.nodes.values()):
            caps.add(Capability.GPUS)
        return frozenset(caps)

    def close(self) -> None:
        """Close every node's pooled connection."""
        for runner in self.runners.values():
            if isinstance(runner, SSHRunner):
                runner.close()

    # plumbing -----------------------------------------------------------------------------

    def _sh(self, node: str, script: str, *args: str) -> str:
        """Run a constant script on ``node`` with ``args`` as its positional arguments."""
        done = self.runners[node].run(["sh", "-c", script, "gridbridge-edge", *args],
                                      timeout=self.options.command_timeout_s)
        return done.check(f"the edge script on {node}")

    def _base(self, node: str) -> str:
        """The node's run folder as an absolute path (one round trip, the first time)."""
        base = self._bases.get(node)
        if base is None:
            done = self.runners[node].run(["realpath", "-m", "--", self._dir],
                                          timeout=self.options.command_timeout_s)
            base = done.check(f"realpath on {node}").removesuffix("\n")
            if not base.startswith("/") or any(c in base for c in "\n\t\r"):
                raise _BadRunDir(f"unusable run folder on {node}: {base!r}")
            # A folder of its own per node: nodes that share a filesystem (an NFS home) must
            # never see each other's attempts as their own.
            base = f"{base.rstrip('/')}/{node}"
            self._bases[node] = base
        return base

    def _split(self, native_id: str) -> tuple[str, str] | None:
        node, sep, aid = native_id.partition("/")
        if not sep or node not in self.nodes or not ATTEMPT_ID.fullmatch(aid) or ".." in aid:
            return None
        return node, aid

    def _each(self, nodes: Sequence[str], work: Callable[[str], _T]
              ) -> dict[str, _T | RunnerError]:
        """``work(node)`` on every node at once; a node's RunnerError is its answer."""
        def guarded(node: str) -> _T | RunnerError:
            try:
                return work(node)
            except RunnerError as exc:
                return exc

        if not nodes:
            return {}
        with ThreadPoolExecutor(max_workers=len(nodes), thread_name_prefix="edge") as pool:
            return dict(zip(nodes, pool.map(guarded, nodes), strict=True))

    # submit -------------------------------------------------------------------------------

    def submit(self, request: SubmitRequest) -> str:
        """Start the attempt on its node, or adopt it if it was started there already (one
        round trip). :class:`SubmitRejected` when nothing was started."""
        aid = request.attempt_id
        check_attempt_id(aid)
        node = self._node_for(request)
        try:
            url = write_launch(request, heartbeat_s=self.site.runtime.heartbeat_s)
        except OSError as exc:
            raise SubmitRejected(f"cannot write the launch record: {exc}") from None
        try:
            base = self._base(node)
        except _BadRunDir as exc:
            raise SubmitRejected(str(exc)) from None
        runtime = self.site.runtime
        argv = runtime_argv(self.site, url, f"{base}/{aid}", self.options.python or "python3")
        check_python = "" if runtime.prologue else argv[0]
        env = [f"{n}={os.environ[n]}" for n in runtime.env_names if n in os.environ]
        if env:
            argv = ["env", *env, *argv]
        if runtime.prologue:  # the operator's trusted lines; the argv stays out of the script
            argv = ["bash", "-c", prologue_script(runtime.prologue), "gridbridge-run", *argv]
        res = request.spec.resources
        walltime = res.walltime_s
        if self.site.max_walltime_s is not None:
            walltime = min(walltime, self.site.max_walltime_s)
        line = f"{res.cpus} {res.memory_gb:g} {res.gpus} {max(1, int(walltime + 0.999))}"
        done = self.runners[node].run(
            ["sh", "-c", _SUBMIT, "gridbridge-submit", base, aid, self.tag, line, check_python,
             *argv], timeout=self.options.command_timeout_s)
        if done.returncode in (3, 4):
            raise SubmitRejected(f"{node}: {(done.stderr or done.stdout).strip()[-500:]}")
        done.check(f"submit on {node}")
        self._placed[aid] = (node, res.cpus)
        return f"{node}/{aid}"

    def _node_for(self, request: SubmitRequest) -> str:
        """The node placement chose (the offer's key), else the one this adapter already used
        for the attempt, else the first with room."""
        placed = self._placed.get(request.attempt_id)
        if placed is not None:
            return placed[0]
        offer = request.offer
        if offer is not None and offer.site == self.site.name:
            if offer.key not in self.nodes:
                raise SubmitRejected(f"no node {offer.key!r} in site {self.site.name}")
            return offer.key
        cpus = request.spec.resources.cpus
        for name, node in self.nodes.items():
            used = sum(c for n, c in self._placed.values() if n == name)
            if node.cpus is None or used + cpus <= node.cpus:
                return name
        raise SubmitRejected(f"no node of {self.site.name} has {cpus} CPUs free")

    # poll ---------------------------------------------------------------------------------

    def poll(self, native_ids: Sequence[str]) -> Mapping[str, AttemptStatus]:
        """One round trip per node. An attempt on a node that does not answer keeps its last
        state (it is left out of the answer when this adapter has seen none: no news) until
        the node has been unreachable for ``lost_after_s``; it is LOST from then on."""
        answer: dict[str, AttemptStatus] = {}
        wanted: dict[str, list[str]] = {}
        for nid in native_ids:
            split = self._split(nid)
            if nid in self._lost:
                answer[nid] = self._lost[nid]
            elif split is None:
                answer[nid] = AttemptStatus(state=AttemptState.LOST, native_state="unknown",
                                            reason="not a native id of this site")
            else:
                wanted.setdefault(split[0], []).append(split[1])
        started = time.time()
        found = self._each(list(wanted), lambda n: self._poll_node(n, wanted[n]))
        for node, got in found.items():
            if isinstance(got, RunnerError):
                self._unreachable(node, got, started, wanted[node], answer)
                continue
            self._down.pop(node, None)
            for aid, status in got.items():
                nid = f"{node}/{aid}"
                answer[nid] = status
                if status.state.terminal:
                    self._last.pop(nid, None)
                    self._placed.pop(aid, None)
                else:
                    self._last[nid] = status
        return answer

    def _went_down(self, node: str, when: float) -> float:
        """Note that ``node`` does not answer; a node that answered before has flapped.
        Returns since when it has been down."""
        if node not in self._down:
            self._down[node] = when
            recent = [t for t in self._flaps.get(node, []) if t > when - 3600]
            self._flaps[node] = [*recent, when]
        return self._down[node]

    def flaps(self, node: str, now: float | None = None) -> int:
        """How often ``node`` stopped answering in the last hour."""
        now = time.time() if now is None else now
        return sum(1 for t in self._flaps.get(node, []) if t > now - 3600)

    def _unreachable(self, node: str, error: RunnerError, started: float,
                     aids: Sequence[str], answer: dict[str, AttemptStatus]) -> None:
        since = self._went_down(node, started)
        lost = time.time() - since >= self.options.lost_after_s
        when = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds")
        log.warning("edge site %s: node %s unreachable since %s: %s",
                    self.site.name, node, when, error)
        for aid in aids:
            nid = f"{node}/{aid}"
            if lost:
                status = AttemptStatus(
                    state=AttemptState.LOST, native_state="unreachable",
                    reason=f"node {node} unreachable since {when}: {error}"[:500])
                self._lost[nid] = answer[nid] = status
                self._last.pop(nid, None)
                self._placed.pop(aid, None)
            elif nid in self._last:
                answer[nid] = self._last[nid]

    def _poll_node(self, node: str, aids: Sequence[str]) -> dict[str, AttemptStatus]:
        out = self._sh(node, _POLL, self._base(node), _REAP, str(self._grace()),
                       str(_EXIT_WAIT_TENTHS), *aids)
        statuses: dict[str, AttemptStatus] = {}
        for line in out.splitlines():
            aid, _, rest = line.partition("\t")
            word, _, rest = rest.partition("\t")
            marks, _, result = rest.partition("\t")
            if aid in aids:
                statuses[aid] = _status(node, word, set(marks.split(",")) - {""}, result)
        for aid in aids:  # a line the node did not print: the script broke off there
            if aid not in statuses:
                raise RunnerError(f"{node}: no status line for {aid} in {out[-500:]!r}")
        return statuses

    def _grace(self) -> int:
        return max(1, round(self.options.grace_s * 10))

    # cancel, owned, logs ------------------------------------------------------------------

    def cancel(self, native_ids: Sequence[str]) -> None:
        """Per node one round trip: ``cancelled`` marker, SIGTERM to the group, SIGKILL after
        ``grace_s`` (by a reaper detached on the node); an attempt whose runtime is gone has
        its group killed at once. Ids of no node of this site are ignored. Raises
        :class:`RunnerError` when a node cannot be reached (the control plane retries)."""
        wanted: dict[str, list[str]] = {}
        for nid in native_ids:
            split = self._split(nid)
            if split is not None:
                wanted.setdefault(split[0], []).append(split[1])
        found = self._each(list(wanted), lambda n: self._sh(
            n, _CANCEL, self._base(n), _REAP, str(self._grace()), *wanted[n]))
        errors = [str(e) for e in found.values() if isinstance(e, RunnerError)]
        if errors:
            raise RunnerError("cancel did not reach every node: " + "; ".join(errors))

    def owned(self) -> Sequence[OwnedJob]:
        """Every attempt of this federation with a live process on a node that answers
        (one round trip per node); unreachable nodes are skipped, and logged."""
        found = self._each(list(self.nodes),
                           lambda n: self._sh(n, _OWNED, self._base(n), self.tag))
        jobs = []
        for node, got in found.items():
            if isinstance(got, RunnerError):
                log.warning("edge site %s: owned() skips node %s: %s", self.site.name, node, got)
                continue
            for line in got.splitlines():
                aid, _, state = line.partition("\t")
                if ATTEMPT_ID.fullmatch(aid):
                    jobs.append(OwnedJob(native_id=f"{node}/{aid}", attempt_id=aid,
                                         native_state=state))
        return jobs

    def logs(self, native_id: str) -> str:
        """The attempt's output so far ('' before there is any)."""
        split = self._split(native_id)
        if split is None:
            raise ValueError(f"not a native id of site {self.site.name}: {native_id!r}")
        node, aid = split
        done = self.runners[node].run(["cat", "--", f"{self._base(node)}/{aid}/output.log"],
                                      timeout=self.options.command_timeout_s)
        return done.stdout if done.returncode == 0 else ""

    # offers, check ------------------------------------------------------------------------

    def offers(self) -> Sequence[Offer]:
        """One offer per node that answers: its CPUs, memory and GPUs less what this site's
        live attempts there hold, its price, and the round trip time of asking."""
        found = self._each(list(self.nodes), self._measure)
        tier = self.site.tier if "tier" in self.site.model_fields_set else Tier.EDGE
        offers = []
        for name, got in found.items():
            if isinstance(got, RunnerError):
                self._went_down(name, time.time())
                log.warning("edge site %s: node %s not offered: %s", self.site.name, name, got)
                continue
            facts, busy, rtt_ms = got
            self._down.pop(name, None)
            # Its recent reliability is its interruption rate: each time it stopped answering
            # in the last hour counts as one interruption an hour.
            flaps = self.flaps(name)
            node = self.nodes[name]
            cpus = node.cpus if node.cpus is not None else int(facts.get("nproc", 0))
            mem_free = facts.get("memavail", 0.0) / 2**20
            mem = min(node.memory_gb, mem_free) if node.memory_gb is not None else mem_free
            price = Pricing(per_hour=node.cost_per_hour)
            shape = {**node.labels, "node": name, "rtt_ms": f"{rtt_ms:.1f}",
                     "load": f"{facts.get('load', 0.0):g}"}
            offers.append(Offer(
                site=self.site.name, key=name, shape=shape, tier=tier,
                cpus=max(0, min(cpus - int(busy[0]), self.site.capacity.cpus)),
                memory_gb=max(0.0, mem - busy[1]),
                gpus=max(0, node.gpus - int(busy[2])),
                price=price,
                on_demand=self.site.on_demand if self.site.on_demand is not None else price,
                preemptible=self.site.preemptible or flaps > 0,
                preemption_rate_per_hour=self.site.preemption_rate_per_hour + flaps,
                restart_overhead_s=self.site.restart_overhead_s,
                max_walltime_s=self.site.max_walltime_s,
                labels=dict(node.labels), latency_ms=round(rtt_ms, 2),
                note=f"rtt {rtt_ms:.1f} ms" + (f", {flaps} flaps in the last hour"
                                               if flaps else ""),
            ))
        return offers

    def _measure(self, node: str) -> tuple[dict[str, float], tuple[float, float, float], float]:
        base = self._base(node)
        t0 = time.monotonic()
        out = self._sh(node, _OFFERS, base)
        rtt_ms = (time.monotonic() - t0) * 1000  # a command's round trip, shell start included
        ping = getattr(self.runners[node], "ping", None)
        if callable(ping):  # the network's alone: what a latency bound is about
            rtt_ms = float(ping(self.options.command_timeout_s))
        facts: dict[str, float] = {}
        busy = [0.0, 0.0, 0.0]
        for line in out.splitlines():
            word, _, rest = line.partition(" ")
            try:
                if word == "busy":
                    for i, v in enumerate(rest.split()[:3]):
                        busy[i] += float(v)
                elif word in {"nproc", "memavail", "memtotal", "load"}:
                    facts[word] = float(rest)
            except ValueError:
                continue
        return facts, (busy[0], busy[1], busy[2]), rtt_ms

    def check(self) -> list[NodeCheck]:
        """For each node: reachable, host key accepted, the runtime's Python and gridbridge
        versions, free CPUs and memory, round trip time (for ``gridbridge sites check``)."""
        python = self.site.runtime.python or self.options.python or "python3"
        found = self._each(list(self.nodes), lambda n: self._check(n, python))
        return [got if isinstance(got, NodeCheck) else
                NodeCheck(node=node, reachable=False, error=str(got))
                for node, got in found.items()]

    def _check(self, node: str, python: str) -> NodeCheck:
        t0 = time.monotonic()
        try:
            out = self._sh(node, _CHECK, python)
        except HostKeyRefused as exc:
            return NodeCheck(node=node, reachable=True, host_key_ok=False, error=str(exc))
        except RunnerError as exc:
            return NodeCheck(node=node, reachable=False, error=str(exc))
        rtt_ms = (time.monotonic() - t0) * 1000
        facts: dict[str, str] = {}
        for line in out.splitlines():
            word, _, rest = line.partition(" ")
            facts[word] = rest
        versions = facts.get("versions", "").split()
        return NodeCheck(
            node=node, reachable=True, host_key_ok=True,
            python=versions[0] if len(versions) == 2 else None,
            gridbridge=versions[1] if len(versions) == 2 else None,
            cpus=int(facts["nproc"]) if facts.get("nproc", "").isdigit() else None,
            memory_gb=(int(facts["memavail"]) / 2**20
                       if facts.get("memavail", "").isdigit() else None),
            rtt_ms=round(rtt_ms, 1), error=facts.get("python-error", ""))

    # bootstrap ----------------------------------------------------------------------------

    def bootstrap(self, *, wheelhouse: str | os.PathLike[str] | None = None,
                  cache_dir: str | os.PathLike[str] | None = None,
                  base_python: str = "python3") -> BootstrapReport:
        """Bring every node to running jobs: where the runtime's interpreter
        (``runtime.python``, else ``options.python``; it must be ``<venv>/bin/python``) does
        not import this gridbridge version, upload a wheelhouse (only the wheels missing there
        or of another size) to ``<run folder>/.wheelhouse``, make the venv with
        ``base_python -m venv`` and ``pip install --no-index`` gridbridge into it, then check
        the import. The nodes need no package index.

        The wheelhouse is ``wheelhouse`` (made by the operator: a gridbridge wheel, its
        dependencies, and a pip wheel), else built here from the checkout gridbridge runs from
        (``pip wheel``, once a node needs it) and kept under ``cache_dir`` (default
        ``<workdir>/bootstrap``) for as long as the version and ``pyproject.toml`` stay the
        same. All nodes at once; a node's failure is its row. ValueError when the site's
        configuration cannot be bootstrapped at all."""
        python = self.site.runtime.python or self.options.python
        match = _VENV_PYTHON.fullmatch(python or "")
        if python is None or match is None:
            raise ValueError(
                f"site {self.site.name}: bootstrap makes the venv the runtime uses, so "
                f"runtime.python must be an absolute venv path like "
                f"/opt/gridbridge-edge/venv/bin/python (it is {python!r})")
        venv = match.group(1)
        if "/../" in f"{venv}/" or "/./" in f"{venv}/":
            raise ValueError(f"site {self.site.name}: runtime.python {python!r} is not a plain "
                             "path")
        checkout = None
        if wheelhouse is not None:
            given = Path(wheelhouse).resolve()
            try:
                wheel = _wheel_of(given, "gridbridge")
                _wheel_of(given, "pip")
            except RunnerError as exc:
                raise ValueError(f"--wheelhouse {given}: {exc}") from None
            version = wheel.name.split("-")[1]
        else:
            given = None
            checkout = _checkout()
            if checkout is None:
                raise ValueError(
                    "gridbridge is not installed from a source checkout, so there is nothing "
                    "to build a wheelhouse from: give one (a gridbridge wheel, its "
                    "dependencies and pip, e.g. `pip wheel --wheel-dir DIR gridbridge pip`)")
            meta = tomllib.loads((checkout / "pyproject.toml").read_text())
            version = str(meta["project"].get("version") or "")
            if not version:
                from importlib.metadata import version as dist_version

                version = dist_version("gridbridge")
        cache = Path(cache_dir) if cache_dir is not None else self.workdir / "bootstrap"
        house = _Wheelhouse(checkout, given, cache.resolve(), version)
        found = self._each(list(self.nodes), lambda n: self._bootstrap_node(
            n, python, venv, base_python, house))
        nodes = [got if isinstance(got, NodeBootstrap) else
                 NodeBootstrap(node=n, action="failed", error=str(got))
                 for n, got in found.items()]
        return BootstrapReport(version=version, nodes=nodes, built=house.built,
                               build_s=house.build_s,
                               wheelhouse=str(house.path) if house.path else None)

    def _bootstrap_node(self, node: str, python: str, venv: str, base_python: str,
                        house: _Wheelhouse) -> NodeBootstrap:
        t0 = time.monotonic()
        row: dict[str, object] = {"node": node}

        def done(action: str, **more: object) -> NodeBootstrap:
            return NodeBootstrap.model_validate(
                {**row, "action": action, **more, "seconds": round(time.monotonic() - t0, 1)})

        try:
            facts = self._probe(node, python, base_python, venv)
            row["before"] = facts.get("have")
            if facts.get("have") == house.version:
                return done("skipped", after=house.version,
                            detail=f"already has gridbridge {house.version}")
            if facts.get("venv") == "other":
                return done("failed", error=f"{venv} exists and is not a virtual environment: "
                            "refusing to touch it (point runtime.python at a venv of its own)")
            if "base" not in facts:
                return done("failed", error=f"no base interpreter {base_python!r} there: "
                            f"{facts.get('nobase', '')}")
            if house.given is None and tuple(facts["base"].split()) != _local_tag():
                return done("failed", error=(
                    f"{base_python} there is {facts['base']}, the wheelhouse built here fits "
                    f"{' '.join(_local_tag())}: build one for it and pass --wheelhouse"))
            local = house.get()
            remote = f"{self._base(node)}/.wheelhouse"
            t1 = time.monotonic()
            files, size = self._upload(node, local, remote)
            row.update(uploaded_files=files, uploaded_bytes=size,
                       upload_s=round(time.monotonic() - t1, 1))
            t2 = time.monotonic()
            out = self.runners[node].run(
                ["sh", "-c", _INSTALL, "gridbridge-bootstrap", base_python, venv, remote,
                 _wheel_of(local, "pip").name, f"gridbridge=={house.version}", python,
                 house.version], timeout=max(900.0, self.options.command_timeout_s))
            row["install_s"] = round(time.monotonic() - t2, 1)
            if out.returncode != 0:
                words = (out.stderr or out.stdout).strip()[-1500:]
                return done("failed", error=f"install failed (exit {out.returncode}): {words}")
            after = self._probe(node, python, base_python, venv)
            row["after"] = after.get("have")
            if after.get("have") != house.version:
                return done("failed", error=f"after the install {python} imports gridbridge "
                            f"{after.get('have')!r}, not {house.version}: "
                            f"{after.get('missing', '')}")
            if out.stdout.split()[-1:] == ["already"]:
                return done("skipped", detail="installed meanwhile (a node that shares "
                            "this filesystem?)")
            return done("installed", detail=f"{files} wheels ({size / 2**20:.1f} MiB) "
                        f"uploaded to {remote}")
        except HostKeyRefused as exc:
            return done("failed", error=str(exc))
        except RunnerError as exc:
            return done("failed", error=str(exc))

    def _probe(self, node: str, python: str, base_python: str, venv: str) -> dict[str, str]:
        out = self._sh(node, _PROBE, python, base_python, venv)
        facts: dict[str, str] = {}
        for line in out.splitlines():
            word, _, rest = line.partition(" ")
            facts[word] = rest.strip()
        return facts

    def _upload(self, node: str, local: Path, remote: str) -> tuple[int, int]:
        """Copy the wheels the node lacks (or has with another size) to ``remote``, through
        base64 on the stdin of a constant script (any Runner, no SFTP subsystem needed)."""
        listing = self._sh(node, _LIST, remote)
        there: dict[str, int] = {}
        for line in listing.splitlines():
            name, _, length = line.partition("\t")
            if length.strip().isdigit():
                there[name] = int(length.strip())
        files = total = 0
        timeout = max(120.0, self.options.command_timeout_s)
        for wheel in sorted(local.glob("*.whl")):
            size = wheel.stat().st_size
            if there.get(wheel.name) == size:
                continue
            with wheel.open("rb") as f:
                first = True
                while True:
                    chunk = f.read(_CHUNK)
                    last = f.tell() >= size
                    done = self.runners[node].run(
                        ["sh", "-c", _PUT, "gridbridge-put", f"{remote}/{wheel.name}",
                         "first" if first else "more", "last" if last else "more", node],
                        input=base64.b64encode(chunk).decode("ascii"), timeout=timeout)
                    done.check(f"uploading {wheel.name} to {node}")
                    first = False
                    if last:
                        break
            files += 1
            total += size
        return files, total


def _status(node: str, word: str, marks: set[str], result: str) -> AttemptStatus:
    """One line of the poll script, translated."""
    if word == "unknown":
        return AttemptStatus(state=AttemptState.LOST, native_state="unknown",
                             reason=f"no such attempt on node {node}")
    if word == "running":
        return AttemptStatus(state=AttemptState.RUNNING, native_state="running")
    if word == "starting":
        return AttemptStatus(state=AttemptState.SUBMITTED, native_state="starting")
    walltime = "walltime" in marks
    if word != "result":
        if "cancelled" in marks:
            return AttemptStatus(state=AttemptState.CANCELLED, native_state="gone",
                                 reason="killed on cancel")
        if "preempted" in marks:
            return AttemptStatus(state=AttemptState.PREEMPTED, native_state="gone",
                                 reason="walltime reached" if walltime else
                                 "killed after the preemption grace period", walltime=walltime)
        return AttemptStatus(state=AttemptState.LOST, native_state="gone",
                             reason="process vanished without a result")
    try:
        data = json.loads(result)
        code = int(data["exit_code"])
        state = _REASONS.get(str(data["reason"]), AttemptState.FAILED)
    except (ValueError, KeyError, TypeError) as exc:
        return AttemptStatus(state=AttemptState.FAILED, native_state="bad-result",
                             reason=f"unreadable result record: {exc!r}"[:500])
    reason = str(data.get("error") or "")
    if code == ALREADY_RAN_EXIT_CODE:
        state, reason = AttemptState.LOST, "a second launch of the attempt"
    elif state is not AttemptState.SUCCEEDED and "cancelled" in marks:
        state = AttemptState.CANCELLED
    elif state is not AttemptState.SUCCEEDED and "preempted" in marks:
        state = AttemptState.PREEMPTED
        reason = "walltime reached" if walltime else reason
    return AttemptStatus(state=state, native_state=f"exited:{code}", exit_code=code,
                         reason=reason[:2000], walltime=walltime)
