"""A real ``gridbridge serve --listen 127.0.0.1:PORT`` over a two-site local federation, with
tokens for alice and bob (researchers of different teams), fin (finance) and ops (operator),
each made by ``gridbridge admin token create`` on the store's host."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.serving import kill_attempt_groups, two_site_config, wait_until

PEOPLE = {"alice": ("phys", "researcher"), "bob": ("chem", "researcher"),
          "fin": ("books", "finance"), "ops": ("infra", "operator")}


@dataclass
class Federation:
    config: Path
    url: str
    tokens: dict[str, str]
    log: Path

    def cli(self, who: str | None, *args: str, token: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``gridbridge --url URL ARGS`` as ``who`` (None: no token; ``token``: this one)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("GRIDBRIDGE_TOKEN", "GRIDBRIDGE_URL", "GRIDBRIDGE_CONFIG")}
        chosen = token if token is not None else (self.tokens[who] if who else None)
        if chosen is not None:
            env["GRIDBRIDGE_TOKEN"] = chosen
        return subprocess.run([sys.executable, "-m", "gridbridge.cli", "--url", self.url,
                               *args], env=env, capture_output=True, text=True,
                              timeout=timeout)

    def local(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``gridbridge --config CONFIG ARGS`` on the store's host (no service)."""
        return subprocess.run([sys.executable, "-m", "gridbridge.cli", "--config",
                               str(self.config), *args], capture_output=True, text=True,
                              timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(url: str) -> bool:
    try:  # verify=False: only whether it answers (a TLS test checks the certificate itself)
        return httpx.get(f"{url}/v1/health", timeout=1, verify=False).status_code == 200
    except httpx.TransportError:
        return False


@contextlib.contextmanager
def serving(config: Path, url: str, log: Path, *extra: str) -> Iterator[None]:
    """``gridbridge serve --listen`` at ``url`` until the block ends (SIGTERM, then the
    attempts' process groups)."""
    host = url.split("://", 1)[1]
    with log.open("ab") as out:
        serve = subprocess.Popen(
            [sys.executable, "-m", "gridbridge.cli", "--config", str(config), "serve",
             "--listen", host, *extra],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: healthy(url) or serve.poll() is not None, 30, "the service")
        assert serve.poll() is None, log.read_text()
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(serve.pid, signal.SIGTERM)
        try:
            serve.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
        for site in ("a", "b"):
            kill_attempt_groups(config.parent / "run" / "local" / site)


@contextlib.contextmanager
def served(config: Path) -> Iterator[Federation]:
    """``config`` served on a free loopback port, with a token for each of :data:`PEOPLE`."""
    fed = Federation(config, f"http://127.0.0.1:{free_port()}", {},
                     config.parent / "serve.log")
    for name, (team, role) in PEOPLE.items():
        made = fed.local("admin", "token", "create", "--user", name, "--team", team,
                         "--role", role)
        assert made.returncode == 0, made.stderr
        fed.tokens[name] = made.stdout.strip()
    with serving(config, fed.url, fed.log):
        yield fed


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    with served(two_site_config(tmp_path, cpus=(4, 2))) as fed:
        yield fed
