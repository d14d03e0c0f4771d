"""Job specs are frozen value objects: hostile names, misspelt fields and ambiguous targets fail."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from gridbridge.spec import (
    NAME_PATTERN,
    CheckpointPolicy,
    Constraints,
    JobSpec,
    Owner,
    Resources,
    Tier,
)

HOSTILE_NAMES = [
    "",
    "a'b",
    'a"b',
    "a;b",
    "a\nb",
    "abc\n",
    "\nabc",
    "..",
    "../etc",
    "a/b",
    "/abs",
    "a b",
    " a",
    "-rf",
    "-a",
    ".hidden",
    "a" * 64,
    "a" * 100,
    "$(id)",
    "a`id`",
    "a|b",
    "a&b",
    "a\x00b",
    "a\tb",
    "ünï",
]


def spec(**kw: object) -> JobSpec:
    base: dict[str, object] = {"name": "job-1", "command": ("true",)}
    base.update(kw)
    return JobSpec.model_validate(base)


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=repr)
def test_hostile_names_rejected(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        spec(name=name)
    errs = info.value.errors()
    assert [e["loc"] for e in errs] == [("name",)]


@pytest.mark.parametrize("name", ["a", "A9", "job_1.v2-x", "a" * 63, "0", "a..b"])
def test_safe_names_accepted(name: str) -> None:
    assert spec(name=name).name == name


def test_frozen() -> None:
    s = spec()
    with pytest.raises(ValidationError):
        s.name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        s.resources.cpus = 8  # type: ignore[misc]
    changed = s.model_copy(update={"priority": 7})
    assert changed.priority == 7
    assert s.priority == 0


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (JobSpec, {"name": "a", "command": ["x"], "comand": ["y"]}, "comand"),
        (JobSpec, {"name": "a", "command": ["x"], "resources": {"cpu": 2}}, "cpu"),
        (Resources, {"gpu": 1}, "gpu"),
        (CheckpointPolicy, {"interval": 5}, "interval"),
        (Constraints, {"tier": ["hpc"]}, "tier"),
        (Owner, {"teem": "x"}, "teem"),
    ],
)
def test_misspelt_field_fails_and_is_named(model: type, data: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    errs = info.value.errors()
    assert len(errs) == 1
    assert errs[0]["type"] == "extra_forbidden"
    assert errs[0]["loc"][-1] == field
    assert field in str(info.value)


def test_exactly_one_of_command_or_callable() -> None:
    assert spec(command=("a",)).callable_ref is None
    assert spec(command=None, callable_ref="file:///tmp/x.pkl").command is None
    for kw in ({"command": None}, {"command": ("a",), "callable_ref": "file:///x"}):
        with pytest.raises(ValidationError) as info:
            spec(**kw)
        assert "exactly one" in str(info.value)


@pytest.mark.parametrize("argv", [(), ("a\x00b",), ("ok", "\x00")])
def test_bad_argv_rejected(argv: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        spec(command=argv)
    assert info.value.errors()[0]["loc"] == ("command",)


def test_command_is_argv_not_shell_string() -> None:
    s = spec(command=["python", "-c", "print('a; b')"])
    assert s.command == ("python", "-c", "print('a; b')")
    with pytest.raises(ValidationError):
        spec(command="echo hi; rm -rf /")


@pytest.mark.parametrize(
    "key", ["1ABC", "A-B", "A B", "A=B", "", "A;B", "A\nB", "ABC\n", "ÄBC"], ids=repr
)
def test_bad_env_names_rejected(key: str) -> None:
    with pytest.raises(ValidationError) as info:
        spec(env={key: "v"})
    assert info.value.errors()[0]["loc"] == ("env",)


@pytest.mark.parametrize("key", ["GRIDBRIDGE_JOB_ID", "GRIDBRIDGE_TOKEN", "GRIDBRIDGE_X"])
def test_gridbridge_env_reserved(key: str) -> None:
    with pytest.raises(ValidationError) as info:
        spec(env={key: "v"})
    assert "reserved" in str(info.value)
    assert key in str(info.value)


def test_good_env_kept() -> None:
    env = {"OMP_NUM_THREADS": "4", "_X1": "a b; 'c'", "GRIDBRIDGEX": "ok"}
    assert spec(env=env).env == env


@pytest.mark.parametrize(
    ("field", "value"),
    [("cpus", 0), ("cpus", 5000), ("memory_gb", 0), ("gpus", -1), ("walltime_s", 0),
     ("expected_runtime_s", -1)],
)
def test_resource_bounds(field: str, value: float) -> None:
    with pytest.raises(ValidationError) as info:
        Resources.model_validate({field: value})
    assert info.value.errors()[0]["loc"] == (field,)


def test_runtime_estimate() -> None:
    assert Resources(walltime_s=100).runtime_estimate_s == 100
    assert Resources(walltime_s=100, expected_runtime_s=40).runtime_estimate_s == 40


def test_json_round_trip() -> None:
    s = JobSpec(
        name="train.v2",
        command=("python", "-c", "print(1)"),
        env={"A": "1"},
        resources=Resources(cpus=4, memory_gb=2.5, gpus=1, walltime_s=60, expected_runtime_s=30),
        checkpoint=CheckpointPolicy(url="file:///tmp/c", interval_s=5, keep_last=2),
        constraints=Constraints(
            allowed_sites=frozenset({"a", "b"}),
            denied_sites=frozenset({"c"}),
            tiers=frozenset({Tier.HPC, Tier.EDGE}),
            preemptible_ok=False,
        ),
        max_cost=1.5,
        priority=3,
        owner=Owner(user="u", team="t", project="p"),
        max_attempts=2,
    )
    text = s.model_dump_json()
    back = JobSpec.model_validate_json(text)
    assert back == s
    assert back.constraints.tiers == frozenset({Tier.HPC, Tier.EDGE})
    assert back.model_dump_json() == text
    assert json.loads(text)["constraints"]["tiers"] == ["edge", "hpc"]  # sorted, deterministic
    assert s.summary() == {"name": "train.v2", "cpus": 4, "gpus": 1, "memory_gb": 2.5}


def test_name_pattern_is_the_one_used() -> None:
    import re

    assert re.fullmatch(NAME_PATTERN, "a" * 63)
    assert not re.fullmatch(NAME_PATTERN, "a" * 64)


@pytest.mark.parametrize("priority", [10**18, -(10**18), 1001, -1001])
def test_priority_outside_its_range_is_refused_naming_the_field_and_range(priority: int) -> None:
    with pytest.raises(ValidationError) as caught:
        JobSpec(name="a", command=("true",), priority=priority)
    [error] = caught.value.errors()
    assert error["loc"] == ("priority",)
    assert "priority must be within -1000..1000" in error["msg"]


def test_priority_bounds_are_accepted_and_in_the_schema() -> None:
    for priority in (-1000, 0, 1000):
        assert JobSpec(name="a", command=("true",), priority=priority).priority == priority
    field = JobSpec.model_json_schema()["properties"]["priority"]
    assert (field["minimum"], field["maximum"]) == (-1000, 1000)
