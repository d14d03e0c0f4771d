"""Adapters by name, in the spirit of fsspec's registry.

Entries are lazy ``"module:Class"`` strings; nothing is imported until a site of that kind is
used, so ``import gridbridge`` stays light. Third parties register through the entry-point
group ``gridbridge.adapters``. A name is never silently overridden, and a class that lacks a
verb of the :class:`~gridbridge.adapter.Adapter` protocol (or one its capabilities promise) is
refused when it is loaded, naming the class and the verbs.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

from gridbridge.adapter import missing_verbs

__all__ = [
    "BUILTIN_ADAPTERS",
    "AdapterInvalid",
    "AdapterNotFound",
    "Registry",
    "default_registry",
]

BUILTIN_ADAPTERS: Mapping[str, str] = MappingProxyType(
    {
        "local": "gridbridge.adapters.local:LocalAdapter",
        "slurm": "gridbridge.adapters.slurm:SlurmAdapter",
        "pbs": "gridbridge.adapters.pbs:PBSAdapter",
        "edge": "gridbridge.adapters.edge:EdgeAdapter",
        "ec2spot": "gridbridge.adapters.ec2spot:Ec2SpotAdapter",
    }
)

_INSTALL_HINTS: Mapping[str, str] = MappingProxyType(
    {
        "boto3": "pip install 'gridbridge[aws]'",
        "s3fs": "pip install 'gridbridge[aws]'",
        "paramiko": "pip install 'gridbridge[ssh]'",
        "distributed": "pip install 'gridbridge[dask]'",
    }
)


class AdapterNotFound(LookupError):
    """No adapter of that name; the message lists the valid choices."""


class AdapterInvalid(TypeError):
    """The class does not implement the adapter protocol; the message names what is missing."""


def check_adapter_class(cls: type[Any]) -> None:
    """Raise :class:`AdapterInvalid` unless ``cls`` has every verb the protocol and its
    declared ``CAPABILITIES`` require."""
    missing = missing_verbs(cls)
    if missing:
        name = f"{cls.__module__}.{cls.__qualname__}"
        raise AdapterInvalid(f"adapter class {name} lacks the verbs: {', '.join(missing)}")


class Registry:
    """Adapter names mapped to lazily imported classes."""

    def __init__(self, entries: Mapping[str, str] | None = None) -> None:
        self._entries: dict[str, str] = dict(entries or {})
        self._loaded: dict[str, type[Any]] = {}

    @property
    def entries(self) -> Mapping[str, str]:
        """A read-only view of name -> ``"module:Class"``."""
        return MappingProxyType(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def register(self, name: str, target: str | type[Any], *, clobber: bool = False) -> None:
        """Add an adapter; refuse to replace an existing name unless ``clobber``."""
        if name in self._entries and not clobber:
            raise ValueError(f"adapter {name!r} is already registered as {self._entries[name]!r}")
        if isinstance(target, str):
            self._entries[name] = target
            self._loaded.pop(name, None)
        else:
            check_adapter_class(target)
            self._entries[name] = f"{target.__module__}:{target.__qualname__}"
            self._loaded[name] = target

    def load(self, name: str) -> type[Any]:
        """Import and return the adapter class registered as ``name``."""
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._entries:
            raise AdapterNotFound(
                f"unknown adapter {name!r}; valid choices: {', '.join(self.names())}"
            )
        module_name, _, attr = self._entries[name].partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing = exc.name or ""
            hint = _INSTALL_HINTS.get(missing.split(".")[0], f"install the package {missing!r}")
            raise ImportError(f"adapter {name!r} needs {missing!r}: {hint}") from exc
        cls: type[Any] = getattr(module, attr)
        check_adapter_class(cls)
        self._loaded[name] = cls
        return cls


def default_registry() -> Registry:
    """The built-in adapters plus those installed under the ``gridbridge.adapters`` group."""
    registry = Registry(BUILTIN_ADAPTERS)
    for ep in entry_points(group="gridbridge.adapters"):
        if ep.name in registry.entries:
            if registry.entries[ep.name] != ep.value:
                raise ValueError(
                    f"entry point {ep.name!r} -> {ep.value!r} clashes with "
                    f"{registry.entries[ep.name]!r}"
                )
            continue
        registry.register(ep.name, ep.value)
    return registry
