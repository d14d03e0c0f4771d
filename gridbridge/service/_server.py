"""Running the API: uvicorn in the serve process, beside the reconciler.

Invariant: the service never listens in plain HTTP on an address other than loopback unless
told ``insecure`` (tokens would cross the network readable); given a certificate and key it
speaks TLS. The reconciler runs in a thread of the same process while uvicorn serves, and
stops when uvicorn does (SIGTERM, SIGINT)::

    serve --listen HOST:PORT ─> check_listen ─> made.start() (reconciler thread)
          [--socket PATH]                    └> uvicorn.Server(make_app(made)).run()
                                             └> (thread) uvicorn on PATH, callers by SO_PEERCRED
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridbridge.client import Client

__all__ = ["Listen", "parse_listen", "run_api"]


@dataclass(frozen=True)
class Listen:
    """Where and how the API listens."""

    host: str
    port: int
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(text: str, tls_cert: Path | None = None, tls_key: Path | None = None,
                 insecure: bool = False) -> Listen:
    """``HOST:PORT`` checked: a port, a certificate with its key, and TLS off loopback."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {text!r}: give HOST:PORT, e.g. 127.0.0.1:8765")
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            raise ValueError(f"{path}: no such file")
    if tls_cert is None and not insecure and not _loopback(host):
        raise ValueError(f"--listen {text}: plain HTTP off loopback would send tokens in the "
                         "clear; give --tls-cert and --tls-key (or --insecure behind a TLS "
                         "proxy)")
    return Listen(host.strip("[]"), int(port), tls_cert, tls_key, insecure)


def run_api(made: Client, listen: Listen | None, socket_path: Path | None = None) -> None:
    """Serve the API on ``listen`` and/or on the Unix socket ``socket_path`` (callers known
    by their peer credentials) with ``made``'s reconciler in a thread, until a signal."""
    import threading

    import uvicorn

    servers = [uvicorn.Server(_config(made, listen, socket_path=None))] if listen else []
    if socket_path is not None:
        if socket_path.is_socket():  # left by a serve that was killed: nobody answers on it
            socket_path.unlink()
        servers.append(uvicorn.Server(_config(made, None, socket_path)))
    made.start()
    # the first server takes the signals (main thread); the others stop when it does
    others = [threading.Thread(target=s.run, daemon=True) for s in servers[1:]]
    for thread in others:
        thread.start()
    try:
        servers[0].run()  # the caller closes ``made`` (and so its reconciler)
    finally:
        for server in servers[1:]:
            server.should_exit = True
        for thread in others:
            thread.join(timeout=10)


def _config(made: Client, listen: Listen | None, socket_path: Path | None) -> Any:
    import uvicorn

    from ._admin import ENDPOINTS as ADMIN
    from ._app import make_app
    from ._jobs import ENDPOINTS as JOBS
    from ._metrics import ENDPOINTS as METRICS

    app = make_app(made, [*JOBS, *ADMIN, *METRICS], peer=socket_path is not None)
    common: dict[str, Any] = {"log_config": None, "access_log": False,
                              "timeout_graceful_shutdown": 5}
    if socket_path is not None:
        return uvicorn.Config(app, uds=str(socket_path), http=_peer_protocol(), **common)
    assert listen is not None
    return uvicorn.Config(
        app, host=listen.host, port=listen.port,
        ssl_certfile=str(listen.tls_cert) if listen.tls_cert else None,
        ssl_keyfile=str(listen.tls_key) if listen.tls_key else None, **common)


def _peer_protocol() -> type:
    """uvicorn's HTTP/1.1 protocol, with each connection's client set from the kernel's
    peer credentials: (``_peer.PEER``, uid), what ``Service.authenticate`` reads."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    from ._peer import PEER, peer_credentials

    class PeerProtocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            _pid, uid, _gid = peer_credentials(transport.get_extra_info("socket"))
            self.client = (PEER, uid)

    return PeerProtocol
