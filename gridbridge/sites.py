"""Build live adapters for the sites of a configuration, through the registry."""

from __future__ import annotations

from gridbridge.adapter import Adapter, Capability, missing_verbs
from gridbridge.config import ConfigError, GridConfig
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
        caps = adapter.capabilities()
        if Capability.ADOPT not in caps and site.uncertain_submit is None:
            raise ConfigError(
                f"site {site.name!r}: its adapter {site.adapter!r} cannot adopt a submission by "
                "attempt id, so set uncertain_submit: resubmit (a doubtful submission may run "
                "twice) or replace (it may be given up and placed elsewhere)"
            )
        missing = missing_verbs(cls, caps)
        if missing:
            raise AdapterInvalid(
                f"site {site.name!r}: adapter class {cls.__qualname__} declares capabilities "
                f"whose verbs it lacks: {', '.join(missing)}"
            )
        adapters[site.name] = adapter
    return adapters
