"""``server.team_read``: a researcher also reads (status, story, listing) the jobs of their own
team, and nothing more of them (no logs, results, cancel or preempt); another team's jobs stay
out of sight. Without the setting, a teammate's job is refused like anyone else's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.service.conftest import Federation, free_port, serving
from tests.support.serving import two_site_config, wait_until

pytestmark = pytest.mark.slow

SLEEP = ["python", "-c", "import time; time.sleep(60)"]
PEOPLE = {"alice": "phys", "carla": "phys", "bob": "chem"}


def _federation(tmp_path: Path, team_read: bool) -> Iterator[Federation]:
    config = two_site_config(tmp_path, cpus=(4, 2))
    data = yaml.safe_load(config.read_text())
    data["server"] = {"team_read": team_read}
    config.write_text(yaml.safe_dump(data))
    fed = Federation(config, f"http://127.0.0.1:{free_port()}", {}, tmp_path / "serve.log")
    for name, team in PEOPLE.items():
        made = fed.local("admin", "token", "create", "--user", name, "--team", team,
                         "--role", "researcher")
        assert made.returncode == 0, made.stderr
        fed.tokens[name] = made.stdout.strip()
    with serving(config, fed.url, fed.log):
        yield fed


@pytest.fixture(params=[True, False], ids=["team_read", "own-only"])
def federation(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Federation]:
    yield from _federation(tmp_path, request.param)


def _refused(run: object, rule: str) -> None:
    assert run.returncode == 4, (run.returncode, run.stdout, run.stderr)  # type: ignore[attr-defined]
    assert rule in run.stderr, run.stderr  # type: ignore[attr-defined]


def test_a_teammate_reads_the_job_and_nothing_more(federation: Federation) -> None:
    fed = federation
    team_read = "team_read: true" in fed.config.read_text()
    run = fed.cli("alice", "submit", "--name", "nap", "--", *SLEEP)
    assert run.returncode == 0, run.stderr
    nap = run.stdout.strip()
    wait_until(lambda: fed.cli("alice", "status", nap).returncode == 0, 30, "alice's job")

    listing = fed.cli("carla", "status", "--format", "json")
    assert listing.returncode == 0, listing.stderr
    story = fed.cli("carla", "status", nap)
    if team_read:
        assert nap in listing.stdout
        assert story.returncode == 0 and nap in story.stdout, story.stderr
    else:
        assert nap not in listing.stdout
        _refused(story, "researchers act on their own jobs only")
    for args in (["logs", nap], ["cancel", nap], ["debug", "preempt", f"{nap}.1"]):
        _refused(fed.cli("carla", *args), "researchers act on their own jobs only")
    # another team sees nothing of it either way
    assert nap not in fed.cli("bob", "status", "--format", "json").stdout
    other = fed.cli("bob", "status", nap)
    _refused(other, "another team's" if team_read else "their own jobs only")
    if team_read:
        _refused(fed.cli("carla", "status", "--team", "chem"),
                 "researchers read their own team's jobs only")
    assert fed.cli("alice", "cancel", nap).returncode == 0  # its owner still may
