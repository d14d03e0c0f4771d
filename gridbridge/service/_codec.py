"""The store's records as JSON and back: what crosses between the service and its clients.

Invariant: a record decoded here equals the one the service's store returned (the same
frozen dataclass, enums and spec included), so commands read a remote job exactly as a local
one. Errors cross as ``{"error": one line, "kind": a name in KINDS}`` and are raised again on
the client as the same exception class.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gridbridge.config import ConfigError
from gridbridge.scheduler._access import AuditRecord, Role, TokenRecord
from gridbridge.scheduler._db import StoreUnavailable
from gridbridge.scheduler.records import Attempt, Event, Job, JobNotFound
from gridbridge.scheduler.tables import DecisionRow
from gridbridge.spec import JobSpec
from gridbridge.states import AttemptState, JobState

from ._rights import Refused

__all__ = ["DIGEST_HEADER", "KINDS", "decode", "encode", "error_body", "raise_error"]

DIGEST_HEADER = "x-gridbridge-return-digest"
"""The digest the control plane recorded for a result's bytes (the client checks them)."""


def encode(record: Any) -> Any:
    """A record (or a list of them) as JSON-ready data."""
    if isinstance(record, list):
        return [encode(r) for r in record]
    if isinstance(record, DecisionRow):
        return {c.key: getattr(record, c.key) for c in DecisionRow.__table__.columns}
    out = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    if isinstance(record, Job):
        out["spec"] = record.spec.model_dump(mode="json")
    return out


def decode(kind: type[Any], data: dict[str, Any]) -> Any:
    """The record of class ``kind`` that :func:`encode` made ``data`` from."""
    if kind is Job:
        return Job(**{**data, "spec": JobSpec.model_validate(data["spec"]),
                      "state": JobState(data["state"])})
    if kind is Attempt:
        return Attempt(**{**data, "state": AttemptState(data["state"])})
    if kind is TokenRecord:
        return TokenRecord(**{**data, "role": Role(data["role"])})
    if kind is DecisionRow:
        return DecisionRow(**data)
    if kind in (Event, AuditRecord):
        return kind(**data)
    raise TypeError(f"no decoding for {kind.__name__}")


KINDS: dict[str, type[Exception]] = {
    "JobNotFound": JobNotFound, "LookupError": LookupError, "ValueError": ValueError,
    "ConfigError": ConfigError, "RuntimeError": RuntimeError,
    "StoreUnavailable": StoreUnavailable,
}
"""The errors that cross the wire by name (anything else is a RuntimeError)."""

_STATUS = {JobNotFound: 404, LookupError: 404, ConfigError: 400, ValueError: 400,
           RuntimeError: 409, StoreUnavailable: 503}


def error_body(exc: Exception) -> tuple[int, dict[str, str]]:
    """The HTTP status and body of an error the service answers with."""
    if isinstance(exc, Refused):
        return exc.status, {"error": str(exc), "kind": "Refused"}
    for cls, status in _STATUS.items():  # most specific first
        if isinstance(exc, cls):
            return status, {"error": str(exc), "kind": cls.__name__}
    return 500, {"error": f"internal error ({type(exc).__name__})", "kind": "RuntimeError"}


def raise_error(status: int, body: Any) -> None:
    """Raise, on the client, the error the service answered with."""
    message = str(body.get("error", "")) if isinstance(body, dict) else ""
    kind = str(body.get("kind", "")) if isinstance(body, dict) else ""
    if kind == "Refused" or status in (401, 403):
        raise Refused(message or f"refused (HTTP {status})", status)
    raise KINDS.get(kind, RuntimeError)(message or f"the service answered HTTP {status}")
