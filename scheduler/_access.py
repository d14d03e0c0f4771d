"""Who may use the store through the service: API tokens, and the audit of what they did.

Invariant: a token's secret is never stored, logged or listed. It is shown once, when the
token is made (``gb_<id>.<secret>``); the store keeps its SHA-256 beside the public id and
compares in constant time. A revoked token never authenticates again. Every audit row names
its token's user and role, never the secret::

    create_token(user, team, role) ──> "gb_<id>.<secret>"   (printed once)
                                          │
    Authorization: Bearer gb_<id>.<secret> ─> identify() ─> TokenRecord | None
                                                             (None: unknown, wrong, revoked)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select, update

from gridbridge.units import NAME_PATTERN

from ._db import Sessions
from .tables import ApiTokenRow, AuditRow

__all__ = ["Access", "AuditRecord", "Role", "TokenRecord", "check_name"]

_PREFIX = "gb_"


class Role(StrEnum):
    """What a token's holder may do (the rules themselves: ``gridbridge.service``)."""

    RESEARCHER = "researcher"
    """Submits; sees, cancels, preempts and reads the logs and results of their own jobs."""
    OPERATOR = "operator"
    """Everything: every job, sites, tokens, the audit."""
    FINANCE = "finance"
    """Every report of every team; no submissions, logs, payloads or results."""


@dataclass(frozen=True)
class TokenRecord:
    """A token as listings show it: never its secret."""

    id: str
    user: str
    team: str
    role: Role
    created_at: float
    created_by: str
    revoked_at: float | None


@dataclass(frozen=True)
class AuditRecord:
    """One audited request: ``outcome`` is ``ok`` or ``refused``."""

    at: float
    user: str
    role: str
    verb: str
    target: str
    outcome: str
    source: str
    detail: str


def check_name(what: str, value: str) -> str:
    """``value`` if it is a valid name (``units.NAME_PATTERN``), else a ``ValueError`` that
    shows it escaped (a name with a newline or markup stays one plain line)."""
    if not re.fullmatch(NAME_PATTERN, value):
        raise ValueError(f"{what} {value!r} is not a valid name: letters, digits, '_', '.', "
                         "'-', starting with a letter or digit, at most 63 characters")
    return value


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Access(Sessions):
    """Tokens and the audit (a part of ``StateStore``)."""

    def create_token(self, user: str, team: str, role: Role | str,
                     created_by: str = "") -> tuple[TokenRecord, str]:
        """Make a token; returns its record and the whole token, which is never shown again."""
        role = Role(role)  # a ValueError names the bad role
        check_name("user", user)
        check_name("team", team)
        token_id, secret = secrets.token_hex(5), secrets.token_urlsafe(32)
        row = ApiTokenRow(id=token_id, secret_sha256=_sha256(secret), user=user, team=team,
                          role=role.value, created_at=self._clock(), created_by=created_by,
                          revoked_at=None)
        with self._tx() as s:
            s.add(row)
        return _token_of(row), f"{_PREFIX}{token_id}.{secret}"

    def tokens(self) -> list[TokenRecord]:
        """Every token, oldest first, revoked ones included (never a secret)."""
        with self._read() as s:
            return [_token_of(r) for r in s.scalars(
                select(ApiTokenRow).order_by(ApiTokenRow.created_at))]

    def revoke_token(self, token_id: str) -> TokenRecord:
        """Revoke a token (again: a no-op); an unknown id raises ``LookupError``."""
        with self._tx() as s:
            s.execute(update(ApiTokenRow).where(ApiTokenRow.id == token_id,
                                                ApiTokenRow.revoked_at.is_(None))
                      .values(revoked_at=self._clock()))
            row = s.get(ApiTokenRow, token_id)
            if row is None:
                raise LookupError(f"no token {token_id!r}")
            return _token_of(row)

    def identify(self, token: str) -> TokenRecord | None:
        """The live token ``token`` is, or None (malformed, unknown, wrong secret, revoked)."""
        token_id, dot, secret = token.removeprefix(_PREFIX).partition(".")
        if not token.startswith(_PREFIX) or not dot or not secret:
            return None
        with self._read() as s:
            row = s.get(ApiTokenRow, token_id)
            if row is None or row.revoked_at is not None:
                return None
            if not hmac.compare_digest(row.secret_sha256, _sha256(secret)):
                return None
            return _token_of(row)

    def record_audit(self, record: AuditRecord) -> None:
        with self._tx() as s:
            s.add(AuditRow(at=record.at, user=record.user, role=record.role,
                           verb=record.verb, target=record.target[:128],
                           outcome=record.outcome, source=record.source[:64],
                           detail=record.detail))

    def audit_records(self, limit: int | None = None) -> list[AuditRecord]:
        """The audit, newest first (the newest ``limit`` rows when given)."""
        q = select(AuditRow).order_by(AuditRow.id.desc())
        if limit is not None:
            q = q.limit(limit)
        with self._read() as s:
            return [AuditRecord(at=r.at, user=r.user, role=r.role, verb=r.verb,
                                target=r.target, outcome=r.outcome, source=r.source,
                                detail=r.detail) for r in s.scalars(q)]


def _token_of(row: ApiTokenRow) -> TokenRecord:
    return TokenRecord(id=row.id, user=row.user, team=row.team, role=Role(row.role),
                       created_at=row.created_at, created_by=row.created_by,
                       revoked_at=row.revoked_at)
