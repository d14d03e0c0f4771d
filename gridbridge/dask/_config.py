"""The ``jobqueue.gridbridge`` section of dask's configuration, as dask-jobqueue keeps one
section per batch system (``jobqueue.slurm``, ``jobqueue.pbs``, ...).

Invariant: the defaults in ``jobqueue.yaml`` beside this module are registered with
``dask.config.update_defaults`` once, when :mod:`gridbridge.dask.cluster` is imported; nothing
is ever written to the user's ``~/.config/dask`` (dask-jobqueue copies its file there at import;
we do not). What a user sets in dask's config files, environment (``DASK_JOBQUEUE__...``) or
``dask.config.set`` overrides them, as for any dask setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.config
import yaml

__all__ = ["CONFIG_NAME", "register_defaults", "setting"]

CONFIG_NAME = "gridbridge"
"""``GridJob.config_name``: the section ``jobqueue.gridbridge``."""
_DEFAULTS = Path(__file__).with_name("jobqueue.yaml")


def register_defaults() -> None:
    """Add gridbridge's defaults under ``jobqueue.gridbridge`` (idempotent; user settings win)."""
    dask.config.update_defaults(yaml.safe_load(_DEFAULTS.read_text(encoding="utf-8")))


def setting(config_name: str, key: str, given: Any = None) -> Any:
    """``given`` when set, else ``jobqueue.<config_name>.<key>`` from dask's config (None when
    the section lacks it)."""
    if given is not None:
        return given
    return dask.config.get(f"jobqueue.{config_name}.{key}", None)
