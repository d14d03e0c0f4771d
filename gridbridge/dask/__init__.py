"""Dask on the federation: :class:`GridCluster`, a dask-jobqueue cluster whose jobs
(:class:`GridJob`) gridbridge places on the cheapest sites, retires gracefully on preemption
and bills in the cost ledger.

Needs the ``dask`` extra (``pip install 'gridbridge[dask]'``); ``import gridbridge`` never
imports this package, and the worker entry point (:mod:`gridbridge.dask.worker`) does not
import the cluster side, so a worker starts without the control plane's modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridbridge.dask.cluster import GridCluster, GridJob, GridWorker, WorkerOptions

__all__ = ["GridCluster", "GridJob", "GridWorker", "WorkerOptions"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from gridbridge.dask import cluster

        return getattr(cluster, name)
    raise AttributeError(f"module 'gridbridge.dask' has no attribute {name!r}")
