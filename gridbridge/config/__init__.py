"""The operator's one file: ``gridbridge.yaml``, validated by pydantic.

A bad file fails as a whole with one :class:`ConfigError` whose message names the file, the
field (``sites[1].price.per_core_hour``) and, where there is a closed set, the valid choices.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from gridbridge.config._federation import (
    Budgets,
    CheckpointSettings,
    GridConfig,
    Limits,
    OidcSettings,
    ServerSettings,
    TeamSettings,
)
from gridbridge.config._sites import (
    Allocation,
    Capacity,
    RuntimeSettings,
    SiteConfig,
    prologue_script,
)
from gridbridge.registry import AdapterNotFound, Registry, default_registry
from gridbridge.units import ENV_NAME_PATTERN

__all__ = [
    "ENV_NAME_PATTERN",
    "Allocation",
    "Budgets",
    "Capacity",
    "CheckpointSettings",
    "ConfigError",
    "GridConfig",
    "Limits",
    "OidcSettings",
    "RuntimeSettings",
    "ServerSettings",
    "SiteConfig",
    "TeamSettings",
    "config_schema",
    "default_config",
    "explain_errors",
    "load_config",
    "parse_config",
    "prologue_script",
]


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says where and why."""


def config_schema() -> dict[str, Any]:
    """The JSON Schema of ``gridbridge.yaml``, generated from the models."""
    return GridConfig.model_json_schema()


def load_config(path: str | os.PathLike[str], registry: Registry | None = None) -> GridConfig:
    """Read, validate and return ``path``; relative paths in it are taken from its folder."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping with 'sites' and the rest")
    return parse_config(data, source=str(p), base=p.parent, registry=registry)


def parse_config(
    data: Mapping[str, Any],
    *,
    source: str = "<config>",
    base: Path | None = None,
    registry: Registry | None = None,
) -> GridConfig:
    """Validate a mapping as a :class:`GridConfig`, then each site's adapter and options."""
    data = _resolve_paths(dict(data), base or Path.cwd())
    try:
        config = GridConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(explain_errors(exc, source, GridConfig)) from None
    registry = registry or default_registry()
    problems: list[str] = []
    for i, site in enumerate(config.sites):
        try:
            cls = registry.load(site.adapter)
        except AdapterNotFound:
            problems.append(
                f"{source}: sites[{i}].adapter: unknown adapter {site.adapter!r}; "
                f"valid choices: {', '.join(registry.names())}"
            )
            continue
        options_model: type[BaseModel] | None = getattr(cls, "Options", None)
        if options_model is not None:
            try:
                options_model.model_validate(site.options)
            except ValidationError as exc:
                problems.append(explain_errors(exc, source, options_model, f"sites[{i}].options"))
    if problems:
        raise ConfigError("\n".join(problems))
    return config


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    for key in ("workdir",):
        value = data.get(key)
        if isinstance(value, str) and not os.path.isabs(value) and "://" not in value:
            data[key] = str((base / value).resolve())
    root = data.get("checkpoint_root")
    if isinstance(root, str) and "://" not in root and not os.path.isabs(root):
        data["checkpoint_root"] = (base / root).resolve().as_uri()
    elif isinstance(root, str) and "://" not in root:
        data["checkpoint_root"] = Path(root).as_uri()
    state = data.get("state_url")
    if isinstance(state, str) and state.startswith("sqlite:///") and not state.startswith(
        "sqlite:////"
    ):
        rel = state.removeprefix("sqlite:///")
        if rel and rel != ":memory:":
            data["state_url"] = "sqlite:///" + str((base / rel).resolve())
    return data


def explain_errors(
    exc: ValidationError, source: str, model: type[BaseModel], prefix: str = ""
) -> str:
    """One line per error of ``exc``: ``source: field.path: what is wrong``, with the valid
    field names for an unknown field and the valid choices for a closed set."""
    lines = []
    errors = exc.errors()
    for err in errors:
        if err["type"] == "too_short" and _has_deeper(errors, err["loc"]):
            continue  # pydantic's tuple min_length counts failed items out; theirs is the error
        loc = _format_loc(err["loc"], prefix)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            valid = _fields_at(model, err["loc"][:-1])
            msg = f"unknown field {str(err['loc'][-1])!r}; valid fields: {', '.join(valid)}"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "enum":
            ctx = err.get("ctx") or {}
            msg = f"{json.dumps(err['input'])} is not valid; valid choices: {ctx.get('expected')}"
        elif isinstance(err["input"], dict):
            # a mapping may hold secrets (a job's env): name its size, never its values
            msg = f"{msg} (got a mapping of {len(err['input'])} entries)"
        else:
            msg = f"{msg} (got {json.dumps(err['input'], default=str)[:80]})"
        lines.append(f"{source}: {loc or '<top>'}: {msg}")
    return "\n".join(lines)


def _has_deeper(errors: Sequence[Any], loc: tuple[int | str, ...]) -> bool:
    return any(len(e["loc"]) > len(loc) and e["loc"][: len(loc)] == loc for e in errors)


def _format_loc(loc: Sequence[int | str], prefix: str) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"function-after", "function-before"} or "[" in str(part):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _fields_at(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The field names of the sub-model at ``loc`` (list indexes skipped)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = _model_of(fields[part].annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", {})
    return sorted(fields)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def default_config(data_dir: str | os.PathLike[str], cpus: int | None = None) -> GridConfig:
    """The embedded default: two local sites, SQLite state and file checkpoints in ``data_dir``.

    ``spot-local`` is cheap and preemptible (and its capacity is reclaimed for a while after an
    interruption, as spot capacity is); ``ondemand-local`` is reliable and four times dearer.
    """
    d = Path(data_dir).resolve()
    n = cpus or max(2, os.cpu_count() or 2)
    return parse_config(
        {
            "state_url": f"sqlite:///{d / 'state.db'}",
            "checkpoint_root": (d / "checkpoints").as_uri(),
            "workdir": str(d / "run"),
            "limits": {"tick_interval_s": 0.25},
            "sites": [
                {
                    "name": "spot-local",
                    "adapter": "local",
                    "tier": "cloud",
                    "capacity": {"cpus": n, "memory_gb": 8},
                    "price": {"per_core_hour": 0.012},
                    "on_demand": {"per_core_hour": 0.048},
                    "preemptible": True,
                    "preemption_rate_per_hour": 0.5,
                    "restart_overhead_s": 20,
                    "options": {"reclaim_after_preemption_s": 30},
                },
                {
                    "name": "ondemand-local",
                    "adapter": "local",
                    "tier": "cloud",
                    "capacity": {"cpus": n, "memory_gb": 8},
                    "price": {"per_core_hour": 0.048},
                    "restart_overhead_s": 20,
                },
            ],
        },
        source="<embedded default>",
    )
