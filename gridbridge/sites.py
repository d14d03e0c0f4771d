"""Build live adapters for the sites of a configuration, through the registry."""

from __future__ import annotations

from gridbridge.adapter import Adapter, missing_verbs
from gridbridge.config import GridConfig
from gridbridge.registry import AdapterInvalid, Registry, default_registry

__all__ = ["build_adapters"]


def build_adapters(config: GridConfig, registry: Registry | None = None) -> dict[str, Adapter]:
    """One adapter per configured site, keyed by site name.

    Raises :class:`~gridbridge.registry.AdapterInvalid` when an instance declares a capability
    whose verb its class lacks (the class check at load time covers ``CAPABILITIES``).
    """
    registry = registry or default_registry()
    adapters: dict[str, Adapter] = {}
    for site in config.sites:
        cls = registry.load(site.adapter)
        adapter = cls(site, config.workdir)
        missing = missing_verbs(cls, adapter.capabilities())
        if missing:
            raise AdapterInvalid(
                f"site {site.name!r}: adapter class {cls.__qualname__} declares capabilities "
                f"whose verbs it lacks: {', '.join(missing)}"
            )
        adapters[site.name] = adapter
    return adapters
