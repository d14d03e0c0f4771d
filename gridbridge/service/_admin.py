"""The endpoints around the jobs: who am I, tokens, the audit, the books, site health and
drains.

Invariant: tokens and the audit are for operators only, and no answer ever holds a token's
secret except the one that creates it; the books (ledger, decisions) are for finance and
operators whole, and for a researcher only their own jobs' rows and their own team's budget.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from gridbridge.scheduler._access import Role

from ._app import Call, Endpoint, Service
from ._books import books_json
from ._codec import encode
from ._jobs import body_json
from ._rights import Verb, check

__all__ = ["ENDPOINTS"]


def _whoami(_service: Service, call: Call) -> Any:
    return {"user": call.who.user, "team": call.who.team, "role": call.who.role.value,
            "token": call.who.token_id}


def _tokens(service: Service, call: Call) -> Any:
    check(call.who, Verb.ADMIN, target="tokens")
    return encode(service.store.tokens())


def _create_token(service: Service, call: Call) -> Any:
    check(call.who, Verb.ADMIN, target="tokens")
    body = body_json(call)
    record, token = service.store.create_token(
        str(body.get("user", "")), str(body.get("team", "")), str(body.get("role", "")),
        created_by=call.who.user)
    call.target = f"token {record.id}"
    call.detail = f"user {record.user}, team {record.team}, role {record.role.value}"
    return {"record": asdict(record), "token": token}


def _revoke_token(service: Service, call: Call) -> Any:
    call.target = f"token {call.path['token']}"
    check(call.who, Verb.ADMIN, target=call.target)
    return encode(service.store.revoke_token(call.path["token"]))


def _audit(service: Service, call: Call) -> Any:
    check(call.who, Verb.ADMIN, target="the audit")
    limit = int(call.query["limit"]) if "limit" in call.query else None
    return encode(service.store.audit_records(limit))


def _ledger(service: Service, call: Call) -> Any:
    check(call.who, Verb.REPORT)
    rows = service.store.ledger_records(call.query.get("job_id"))
    if call.who.role is Role.RESEARCHER:
        rows = [r for r in rows if r["user"] == call.who.user]
    return rows


def _decisions(service: Service, call: Call) -> Any:
    check(call.who, Verb.REPORT)
    rows = service.store.decision_records(float(call.query["since"]),
                                          float(call.query["until"]))
    if call.who.role is Role.RESEARCHER:
        mine = {j.id for j in service.store.jobs(user=call.who.user)}
        rows = [r for r in rows if r["job_id"] in mine]
    return rows


def _books(service: Service, call: Call) -> Any:
    """Budgets, currency and allocations; a researcher sees only their own team's budget."""
    check(call.who, Verb.REPORT)
    answer = books_json(service.made.config)
    if call.who.role is Role.RESEARCHER:
        budgets = answer["budgets"]
        budgets["teams"] = {t: v for t, v in budgets["teams"].items() if t == call.who.team}
        budgets["projects"] = {}
    return answer


def _drain(service: Service, call: Call) -> Any:
    """Drain a site or reopen it (operators): ``{"drained": bool, "reason": str}``."""
    site = call.path["site"]
    body = body_json(call)
    drained = body.get("drained")
    call.target = f"site {site}"
    check(call.who, Verb.ADMIN, target=call.target)
    names = [s.name for s in service.made.config.sites]
    if site not in names:
        raise ValueError(f"no site {site!r}; valid choices: {', '.join(names)}")
    if not isinstance(drained, bool):
        raise ValueError("drained: must be true or false")
    reason = str(body.get("reason") or "")
    call.detail = ("drain" if drained else "undrain") + (f": {reason}" if reason else "")
    return {"changed": service.store.drain_site(site, drained, call.who.user, reason)}


def _site_health(service: Service, call: Call) -> Any:
    check(call.who, Verb.READ)
    return {name: asdict(h) for name, h in service.store.site_health().items()}


ENDPOINTS = [
    Endpoint("GET", "/v1/whoami", "whoami", False, _whoami),
    Endpoint("GET", "/v1/tokens", "token list", False, _tokens),
    Endpoint("POST", "/v1/tokens", "token create", True, _create_token),
    Endpoint("POST", "/v1/tokens/{token}/revoke", "token revoke", True, _revoke_token),
    Endpoint("GET", "/v1/audit", "audit", False, _audit),
    Endpoint("GET", "/v1/ledger", "report", False, _ledger),
    Endpoint("GET", "/v1/decisions", "report", False, _decisions),
    Endpoint("GET", "/v1/books", "report", False, _books),
    Endpoint("GET", "/v1/sites/health", "sites", False, _site_health),
    Endpoint("POST", "/v1/sites/{site}/drain", "site drain", True, _drain),
]
