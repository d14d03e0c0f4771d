"""A fleet of SSH-reachable edge nodes as one site: the local adapter, on remote nodes.

Each node is an offer (key = node name). An attempt runs on one node as
``python -m gridbridge.runtime --launch URL --scratch <remote_dir>/<node>/<attempt id>``,
detached (``setsid nohup``) in a process group of its own whose members all carry
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
host keys, one pooled connection per node). The node scripts are the ``*.sh`` files of this
package (``shellcheck`` checks them), run as ``sh -c SCRIPT NAME ARGS...``: every value (paths,
ids, the runtime's argv) is a positional argument, never part of a script's text. The files
they read and write in an attempt's folder are :class:`gridbridge.adapters._rundir.RunFile`'s.

A node that does not answer keeps its attempts in their last known state until it has been
unreachable for ``lost_after_s``; they are then LOST (and stay LOST in this adapter's memory:
the control plane has fenced them off, and a ``cancel`` after the node comes back kills the
zombie). The node's folder is the truth for everything else, so a restarted control plane
finds its attempts again through ``owned()`` and a re-submit of the same attempt id.

Modules: ``_options`` (the site's options), ``_scripts`` (the ``.sh`` files as a node runs
them), ``_fleet`` (the nodes, their hosts and run folders), ``_status`` (a poll line as a
status), ``_offers`` (offers and ``check``), ``_adapter`` (the verbs), :mod:`.bootstrap` and
``_wheelhouse`` (the bootstrap verb).
"""

from __future__ import annotations

from gridbridge.adapter import BootstrapReport, NodeBootstrap, NodeCheck
from gridbridge.adapters.edge._adapter import EdgeAdapter
from gridbridge.adapters.edge._options import EdgeNode, EdgeOptions

__all__ = ["BootstrapReport", "EdgeAdapter", "EdgeNode", "EdgeOptions", "NodeBootstrap",
           "NodeCheck"]
