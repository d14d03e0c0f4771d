"""The operator's example ``deploy/gridbridge.example.yaml`` stays valid and says what it means.

Expectations come from reading the same file with plain ``yaml.safe_load``, so the test follows
edits to the example instead of repeating its numbers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gridbridge.adapter import Pricing
from gridbridge.config import GridConfig, load_config

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "gridbridge.example.yaml"


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def config() -> GridConfig:
    return load_config(EXAMPLE)


def test_sites_parse_as_written(raw: dict[str, Any], config: GridConfig) -> None:
    assert [s.name for s in config.sites] == [s["name"] for s in raw["sites"]]
    assert [s.adapter for s in config.sites] == [s["adapter"] for s in raw["sites"]]
    for site, written in zip(config.sites, raw["sites"], strict=True):
        assert site.tier.value == written.get("tier", "hpc")
        assert site.price == Pricing(**written.get("price", {}))
        if "on_demand" in written:
            assert site.on_demand == Pricing(**written["on_demand"])
        assert site.capacity.cpus == written["capacity"]["cpus"]
        assert site.preemptible == written.get("preemptible", False)
        assert site.preemption_rate_per_hour == written.get("preemption_rate_per_hour", 0.0)
        assert site.options == written.get("options", {})


def test_only_local_adapters_are_active(config: GridConfig) -> None:
    # The slurm/ec2spot entries need a cluster or AWS credentials: they stay commented out.
    assert {s.adapter for s in config.sites} == {"local"}
    assert len(config.sites) >= 2


def test_the_commented_out_sites_are_valid_when_uncommented() -> None:
    """Uncommenting the Slurm or EC2 spot example gives a site its adapter accepts."""
    from gridbridge.adapters.ec2spot import Ec2SpotOptions
    from gridbridge.adapters.slurm import SlurmOptions
    from gridbridge.config import SiteConfig

    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    entries: list[list[str]] = []
    for line in lines:
        if line.startswith("#  - name:"):
            entries.append([])
        if entries and line.startswith("#  ") and not line.startswith("#  #"):
            entries[-1].append(line[1:])  # the entry's lines, uncommented
    parsed = [yaml.safe_load("\n".join(e))[0] for e in entries if e]
    assert {p["adapter"] for p in parsed} == {"slurm", "ec2spot"}
    for site in parsed:
        model = SiteConfig.model_validate(site)
        options = {"slurm": SlurmOptions, "ec2spot": Ec2SpotOptions}[model.adapter]
        options.model_validate(model.options)


def test_limits_and_paths(raw: dict[str, Any], config: GridConfig) -> None:
    for key, value in raw.get("limits", {}).items():
        assert getattr(config.limits, key) == value
    # Relative paths are taken from the file's own folder.
    assert config.workdir == str((EXAMPLE.parent / raw["workdir"]).resolve())
    assert config.checkpoint_root == (EXAMPLE.parent / raw["checkpoint_root"]).resolve().as_uri()


def test_config_check_exits_0(tmp_path: Path) -> None:
    # `config check` opens the store and the sites, which creates the state folder beside the
    # file; a byte-identical copy keeps those files out of the source tree.
    copy = tmp_path / "deploy" / EXAMPLE.name
    copy.parent.mkdir()
    shutil.copyfile(EXAMPLE, copy)
    assert copy.read_bytes() == EXAMPLE.read_bytes()
    env = {k: v for k, v in os.environ.items() if k != "GRIDBRIDGE_CONFIG"}
    env["COLUMNS"] = "200"
    proc = subprocess.run(
        [sys.executable, "-m", "gridbridge.cli", "--config", f"deploy/{EXAMPLE.name}",
         "config", "check"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    names = [s["name"] for s in yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["sites"]]
    assert f"ok: {len(names)} sites: {', '.join(names)}" in proc.stdout
