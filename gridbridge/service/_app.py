"""The HTTP API: one Starlette app over the service's own in-process ``Client``.

Invariant: every request but ``/v1/health`` is authenticated (a bearer token the store
knows, not revoked) and passes :func:`._rights.check` before the store is touched; every
verb that changes something, and every refusal, is written to the audit with who, when,
what and from where. Handlers are plain functions run on Starlette's thread pool, so a slow
store read never blocks the event loop::

    request ─> _answer ─> authenticate ─> handler(service, call) ─> store / Client
                  │             │ no/bad token: 401       │ check(): 403
                  └── audit (changes and refusals) <──────┘
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gridbridge.scheduler._access import AuditRecord

from ._codec import error_body
from ._rights import Identity, Refused

if TYPE_CHECKING:
    from gridbridge.client import Client

__all__ = ["Call", "Service", "make_app"]

log = logging.getLogger("gridbridge.service")


@dataclass
class Call:
    """One request as a handler sees it. A handler may set ``target`` (what the audit names)
    and ``detail`` (never a secret)."""

    who: Identity
    path: dict[str, str]
    query: dict[str, str]
    body: bytes
    target: str = ""
    detail: str = ""
    lists: dict[str, list[str]] = field(default_factory=dict)


Handler = Callable[["Service", Call], Any]


@dataclass(frozen=True)
class Endpoint:
    """A route: its method and path, the verb the audit names it by, whether it changes
    something (audited when it succeeds too), and its handler."""

    method: str
    path: str
    verb: str
    changes: bool
    handler: Handler


class Service:
    """What the handlers share: the in-process client (its store, config and adapters)."""

    def __init__(self, made: Client, peer: bool = False) -> None:
        from ._oidc import OidcVerifier

        self.made = made
        self.store = made.store
        self.peer = peer
        oidc = made.config.server.oidc
        self.oidc = OidcVerifier(oidc) if oidc is not None else None

    def authenticate(self, header: str | None, client: tuple[str, int] | None = None) -> Identity:
        """The caller: over the Unix socket (``peer``), the peer's Unix user; else the one an
        API token (``gb_...``) or, with ``server.oidc``, a JWT names."""
        if self.peer:
            from ._peer import PEER, peer_identity

            if client is None or client[0] != PEER:
                raise Refused("refused: no peer credentials (rule: a socket caller is the "
                              "Unix user the kernel names)", 401)
            return peer_identity(client[1], self.made.config.server)
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Refused("refused: no API token (rule: every request names its caller; "
                          "set GRIDBRIDGE_TOKEN)", 401)
        if self.oidc is not None and not token.startswith("gb_") and token.count(".") == 2:
            return self.oidc.identify(token)
        record = self.store.identify(token)
        if record is None:
            raise Refused("refused: the API token is unknown or revoked (rule: only a live "
                          "token authenticates)", 401)
        return Identity(record.user, record.team, record.role, record.id)

    def audit(self, who: Identity | None, verb: str, call_target: str, outcome: str,
              source: str, detail: str) -> None:
        self.store.record_audit(AuditRecord(
            at=time.time(), user=who.user if who else "", role=who.role.value if who else "",
            verb=verb, target=call_target, outcome=outcome, source=source, detail=detail))


def _answer(service: Service, endpoint: Endpoint, request: Request, body: bytes) -> Response:
    """Authenticate, run the handler, audit, and turn errors into their status and body."""
    who: Identity | None = None
    source = request.client.host if request.client else ""
    call_target = " ".join(next(iter(request.path_params.items()), ()))  # "job j1..."
    try:
        peer = (request.client.host, request.client.port) if request.client else None
        who = service.authenticate(request.headers.get("authorization"), peer)
        call = Call(who, dict(request.path_params), dict(request.query_params), body,
                    target=call_target,
                    lists={k: request.query_params.getlist(k) for k in request.query_params})
        result = endpoint.handler(service, call)
        if endpoint.changes:
            service.audit(who, endpoint.verb, call.target, "ok", source, call.detail)
        return result if isinstance(result, Response) else JSONResponse(result)
    except Exception as exc:
        status, payload = error_body(exc)
        if isinstance(exc, Refused):
            named = "" if who else _token_id(request.headers.get("authorization"))
            service.audit(who, endpoint.verb, call_target, "refused", source,
                          f"{exc}{f' [token {named}]' if named else ''}")
        elif status == 500:
            log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse(payload, status)


def _token_id(header: str | None) -> str:
    """The public id a bearer token claims (never any of its secret), or ''."""
    token = (header or "").partition(" ")[2].strip()
    token_id = token.removeprefix("gb_").partition(".")[0]
    return token_id if token.startswith("gb_") and token_id.isalnum() else ""


MAX_BODY = 256 * 2**20
"""The largest request body read (a batch of pickled calls fits many times over); a larger
one is refused with 413 before it is read into memory."""


def _route(service: Service, endpoint: Endpoint) -> Route:
    async def serve(request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return JSONResponse({"error": f"the request body is over {MAX_BODY} bytes",
                                     "kind": "ValueError"}, 413)
        return await run_in_threadpool(_answer, service, endpoint, request, bytes(body))

    return Route(endpoint.path, serve, methods=[endpoint.method])


async def _health(_request: Request) -> Response:
    return JSONResponse({"ok": True})


def make_app(made: Client, endpoints: list[Endpoint], peer: bool = False) -> Starlette:
    """The API over ``made``, an in-process client of the federation (``peer``: its callers
    are the Unix socket's peers, see ``_peer``)."""
    from ._dashboard import routes as dashboard

    service = Service(made, peer)
    routes = [Route("/v1/health", _health, methods=["GET"])]
    routes += [_route(service, e) for e in endpoints]
    routes += dashboard(service)
    return Starlette(routes=routes)
