"""The nodes of an edge site and how a command reaches them: one
:class:`~gridbridge.adapters._host.SiteHost` per node (a pooled SSH connection, the command
timeout, the federation tag), a node's run folder, and a script on every node at once.

Invariant: every command is an argv list; a node script is constant text run as
``sh -c SCRIPT NAME ARGS...``, every value a positional argument. A node's run folder is
``<remote_dir>/<node>``, made absolute on the node once (``realpath -m``), so nodes that share
a filesystem never see each other's attempts as their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from gridbridge.adapters._batch import ATTEMPT_ID
from gridbridge.adapters._host import HostOptions, SiteHost, default_remote_dir, federation_tag
from gridbridge.adapters._run import Runner, RunnerError, SSHRunner, SSHTarget
from gridbridge.adapters.edge._options import EdgeNode, EdgeOptions
from gridbridge.adapters.edge._scripts import script
from gridbridge.config import SiteConfig

__all__ = ["BadRunDir", "Fleet"]

_T = TypeVar("_T")


class BadRunDir(RunnerError):
    """The node's run folder does not resolve to a usable absolute path."""


class _Runners(MutableMapping[str, Runner]):
    """The nodes' runners, read and replaced through their hosts (tests wrap them)."""

    def __init__(self, hosts: dict[str, SiteHost]) -> None:
        self._hosts = hosts

    def __getitem__(self, node: str) -> Runner:
        return self._hosts[node].runner

    def __setitem__(self, node: str, runner: Runner) -> None:
        self._hosts[node].runner = runner

    def __delitem__(self, node: str) -> None:
        raise TypeError("a node's runner can be replaced, not removed")

    def __iter__(self) -> Iterator[str]:
        return iter(self._hosts)

    def __len__(self) -> int:
        return len(self._hosts)


class Fleet:
    """The nodes of one edge site."""

    def __init__(self, site: SiteConfig, options: EdgeOptions,
                 workdir: str | os.PathLike[str]) -> None:
        self.site, self.options = site, options
        self.tag = federation_tag(workdir, options.federation_tag)
        self.nodes: dict[str, EdgeNode] = {}
        self.hosts: dict[str, SiteHost] = {}
        o = options
        host_options = HostOptions(remote_dir=o.remote_dir, command_timeout_s=o.command_timeout_s)
        remote_dir = o.remote_dir or default_remote_dir(workdir, kind="edge", site=site.name,
                                                        over_ssh=True)
        for node in o.nodes:
            if node.name in self.nodes:
                raise ValueError(f"node name {node.name!r} appears twice")
            self.nodes[node.name] = node
            target = SSHTarget(host=node.host, port=node.port, user=node.user,
                               key_file=node.key_file or o.key_file,
                               known_hosts=node.known_hosts or o.known_hosts,
                               connect_timeout_s=o.connect_timeout_s)
            runner = SSHRunner(target, max_sessions=o.max_sessions_per_node)
            self.hosts[node.name] = SiteHost(host_options, runner, remote_dir=remote_dir,
                                             tag=self.tag)
        self.runners: MutableMapping[str, Runner] = _Runners(self.hosts)
        """One pooled runner per node (tests may wrap them)."""
        self._bases: dict[str, str] = {}

    def close(self) -> None:
        """Close every node's pooled connection."""
        for runner in self.runners.values():
            if isinstance(runner, SSHRunner):
                runner.close()

    def sh(self, node: str, name: str, *args: str, timeout: float | None = None) -> str:
        """Run the node script ``name`` (e.g. ``poll.sh``) on ``node`` with ``args`` as its
        positional arguments, within ``timeout`` (default the command timeout); its output
        (RunnerError when it fails)."""
        done = self.hosts[node].run(["sh", "-c", script(name), "gridbridge-edge", *args],
                                    timeout=timeout)
        return done.check(f"the edge script on {node}")

    def base(self, node: str) -> str:
        """The node's run folder as an absolute path (one round trip, the first time)."""
        found = self._bases.get(node)
        if found is None:
            host = self.hosts[node]
            done = host.run(["realpath", "-m", "--", host.remote_dir])
            real = done.check(f"realpath on {node}").removesuffix("\n")
            if not real.startswith("/") or any(c in real for c in "\n\t\r"):
                raise BadRunDir(f"unusable run folder on {node}: {real!r}")
            # A folder of its own per node: nodes that share a filesystem (an NFS home) must
            # never see each other's attempts as their own.
            found = self._bases[node] = f"{real.rstrip('/')}/{node}"
        return found

    def split(self, native_id: str) -> tuple[str, str] | None:
        """``<node>/<attempt id>`` as (node, attempt id); None for an id of no node here."""
        node, sep, aid = native_id.partition("/")
        if not sep or node not in self.nodes or not ATTEMPT_ID.fullmatch(aid) or ".." in aid:
            return None
        return node, aid

    def each(self, nodes: Sequence[str], work: Callable[[str], _T]
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
