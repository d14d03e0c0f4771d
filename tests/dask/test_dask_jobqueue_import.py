"""``gridbridge config import-jobqueue``: dask-jobqueue's configuration as gridbridge sites."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gridbridge.config import ConfigError, load_config
from gridbridge.jobqueue_import import _seconds, import_jobqueue, load_jobqueue
from tests.support.paths import DATA as _DATA

pytestmark = pytest.mark.dask

DATA = _DATA / "jobqueue"
EXAMPLE = DATA / "documented-example.yaml"


def gridbridge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gridbridge.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_documented_example_becomes_a_config_that_config_check_accepts(
    tmp_path: Path,
) -> None:
    made = gridbridge("config", "import-jobqueue", str(EXAMPLE), "-o", "gridbridge.yaml",
                      cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    checked = gridbridge("--config", "gridbridge.yaml", "config", "check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok: 2 sites: pbs-regular, slurm" in checked.stdout

    config = load_config(tmp_path / "gridbridge.yaml")
    pbs, slurm = config.site("pbs-regular"), config.site("slurm")
    # '109 GB' is 109e9 bytes, 101.52 GiB: memory_gb counts GiB, as PBS and Slurm do
    assert (pbs.adapter, pbs.capacity.cpus, pbs.capacity.memory_gb) == ("pbs", 36, 101.52)
    assert pbs.options == {"queue": "regular"} and pbs.max_walltime_s == 1800
    assert slurm.options == {"account": "PXYZ123", "qos": "economy"}
    assert slurm.runtime.prologue == ("module load python/3.11", "source activate dask-env")
    assert slurm.capacity.cpus == 1 and slurm.capacity.memory_gb == 23.29  # '25 GB'

    # one note per setting that did not come over, each naming it
    notes = [line for line in made.stderr.splitlines() if line.startswith("note: ")]
    for what in ["jobqueue.slurm.job-extra-directives: '-C geyser'",
                 "jobqueue.pbs.resource-spec: 'select=1:ncpus=36:mem=109GB'",
                 "jobqueue.pbs.processes: 9", "jobqueue.pbs.interface: 'ib0'",
                 "jobqueue.slurm.interface: 'ib0'", "distributed: dask's own settings"]:
        assert sum(what in n for n in notes) == 1, (what, notes)
    assert not any("--qos=economy" in n for n in notes)  # carried over as options.qos


def test_printing_to_stdout_gives_the_same_yaml(tmp_path: Path) -> None:
    shown = gridbridge("config", "import-jobqueue", str(EXAMPLE), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout) == load_jobqueue(EXAMPLE).config


def test_dask_jobqueue_s_shipped_defaults_have_nothing_to_import(tmp_path: Path) -> None:
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    shipped = Path(dask_jobqueue.__file__).parent / "jobqueue.yaml"
    out = gridbridge("config", "import-jobqueue", str(shipped), cwd=tmp_path)
    assert out.returncode == 2
    assert "no jobqueue.slurm or jobqueue.pbs section with 'cores' set" in out.stderr


def test_old_setting_names_queue_and_directives_are_carried_over() -> None:
    result = import_jobqueue({"jobqueue": {
        "slurm": {"cores": 8, "memory": "32GiB", "project": "climate", "queue": "short",
                  "walltime": "1-12:00:00", "job-extra": ["--qos high", "--exclusive"],
                  "env-extra": ["export OMP_NUM_THREADS=1"], "python": "/opt/env/bin/python"},
        "sge": {"cores": 4, "queue": "all.q"},
    }})
    [site] = result.config["sites"]
    assert site["name"] == "slurm-short"
    assert site["options"] == {"partitions": {"short": {}}, "account": "climate",
                               "qos": "high"}
    assert site["max_walltime_s"] == 36 * 3600
    assert site["capacity"] == {"cpus": 8, "memory_gb": 32.0}
    assert site["runtime"]["prologue"] == ["export OMP_NUM_THREADS=1"]
    assert site["runtime"]["python"] == "/opt/env/bin/python"
    assert any("'--exclusive' not carried over" in n for n in result.notes)
    assert any(n.startswith("jobqueue.sge: gridbridge has no sge adapter") for n in result.notes)


@pytest.mark.parametrize(("bad", "field"), [
    ({"cores": "many"}, "jobqueue.slurm.cores: 'many' is not a whole number"),
    ({"cores": 2, "memory": "lots"}, "jobqueue.slurm.memory: 'lots' is not an amount"),
    ({"cores": 2, "walltime": "soon"}, "jobqueue.slurm.walltime: 'soon' is not a walltime"),
    ({"cores": 2, "account": "a b;rm"}, "options.account"),
])
def test_bad_values_name_the_file_and_the_setting(bad: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=r"jobqueue\.yaml") as err:
        import_jobqueue({"jobqueue": {"slurm": bad}}, source="jobqueue.yaml")
    assert field in str(err.value)


def test_not_a_jobqueue_file(tmp_path: Path) -> None:
    path = tmp_path / "jobqueue.yaml"
    path.write_text("distributed: {}\n")
    out = gridbridge("config", "import-jobqueue", str(path), cwd=tmp_path)
    assert out.returncode == 2 and "no 'jobqueue:' mapping" in out.stderr
    missing = gridbridge("config", "import-jobqueue", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert missing.returncode == 2 and "cannot read" in missing.stderr


@pytest.mark.parametrize(("memory", "gib"), [
    ("4GiB", 4.0), ("4 GiB", 4.0), (4 * 2**30, 4.0), ("4096 MiB", 4.0), ("109 GB", 101.52),
])
def test_memory_imports_in_gib_as_slurm_and_pbs_count_it(memory: object, gib: float) -> None:
    """A '4GiB' dask-jobqueue worker is memory_gb 4.0 (it was 4.29, read as decimal GB, and
    Slurm was then asked for 4399M)."""
    result = import_jobqueue({"jobqueue": {"slurm": {"cores": 1, "memory": memory}}})
    [site] = result.config["sites"]
    assert site["capacity"]["memory_gb"] == gib


@pytest.mark.parametrize(("text", "seconds"), [
    ("00:30:00", 1800), ("2-00:00:00", 172800), ("90", 5400), ("05:30", 330),
    ("1-02:03", 93780), ("1-02", 93600),
])
def test_walltime_formats(text: str, seconds: float) -> None:
    assert _seconds(text, "w") == seconds
