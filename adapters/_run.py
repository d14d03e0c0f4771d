"""One way to run a command on a site's host: an argv list, here or over SSH, with a timeout.

Adapters that drive a remote scheduler or a fleet of hosts (Slurm, PBS, edge nodes) never build
shell strings by hand. They hand an argv list to a :class:`Runner`:

* :class:`LocalRunner` runs it with :func:`subprocess.run` (no shell at all);
* :class:`SSHRunner` joins it with :func:`shlex.join` (every value quoted for the remote login
  shell) and runs it over one pooled paramiko connection whose host key must already be in the
  operator's ``known_hosts``: an unknown or changed key is refused before anything runs.

Both raise :class:`CommandTimeout` when the call overruns and :class:`RunnerError` when the
command could not be started or the host not reached, so an adapter can tell "the command said
no" (a :class:`Completed` with a non-zero return code) from "nobody answered".
"""

from __future__ import annotations

import errno
import os
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from pydantic import Field

from gridbridge.frozen import Frozen

__all__ = [
    "CommandTimeout",
    "Completed",
    "HostKeyRefused",
    "LocalRunner",
    "Runner",
    "RunnerError",
    "SSHRunner",
    "SSHTarget",
]


class Completed(NamedTuple):
    """What a command returned."""

    returncode: int
    stdout: str
    stderr: str

    def check(self, what: str) -> str:
        """``stdout``, or :class:`RunnerError` naming ``what`` and the command's own words."""
        if self.returncode != 0:
            words = (self.stderr or self.stdout).strip()[-2000:]
            raise RunnerError(f"{what} failed (exit {self.returncode}): {words}")
        return self.stdout


class RunnerError(RuntimeError):
    """The command could not be run, or the host could not be reached.

    ``silent_since`` (wall-clock seconds), when known, is the moment from which the host has
    not answered at all: set when TCP gave up on the connection (``ETIMEDOUT`` after the
    user timeout), so the silence began at least that long before it was noticed."""

    def __init__(self, *args: object, silent_since: float | None = None) -> None:
        super().__init__(*args)
        self.silent_since = silent_since


class CommandTimeout(RunnerError):
    """The command did not finish within its timeout (it may still have acted)."""


class HostKeyRefused(RunnerError):
    """The host's key is not in the known_hosts file, or differs from it: nothing was run."""


class Runner(Protocol):
    """Runs argv lists on one host."""

    def run(self, argv: Sequence[str], *, input: str | None = None,
            timeout: float = 30.0, env: Mapping[str, str] | None = None) -> Completed:
        """Run ``argv`` (``input`` on its stdin) and wait at most ``timeout`` seconds."""
        ...

    def describe(self) -> str:
        """Where commands run, for messages (``local`` or ``user@host:port``)."""
        ...


class LocalRunner:
    """Runs commands on this host, without a shell."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = dict(env) if env is not None else None

    def run(self, argv: Sequence[str], *, input: str | None = None,
            timeout: float = 30.0, env: Mapping[str, str] | None = None) -> Completed:
        merged = {**os.environ, **(self._env or {}), **(env or {})}
        try:
            done = subprocess.run(
                list(argv), input=input, capture_output=True, text=True, timeout=timeout,
                env=merged, stdin=None if input is not None else subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise CommandTimeout(f"{argv[0]} did not finish within {timeout:g}s") from None
        except OSError as exc:
            raise RunnerError(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from None
        return Completed(done.returncode, done.stdout, done.stderr)

    def describe(self) -> str:
        return "local"


class SSHTarget(Frozen):
    """How to reach a host over SSH (``login:`` of a Slurm or PBS site, a node of an edge
    fleet). The host key is always checked against ``known_hosts``."""

    host: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:%\[\]-]+$")
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(default="root", pattern=r"^[a-z_][a-z0-9_.-]{0,31}$")
    key_file: str | None = None
    """The private key; None uses the SSH agent and ``~/.ssh/id_*``."""
    known_hosts: str = "~/.ssh/known_hosts"
    """Where the host's key must be; an unknown or changed key is refused."""
    connect_timeout_s: float = Field(default=10.0, gt=0)
    keepalive_s: float = Field(default=1.0, gt=0)
    """SSH keepalives and the TCP user timeout that together notice a silent peer."""
    tcp_user_timeout_s: float = Field(default=5.0, gt=0)


_EOF_GRACE_S = 2.0
"""How long a command's output is read for after its exit status came, waiting for the end
of it: sshd may send the status before the last output (a short grace; no more, since a child
the command left running could hold its stdout open for ever)."""


class SSHRunner:
    """Runs commands on one host over a pooled paramiko connection (reconnects when it drops).

    paramiko is imported here and nowhere else in the core (the ``[ssh]`` extra)."""

    def __init__(self, target: SSHTarget, *, max_sessions: int = 8) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._client: Any = None
        self._slots = threading.BoundedSemaphore(max_sessions)
        self._silent_since: float | None = None
        """Set while the host is known silent (see :attr:`RunnerError.silent_since`)."""

    def describe(self) -> str:
        t = self.target
        return f"{t.user}@{t.host}:{t.port}"

    def _connect(self) -> Any:
        try:
            import paramiko
        except ImportError:
            raise RunnerError("SSH needs paramiko: pip install 'gridbridge[ssh]'") from None
        t = self.target
        known = Path(t.known_hosts).expanduser()
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(known))
        except OSError as exc:
            raise HostKeyRefused(
                f"{self.describe()}: cannot read known_hosts {known}: {exc.strerror or exc}"
            ) from None
        except Exception as exc:  # paramiko's InvalidHostKey: @cert-authority, @revoked lines
            raise HostKeyRefused(
                f"{self.describe()}: cannot use known_hosts {known}: {exc} (lines with "
                "@cert-authority or @revoked markers are not supported; keep plain host "
                "lines in the file gridbridge reads)"
            ) from None
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        sock = socket.create_connection((t.host, t.port), timeout=t.connect_timeout_s)
        try:
            _tune_socket(sock, t)
            client.connect(
                t.host, port=t.port, username=t.user, key_filename=t.key_file,
                sock=sock, timeout=t.connect_timeout_s, banner_timeout=t.connect_timeout_s,
                auth_timeout=t.connect_timeout_s, allow_agent=t.key_file is None,
                look_for_keys=t.key_file is None,
            )
        except paramiko.BadHostKeyException as exc:
            _close(client, sock)
            raise HostKeyRefused(
                f"{self.describe()}: the host key CHANGED (got {exc.key.get_name()} "
                f"{exc.key.get_base64()[:16]}..., known_hosts {known} has another); refusing "
                "to connect. If the host was reinstalled, replace its line in known_hosts."
            ) from None
        except paramiko.SSHException as exc:
            _close(client, sock)
            if "not found in known_hosts" in str(exc):
                raise HostKeyRefused(
                    f"{self.describe()}: the host key is unknown (not in {known}); refusing to "
                    f"connect. Add it with: ssh-keyscan -p {t.port} {t.host} >> {known} "
                    "(after checking the fingerprint)"
                ) from None
            raise RunnerError(f"{self.describe()}: SSH failed: {exc}") from None
        except Exception as exc:
            _close(client, sock)
            raise RunnerError(f"{self.describe()}: cannot connect: {exc}") from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(max(1, round(t.keepalive_s)))
        return client

    def _session(self) -> Any:
        with self._lock:
            client = self._client
            transport = client.get_transport() if client is not None else None
            if transport is None or not transport.is_active():
                self._note_silence(transport)
                if client is not None:
                    client.close()
                self._client = None
                try:
                    self._client = self._connect()
                except RunnerError as exc:
                    exc.silent_since = self._silent_since
                    raise
                except OSError as exc:
                    raise RunnerError(
                        f"{self.describe()}: cannot connect: {exc.strerror or exc}",
                        silent_since=self._silent_since) from None
            return self._client

    def _note_silence(self, transport: Any) -> None:
        """A connection TCP timed out: the host has said nothing for the user timeout before
        that (the earliest such moment is kept until the host answers again)."""
        exc = getattr(transport, "saved_exception", None)
        if (isinstance(exc, OSError) and exc.errno == errno.ETIMEDOUT
                and self._silent_since is None):
            self._silent_since = time.time() - self.target.tcp_user_timeout_s

    def run(self, argv: Sequence[str], *, input: str | None = None,
            timeout: float = 30.0, env: Mapping[str, str] | None = None) -> Completed:
        command = shlex.join(argv)
        if env:  # through env(1), so the remote sshd's AcceptEnv does not matter
            command = shlex.join(["env", *(f"{k}={v}" for k, v in env.items())]) + " " + command
        with self._slots:
            client = self._session()
            deadline = time.monotonic() + timeout
            transport = client.get_transport()
            channel = None
            try:
                channel = transport.open_session(timeout=timeout)
                channel.settimeout(timeout)
                channel.exec_command(command)
                if input is not None:
                    channel.sendall(input.encode())
                channel.shutdown_write()
                out, err = bytearray(), bytearray()
                exited: float | None = None
                while True:
                    if channel.recv_ready():
                        out += channel.recv(65536)
                    if channel.recv_stderr_ready():
                        err += channel.recv_stderr(65536)
                    if (channel.exit_status_ready() and not channel.recv_ready()
                            and not channel.recv_stderr_ready()):
                        # sshd may send the exit status before the last of the output: read
                        # on to the end of it (EOF), for a short grace at most (a child left
                        # holding the command's stdout would otherwise keep us here)
                        exited = exited or time.monotonic()
                        if channel.eof_received or time.monotonic() - exited > _EOF_GRACE_S:
                            break
                    if time.monotonic() > deadline:
                        raise CommandTimeout(
                            f"{self.describe()}: {argv[0]} did not finish within {timeout:g}s"
                        )
                    channel.status_event.wait(0.005)
                # what came between the last read and the end (EOF) is in the buffers still
                while channel.recv_ready():
                    out += channel.recv(65536)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                code = channel.recv_exit_status()
                if code == -1 and not transport.is_active():
                    # paramiko closes the channel of a dead connection as if the command ended
                    raise RunnerError(f"{self.describe()}: connection lost while {argv[0]} ran")
            except RunnerError as exc:
                self._drop(transport)
                exc.silent_since = self._silent_since
                raise
            except Exception as exc:  # socket errors, EOF, paramiko's own
                self._drop(transport)
                raise RunnerError(f"{self.describe()}: connection failed: {exc}",
                                  silent_since=self._silent_since) from None
            finally:
                if channel is not None:
                    channel.close()
        self._silent_since = None
        return Completed(code, out.decode(errors="replace"), err.decode(errors="replace"))

    def ping(self, timeout: float = 10.0) -> float:
        """The network round trip to the host in ms: one SSH global request on the pooled
        connection, answered by sshd itself (no command, no shell start-up in it)."""
        with self._slots:
            transport = self._session().get_transport()
            t0 = time.monotonic()
            try:
                transport.global_request("keepalive@openssh.com", wait=True)
            except Exception as exc:
                self._drop(transport)
                raise RunnerError(f"{self.describe()}: connection failed: {exc}") from None
            if time.monotonic() - t0 > timeout or not transport.is_active():
                self._drop(transport)
                raise RunnerError(f"{self.describe()}: no answer within {timeout:g}s")
            return (time.monotonic() - t0) * 1000

    def _drop(self, transport: Any) -> None:
        """Drop the pooled connection only if it is dead: a failed command must not cut the
        other commands running over it."""
        if transport is None or not transport.is_active():
            self._note_silence(transport)
            self.close()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _close(client: Any, sock: socket.socket) -> None:
    client.close()
    sock.close()


def _tune_socket(sock: socket.socket, target: SSHTarget) -> None:
    """TCP keepalive plus ``TCP_USER_TIMEOUT``: keepalive alone never notices a peer that
    vanished while data was unacknowledged; the user timeout does, within seconds."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", target.keepalive_s), ("TCP_KEEPINTVL", target.keepalive_s),
                        ("TCP_KEEPCNT", 3)):
        opt = getattr(socket, name, None)
        if opt is not None:
            sock.setsockopt(socket.IPPROTO_TCP, opt, max(1, round(value)))
    opt = getattr(socket, "TCP_USER_TIMEOUT", None)
    if opt is not None:
        sock.setsockopt(socket.IPPROTO_TCP, opt, int(target.tcp_user_timeout_s * 1000))
