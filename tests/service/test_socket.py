"""``serve --socket PATH``: a real Unix socket whose callers are who the kernel says
(SO_PEERCRED), no token: root (the service's own user) is an operator, a Unix user the test
creates is a researcher of their primary group: a client in a subprocess running under their
uid and gid submits as them (a forged token changes nothing) and is refused root's job."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gridbridge.client import Client
from tests.support.serving import kill_attempt_groups, two_site_config, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the test creates a "
                                "Unix user (useradd) and runs a client under their uid")


@pytest.fixture
def unix_user() -> Iterator[str]:
    name = f"gbs{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--user-group", "--shell", "/bin/false",
                    name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False)


_CLIENT = """
import http.client, json, socket, sys

class Conn(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(sys.argv[1])

def call(method, path, body=None, token=None):
    c = Conn("gridbridge")
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = "Bearer " + token
    c.request(method, path, json.dumps(body) if body is not None else None, headers)
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"null")

status, me = call("GET", "/v1/whoami", token="gb_forged.token")
spec = {"name": "hi", "command": ["true"], "owner": {"user": me["user"], "team": me["team"]}}
print(json.dumps({"whoami": [status, me], "submit": call("POST", "/v1/jobs", {"spec": spec}),
                  "cancel": call("POST", "/v1/jobs/" + sys.argv[2] + "/cancel")}))
"""


def _client_as(user: str, sock: Path, job_id: str) -> dict[str, Any]:
    """The stdlib client above, run by the system Python under ``user``'s uid and gid (the
    project's venv lies under root's private home)."""
    entry = pwd.getpwnam(user)
    run = subprocess.run(["/usr/bin/python3", "-I", "-c", _CLIENT, str(sock), job_id],
                         env={"PATH": "/usr/bin:/bin"}, user=entry.pw_uid, group=entry.pw_gid,
                         extra_groups=[], capture_output=True, text=True, timeout=60, cwd="/")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)  # type: ignore[no-any-return]


@contextlib.contextmanager
def _serving(config: Path, sock: Path, log: Path) -> Iterator[None]:
    with log.open("ab") as out:
        serve = subprocess.Popen([sys.executable, "-m", "gridbridge.cli", "--config",
                                  str(config), "serve", "--socket", str(sock)],
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: sock.is_socket() or serve.poll() is not None, 30, "the socket")
        assert serve.poll() is None, log.read_text()
        yield
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=30)
        for site in ("a", "b"):
            kill_attempt_groups(config.parent / "run" / "local" / site)


def test_the_socket_knows_its_callers_by_their_uid(tmp_path: Path, unix_user: str) -> None:
    config = two_site_config(tmp_path)
    folder = Path(tempfile.mkdtemp(prefix="gb-sock-"))  # one the other user can reach
    folder.chmod(0o755)
    sock = folder / "api.sock"
    with _serving(config, sock, tmp_path / "serve.log"), Client(url=f"unix://{sock}") as root:
        assert root.whoami()["role"] == "operator"
        assert root.whoami()["user"] == pwd.getpwuid(os.getuid()).pw_name
        mine = root.submit_command(["python", "-c", "import time; time.sleep(30)"]).job_id
        said = _client_as(unix_user, sock, mine)
        # a forged token changes nothing: the kernel names the caller
        assert said["whoami"][0] == 200
        assert (said["whoami"][1]["user"], said["whoami"][1]["role"]) == (unix_user,
                                                                         "researcher")
        status, answer = said["submit"]
        assert status == 200, answer
        theirs = root.store.job(answer["job_id"])
        assert (theirs.spec.owner.user, theirs.spec.owner.team) == (unix_user, unix_user)
        status, answer = said["cancel"]
        assert status == 403 and answer["error"].startswith("refused"), answer
        assert unix_user in answer["error"]
        assert not root.store.job(mine).cancel_requested
        audit = root.store.audit_records()
        assert any(r.user == unix_user and r.verb == "submit" and r.source == "socket"
                   for r in audit)
        assert any(r.user == unix_user and r.outcome == "refused" for r in audit)
        root.job(mine).cancel()
    for left in folder.iterdir():
        left.unlink()
    folder.rmdir()
