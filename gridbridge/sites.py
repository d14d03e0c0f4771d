"""Build live adapters for the sites of a configuration, through the registry."""

from __future__ import annotations

from gridbridge.adapter import Adapter
from gridbridge.config import GridConfig
from gridbridge.registry import Registry, default_registry

__all__ = ["build_adapters"]


def build_adapters(config: GridConfig, registry: Registry | None = None) -> dict[str, Adapter]:
    """One adapter per configured site, keyed by site name."""
    registry = registry or default_registry()
    adapters: dict[str, Adapter] = {}
    for site in config.sites:
        cls = registry.load(site.adapter)
        adapters[site.name] = cls(site, config.workdir)
    return adapters
