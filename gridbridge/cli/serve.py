"""``gridbridge serve``: the reconciler in the foreground, logging each event as a text line or
a JSON object.

Invariant: one serve per store holds the reconciler lease; a second stands by (and says so)
until the lease is free. Every log line's time is UTC, written as ``units.TIME_FORMAT``, and
a URL in it is shown without its password (``units.redact_url``). With ``--listen`` it also
serves the HTTP API (:mod:`gridbridge.service`): TLS given a certificate and key, plain HTTP
only on loopback unless ``--insecure``; it opens this host's store whatever ``--url`` says.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from gridbridge.units import TIME_FORMAT, fmt_time, redact_url

from ._common import client

__all__ = ["LogFormat", "log_handler", "serve"]


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def serve(
    ctx: typer.Context,
    log_format: Annotated[LogFormat, typer.Option(
        help="text lines, or one JSON object a line (time, level, logger, message and the "
        "event's fields)")] = LogFormat.TEXT,
    listen: Annotated[Optional[str], typer.Option(  # noqa: UP045 - typer needs Optional
        help="also serve the HTTP API on HOST:PORT", show_default=False)] = None,
    tls_cert: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="the API's TLS certificate (PEM)", show_default=False)] = None,
    tls_key: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="the API's TLS private key (PEM)", show_default=False)] = None,
    insecure: Annotated[bool, typer.Option(
        help="allow plain HTTP off loopback (behind a TLS-terminating proxy only)")] = False,
    socket_path: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--socket", help="also serve the API on this Unix socket, each caller known by the "
        "kernel as its Unix user (no token)", show_default=False)] = None,
) -> None:
    """Run the reconciler in the foreground over the configured store. It logs a line per
    placement, submission, attempt state change, site health change, lease change and its
    shutdown; a second serve on the same store stands by until the lease is free. With
    --listen it serves the API too (tokens: gridbridge admin token create); with --socket,
    to this host's users, known by their Unix user."""
    from gridbridge.scheduler.reconciler import LEASE
    from gridbridge.service import parse_listen, run_api

    where = parse_listen(listen, tls_cert, tls_key, insecure) if listen else None
    logging.basicConfig(level=logging.INFO, handlers=[log_handler(log_format)], force=True)
    log = logging.getLogger("gridbridge.serve")
    if isinstance(ctx.obj, dict):
        ctx.obj["url"] = None  # the service opens this host's store, whatever --url says
    made = client(ctx)
    log.info("gridbridge serve: %d sites, store %s", len(made.config.sites),
             redact_url(made.store.url),
             extra={"event": "start", "sites": len(made.config.sites)})
    holder = made.store.lease_holder(LEASE)
    if holder is not None and holder[1] > time.time():
        log.info("standing by: %s holds the reconciler lease on this store (until %s); this "
                 "serve takes over when it stops or its lease lapses", holder[0],
                 fmt_time(holder[1]), extra={"event": "standby", "holder": holder[0]})
    if where is not None:
        log.info("serving the API on %s://%s:%d", where.scheme, where.host, where.port,
                 extra={"event": "listen", "port": where.port})
    if socket_path is not None:
        log.info("serving the API on unix://%s", socket_path,
                 extra={"event": "listen", "socket": str(socket_path)})
    if where is not None or socket_path is not None:
        run_api(made, where, socket_path)  # uvicorn handles SIGTERM and SIGINT
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    made.reconciler.run(stop)


_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime"}


class _JsonLines(logging.Formatter):
    """One JSON object a line: time (UTC ISO 8601), level, logger, message, and the fields a
    call passed in ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": time.strftime(TIME_FORMAT, time.gmtime(record.created)),
                "level": record.levelname.lower(), "logger": record.name,
                "message": record.getMessage()}
        line.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def log_handler(fmt: LogFormat) -> logging.Handler:
    """A stderr handler writing text lines (UTC times) or JSON lines."""
    handler = logging.StreamHandler()
    if fmt is LogFormat.JSON:
        handler.setFormatter(_JsonLines())
    else:
        text = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", TIME_FORMAT)
        text.converter = time.gmtime
        handler.setFormatter(text)
    return handler
