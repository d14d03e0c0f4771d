"""Running the API: uvicorn in the serve process, beside the reconciler.

Invariant: the service never listens in plain HTTP on an address other than loopback unless
told ``insecure`` (tokens would cross the network readable); given a certificate and key it
speaks TLS. The reconciler runs in a thread of the same process while uvicorn serves, and
stops when uvicorn does (SIGTERM, SIGINT)::

    serve --listen HOST:PORT ─> check_listen ─> made.start() (reconciler thread)
                                             └> uvicorn.Server(make_app(made)).run()
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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


def run_api(made: Client, listen: Listen) -> None:
    """Serve the API on ``listen`` with ``made``'s reconciler in a thread, until a signal."""
    import uvicorn

    from ._admin import ENDPOINTS as ADMIN
    from ._app import make_app
    from ._jobs import ENDPOINTS as JOBS

    app = make_app(made, [*JOBS, *ADMIN])
    config = uvicorn.Config(
        app, host=listen.host, port=listen.port, log_config=None, access_log=False,
        ssl_certfile=str(listen.tls_cert) if listen.tls_cert else None,
        ssl_keyfile=str(listen.tls_key) if listen.tls_key else None,
        timeout_graceful_shutdown=5)
    made.start()
    uvicorn.Server(config).run()  # the caller closes ``made`` (and so its reconciler)
