"""gridbridge.yaml: a bad file fails with one message naming the file, the field and the choices."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gridbridge.adapters.local import LocalOptions
from gridbridge.config import (
    ConfigError,
    GridConfig,
    SiteConfig,
    config_schema,
    default_config,
    load_config,
    parse_config,
)
from gridbridge.registry import Registry, default_registry
from gridbridge.spec import Tier

DATA = Path(__file__).parent / "data"

GOOD: dict[str, Any] = {
    "state_url": "sqlite:///state.db",
    "checkpoint_root": "checkpoints",
    "workdir": "run",
    "sites": [
        {
            "name": "spot",
            "adapter": "local",
            "tier": "cloud",
            "capacity": {"cpus": 4, "memory_gb": 8},
            "price": {"per_core_hour": 0.01},
            "preemptible": True,
            "preemption_rate_per_hour": 0.5,
            "options": {"grace_s": 1, "reclaim_after_preemption_s": 5},
        },
        {"name": "hpc", "adapter": "local", "capacity": {"cpus": 2}},
    ],
}


def write(tmp_path: Path, data: Any, name: str = "gridbridge.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def bad(tmp_path: Path, data: Any) -> str:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    assert "Traceback" not in msg
    return msg


def variant(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    for dotted, value in changes.items():
        # "0__capacity__cpus" means data["sites"][0]["capacity"]["cpus"]
        *head, last = dotted.split("__")
        target: Any = data["sites"] if head and head[0].isdigit() else data
        for part in head:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value
    return data


_DELETE = object()


def test_good_file_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert isinstance(config, GridConfig)
    assert [s.name for s in config.sites] == ["spot", "hpc"]
    assert config.site("spot").tier is Tier.CLOUD
    assert config.site("hpc").tier is Tier.HPC
    assert config.site("hpc").on_demand_price == config.site("hpc").price
    with pytest.raises(KeyError, match="spot, hpc"):
        config.site("nope")


def test_relative_paths_resolve_against_the_file_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc" / "grid"
    conf_dir.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(write(conf_dir, GOOD))
    assert Path(config.workdir) == (conf_dir / "run").resolve()
    assert config.checkpoint_root == (conf_dir / "checkpoints").resolve().as_uri()
    assert config.state_url == f"sqlite:///{(conf_dir / 'state.db').resolve()}"


def test_absolute_paths_and_urls_are_kept(tmp_path: Path) -> None:
    data = variant(
        workdir=str(tmp_path / "w"),
        checkpoint_root="s3://bucket/ckpt",
        state_url=f"sqlite:///{tmp_path / 's.db'}",
    )
    config = load_config(write(tmp_path, data))
    assert config.workdir == str(tmp_path / "w")
    assert config.checkpoint_root == "s3://bucket/ckpt"
    assert config.state_url == f"sqlite:///{tmp_path / 's.db'}"
    abs_root = variant(checkpoint_root=str(tmp_path / "abs"))
    assert load_config(write(tmp_path, abs_root)).checkpoint_root == (tmp_path / "abs").as_uri()


def test_misspelt_top_level_field(tmp_path: Path) -> None:
    data = variant(limits={"tick_interval_s": 1})
    data["limitz"] = data.pop("limits")
    msg = bad(tmp_path, data)
    assert "limitz" in msg
    assert "unknown field 'limitz'" in msg
    valid = re.search(r"valid fields: (.*)", msg)
    assert valid is not None
    assert valid.group(1).split(", ") == sorted(GridConfig.model_fields)


def test_misspelt_site_field(tmp_path: Path) -> None:
    data = variant(**{"1__capactiy": {"cpus": 2}, "1__capacity": _DELETE})
    msg = bad(tmp_path, data)
    assert "sites[1].capactiy" in msg
    assert "unknown field 'capactiy'" in msg
    line = next(x for x in msg.splitlines() if "capactiy" in x)
    assert line.split("valid fields: ")[1].split(", ") == sorted(SiteConfig.model_fields)


def test_misspelt_site_field_gives_one_clear_message(tmp_path: Path) -> None:
    # Only the misspelt field (and the required one it was meant to be) may be reported,
    # never a made-up complaint about the list of sites as a whole.
    data = variant(**{"0__tier_": "cloud"})
    msg = bad(tmp_path, data)
    assert msg.count("\n") == 0, msg
    assert "sites[0].tier_" in msg


def test_misspelt_nested_field(tmp_path: Path) -> None:
    msg = bad(tmp_path, variant(**{"0__price__per_cor_hour": 1.0}))
    assert "sites[0].price.per_cor_hour" in msg
    assert "per_core_hour" in msg.split("valid fields:")[1]


def test_wrong_type(tmp_path: Path) -> None:
    msg = bad(tmp_path, variant(**{"0__capacity__cpus": "many"}))
    assert "sites[0].capacity.cpus" in msg
    assert '"many"' in msg
    assert "integer" in msg
    assert msg.count("\n") == 0, msg


def test_wrong_type_from_the_fixture_file() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(DATA / "bad_type.yaml")
    msg = str(info.value)
    assert str(DATA / "bad_type.yaml") in msg
    assert "sites[0].capacity.cpus" in msg
    assert msg.count("\n") == 0, msg


@pytest.mark.parametrize(
    ("change", "field"),
    [({"0__capactiy": {"cpus": 1}, "0__capacity": _DELETE}, "sites[0].capactiy"),
     ({"0__capacity__cpus": "many"}, "sites[0].capacity.cpus"),
     ({"0__tier": "hpcc"}, "sites[0].tier")],
)
def test_a_lone_bad_site_is_not_also_reported_as_no_sites(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    # With one site, pydantic counts the failed item out of the tuple; the message must still
    # be about the site's own field, not claim that the file has no sites.
    data = variant(**change)
    data["sites"] = data["sites"][:1]
    msg = bad(tmp_path, data)
    assert field in msg
    assert "at least 1 item" not in msg, msg


def test_unknown_adapter(tmp_path: Path) -> None:
    msg = bad(tmp_path, variant(**{"1__adapter": "slurmm"}))
    names = ", ".join(default_registry().names())
    assert f"sites[1].adapter: unknown adapter 'slurmm'; valid choices: {names}" in msg
    assert "valid choices: ec2spot, edge, local, pbs, slurm" in msg


def test_unknown_adapter_choices_come_from_the_given_registry(tmp_path: Path) -> None:
    registry = Registry({"local": "gridbridge.adapters.local:LocalAdapter", "pbs": "x:Y"})
    path = write(tmp_path, variant(**{"0__adapter": "slurmm"}))
    with pytest.raises(ConfigError, match="valid choices: local, pbs"):
        load_config(path, registry=registry)


def test_bad_tier_lists_choices(tmp_path: Path) -> None:
    msg = bad(tmp_path, variant(**{"0__tier": "hpcc"}))
    assert "sites[0].tier" in msg
    assert '"hpcc"' in msg
    for t in Tier:
        assert repr(t.value) in msg


def test_duplicate_site_names(tmp_path: Path) -> None:
    msg = bad(tmp_path, variant(**{"1__name": "spot"}))
    assert "sites" in msg
    assert "'spot' appears twice" in msg


@pytest.mark.parametrize("name", ["a b", "../x", "a;b", "", "-x"])
def test_hostile_site_names(tmp_path: Path, name: str) -> None:
    msg = bad(tmp_path, variant(**{"0__name": name}))
    assert "sites[0].name" in msg


def test_invalid_adapter_options(tmp_path: Path) -> None:
    msg = bad(tmp_path, variant(**{"0__options": {"grace": 3}}))
    assert "sites[0].options.grace" in msg
    line = next(x for x in msg.splitlines() if "options.grace" in x)
    assert line.split("valid fields: ")[1].split(", ") == sorted(LocalOptions.model_fields)


def test_invalid_adapter_option_value(tmp_path: Path) -> None:
    msg = bad(tmp_path, variant(**{"1__options": {"grace_s": -1}}))
    assert "sites[1].options.grace_s" in msg


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    msg = bad(tmp_path, variant(**{"0__adapter": "nope", "1__options": {"bogus": 1}}))
    assert "sites[0].adapter" in msg
    assert "sites[1].options.bogus" in msg


def test_preemption_rate_needs_preemptible(tmp_path: Path) -> None:
    msg = bad(tmp_path, variant(**{"0__preemptible": False}))
    assert "'spot'" in msg
    assert "preemptible" in msg


def test_missing_required_field(tmp_path: Path) -> None:
    msg = bad(tmp_path, variant(workdir=_DELETE))
    assert "workdir: required field is missing" in msg


def test_no_sites(tmp_path: Path) -> None:
    msg = bad(tmp_path, variant(sites=[]))
    assert "sites" in msg


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "", "42\n"])
def test_not_a_mapping(tmp_path: Path, text: str) -> None:
    msg = bad(tmp_path, text)
    assert "mapping" in msg


def test_invalid_yaml(tmp_path: Path) -> None:
    msg = bad(tmp_path, "sites: [1, 2\n")
    assert "not valid YAML" in msg
    assert "line" in msg


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "cannot read" in str(info.value)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_parse_config_names_its_source() -> None:
    data = variant(**{"0__capacity__cpus": 0})
    with pytest.raises(ConfigError, match=r"^<mine>: sites\[0\]\.capacity\.cpus"):
        parse_config(data, source="<mine>")


def test_models_are_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    with pytest.raises(ValueError):
        config.workdir = "/elsewhere"  # type: ignore[misc]
    site = config.site("hpc").model_copy(update={"name": "hpc2"})
    assert site.name == "hpc2"
    assert config.site("hpc").name == "hpc"


def test_default_config_is_valid(tmp_path: Path) -> None:
    config = default_config(tmp_path, cpus=3)
    assert [s.capacity.cpus for s in config.sites] == [3, 3]
    assert config.state_url == f"sqlite:///{tmp_path.resolve() / 'state.db'}"
    spot = next(s for s in config.sites if s.preemptible)
    LocalOptions.model_validate(spot.options)
    assert spot.price.per_core_hour < spot.on_demand_price.per_core_hour


def test_schema_is_generated_json_schema() -> None:
    schema = config_schema()
    json.loads(json.dumps(schema))
    assert schema["type"] == "object"
    assert "sites" in schema["properties"]
    assert set(schema["required"]) == {
        n for n, f in GridConfig.model_fields.items() if f.is_required()
    }
    site = schema["$defs"]["SiteConfig"]
    assert site.get("additionalProperties") is False
    assert set(site["properties"]) == set(SiteConfig.model_fields)
    assert sorted(schema["$defs"]["Tier"]["enum"]) == sorted(t.value for t in Tier)


def test_schema_validates_with_jsonschema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(copy.deepcopy(GOOD))
    assert not validator.is_valid(variant(**{"0__capactiy": 1}))


# the CLI ---------------------------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200", TERM="dumb")
    return subprocess.run(
        [sys.executable, "-m", "gridbridge.cli", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=120,
    )


def _assert_clean_failure(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr + proc.stdout
    flat = " ".join(proc.stderr.split())  # rich may wrap long lines
    for needle in needles:
        assert needle in flat, (needle, proc.stderr)


def test_cli_unknown_adapter_exits_non_zero(tmp_path: Path) -> None:
    path = write(tmp_path, variant(**{"0__adapter": "slurmm"}))
    proc = _cli("--config", str(path), "sites", "list", cwd=tmp_path)
    _assert_clean_failure(
        proc, str(path), "sites[0].adapter", "unknown adapter 'slurmm'",
        "valid choices: ec2spot, edge, local, pbs, slurm"
    )


def test_cli_misspelt_field_exits_non_zero(tmp_path: Path) -> None:
    path = DATA / "bad_site_field.yaml"
    proc = _cli("--config", str(path), "sites", "list", cwd=tmp_path)
    _assert_clean_failure(proc, str(path), "sites[0].capactiy", "valid fields:", "capacity")


def test_cli_wrong_type_exits_non_zero(tmp_path: Path) -> None:
    path = DATA / "bad_type.yaml"
    proc = _cli("--config", str(path), "sites", "list", cwd=tmp_path)
    _assert_clean_failure(proc, str(path), "sites[0].capacity.cpus")


def test_cli_missing_config_exits_non_zero(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    proc = _cli("--config", str(path), "sites", "list", cwd=tmp_path)
    _assert_clean_failure(proc, str(path))


def test_cli_good_config_lists_sites(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    proc = _cli("--config", str(path), "sites", "list", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for site in GOOD["sites"]:
        assert site["name"] in proc.stdout


def test_budgets_default_and_strict(tmp_path: Path) -> None:
    budgets = {"teams": {"lab": 10.0}, "default": 2.5, "strict": True}
    config = load_config(write(tmp_path, {**GOOD, "budgets": budgets}))
    assert config.budgets.strict is True
    assert config.budgets.team_budget("lab") == 10.0
    assert config.budgets.team_budget("anyone") == 2.5
    assert load_config(write(tmp_path, GOOD)).budgets.team_budget("anyone") is None


def test_a_negative_default_budget_names_the_field(tmp_path: Path) -> None:
    msg = bad(tmp_path, {**GOOD, "budgets": {"default": -1}})
    assert "budgets.default" in msg
    msg = bad(tmp_path, {**GOOD, "budgets": {"strictt": True}})
    assert "budgets.strictt" in msg and "strict" in msg.split("valid fields:")[1]


def test_fair_share_settings_read_from_yaml(tmp_path: Path) -> None:
    data = copy.deepcopy(GOOD)
    data["limits"] = {"max_running_per_user": 3}
    data["teams"] = {"vision": {"weight": 3}, "nlp": {}}
    grid = load_config(write(tmp_path, data))
    assert grid.limits.max_running_per_user == 3
    assert grid.teams["vision"].weight == 3 and grid.teams["nlp"].weight == 1


@pytest.mark.parametrize(("changes", "field"), [
    ({"limits": {"max_running_per_user": 0}}, "limits.max_running_per_user"),
    ({"teams": {"vision": {"weight": 0}}}, "teams.vision.weight"),
    ({"teams": {"vision": {"wieght": 3}}}, "teams.vision.wieght"),
])
def test_bad_fair_share_settings_name_the_field(tmp_path: Path, changes: dict[str, Any],
                                                field: str) -> None:
    msg = bad(tmp_path, {**copy.deepcopy(GOOD), **changes})
    assert field in msg, msg
