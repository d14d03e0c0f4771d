"""The edge adapter without a fleet: its options, its offers' labels against placement, a poll
line's translation, and its node scripts (syntax, shellcheck, the run-folder protocol)."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gridbridge.adapters._rundir import MARKERS, USED_BY, RunFile
from gridbridge.adapters.edge import EdgeAdapter, EdgeOptions
from gridbridge.adapters.edge._offers import Measured, node_offer
from gridbridge.adapters.edge._scripts import script
from gridbridge.adapters.edge._status import status
from gridbridge.config import Capacity, SiteConfig
from gridbridge.scheduler.placement import PendingJob, place
from gridbridge.spec import Constraints, JobSpec, Resources
from gridbridge.states import AttemptState

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
_PACKAGE = Path(str(files("gridbridge.adapters.edge")))
_SCRIPTS = sorted(p.name for p in _PACKAGE.glob("*.sh"))


def _site(labels: dict[str, str], **options: Any) -> SiteConfig:
    nodes = [{"name": "n1", "host": "192.0.2.1", "labels": labels, "cpus": 4}]
    return SiteConfig(name="edge", adapter="edge", tier="edge", capacity=Capacity(cpus=4),
                      options={"nodes": nodes, **options})


def _offer(adapter: EdgeAdapter, node: str = "n1") -> Any:
    measured = Measured({"nproc": 4.0, "memavail": 8.0 * 2**20, "load": 0.5}, (0, 0, 0), 1.0)
    return node_offer(adapter.site, adapter.nodes[node], measured, flaps=0)


# labels --------------------------------------------------------------------------------------

def test_a_job_constraining_a_label_like_zone_slash_a_is_placed_on_the_node_that_has_it(
        tmp_path: Path) -> None:
    """Node labels use the pattern job constraints use (``/`` and ``:`` allowed): a node can
    carry every label a job may ask for."""
    adapter = EdgeAdapter(_site({"zone/a": "gpu:a100", "location": "plant-2"}), tmp_path)
    offer = _offer(adapter)
    assert offer.labels == {"zone/a": "gpu:a100", "location": "plant-2"}
    assert offer.shape["zone/a"] == "gpu:a100"
    spec = JobSpec(name="job", command=("true",), resources=Resources(cpus=1, memory_gb=1.0),
                   constraints=Constraints(labels={"zone/a": "gpu:a100"}))
    [decision] = place([PendingJob(job_id="j", spec=spec, submitted_at=NOW)], [offer], NOW)
    assert (decision.site, decision.offer_key) == ("edge", "n1"), decision.reason


@pytest.mark.parametrize("labels", [{"zone a": "x"}, {"": "x"}, {"k" * 65: "x"},
                                    {"k;rm": "x"}])
def test_a_label_key_no_job_constraint_could_name_is_refused(labels: dict[str, str]) -> None:
    nodes = [{"name": "n1", "host": "h", "labels": labels}]
    with pytest.raises(ValidationError):
        EdgeOptions.model_validate({"nodes": nodes})


def test_a_label_value_is_any_text_as_before() -> None:
    nodes = [{"name": "n1", "host": "h", "labels": {"location": "Plant 2", "zone/a": ""}}]
    options = EdgeOptions.model_validate({"nodes": nodes})
    assert options.nodes[0].labels == {"location": "Plant 2", "zone/a": ""}


def test_the_federation_tag_is_checked_and_defaults_to_the_workdirs(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        EdgeOptions.model_validate({"nodes": [{"name": "n", "host": "h"}],
                                    "federation_tag": "no spaces"})
    one = EdgeAdapter(_site({}), tmp_path)
    again = EdgeAdapter(_site({}), tmp_path)
    assert re.fullmatch(r"[0-9a-f]{10}", one.tag) and one.tag == again.tag
    assert EdgeAdapter(_site({}, federation_tag="fed-1"), tmp_path).tag == "fed-1"


def test_runners_can_be_wrapped_through_the_adapter(tmp_path: Path) -> None:
    adapter = EdgeAdapter(_site({}), tmp_path)
    inner = adapter.runners["n1"]
    adapter.runners.update({"n1": inner})
    assert adapter.fleet.hosts["n1"].runner is inner
    assert list(adapter.runners) == ["n1"]


# a poll line ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("word", "marks", "result", "state"), [
    ("unknown", set(), "", AttemptState.LOST),
    ("starting", set(), "", AttemptState.SUBMITTED),
    ("running", set(), "", AttemptState.RUNNING),
    ("gone", set(), "", AttemptState.LOST),
    ("gone", {"cancelled"}, "", AttemptState.CANCELLED),
    ("gone", {"preempted", "walltime"}, "", AttemptState.PREEMPTED),
    ("result", set(), '{"exit_code": 0, "reason": "succeeded"}', AttemptState.SUCCEEDED),
    ("result", {"cancelled"}, '{"exit_code": 0, "reason": "succeeded"}',
     AttemptState.SUCCEEDED),
    ("result", {"cancelled"}, '{"exit_code": 75, "reason": "preempted"}',
     AttemptState.CANCELLED),
    ("result", set(), '{"exit_code": 76, "reason": "failed"}', AttemptState.LOST),
    ("result", set(), '{"exit_code": 1, "reason": "out_of_memory"}', AttemptState.FAILED),
    ("result", set(), "{not json", AttemptState.FAILED),
])
def test_a_poll_line_translates(word: str, marks: set[str], result: str,
                                state: AttemptState) -> None:
    assert status("n1", word, marks, result).state is state


def test_the_walltime_marker_says_why() -> None:
    seen = status("n1", "gone", {"preempted", "walltime"}, "")
    assert (seen.reason, seen.walltime) == ("walltime reached", True)


# the node scripts ----------------------------------------------------------------------------

def test_every_script_as_a_node_runs_it_is_one_text_that_sh_parses() -> None:
    assert "lib.sh" in _SCRIPTS and "poll.sh" in _SCRIPTS
    for name in _SCRIPTS:
        text = script(name)
        assert "${0%/*}" not in text, name  # every source line was inlined
        done = subprocess.run(["sh", "-n", "-c", text], capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, (name, done.stderr)
    assert script("poll.sh").startswith(script("lib.sh"))


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="needs shellcheck")
def test_the_scripts_pass_shellcheck() -> None:
    done = subprocess.run(["shellcheck", *_SCRIPTS], cwd=_PACKAGE, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout


def test_the_scripts_use_the_run_folder_files_of_the_protocol_table() -> None:
    """Every file the node scripts name in an attempt's folder is one the table lists for
    edge, and every file the table lists for edge (but the runtime's own) is one they use."""
    text = "\n".join(script(name) for name in _SCRIPTS)
    named = set(re.findall(r'"\$(?:d|1)/([a-z][a-z.]*)"', text))
    markers = re.search(r"\bfor m in ([a-z ]+);", text)  # poll.sh's "$d/$m"
    assert markers is not None
    named |= set(markers[1].split())
    edge = {f.value for f, users in USED_BY.items() if "edge" in users}
    runtime_own = {RunFile.STARTED, RunFile.ATTEMPT_LOG}
    assert named <= edge, named - edge
    assert edge - runtime_own <= named, (edge - runtime_own) - named
    assert markers[1].split() == [m.value for m in MARKERS]
