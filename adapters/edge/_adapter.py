"""The edge adapter's verbs: each a constant node script per node, all nodes at once.

Invariant: the node's run folder is the truth for every attempt; this adapter's memory only
bridges a node that does not answer (its attempts keep their last state until it has been
unreachable for ``lost_after_s``, then are LOST and stay LOST here) and counts a node's flaps
for its offer's interruption rate.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, MutableMapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel

from gridbridge.adapter import (
    AttemptStatus,
    BootstrapReport,
    Capability,
    NodeCheck,
    Offer,
    OwnedJob,
    SubmitRejected,
    SubmitRequest,
    write_launch,
)
from gridbridge.adapters._batch import ATTEMPT_ID, check_attempt_id, runtime_argv
from gridbridge.adapters._run import Runner, RunnerError
from gridbridge.adapters._rundir import RunFile
from gridbridge.adapters.edge import bootstrap as _bootstrap
from gridbridge.adapters.edge._fleet import BadRunDir, Fleet
from gridbridge.adapters.edge._offers import check_node, measure, node_offer
from gridbridge.adapters.edge._options import EdgeNode, EdgeOptions
from gridbridge.adapters.edge._scripts import script
from gridbridge.adapters.edge._status import status
from gridbridge.checks import PROBE_SCRIPT, probe_answer
from gridbridge.config import SiteConfig, prologue_script
from gridbridge.logparts import previous_segment
from gridbridge.states import AttemptState

__all__ = ["EdgeAdapter"]

log = logging.getLogger("gridbridge.adapters.edge")

_EXIT_WAIT_TENTHS = 300
"""How long (0.1 s) a runtime that wrote its result may take to exit before its group dies."""


_PROBE_TIMEOUT_S = 90.0


class EdgeAdapter:
    """A fleet of edge nodes reached over SSH."""

    CAPABILITIES: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.ADOPT, Capability.LOGS, Capability.PREEMPTIBLE, Capability.GPUS,
         Capability.CHECK, Capability.BOOTSTRAP})
    Options: ClassVar[type[BaseModel] | None] = EdgeOptions
    probe_unit: ClassVar[str] = "node"
    """The storage probe runs on every node (:meth:`probe_storage`)."""

    def __init__(self, site: SiteConfig, workdir: str | os.PathLike[str]) -> None:
        self.site = site
        self.options = EdgeOptions.model_validate(site.options)
        self.fleet = Fleet(site, self.options, workdir)
        self.nodes: dict[str, EdgeNode] = self.fleet.nodes
        self.runners: MutableMapping[str, Runner] = self.fleet.runners
        """One pooled runner per node (tests may wrap them: ``runners.update(...)``)."""
        self.workdir = Path(workdir)
        self.tag = self.fleet.tag
        self._placed: dict[str, tuple[str, int]] = {}
        """attempt id -> (node, cpus) of attempts this adapter submitted and saw live."""
        self._last: dict[str, AttemptStatus] = {}
        self._down: dict[str, float] = {}
        """node -> when it was first found unreachable (this time round)."""
        self._flaps: dict[str, list[float]] = {}
        """Per node, when it went from answering to not answering (the last hour's)."""
        self._lost: dict[str, AttemptStatus] = {}

    def capabilities(self) -> frozenset[Capability]:
        caps = {Capability.ADOPT, Capability.LOGS, Capability.CHECK, Capability.BOOTSTRAP}
        if self.site.preemptible:
            caps.add(Capability.PREEMPTIBLE)
        if any(n.gpus for n in self.nodes.values()):
            caps.add(Capability.GPUS)
        return frozenset(caps)

    def close(self) -> None:
        """Close every node's pooled connection."""
        self.fleet.close()

    # submit -------------------------------------------------------------------------------

    def submit(self, request: SubmitRequest) -> str:
        """Start the attempt on its node, or adopt it if it was started there already (one
        round trip). :class:`SubmitRejected` when nothing was started."""
        aid = request.attempt_id
        check_attempt_id(aid)
        node = self._node_for(request)
        try:
            url = write_launch(request, heartbeat_s=self.site.runtime.heartbeat_s,
                               shared_filesystem=self.site.shares_files(False))
        except OSError as exc:
            raise SubmitRejected(f"cannot write the launch record: {exc}") from None
        try:
            base = self.fleet.base(node)
        except BadRunDir as exc:
            raise SubmitRejected(str(exc)) from None
        argv = runtime_argv(self.site, url, f"{base}/{aid}", self.options.python or "python3")
        check_python = "" if self.site.runtime.prologue else argv[0]
        argv = self._as_runtime(argv)
        res = request.spec.resources
        walltime = res.walltime_s
        if self.site.max_walltime_s is not None:
            walltime = min(walltime, self.site.max_walltime_s)
        line = f"{res.cpus} {res.memory_gb:g} {res.gpus} {max(1, int(walltime + 0.999))}"
        done = self.fleet.hosts[node].run(
            ["sh", "-c", script("submit.sh"), "gridbridge-submit", base, aid, self.tag, line,
             check_python, *argv])
        if done.returncode in (3, 4):
            raise SubmitRejected(f"{node}: {(done.stderr or done.stdout).strip()[-500:]}")
        done.check(f"submit on {node}")
        self._placed[aid] = (node, res.cpus)
        return f"{node}/{aid}"

    def _as_runtime(self, argv: list[str]) -> list[str]:
        """``argv`` started the way the runtime is: with the environment the site passes on
        (``runtime.env_names``) and after the operator's prologue. The storage probe starts
        the same way, so what it finds is what an attempt would."""
        runtime = self.site.runtime
        env = [f"{n}={os.environ[n]}" for n in runtime.env_names if n in os.environ]
        if env:
            argv = ["env", *env, *argv]
        if runtime.prologue:  # the operator's trusted lines; the argv stays out of the script
            argv = ["bash", "-c", prologue_script(runtime.prologue), "gridbridge-run", *argv]
        return argv

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
            split = self.fleet.split(nid)
            if nid in self._lost:
                answer[nid] = self._lost[nid]
            elif split is None:
                answer[nid] = AttemptStatus(state=AttemptState.LOST, native_state="unknown",
                                            reason="not a native id of this site")
            else:
                wanted.setdefault(split[0], []).append(split[1])
        started = time.time()
        found = self.fleet.each(list(wanted), lambda n: self._poll_node(n, wanted[n]))
        for node, got in found.items():
            if isinstance(got, RunnerError):
                self._unreachable(node, got, started, wanted[node], answer)
                continue
            self._down.pop(node, None)
            for aid, seen in got.items():
                nid = f"{node}/{aid}"
                answer[nid] = seen
                if seen.state.terminal:
                    self._last.pop(nid, None)
                    self._placed.pop(aid, None)
                else:
                    self._last[nid] = seen
        return answer

    def _went_down(self, node: str, when: float) -> float:
        """Note that ``node`` does not answer; a node that answered before has flapped.
        ``when`` is when the round trip that failed began (whichever of poll, owned or offers
        it was): a silent partition hangs the pooled connection until TCP gives up on it, and
        that wait counts toward ``lost_after_s``. Returns since when it has been down."""
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
        since = self._went_down(node, _began(error, started))
        lost = time.time() - since >= self.options.lost_after_s
        when = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds")
        log.warning("edge site %s: node %s unreachable since %s: %s",
                    self.site.name, node, when, error)
        for aid in aids:
            nid = f"{node}/{aid}"
            if lost:
                seen = AttemptStatus(
                    state=AttemptState.LOST, native_state="unreachable",
                    reason=f"node {node} unreachable since {when}: {error}"[:500])
                self._lost[nid] = answer[nid] = seen
                self._last.pop(nid, None)
                self._placed.pop(aid, None)
            elif nid in self._last:
                answer[nid] = self._last[nid]

    def _poll_node(self, node: str, aids: Sequence[str]) -> dict[str, AttemptStatus]:
        out = self.fleet.sh(node, "poll.sh", self.fleet.base(node), script("reap.sh"),
                            str(self._grace()), str(_EXIT_WAIT_TENTHS), *aids,
                            timeout=self._answer_s())
        statuses: dict[str, AttemptStatus] = {}
        for line in out.splitlines():
            aid, _, rest = line.partition("\t")
            word, _, rest = rest.partition("\t")
            marks, _, result = rest.partition("\t")
            if aid in aids:
                statuses[aid] = status(node, word, set(marks.split(",")) - {""}, result)
        for aid in aids:  # a line the node did not print: the script broke off there
            if aid not in statuses:
                raise RunnerError(f"{node}: no status line for {aid} in {out[-500:]!r}")
        return statuses

    def _grace(self) -> int:
        return max(1, round(self.options.grace_s * 10))

    def _answer_s(self) -> float:
        """How long a status round trip (poll, owned) may take: one that takes longer than
        ``lost_after_s`` is itself a node that has not answered that long (a silent partition
        hangs the pooled connection until TCP gives up, seconds later), with 1 s at least."""
        return max(1.0, min(self.options.lost_after_s, self.options.command_timeout_s))

    # cancel, owned, logs ------------------------------------------------------------------

    def cancel(self, native_ids: Sequence[str]) -> None:
        """Per node one round trip: ``cancelled`` marker, SIGTERM to the group, SIGKILL after
        ``grace_s`` (by a reaper detached on the node); an attempt whose runtime is gone has
        its group killed at once. Ids of no node of this site are ignored. Raises
        :class:`RunnerError` when a node cannot be reached (the control plane retries)."""
        wanted: dict[str, list[str]] = {}
        for nid in native_ids:
            split = self.fleet.split(nid)
            if split is not None:
                wanted.setdefault(split[0], []).append(split[1])
        found = self.fleet.each(list(wanted), lambda n: self.fleet.sh(
            n, "cancel.sh", self.fleet.base(n), script("reap.sh"), str(self._grace()),
            *wanted[n]))
        errors = [str(e) for e in found.values() if isinstance(e, RunnerError)]
        if errors:
            raise RunnerError("cancel did not reach every node: " + "; ".join(errors))

    def owned(self) -> Sequence[OwnedJob]:
        """Every attempt of this federation with a live process on a node that answers
        (one round trip per node); unreachable nodes are skipped, and logged."""
        started = time.time()
        found = self.fleet.each(list(self.nodes), lambda n: self.fleet.sh(
            n, "owned.sh", self.fleet.base(n), self.tag, timeout=self._answer_s()))
        jobs = []
        for node, got in found.items():
            if isinstance(got, RunnerError):
                self._went_down(node, _began(got, started))
                log.warning("edge site %s: owned() skips node %s: %s", self.site.name, node, got)
                continue
            self._down.pop(node, None)
            for line in got.splitlines():
                aid, _, state = line.partition("\t")
                if ATTEMPT_ID.fullmatch(aid):
                    jobs.append(OwnedJob(native_id=f"{node}/{aid}", attempt_id=aid,
                                         native_state=state))
        return jobs

    def logs(self, native_id: str) -> str:
        """The attempt's output so far, as far as the node still keeps it: the older segment
        of the runtime's log while it is not yet in storage, then the current one
        (:mod:`gridbridge.logparts`; storage has the rest). '' before there is any."""
        split = self.fleet.split(native_id)
        if split is None:
            raise ValueError(f"not a native id of site {self.site.name}: {native_id!r}")
        node, aid = split
        log = Path(self.fleet.base(node), aid, RunFile.ATTEMPT_LOG)  # a POSIX path on the node
        # cat prints the segments that exist; one missing (or both) is not an error here
        done = self.fleet.hosts[node].run(["cat", "--", str(previous_segment(log)), str(log)])
        return done.stdout

    # offers, check, bootstrap -------------------------------------------------------------

    def offers(self) -> Sequence[Offer]:
        """One offer per node that answers: its CPUs, memory and GPUs less what this site's
        live attempts there hold, its price, and the round trip time of asking."""
        started = time.time()
        found = self.fleet.each(list(self.nodes), lambda n: measure(self.fleet, n))
        offers = []
        for name, got in found.items():
            if isinstance(got, RunnerError):
                self._went_down(name, _began(got, started))
                log.warning("edge site %s: node %s not offered: %s", self.site.name, name, got)
                continue
            self._down.pop(name, None)
            offers.append(node_offer(self.site, self.nodes[name], got, self.flaps(name)))
        return offers

    def check(self) -> list[NodeCheck]:
        """For each node: reachable, host key accepted, the runtime's Python and gridbridge
        versions, free CPUs and memory, round trip time (for ``gridbridge sites check``)."""
        python = self.site.runtime.python or self.options.python or "python3"
        found = self.fleet.each(list(self.nodes), lambda n: check_node(self.fleet, n, python))
        return [got if isinstance(got, NodeCheck) else
                NodeCheck(node=node, reachable=False, error=str(got))
                for node, got in found.items()]

    def probe_storage(self, url: str) -> dict[str, str]:
        """Per node, whether the runtime there can write, read back and delete a probe object
        under ``url`` ('' when it can, else why not, naming the URL). The probe is the
        runtime's interpreter started as an attempt's runtime is (:meth:`_as_runtime`)."""
        python = self.site.runtime.python or self.options.python or "python3"
        argv = self._as_runtime([python, "-c", PROBE_SCRIPT, url])

        def probe(node: str) -> str:
            # storage that does not answer is retried by the client: longer than a command
            done = self.fleet.runners[node].run(argv, timeout=_PROBE_TIMEOUT_S)
            if done.returncode == 0:
                return ""
            return probe_answer(url, done.stdout.strip() or done.stderr, done.returncode)

        found = self.fleet.each(list(self.nodes), probe)  # an unreachable node: RunnerError
        return {node: f"not probed, the node did not answer: {got}"
                if isinstance(got, RunnerError) else got for node, got in found.items()}

    def bootstrap(self, *, wheelhouse: str | os.PathLike[str] | None = None,
                  cache_dir: str | os.PathLike[str] | None = None,
                  base_python: str = "python3") -> BootstrapReport:
        """Bring every node to running jobs (see :func:`.bootstrap.bootstrap`)."""
        return _bootstrap.bootstrap(self.fleet, self.workdir, wheelhouse=wheelhouse,
                                    cache_dir=cache_dir, base_python=base_python)


def _began(error: RunnerError, started: float) -> float:
    """Since when a node that failed a round trip begun at ``started`` has been silent: the
    earlier of that start and what the runner knows (TCP timed the connection out)."""
    silent = error.silent_since
    return started if silent is None else min(started, silent)
