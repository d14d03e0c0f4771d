"""The gridbridge service: one authenticated HTTP API in front of the store.

Invariant: when a federation has a service, it is the only writer of the store and the only
process running reconcilers; its clients send requests with a bearer token and never touch
the database. Every request is authenticated, every verb is checked against the caller's
role and, for a job, its owner (the identity that submitted it), and every change and every
refusal is audited::

      researcher / finance / operator                         the service's host
    ┌────────────────────────────┐  HTTPS, Bearer gb_<id>.<s>  ┌──────────────────────────┐
    │ Client(url=..., token=...) │ ──────────────────────────> │ _app: authenticate       │
    │  RemoteStore (the reads    │                             │  _rights.check(role,own) │
    │  commands make)            │ <────────────────────────── │  _jobs / _admin handlers │
    │ gridbridge --url ... CMD   │   records as JSON (_codec)  │  audit; in-process Client│
    └────────────────────────────┘   401/403: one-line refusal │  + reconciler thread     │
                                                              └──────────┬───────────────┘
                                                                         v StateStore

Modules: ``_rights`` (roles to verbs), ``_codec`` (records and errors on the wire), ``_app``
(the Starlette app, authentication, audit), ``_oidc`` (bearer JWTs against an issuer's JWKS),
``_peer`` (the Unix socket's callers by SO_PEERCRED), ``_jobs`` and ``_admin`` (endpoints),
``_books`` (budgets and allocations for reports), ``_server`` (uvicorn, TLS, the socket),
``_remote`` (the client side). Jobs running as their owners' accounts (``run_as: user``)
are the sites' business: :mod:`gridbridge.fsowner` and the local adapter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gridbridge.scheduler._access import AuditRecord, Role, TokenRecord, check_name

from ._rights import Identity, Refused, Verb

if TYPE_CHECKING:
    from ._remote import RemoteClient, RemoteStore
    from ._server import Listen

__all__ = ["AuditRecord", "Identity", "Listen", "Refused", "RemoteClient", "RemoteStore",
           "Role", "TokenRecord", "Verb", "check_name", "parse_listen", "run_api"]


def __getattr__(name: str) -> Any:
    """The client and server parts on first use: a remote client never imports Starlette
    or uvicorn, and the in-process client never imports httpx."""
    if name in ("RemoteClient", "RemoteStore"):
        from . import _remote

        return getattr(_remote, name)
    if name in ("Listen", "parse_listen", "run_api"):
        from . import _server

        return getattr(_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
